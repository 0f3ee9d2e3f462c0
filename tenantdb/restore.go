package tenantdb

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// restoreNames are the names a restore of operation op works with: the
// database (or schema) the archive is restored into, and the name the
// tenant's previous one is kept under.
func (p *Provisioner) restoreNames(t *controlplane.Tenant, op int64) (restored, previous string) {
	suffix := strconv.FormatInt(op, 10)
	return t.DBName + "_r" + suffix, t.DBName + "_p" + suffix
}

// restoreMark marks what a restore makes, so that a restart recognises it.
func (p *Provisioner) restoreMark(t *controlplane.Tenant, op int64) string {
	return p.mark(t) + " restore " + strconv.FormatInt(op, 10)
}

// Restore replaces tenant t's database (or schema) with the pg_dump
// archive at file, in place, as operation op, and returns the name the
// previous one is kept under, closed, for the operator to drop (or swap
// back) once satisfied.
//
// Database mode: the archive is restored, as the tenant's own role (so
// that nothing in it, a function in an index expression say, runs with
// more than the tenant's rights), into a new database owned by that role,
// in one transaction, and checked to be at opts.Version, clean; migrated
// up to opts.Latest if it is older, and checked again; then the swap: the tenant's database is closed and renamed to the previous name,
// the new one takes the tenant's and is opened. With opts.Hold (a tenant
// being served) the tenant's new requests are held around the swap and
// its requests in flight end first: they see the old data or the new,
// and none fails. Schema mode (the tenant suspended): the tenant's schema
// is renamed to the previous name, the archive (which recreates the schema
// under its name) restored in one transaction as the control plane's
// role, the rename undone if it fails.
//
// Every step is recorded by what exists on the server, so RecoverRestore
// finishes or undoes an interrupted restore.
func (p *Provisioner) Restore(ctx context.Context, t *controlplane.Tenant, file string, op int64, opts controlplane.RestoreOptions) (previous string, err error) {
	if err := p.checkName(t); err != nil {
		return "", err
	}
	restored, previous := p.restoreNames(t, op)
	switch t.Isolation {
	case controlplane.IsolationDatabase:
		db := quote(restored)
		if _, err := p.admin.ExecContext(ctx, `CREATE DATABASE `+db+` OWNER `+quote(t.DBName)+` TEMPLATE template0`); err != nil {
			return "", fmt.Errorf("create the database to restore into: %w", err)
		}
		// Marked as this restore's and closed to PUBLIC; its owner, the
		// tenant's role, connects to restore into it.
		if err := p.openDatabase(ctx, restored, p.restoreMark(t, op)); err != nil {
			return "", err
		}
		p.step("restore:created")
		drop := func() {
			_, _ = p.admin.ExecContext(context.WithoutCancel(ctx), `DROP DATABASE IF EXISTS `+db+` WITH (FORCE)`)
		}
		if err := p.pgRestore(ctx, file, restored, t.DBName, p.roles.Password(t.DBName)); err != nil {
			drop()
			return "", err
		}
		if err := p.checkRestored(ctx, restored, opts.Version); err != nil {
			drop()
			return "", err
		}
		p.step("restore:restored")
		// An older backup is migrated up beside the tenant's database, as
		// the tenant's role: one that fails leaves the tenant's data
		// untouched, and the swap puts in a database at the binary's version.
		if opts.Latest > opts.Version {
			out := p.migrateIn(ctx, t, restored, controlplane.MigrationOp{Kind: controlplane.MigrateUp})
			if out.Err != nil {
				drop()
				return "", fmt.Errorf("the backup, at schema version %d, could not be migrated to %d before the swap (the tenant's data is untouched; fix the migration, or restore a newer backup): %w",
					opts.Version, opts.Latest, out.Err)
			}
			if err := p.checkRestored(ctx, restored, opts.Latest); err != nil {
				drop()
				return "", err
			}
			p.step("restore:migrated")
		}
		if opts.Hold == nil {
			return previous, p.swapDatabase(ctx, t, op)
		}
		return previous, p.swapHeld(ctx, t, op, opts)
	case controlplane.IsolationSchema:
		if _, err := p.admin.ExecContext(ctx, `ALTER SCHEMA `+quote(t.DBName)+` RENAME TO `+quote(previous)+`;
			COMMENT ON SCHEMA `+quote(previous)+` IS `+literal(p.restoreMark(t, op))); err != nil {
			return "", fmt.Errorf("set the schema aside: %w", err)
		}
		p.step("restore:set-aside")
		if err := p.pgRestore(ctx, file, p.server.Database, p.server.User, p.server.Password); err != nil {
			_, _ = p.admin.ExecContext(context.WithoutCancel(ctx), `ALTER SCHEMA `+quote(previous)+` RENAME TO `+quote(t.DBName)+`;
				COMMENT ON SCHEMA `+quote(t.DBName)+` IS `+literal(p.mark(t)))
			return "", err
		}
		_, err := p.admin.ExecContext(ctx, `COMMENT ON SCHEMA `+quote(t.DBName)+` IS `+literal(p.mark(t)))
		return previous, err
	}
	return "", fmt.Errorf("unknown isolation %q", t.Isolation)
}

// checkRestored reads the migrations table of the restored database: it
// must be at version, clean.
func (p *Provisioner) checkRestored(ctx context.Context, database string, version uint) error {
	db := p.open(database, "", "")
	defer db.Close()
	got := ReadVersion(ctx, db, "public")
	switch {
	case got.Err != nil:
		return fmt.Errorf("check the restored database: %w", got.Err)
	case got.Dirty || got.Version != version:
		return fmt.Errorf("the restored database is at schema version %d (dirty: %t), not the backup's %d: refusing to swap it in", got.Version, got.Dirty, version)
	}
	return nil
}

// swapDatabase sets t's database aside (closed, its sessions ended) and
// puts restore op's in its place.
func (p *Provisioner) swapDatabase(ctx context.Context, t *controlplane.Tenant, op int64) error {
	_, previous := p.restoreNames(t, op)
	if p.BeforeDrop != nil {
		p.BeforeDrop(t) // this process's pools; other sessions are ended below
	}
	// The renames: the first needs nobody connected to the tenant's
	// database, which is closed first so that nobody comes back.
	cur := quote(t.DBName)
	if _, err := p.admin.ExecContext(ctx, `ALTER DATABASE `+cur+` WITH ALLOW_CONNECTIONS false`); err != nil {
		return err
	}
	if err := p.renameClosed(ctx, t.DBName, previous); err != nil {
		_, _ = p.admin.ExecContext(context.WithoutCancel(ctx), `ALTER DATABASE `+cur+` WITH ALLOW_CONNECTIONS true`)
		return err
	}
	p.step("restore:set-aside")
	return p.finishDatabaseRestore(ctx, t, op)
}

// swapHeld is swapDatabase with t's requests held: the new ones wait, the
// ones in flight end first (within half of opts.Timeout), and every
// replica drops its connections to the old database before the held ones
// go on (the release reaches them by the catalog's NOTIFY).
func (p *Provisioner) swapHeld(ctx context.Context, t *controlplane.Tenant, op int64, opts controlplane.RestoreOptions) (err error) {
	timeout := cmp.Or(opts.Timeout, 5*time.Second)
	start := time.Now()
	if err := opts.Hold.Hold(ctx, start.Add(timeout)); err != nil {
		return err
	}
	defer func() {
		if rerr := opts.Hold.Release(context.WithoutCancel(ctx)); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	p.waitQuiet(ctx, t, start.Add(timeout/2))
	return p.swapDatabase(ctx, t, op)
}

// finishDatabaseRestore is the last step of a database restore, once the
// tenant's previous database is set aside: the restored one takes the
// tenant's name, mark and access, and is opened.
func (p *Provisioner) finishDatabaseRestore(ctx context.Context, t *controlplane.Tenant, op int64) error {
	restored, _ := p.restoreNames(t, op)
	if err := p.renameDatabase(ctx, restored, t.DBName); err != nil {
		return err
	}
	return p.openDatabase(ctx, t.DBName, p.mark(t))
}

// renameClosed renames database from, closed to new connections, to to:
// it ends the sessions still in it, again until the rename (which needs it
// to itself) goes through, for up to a second.
func (p *Provisioner) renameClosed(ctx context.Context, from, to string) error {
	var err error
	for range 50 {
		_, _ = p.admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, from)
		if err = p.renameDatabase(ctx, from, to); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

func (p *Provisioner) renameDatabase(ctx context.Context, from, to string) error {
	_, err := p.admin.ExecContext(ctx, `ALTER DATABASE `+quote(from)+` RENAME TO `+quote(to))
	if err != nil {
		return fmt.Errorf("rename database %s to %s: %w", from, to, err)
	}
	return nil
}

// RecoverRestore finishes or undoes restore op of t after a crash, from
// what exists on the server, and says whether the tenant now has the
// restored data. Database mode: with the tenant's database set aside and
// the restored one complete, it finishes the swap; with the tenant's
// database still in place, it drops the restored one (whole or half). Schema
// mode: a schema set aside with none under the tenant's name (the restore
// is one transaction: all or nothing) is put back.
func (p *Provisioner) RecoverRestore(ctx context.Context, t *controlplane.Tenant, op int64) (restoredNow bool, err error) {
	if err := p.checkName(t); err != nil {
		return false, err
	}
	restored, previous := p.restoreNames(t, op)
	exists := func(name string) (bool, error) { return p.exists(ctx, t.Isolation, name) }
	switch t.Isolation {
	case controlplane.IsolationDatabase:
		cur, err := exists(t.DBName)
		if err != nil {
			return false, err
		}
		if cur {
			aside, err := exists(previous)
			if err != nil {
				return false, err
			}
			if aside {
				// Swapped: the tenant's name is the restored database's,
				// opened unless the kill came just before.
				return true, p.openDatabase(ctx, t.DBName, p.mark(t))
			}
			// Not swapped: the tenant's own database, perhaps closed just
			// before its set-aside; the restored one, whole or half, goes.
			_, err = p.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+quote(restored)+` WITH (FORCE)`)
			if err == nil {
				_, err = p.admin.ExecContext(ctx, `ALTER DATABASE `+quote(t.DBName)+` WITH ALLOW_CONNECTIONS true`)
			}
			return false, err
		}
		if ok, err := exists(previous); err != nil || !ok {
			return false, errors.Join(err, fmt.Errorf("tenant %d's database is missing and so is %s: inspect the server", t.ID, previous))
		}
		// Set aside after a complete restore (the restore comes first):
		// finish the swap.
		return true, p.finishDatabaseRestore(ctx, t, op)
	case controlplane.IsolationSchema:
		aside, err := exists(previous)
		if err != nil || !aside {
			return false, err // never set aside: nothing happened
		}
		cur, err := exists(t.DBName)
		if err != nil || cur {
			return cur, err // restored (one transaction) after the set-aside
		}
		_, err = p.admin.ExecContext(ctx, `ALTER SCHEMA `+quote(previous)+` RENAME TO `+quote(t.DBName)+`;
			COMMENT ON SCHEMA `+quote(t.DBName)+` IS `+literal(p.mark(t)))
		return false, err
	}
	return false, fmt.Errorf("unknown isolation %q", t.Isolation)
}

// pgRestore restores archive file into database as user, in one
// transaction, stopping at the first error; owners and grants in the
// archive are ignored (what it makes belongs to user).
func (p *Provisioner) pgRestore(ctx context.Context, file, database, user, password string, extra ...string) error {
	args := append([]string{"--no-owner", "--no-acl", "--single-transaction", "--exit-on-error", "--no-password", "--dbname=" + database}, extra...)
	return p.pgTool(ctx, "pg_restore", append(args, file), database, user, password, nil)
}

// asideName matches what restores and moves of a tenant leave beside its
// database or schema: <name>_p<operation> (a restore's previous data),
// <name>_r<operation> (a restore cut short) and <name>_m<operation> (the
// source a move left, on the server it left).
func asideName(t *controlplane.Tenant, name string) bool {
	rest, ok := strings.CutPrefix(name, t.DBName+"_")
	if !ok || len(rest) < 2 || (rest[0] != 'p' && rest[0] != 'r' && rest[0] != 'm') {
		return false
	}
	_, err := strconv.ParseUint(rest[1:], 10, 63)
	return err == nil
}

// DropAside drops name, the previous database or schema a restore of t set
// aside (or a restore's leftover), if it is one: named for t and marked by
// this catalog (as t's, or as a restore of t). Anything else is refused.
func (p *Provisioner) DropAside(ctx context.Context, t *controlplane.Tenant, name string) error {
	if err := p.checkName(t); err != nil {
		return err
	}
	if !asideName(t, name) {
		return fmt.Errorf("%q is not a restore's copy of tenant %d", name, t.ID)
	}
	q, drop := databaseMarkQuery, `DROP DATABASE IF EXISTS `+quote(name)+` WITH (FORCE)`
	if t.Isolation == controlplane.IsolationSchema {
		q, drop = schemaMarkQuery, `DROP SCHEMA IF EXISTS `+quote(name)+` CASCADE`
	}
	var mark *string
	err := p.admin.QueryRowContext(ctx, q, name).Scan(&mark)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // gone already
	}
	if err != nil {
		return err
	}
	if mark == nil || (*mark != p.mark(t) && !strings.HasPrefix(*mark, p.mark(t)+" restore ") && !strings.HasPrefix(*mark, p.mark(t)+" move ")) {
		return fmt.Errorf("%q is not marked as tenant %d's by this catalog: refusing to drop it", name, t.ID)
	}
	_, err = p.admin.ExecContext(ctx, drop)
	return err
}

// dropAsides drops every restore copy of t (its purge).
func (p *Provisioner) dropAsides(ctx context.Context, t *controlplane.Tenant) error {
	q := `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`
	if t.Isolation == controlplane.IsolationSchema {
		q = `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`
	}
	rows, err := p.admin.QueryContext(ctx, q, t.DBName+"_")
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		if asideName(t, n) {
			names = append(names, n)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, p.DropAside(ctx, t, n))
	}
	return errors.Join(errs...)
}
