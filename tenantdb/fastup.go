package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

// A fleet run's "up" is the common case and must be cheap per tenant:
// golang-migrate opens a connection per tenant, asks information_schema
// whether its table exists, and takes a dozen round trips per file. When
// every pending file can run in a transaction, fastUp applies them instead
// in one transaction on a pooled connection, in one round trip whatever
// the number of files: the tenant's version as the catalog knows it is
// checked in the transaction, under the lock, before anything runs (and if
// it is not what the catalog says, the transaction is rolled back and the
// version read first, in four round trips). It speaks golang-migrate's
// protocol exactly: the same advisory lock as the stock CLI (so it
// excludes, and is excluded by, any golang-migrate run on the tenant), the
// same one-row schema_migrations table, and on failure the same dirty mark
// at the failed version, with the schema left at the previous one (the
// whole transaction rolled back).
//
// A database tenant's database is entered only as the tenant's role (see
// Provisioner.open): its migrations table is the tenant's own, and any
// policy, trigger or view the tenant put on it runs as the tenant.

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
//
// A tenant whose run has started finishes it when ctx ends (Ctrl-C): its
// transaction commits or fails on its own, and is recorded either way.
func (p *Provisioner) fastUp(ctx context.Context, t *controlplane.Tenant) (out controlplane.MigrationOutcome, ok bool) {
	ctx = context.WithoutCancel(ctx)
	h, err := p.history()
	if err != nil {
		return controlplane.MigrationOutcome{Err: err}, true
	}
	if !t.SchemaDirty {
		if script, first := pendingScript(h, t.SchemaVersion); first != 0 {
			if out, done := p.upOneTrip(ctx, t, h, script, first); done {
				return out, true
			}
		}
	}
	return p.fastUpRead(ctx, t, h)
}

// fastUpRead is fastUp that reads the tenant's version first (four round
// trips): for a tenant whose version the catalog does not know for sure.
func (p *Provisioner) fastUpRead(ctx context.Context, t *controlplane.Tenant, h *migrations.History) (out controlplane.MigrationOutcome, ok bool) {
	db, setup := p.schemaMigrationPool(), ""
	if t.Isolation == controlplane.IsolationDatabase {
		db, _ = p.tenantDB(t) // as the tenant's role: it owns what it makes
		defer db.Close()
	} else {
		setup = `SET LOCAL search_path TO ` + quote(t.DBName) + `;`
	}
	table, lock := p.migrationTable(t)

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return controlplane.MigrationOutcome{Err: err}, true
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, lock); err != nil {
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
		// golang-migrate's own words (its ErrDirty), which runbooks grep for.
		//lint:ignore ST1005 the message is golang-migrate's, verbatim
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
		out.To, out.Dirty, out.Clean = first, true, ptr(int64(from))
		if markErr := markDirty(context.WithoutCancel(ctx), db, table, lock, first); markErr != nil {
			out.Err = errors.Join(out.Err, markErr)
			out.To, out.Dirty, out.Clean = from, false, nil
		}
		return out, true
	}
	out.To = h.Latest
	return out, true
}

// markDirty records a failed version as golang-migrate does, under its
// locks (the statement lock, from migrationTable).
func markDirty(ctx context.Context, db *sql.DB, table, lock string, version uint) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, lock); err != nil {
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

// pendingScript is the files after version from, as one script, and the
// first one's version; first is 0 if none is pending or one of them cannot
// run in a transaction.
func pendingScript(h *migrations.History, from uint) (script string, first uint) {
	var b strings.Builder
	for _, f := range h.Files {
		if f.Version <= from {
			continue
		}
		if !f.Transactional {
			return "", 0
		}
		if first == 0 {
			first = f.Version
		}
		b.WriteString(f.SQL)
		b.WriteString("\n;\n")
	}
	return b.String(), first
}

// upOneTrip migrates t from the version the catalog records (first is the
// first pending file) in one simple-protocol round trip: BEGIN, the lock,
// a check that the migrations table is at that version and clean, the
// files, the version bump, COMMIT. done is false when the check failed (or
// the table is missing): the transaction is rolled back, nothing was run,
// and the caller reads the version itself.
func (p *Provisioner) upOneTrip(ctx context.Context, t *controlplane.Tenant, h *migrations.History, script string, first uint) (out controlplane.MigrationOutcome, done bool) {
	from := t.SchemaVersion
	trip := p.newOneTrip(t, h.Latest, script, first)
	out = controlplane.MigrationOutcome{From: from, To: from}
	retry := false
	err := p.withMigrationConn(ctx, t, func(conn *pgconn.PgConn) error {
		results, err := conn.Exec(ctx, trip.script).ReadAll()
		if err == nil {
			out.To = h.Latest
			return nil
		}
		if conn.TxStatus() != 'I' {
			if _, rbErr := conn.Exec(ctx, `ROLLBACK`).ReadAll(); rbErr != nil {
				return errors.Join(err, rbErr)
			}
		}
		switch completed := succeeded(results); {
		case completed < oneTripBefore-1:
			out.Err = err // BEGIN or the lock: nothing ran
		case completed == oneTripBefore-1:
			retry = true // the check failed (or the table is missing)
		default:
			out = trip.markFailed(ctx, conn, err)
		}
		return nil
	})
	if err != nil {
		return controlplane.MigrationOutcome{From: from, To: from, Err: err}, true
	}
	return out, !retry
}

// oneTrip is one tenant's migration as a single simple-protocol script.
type oneTrip struct {
	table, lock string
	from, first uint
	script      string
}

// oneTripBefore counts the script's statements before the files: BEGIN,
// the lock, the check. How many of them succeeded tells a failure of the
// connection or the lock from a version that is not the catalog's, and
// both from a failing file.
const oneTripBefore = 3

// newOneTrip builds t's script: BEGIN, golang-migrate's lock, the check
// that the migrations table is at t's version and clean, the pending files
// (script, first being the first one's version), the version bump to
// latest, COMMIT.
func (p *Provisioner) newOneTrip(t *controlplane.Tenant, latest uint, script string, first uint) oneTrip {
	from := t.SchemaVersion
	table, lock := p.migrationTable(t)
	setup := ""
	if t.Isolation == controlplane.IsolationSchema {
		setup = `SET LOCAL search_path TO ` + quote(t.DBName) + `;`
	}
	// The check is plain SQL (no PL/pgSQL to load in a database tenant's
	// new backend): a division by zero unless the table holds exactly the
	// row (from, clean), or no row for version 0.
	check := `SELECT 1 / (SELECT (pg_catalog.count(*) = 1 AND pg_catalog.bool_and(version = ` + strconv.FormatUint(uint64(from), 10) + ` AND NOT dirty))::int FROM ` + table + `);`
	if from == 0 {
		check = `SELECT 1 / (SELECT (pg_catalog.count(*) = 0)::int FROM ` + table + `);`
	}
	q := `BEGIN;
` + lock + `;
` + check + `
` + setup + "\n" + script +
		`DELETE FROM ` + table + `; INSERT INTO ` + table + ` (version, dirty) VALUES (` + strconv.FormatUint(uint64(latest), 10) + `, false);
COMMIT;`
	return oneTrip{table: table, lock: lock, from: from, first: first, script: q}
}

// markFailed records, after the script's transaction was rolled back
// because a file failed (err), the first pending version as dirty, as
// golang-migrate does and under its lock: nothing of the files was
// applied and the schema is still at from. If even the mark fails, the
// outcome says so and claims nothing dirty.
func (o oneTrip) markFailed(ctx context.Context, conn *pgconn.PgConn, err error) controlplane.MigrationOutcome {
	out := controlplane.MigrationOutcome{
		From: o.from, To: o.first, Dirty: true, Clean: ptr(int64(o.from)),
		Err: fmt.Errorf("migration %d failed (nothing of it was applied; the schema is at %d): %w", o.first, o.from, err),
	}
	mark := `BEGIN; ` + o.lock + `; DELETE FROM ` + o.table + `; INSERT INTO ` + o.table +
		` (version, dirty) VALUES (` + strconv.FormatUint(uint64(o.first), 10) + `, true); COMMIT;`
	if _, markErr := conn.Exec(ctx, mark).ReadAll(); markErr != nil {
		out.Err = errors.Join(out.Err, markErr)
		out.To, out.Dirty, out.Clean = o.from, false, nil
		if conn.TxStatus() != 'I' {
			_, _ = conn.Exec(ctx, `ROLLBACK`).ReadAll()
		}
	}
	return out
}

// succeeded counts the statements of a script that completed.
func succeeded(results []*pgconn.Result) int {
	n := 0
	for _, r := range results {
		if r.Err == nil {
			n++
		}
	}
	return n
}

// migrationTable is t's migrations table, schema-qualified, and the
// statement that takes its advisory locks for the transaction: the stock
// golang-migrate CLI's id, then the id earlier releases took (see
// migrations.LockIDs), always in that order.
func (p *Provisioner) migrationTable(t *controlplane.Tenant) (table, lock string) {
	schema := "public"
	if t.Isolation == controlplane.IsolationSchema {
		schema = t.DBName
	}
	cli, legacy := migrations.LockIDs(p.lockDatabase(t), schema)
	return quote(schema) + "." + quote(migrations.Table),
		`SELECT pg_catalog.pg_advisory_xact_lock(` + strconv.FormatInt(cli, 10) + `), pg_catalog.pg_advisory_xact_lock(` + strconv.FormatInt(legacy, 10) + `)`
}

// withMigrationConn runs fn on a connection to t's database: for a
// database tenant, a connection of its own logged in as the tenant's role
// (see Provisioner.open); for a schema tenant, a pooled one as the admin.
func (p *Provisioner) withMigrationConn(ctx context.Context, t *controlplane.Tenant, fn func(*pgconn.PgConn) error) error {
	if t.Isolation == controlplane.IsolationDatabase {
		cfg := p.server.Copy()
		cfg.Database = t.DBName
		cfg.User, cfg.Password = t.DBName, p.roles.Password(t.DBName)
		cfg.RuntimeParams["search_path"] = "public"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		return fn(conn.PgConn())
	}
	c, err := p.schemaMigrationPool().Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var fnErr error
	// A connection left in a transaction is discarded by the pool when it
	// is given back (pgx's ResetSession).
	err = c.Raw(func(dc any) error {
		fnErr = fn(dc.(*stdlib.Conn).Conn().PgConn())
		return nil
	})
	return errors.Join(err, fnErr)
}

func ptr[T any](v T) *T { return &v }
