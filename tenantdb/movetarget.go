package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

// The target side of a move (move.go): made marked as the move's, with
// the tenant's role unable to log in, and either adopted at the flip or
// dropped by an undo.

// prepareTarget makes t's database (or schema) on p for move op at the
// latest version (h), marked as the move's. A database's owner, t's role,
// cannot log in until the flip, so nothing of the tenant's runs there
// while the subscription applies rows (as a superuser, before PostgreSQL
// 16). One left by an earlier attempt of the same move is made again.
func (p *Provisioner) prepareTarget(ctx context.Context, t *controlplane.Tenant, op int64, h *migrations.History) error {
	if err := p.dropMoveTarget(ctx, t, op); err != nil {
		return err
	}
	mark := p.moveMark(t, op)
	if !h.Transactional {
		return controlplane.Errorf(controlplane.Conflict, "the tenant migrations cannot be applied in one transaction, so no template is kept to make the target from; move offline ({\"mode\": \"offline\"})")
	}
	switch t.Isolation {
	case controlplane.IsolationDatabase:
		if err := p.sealedRole(ctx, t); err != nil {
			return err
		}
		tpl, err := p.ensureTemplate(ctx, h)
		if err != nil {
			return fmt.Errorf("template database: %w", err)
		}
		if _, err := p.admin.ExecContext(ctx, `CREATE DATABASE `+quote(t.DBName)+` OWNER `+quote(t.DBName)+` TEMPLATE `+quote(tpl)+` ALLOW_CONNECTIONS false`); err != nil {
			return p.targetTaken(t, err)
		}
		return p.openDatabase(ctx, t.DBName, mark)
	case controlplane.IsolationSchema:
		return p.targetTaken(t, p.createSchemaScript(ctx, t, h, mark))
	}
	return fmt.Errorf("unknown isolation %q", t.Isolation)
}

// targetTaken explains a target whose name is taken by something that is
// not this move's.
func (p *Provisioner) targetTaken(t *controlplane.Tenant, err error) error {
	if isDuplicate(err) {
		return controlplane.Errorf(controlplane.Conflict, "the target server has a %s named %s already, which is not this move's: inspect it (a copy of the tenant left by an earlier move is dropped when its grace period ends)", t.Isolation, t.DBName)
	}
	return err
}

// sealedRole makes t's role on p (or takes the one there, if it is t's),
// unable to log in, with the current password.
func (p *Provisioner) sealedRole(ctx context.Context, t *controlplane.Tenant) error {
	exists, err := p.checkOwner(ctx, t, "role", roleMarkQuery)
	if err != nil {
		return err
	}
	if exists {
		if err := p.login(ctx, t, false); err != nil {
			return err
		}
		return p.setPassword(ctx, t.DBName)
	}
	role := quote(t.DBName)
	_, err = p.admin.ExecContext(ctx, `CREATE ROLE `+role+` WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD `+literal(scramVerifier(p.roles.Password(t.DBName)))+`;
		COMMENT ON ROLE `+role+` IS `+literal(p.mark(t))+`;
		GRANT `+role+` TO CURRENT_USER`)
	return err
}

// restoreMoved restores an offline move's archive on p into t's new
// database (or schema), marked as move op's: as the tenant's role (the
// control plane's with SET ROLE, since that role cannot log in here yet),
// so that nothing in the archive runs with more than the tenant's rights.
func (p *Provisioner) restoreMoved(ctx context.Context, t *controlplane.Tenant, op int64, file string) error {
	if err := p.dropMoveTarget(ctx, t, op); err != nil {
		return err
	}
	mark := p.moveMark(t, op)
	switch t.Isolation {
	case controlplane.IsolationDatabase:
		if err := p.sealedRole(ctx, t); err != nil {
			return err
		}
		if _, err := p.admin.ExecContext(ctx, `CREATE DATABASE `+quote(t.DBName)+` OWNER `+quote(t.DBName)+` TEMPLATE template0 ALLOW_CONNECTIONS false`); err != nil {
			return p.targetTaken(t, err)
		}
		if err := p.openDatabase(ctx, t.DBName, mark); err != nil {
			return err
		}
		return p.pgRestore(ctx, file, t.DBName, p.server.User, p.server.Password, "--role="+t.DBName)
	case controlplane.IsolationSchema:
		if exists, err := p.exists(ctx, t.Isolation, t.DBName); err != nil || exists {
			return errors.Join(err, p.targetTaken(t, &pgconn.PgError{Code: pgerrcode.DuplicateSchema}))
		}
		if err := p.pgRestore(ctx, file, p.server.Database, p.server.User, p.server.Password); err != nil {
			return err
		}
		_, err := p.admin.ExecContext(ctx, `COMMENT ON SCHEMA `+quote(t.DBName)+` IS `+literal(mark))
		return err
	}
	return fmt.Errorf("unknown isolation %q", t.Isolation)
}

// mark reads the mark of the database (or schema) called name on p; ok
// is false when there is none of that name.
func (p *Provisioner) markOf(ctx context.Context, isolation controlplane.Isolation, name string) (mark string, ok bool, err error) {
	q := databaseMarkQuery
	if isolation == controlplane.IsolationSchema {
		q = schemaMarkQuery
	}
	var m sql.NullString
	err = p.admin.QueryRowContext(ctx, q, name).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return m.String, err == nil, err
}

// dropMoveTarget drops what move op made of t on p (its target): the
// subscription, then the database or schema if it carries the move's mark;
// anything else of that name is left alone.
func (p *Provisioner) dropMoveTarget(ctx context.Context, t *controlplane.Tenant, op int64) error {
	mark, ok, err := p.markOf(ctx, t.Isolation, t.DBName)
	if err != nil || !ok || mark != p.moveMark(t, op) {
		if err == nil && t.Isolation == controlplane.IsolationSchema {
			// The subscription lives in the shared database, whatever
			// became of the schema.
			err = dropSubscription(ctx, p.admin, t, op)
		}
		return err
	}
	if t.Isolation == controlplane.IsolationSchema {
		if err := dropSubscription(ctx, p.admin, t, op); err != nil {
			return err
		}
		_, err := p.admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+quote(t.DBName)+` CASCADE`)
		return err
	}
	// A database with a subscription cannot be dropped: the subscription
	// goes first, from inside it.
	if _, err := p.admin.ExecContext(ctx, `ALTER DATABASE `+quote(t.DBName)+` WITH ALLOW_CONNECTIONS true`); err != nil {
		return err
	}
	db := p.open(t.DBName, "", "")
	err = dropSubscription(ctx, db, t, op)
	_ = db.Close()
	if err != nil {
		return err
	}
	_, err = p.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+quote(t.DBName)+` WITH (FORCE)`)
	return err
}

// dropSlot drops move op's replication slot on p if it is left (its
// subscription was dropped while p was out of reach).
func (p *Provisioner) dropSlot(ctx context.Context, t *controlplane.Tenant, op int64) error {
	_, err := p.admin.ExecContext(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, moveName(t, op))
	return err
}

// dropPublication drops move op's publication in t's home on p, if p
// still has it open.
func (p *Provisioner) dropPublication(ctx context.Context, t *controlplane.Tenant, op int64) error {
	if t.Isolation == controlplane.IsolationSchema {
		_, err := p.admin.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+quote(moveName(t, op)))
		return err
	}
	mark, ok, err := p.markOf(ctx, t.Isolation, t.DBName)
	if err != nil || !ok || mark != p.mark(t) {
		return err
	}
	db := p.open(t.DBName, "", "")
	defer db.Close()
	_, err = db.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+quote(moveName(t, op)))
	return err
}

// Undo removes what move op of t made, t still on Source: the target's
// subscription, database (or schema) and role, the source's publication
// and slot, and the scratch archive. Idempotent.
func (m *Move) Undo(ctx context.Context) error {
	t := m.Tenant
	var errs []error
	if m.Target != nil {
		errs = append(errs, m.Target.dropMoveTarget(ctx, t, m.Op))
		if t.Isolation == controlplane.IsolationDatabase {
			// The role goes unless it owns something there still (the
			// copy an earlier move away from this server left).
			if err := m.Target.dropRole(ctx, t); err != nil && !isDependent(err) {
				errs = append(errs, err)
			}
		}
	}
	if m.Source != nil {
		errs = append(errs, m.Source.dropPublication(ctx, t, m.Op), m.Source.dropSlot(ctx, t, m.Op))
	}
	if m.Scratch != "" {
		if err := os.Remove(m.Scratch); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Finish completes move op of t after the flip (t on Target): the
// target's subscription gone, its role logging in, its database (or
// schema) marked as t's; the source's closed and set aside. It returns
// the name the source is kept under. Idempotent.
func (m *Move) Finish(ctx context.Context) (string, error) {
	t := m.Tenant
	aside := moveAside(t, m.Op)
	var errs []error
	if m.Target != nil {
		errs = append(errs, m.Target.adoptMoved(ctx, t, m.Op))
	}
	if m.Source != nil {
		errs = append(errs, m.Source.retire(ctx, t, m.Op), m.Source.dropSlot(ctx, t, m.Op))
	}
	if m.Scratch != "" {
		if err := os.Remove(m.Scratch); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return aside, errors.Join(errs...)
}

// adoptMoved makes what move op made on p t's own: no subscription, its
// role logging in, t's mark.
func (p *Provisioner) adoptMoved(ctx context.Context, t *controlplane.Tenant, op int64) error {
	mark, ok, err := p.markOf(ctx, t.Isolation, t.DBName)
	if err != nil || !ok {
		return errors.Join(err, fmt.Errorf("tenant %d's %s is not on its new server: inspect it", t.ID, t.Isolation))
	}
	if mark != p.moveMark(t, op) && mark != p.mark(t) {
		return fmt.Errorf("%s %s on the new server is not marked as this move's: refusing to adopt it", t.Isolation, t.DBName)
	}
	home := p.admin
	if t.Isolation == controlplane.IsolationDatabase {
		db := p.open(t.DBName, "", "")
		defer db.Close()
		home = db
	}
	if err := dropSubscription(ctx, home, t, op); err != nil {
		return err
	}
	if err := p.login(ctx, t, true); err != nil {
		return err
	}
	_, err = p.admin.ExecContext(ctx, `COMMENT ON `+strings.ToUpper(string(t.Isolation))+` `+quote(t.DBName)+` IS `+literal(p.mark(t)))
	return err
}

// retire closes t's database (or schema) on p, the server a flipped move
// left, and sets it aside under its move's name; done already, nothing.
func (p *Provisioner) retire(ctx context.Context, t *controlplane.Tenant, op int64) error {
	mark, ok, err := p.markOf(ctx, t.Isolation, t.DBName)
	if err != nil || !ok || mark != p.mark(t) {
		if err == nil {
			err = p.login(ctx, t, false)
		}
		return err
	}
	if p.BeforeDrop != nil {
		p.BeforeDrop(t)
	}
	aside := moveAside(t, op)
	if t.Isolation == controlplane.IsolationSchema {
		_, err := p.admin.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+quote(moveName(t, op))+`;
			ALTER SCHEMA `+quote(t.DBName)+` RENAME TO `+quote(aside)+`;
			COMMENT ON SCHEMA `+quote(aside)+` IS `+literal(p.moveMark(t, op)))
		return err
	}
	_ = p.dropPublication(ctx, t, op) // harmless if left: the database is closed
	if _, err := p.admin.ExecContext(ctx, `ALTER DATABASE `+quote(t.DBName)+` WITH ALLOW_CONNECTIONS false`); err != nil {
		return err
	}
	return p.setAsideDatabase(ctx, t, aside, p.moveMark(t, op))
}

// DropMoveAside drops the copy move op left of t on p (p is the server t
// moved away from), and t's role there once nothing of t's is left on p
// and t lives elsewhere.
func (p *Provisioner) DropMoveAside(ctx context.Context, t *controlplane.Tenant, name string, onThisServer bool) error {
	if err := p.DropAside(ctx, t, name); err != nil {
		return err
	}
	if onThisServer || t.Isolation != controlplane.IsolationDatabase {
		return nil
	}
	if err := p.dropRole(ctx, t); err != nil && !isDependent(err) {
		return err
	}
	return nil
}

// isDependent reports "role cannot be dropped because some objects depend
// on it".
func isDependent(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == pgerrcode.DependentObjectsStillExist
}

// fileSize is the size of the file at path, 0 if it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
