package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/golang-migrate/migrate/v4/database"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

// A fleet run's "up" is the common case and must be cheap per tenant:
// golang-migrate opens a connection per tenant, asks information_schema
// whether its table exists, and takes a dozen round trips per file. When
// every pending file can run in a transaction, fastUp applies them instead
// in one transaction on a pooled connection: lock, read the version, run
// the files and set the version, in four round trips, whatever the number
// of files. It speaks golang-migrate's protocol exactly: the same advisory
// lock (so it excludes, and is excluded by, any golang-migrate run on the
// tenant), the same one-row schema_migrations table, and on failure the
// same dirty mark at the failed version, with the schema left at the
// previous one (the whole transaction rolled back).

// migrationPool is the shared pool fast runs on schema tenants use: their
// connections carry no tenant state beyond a transaction (SET LOCAL).
type migrationPool struct {
	once sync.Once
	db   *sql.DB
}

func (p *Provisioner) schemaMigrationPool() *sql.DB {
	p.migPool.once.Do(func() {
		p.migPool.db = openConfig(p.server.Copy())
		p.migPool.db.SetMaxOpenConns(16)
		p.migPool.db.SetMaxIdleConns(16)
	})
	return p.migPool.db
}

// fastUp migrates t up to the latest version if it can; ok is false when
// it cannot (a pending file needs to run outside a transaction, or the
// migrations table is missing), and golang-migrate must do it.
func (p *Provisioner) fastUp(ctx context.Context, t *controlplane.Tenant) (out controlplane.MigrationOutcome, ok bool) {
	h, err := p.history()
	if err != nil {
		return controlplane.MigrationOutcome{Err: err}, true
	}
	db, dbName, schema := p.schemaMigrationPool(), p.server.Database, t.DBName
	setup := `SET LOCAL search_path TO ` + quote(schema) + `;`
	if t.Isolation == controlplane.IsolationDatabase {
		// As the admin, acting as the tenant's role: it owns what it makes.
		db, dbName, schema = p.open(t.DBName, "", ""), t.DBName, "public"
		defer db.Close()
		setup = `SET LOCAL ROLE ` + quote(t.DBName) + `;`
	}
	table := quote(schema) + "." + quote(migrations.Table)
	lockID, err := database.GenerateAdvisoryLockId(dbName, schema, migrations.Table)
	if err != nil {
		return controlplane.MigrationOutcome{Err: err}, true
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return controlplane.MigrationOutcome{Err: err}, true
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, lockID); err != nil {
		return controlplane.MigrationOutcome{Err: err}, true
	}
	var version int64
	var dirty bool
	err = tx.QueryRowContext(ctx, `SELECT version, dirty FROM `+table+` LIMIT 1`).Scan(&version, &dirty)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		version = 0
	case err != nil:
		return controlplane.MigrationOutcome{}, false // no migrations table: golang-migrate makes one
	}
	from := uint(version)
	out = controlplane.MigrationOutcome{From: from, To: from, Dirty: dirty}
	if dirty {
		out.Err = fmt.Errorf("Dirty database version %d. Fix and force version.", version)
		return out, true
	}
	var script strings.Builder
	var first uint
	for _, f := range h.Files {
		if f.Version <= from {
			continue
		}
		if !f.Transactional {
			return controlplane.MigrationOutcome{}, false
		}
		if first == 0 {
			first = f.Version
		}
		script.WriteString(f.SQL)
		script.WriteString("\n;\n")
	}
	if first == 0 {
		return out, true // at the latest already
	}
	latest := strconv.FormatUint(uint64(h.Latest), 10)
	_, err = tx.ExecContext(ctx, setup+"\n"+script.String()+
		`DELETE FROM `+table+`; INSERT INTO `+table+` (version, dirty) VALUES (`+latest+`, false);`)
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		_ = tx.Rollback()
		out.Err = fmt.Errorf("migration %d failed (nothing of it was applied; the schema is at %d): %w", first, from, err)
		out.To, out.Dirty = first, true
		if markErr := markDirty(context.WithoutCancel(ctx), db, table, lockID, first); markErr != nil {
			out.Err = errors.Join(out.Err, markErr)
			out.To, out.Dirty = from, false
		}
		return out, true
	}
	out.To = h.Latest
	return out, true
}

// markDirty records a failed version as golang-migrate does, under its lock.
func markDirty(ctx context.Context, db *sql.DB, table, lockID string, version uint) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1::bigint)`, lockID); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+table); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (version, dirty) VALUES ($1, true)`, int64(version)); err != nil {
		return err
	}
	return tx.Commit()
}
