// Package query is what every store of a tenant resource uses to query
// its tenant's data through the handle the router gave it: transactions
// (Tx), table names that name the tenant's schema (Table), pages (Page),
// the lock of the dial-number space (LockNumberSpace), and the shapes of a
// row's time and of a delete's outcome. It knows nothing of provisioning
// or moving a tenant (package tenantdb).
package query

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/laracopilot/controlplane/controlplane"
	"gorm.io/gorm"
)

// Tx runs fn in a transaction on db (a router handle). Its reads name their
// columns (gorm's QueryFields) instead of SELECT *: a cached statement gone
// stale after a migration (see the router's retryStalePlan) cannot be retried inside a
// transaction PostgreSQL has aborted, but a statement that names its
// columns does not go stale when a column is added.
func Tx(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error) error {
	return db.WithContext(ctx).Session(&gorm.Session{QueryFields: true}).Transaction(fn)
}

// SchemaSetting is the gorm setting that names a schema-mode handle's
// schema (set by the router, read by Table).
const SchemaSetting = "tenantdb:schema"

// Table returns the quoted name of table as raw SQL on db must write it:
// "tenant_42"."rates" on a schema-mode handle, "rates" on a database-mode
// one. gorm's own queries qualify names by themselves; raw SQL must use
// this, or it would resolve through search_path to no tenant at all.
func Table(db *gorm.DB, table string) string {
	if s, ok := db.Get(SchemaSetting); ok {
		return pgx.Identifier{s.(string), table}.Sanitize()
	}
	return pgx.Identifier{table}.Sanitize()
}

// NumberSpaceLock keys the advisory lock of a tenant's dial-number space.
const NumberSpaceLock = 0x4e53 // "NS"

// LockNumberSpace takes, inside transaction tx, the lock that serialises a
// tenant's writes to its dial numbers: extension numbers and queue dial
// numbers share one space (no clash between them) and creating an extension
// counts against the cap, both checks that a unique index cannot make.
// Schema tenants share a database, so the tenant id is part of the key; the
// lock is released when tx ends.
func LockNumberSpace(tx *gorm.DB, tenantID int64) error {
	return tx.Exec(`SELECT pg_advisory_xact_lock(?, ?)`, NumberSpaceLock, int32(tenantID)).Error
}

// Now is the time a tenant row records (created_at, updated_at): UTC, at
// PostgreSQL's microsecond precision, so that what a write returns is what
// a later read returns.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// Deleted is the outcome of a delete by id: its error through translate,
// or NotFound naming what (e.g. "queue 7") when no row was deleted.
func Deleted(res *gorm.DB, translate func(error) error, what string) error {
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected == 0 {
		return &controlplane.Error{Code: controlplane.NotFound, Message: what + " not found"}
	}
	return nil
}
