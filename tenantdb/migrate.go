package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"

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
	out := controlplane.MigrationOutcome{}
	db, target := p.tenantDB(t)
	// golang-migrate takes the stock CLI's lock (target.LockDatabase); the
	// lock id releases before this one used is held beside it, on a
	// connection of the same pool, for the whole run.
	_, legacy := migrations.LockIDs(p.lockDatabase(t), target.Schema)
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
		err = m.Force(int(op.Version))
	case controlplane.MigrateVersion:
	default:
		err = fmt.Errorf("unknown migration operation %q", op.Kind)
	}
	if errors.Is(err, migrate.ErrNoChange) {
		err = nil
	}
	var verr error
	out.To, out.Dirty, verr = version(m)
	out.Err = errors.Join(err, verr)
	return out
}

// tenantDB opens a pool of its own on t's database (logged in as t's role)
// or schema, and returns where t's migrations table is and which lock
// guards it: the one the stock golang-migrate CLI takes for the same
// table, so that the CLI and the control plane wait for each other.
func (p *Provisioner) tenantDB(t *controlplane.Tenant) (*sql.DB, migrations.Target) {
	target := migrations.Target{LockDatabase: migrations.CLILockName(p.lockDatabase(t)), Schema: "public"}
	if t.Isolation == controlplane.IsolationSchema {
		target.Schema = t.DBName
		return p.open(p.server.Database, t.DBName, ""), target
	}
	return p.open(t.DBName, "", t.DBName), target
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
