package rates

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

// Periods of one prefix never overlap. The database cannot say so by itself
// (an exclusion constraint needs btree_gist, an extension tenant schemas
// cannot create), so every write of rates first takes transaction-scoped
// advisory locks, then checks, then writes. Under READ COMMITTED the check,
// which runs after the locks are granted, sees everything the previous
// holder committed: two writers of overlapping periods cannot both pass it.
//
// Two levels: a single-rate write holds this tenant's rates lock in shared
// mode plus an exclusive lock of each prefix it touches, so writes of
// different prefixes run side by side; an import holds the rates lock
// exclusively, one lock however many prefixes the file has (an advisory
// lock per prefix of a large file would exhaust the server's shared lock
// table). Locks are always taken table first, prefixes in sorted order, so
// no two writers wait on each other in a cycle.
//
// Keys name the table (schema-qualified in schema mode), so tenants sharing
// a database never wait on each other except on a hash collision, which
// costs a wait, never correctness.

// lockPrefixes takes the locks of a write of prefixes' rates; they are
// released when tx ends.
func lockPrefixes(tx *gorm.DB, prefixes ...string) error {
	table := query.Table(tx, "rates")
	keys := make([]string, 0, len(prefixes))
	for _, p := range prefixes {
		keys = append(keys, table+"/"+p)
	}
	slices.Sort(keys)
	js, err := json.Marshal(slices.Compact(keys))
	if err != nil {
		return err
	}
	if err := tx.Exec(`SELECT pg_advisory_xact_lock_shared(hashtextextended(?, 0))`, table).Error; err != nil {
		return err
	}
	// An aggregate over the function scan locks in the array's order.
	return tx.Exec(`SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM jsonb_array_elements_text(?::jsonb) AS k`, string(js)).Error
}

// lockAll takes the lock of a write of any number of prefixes (an import):
// every other rate write of this tenant waits until tx ends.
func lockAll(tx *gorm.DB) error {
	return tx.Exec(`SELECT pg_advisory_xact_lock(hashtextextended(?, 0))`, query.Table(tx, "rates")).Error
}

// checkOverlap fails when another rate of in's prefix (not exceptID) has a
// period that intersects [in.from, in.to). Call it under lockPrefixes.
func checkOverlap(tx *gorm.DB, in input, exceptID int64) error {
	q := tx.Where("prefix = ? AND id <> ? AND (effective_to IS NULL OR effective_to > ?)", in.prefix, exceptID, in.from)
	if in.to != nil {
		q = q.Where("effective_from < ?", *in.to)
	}
	var other rate
	res := q.Order("effective_from").Limit(1).Find(&other)
	if res.Error != nil || res.RowsAffected == 0 {
		return res.Error
	}
	reason := fmt.Sprintf("overlaps rate %d of prefix %s, %s; periods of one prefix never overlap", other.ID, other.Prefix, period(other.EffectiveFrom, other.EffectiveTo))
	return &controlplane.Error{
		Code:    controlplane.Invalid,
		Message: "the period " + period(in.from, in.to) + " " + reason,
		Fields:  map[string]string{"effective_from": reason, "effective_to": reason},
	}
}

// period writes a half-open period as the API documents it.
func period(from time.Time, to *time.Time) string {
	end := "open-ended"
	if to != nil {
		end = to.UTC().Format(time.RFC3339Nano)
	}
	return "[" + from.UTC().Format(time.RFC3339Nano) + ", " + end + ")"
}
