package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	"golang.org/x/sync/errgroup"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

var _ controlplane.Migrator = (*Provisioner)(nil)

// Migrate runs op on one tenant's own migrations table (golang-migrate,
// in the tenant's database or schema) and reports the version before and
// after and the dirty flag. golang-migrate holds an advisory lock of that
// database (or schema) for the run, so two runners, or a runner and the
// provisioning of a new tenant, never migrate one tenant at once.
func (p *Provisioner) Migrate(ctx context.Context, t *controlplane.Tenant, op controlplane.MigrationOp) controlplane.MigrationOutcome {
	out := controlplane.MigrationOutcome{}
	if err := p.checkName(t); err != nil {
		out.Err = err
		return out
	}
	if op.Kind == controlplane.MigrateUp {
		if out, ok := p.fastUp(ctx, t); ok {
			return out
		}
	}
	return p.migrateWithLibrary(ctx, t, op)
}

// migrateWithLibrary runs op with golang-migrate, file by file.
func (p *Provisioner) migrateWithLibrary(ctx context.Context, t *controlplane.Tenant, op controlplane.MigrationOp) controlplane.MigrationOutcome {
	return p.migrateIn(ctx, t, p.lockDatabase(t), op)
}

// migrateIn is migrateWithLibrary in database, which is t's own or, for a
// database-mode tenant, another database of its role (a restore's, before
// it is swapped in).
func (p *Provisioner) migrateIn(ctx context.Context, t *controlplane.Tenant, database string, op controlplane.MigrationOp) controlplane.MigrationOutcome {
	out := controlplane.MigrationOutcome{}
	db, target := p.tenantDBIn(t, database)
	// golang-migrate takes the stock CLI's lock (target.LockDatabase); the
	// lock id releases before this one used is held beside it, on a
	// connection of the same pool, for the whole run.
	_, legacy := migrations.LockIDs(database, target.Schema)
	side, err := db.Conn(ctx)
	if err == nil {
		_, err = side.ExecContext(ctx, `SELECT pg_catalog.pg_advisory_lock($1)`, legacy)
		defer func() {
			_, _ = side.ExecContext(context.WithoutCancel(ctx), `SELECT pg_catalog.pg_advisory_unlock($1)`, legacy)
			_ = side.Close()
		}()
	}
	if err != nil {
		_ = db.Close()
		out.Err = err
		return out
	}
	// golang-migrate reads its table with LIMIT 1: a table holding several
	// rows (made by hand, or by a hostile tenant) would give an arbitrary
	// one. Refuse it instead, naming it.
	var n, v int64
	var dirty bool
	err = db.QueryRowContext(ctx, `SELECT `+versionOf+` FROM `+quote(target.Schema)+`.`+quote(migrations.Table)).Scan(&n, &v, &dirty)
	if read := versionRead(n, v, dirty, err); err == nil && read.Err != nil {
		_ = db.Close()
		out.Err = read.Err
		return out
	}
	m, err := migrations.Open(db, p.migrations, target)
	if err != nil {
		_ = db.Close()
		out.Err = err
		return out
	}
	defer m.Close()
	// Ctrl-C stops dispatching new tenants; one in progress finishes its
	// current migration file (golang-migrate stops between files).
	go func() {
		<-ctx.Done()
		select {
		case m.GracefulStop <- true:
		default:
		}
	}()
	out.From, out.Dirty, out.Err = version(m)
	if out.Err != nil {
		return out
	}
	switch op.Kind {
	case controlplane.MigrateUp:
		err = m.Up()
	case controlplane.MigrateDown:
		err = m.Steps(-op.N)
	case controlplane.MigrateGoto:
		err = m.Migrate(op.Version)
	case controlplane.MigrateForce:
		v := int(op.Version)
		if op.NoVersion {
			v = -1
		}
		err = m.Force(v)
	case controlplane.MigrateVersion:
	default:
		err = fmt.Errorf("unknown migration operation %q", op.Kind)
	}
	if errors.Is(err, migrate.ErrNoChange) {
		err = nil
	}
	startedDirty := out.Dirty
	var verr error
	out.To, out.Dirty, verr = version(m)
	out.Err = errors.Join(err, verr)
	if out.Dirty && !startedDirty && err != nil {
		out.Clean = p.cleanVersion(out.From, out.To)
	}
	return out
}

// cleanVersion is where the schema of a tenant this run left dirty at v
// really is, when the failed file ran in a transaction (nil if not known):
// golang-migrate marks the target of each step dirty before running it,
// so a failed up of v (v above from) left the schema at the version
// before v, a failed down to v (v below from) at the version after v.
func (p *Provisioner) cleanVersion(from, v uint) *int64 {
	h, err := p.history()
	if err != nil {
		return nil
	}
	if v > from {
		if prev, tx := h.Before(v); tx {
			return ptr(prev)
		}
		return nil
	}
	if next, tx, ok := h.After(v); ok && tx {
		return ptr(next)
	}
	return nil
}

// tenantDB opens a pool of its own on t's database (logged in as t's role)
// or schema, and returns where t's migrations table is and which lock
// guards it: the one the stock golang-migrate CLI takes for the same
// table, so that the CLI and the control plane wait for each other.
func (p *Provisioner) tenantDB(t *controlplane.Tenant) (*sql.DB, migrations.Target) {
	return p.tenantDBIn(t, p.lockDatabase(t))
}

// tenantDBIn is tenantDB with t's migrations table in database (t's own,
// or another of its role's: see migrateIn).
func (p *Provisioner) tenantDBIn(t *controlplane.Tenant, database string) (*sql.DB, migrations.Target) {
	target := migrations.Target{LockDatabase: migrations.CLILockName(database), Schema: "public"}
	if t.Isolation == controlplane.IsolationSchema {
		target.Schema = t.DBName
		return p.open(database, t.DBName, ""), target
	}
	return p.open(database, "", t.DBName), target
}

// lockDatabase is the database holding t's migrations table.
func (p *Provisioner) lockDatabase(t *controlplane.Tenant) string {
	if t.Isolation == controlplane.IsolationSchema {
		return p.server.Database
	}
	return t.DBName
}

func version(m *migrate.Migrate) (uint, bool, error) {
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	return v, dirty, err
}

var _ controlplane.VersionReader = (*Provisioner)(nil)

// readBatch is how many schema tenants' versions one statement reads.
const readBatch = 200

// ReadVersions reads the real version of each tenant's migrations table
// (out[i] for tenants[i]): what a migration run out of band (the stock
// CLI, a restore) left, whatever the catalog recorded. Schema tenants are
// read many per statement on the shared pool; a database tenant needs a
// connection to its database, logged in as its role, concurrency at a time.
// A table that holds anything but one row is an error, not a version.
//
// A database tenant's answer is what its own role reads: a tenant can lie
// about its own version, which only ever harms itself.
func (p *Provisioner) ReadVersions(ctx context.Context, tenants []*controlplane.Tenant, concurrency int) []controlplane.VersionRead {
	out := make([]controlplane.VersionRead, len(tenants))
	var schemas []int
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, concurrency))
	for i, t := range tenants {
		if err := p.checkName(t); err != nil {
			out[i].Err = err
			continue
		}
		if t.Isolation == controlplane.IsolationSchema {
			schemas = append(schemas, i)
			continue
		}
		g.Go(func() error {
			out[i] = p.readDatabaseVersion(gctx, t)
			return nil
		})
	}
	// Batches run concurrently too: a backend opening a schema's table for
	// the first time pays for its metadata, and 10,000 of them one after
	// another took 6.5 s (docs/BENCHMARKS.md), on one core of the server.
	for start := 0; start < len(schemas); start += readBatch {
		batch := schemas[start:min(start+readBatch, len(schemas))]
		g.Go(func() error {
			if err := p.readSchemaVersions(gctx, tenants, batch, out); err != nil {
				// One bad schema (its table gone) fails the statement:
				// read that batch one by one to say which.
				for _, i := range batch {
					if err := p.readSchemaVersions(gctx, tenants, []int{i}, out); err != nil {
						out[i] = versionRead(0, 0, false, err)
					}
				}
			}
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// versionOf is the select list reading one migrations table; count makes
// a table of zero rows (version 0 to golang-migrate) and of several rows
// (a tampered table) tell themselves apart.
const versionOf = `pg_catalog.count(*), COALESCE(pg_catalog.max(version), 0), COALESCE(pg_catalog.bool_or(dirty), false)`

func (p *Provisioner) readDatabaseVersion(ctx context.Context, t *controlplane.Tenant) controlplane.VersionRead {
	db, _ := p.tenantDB(t)
	defer db.Close()
	return ReadVersion(ctx, db, "public")
}

// readSchemaVersions reads the batch's tables in one statement: their rows
// as they are (no aggregate to plan per table), counted here.
func (p *Provisioner) readSchemaVersions(ctx context.Context, tenants []*controlplane.Tenant, batch []int, out []controlplane.VersionRead) error {
	var q strings.Builder
	for k, i := range batch {
		if k > 0 {
			q.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&q, `SELECT %d, version, dirty FROM %s.%s`, i, quote(tenants[i].DBName), quote(migrations.Table))
	}
	rows, err := p.schemaMigrationPool().QueryContext(ctx, q.String())
	if err != nil {
		return err
	}
	defer rows.Close()
	type seen struct {
		n, v  int64
		dirty bool
	}
	got := make(map[int]*seen, len(batch))
	for rows.Next() {
		var i int
		var v int64
		var dirty bool
		if err := rows.Scan(&i, &v, &dirty); err != nil {
			return err
		}
		if s := got[i]; s != nil {
			s.n++
		} else {
			got[i] = &seen{n: 1, v: v, dirty: dirty}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, i := range batch {
		s := got[i]
		if s == nil {
			s = &seen{} // an empty table: version 0 to golang-migrate
		}
		out[i] = versionRead(s.n, s.v, s.dirty, nil)
	}
	return nil
}

func versionRead(rows, version int64, dirty bool, err error) controlplane.VersionRead {
	switch {
	case err != nil:
		return controlplane.VersionRead{Err: fmt.Errorf("read the migrations table: %w", err)}
	case rows > 1:
		return controlplane.VersionRead{Err: fmt.Errorf("the migrations table holds %d rows, golang-migrate keeps one: it was changed by hand", rows)}
	case version < 0:
		return controlplane.VersionRead{Err: fmt.Errorf("the migrations table holds version %d", version)}
	}
	return controlplane.VersionRead{Version: uint(version), Dirty: dirty}
}

// ReadVersion reads the migrations table in schema through db: the version
// golang-migrate would see, or why it cannot be trusted.
func ReadVersion(ctx context.Context, db *sql.DB, schema string) controlplane.VersionRead {
	var n, v int64
	var dirty bool
	err := db.QueryRowContext(ctx, `SELECT `+versionOf+` FROM `+quote(schema)+`.`+quote(migrations.Table)).Scan(&n, &v, &dirty)
	return versionRead(n, v, dirty, err)
}
