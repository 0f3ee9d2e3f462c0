package tenantdb

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/laracopilot/controlplane/controlplane"
)

// Spare databases (see controlplane/spares.go): a spare is exactly what
// createTenantDatabase makes for a tenant (role, clone of the template
// owned by it, closed to PUBLIC), named for an id reserved from
// the tenants' sequence, but marked as a spare of this catalog and of the
// template it was cloned from. Adopting it re-marks the role and the
// database as the tenant's.

var _ controlplane.SpareProvisioner = (*Provisioner)(nil)

// spareMarkPrefix starts the mark of every spare of id, whatever its
// template.
func (p *Provisioner) spareMarkPrefix(id int64) string {
	return fmt.Sprintf("laracopilot spare %d of catalog %s from template ", id, p.owner)
}

// spareMark is the COMMENT a spare's role and database carry.
func (p *Provisioner) spareMark(id int64, template string) string {
	return p.spareMarkPrefix(id) + template
}

// SpareTemplate is the key spares are made and claimed under: the template
// database they are cloned from, and a tag of the role secret their roles'
// passwords were derived from. A spare of another key is never claimed (an
// older migration history, or a secret rotated since: its role would not
// accept the router's password) and the reconciler drops it. The tag is
// kept in the catalog only, never in a COMMENT, which every role can read.
func (p *Provisioner) SpareTemplate() (string, error) {
	tpl, err := p.spareSource()
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, p.roles)
	m.Write([]byte("laracopilot spare secret tag"))
	return tpl + " secret " + hex.EncodeToString(m.Sum(nil)[:6]), nil
}

// spareSource names the template database spares are cloned from now. A
// history that cannot run in a transaction has no template, hence no spares.
func (p *Provisioner) spareSource() (string, error) {
	h, err := p.history()
	if err != nil {
		return "", err
	}
	if !h.Transactional {
		return "", errors.New("the tenant migration history cannot be cloned from a template, so there are no spare databases")
	}
	return p.templateName(h), nil
}

// MakeSpare makes spare id as createTenantDatabase makes a tenant's
// database, marked as the spare's: its role first (marked, in the same
// transaction), so a database left unmarked by a crash is still
// recognisably the spare's: it is owned by the spare's role.
func (p *Provisioner) MakeSpare(ctx context.Context, id int64) error {
	tpl, err := p.spareSource()
	if err != nil {
		return err
	}
	h, _ := p.history()
	if _, err := p.ensureTemplate(ctx, h); err != nil {
		return fmt.Errorf("template database: %w", err)
	}
	name := p.DBName(id)
	if err := p.createRole(ctx, name, p.spareMark(id, tpl), true); err != nil {
		return err
	}
	p.step("spare:role")
	db := quote(name)
	if _, err := p.admin.ExecContext(ctx, `CREATE DATABASE `+db+` OWNER `+db+` TEMPLATE `+quote(tpl)+` ALLOW_CONNECTIONS false`); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	p.step("spare:created")
	return p.openDatabase(ctx, name, p.spareMark(id, tpl))
}

// AdoptSpare re-marks the spare t claimed as t's, in one round trip that
// first checks that the role and the database are that spare, complete and
// of the current template; the spare is then at the template's version.
func (p *Provisioner) AdoptSpare(ctx context.Context, t *controlplane.Tenant) (uint, error) {
	v, err := p.adoptSpare(ctx, t)
	return v, outage(err)
}

func (p *Provisioner) adoptSpare(ctx context.Context, t *controlplane.Tenant) (uint, error) {
	if err := p.checkName(t); err != nil {
		return 0, err
	}
	tpl, err := p.spareSource()
	if err != nil {
		return 0, err
	}
	h, _ := p.history()
	name, spare, mine, id := literal(t.DBName), literal(p.spareMark(t.ID, tpl)), literal(p.mark(t)), quote(t.DBName)
	_, err = p.admin.ExecContext(ctx, `DO $adopt$ BEGIN
		IF (SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = `+name+`) IS DISTINCT FROM `+spare+`
		   OR (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = `+name+`) IS DISTINCT FROM `+spare+` THEN
			RAISE EXCEPTION 'database % is not a complete spare of the current template', `+name+`;
		END IF;
		COMMENT ON DATABASE `+id+` IS `+mine+`;
		COMMENT ON ROLE `+id+` IS `+mine+`;
	END $adopt$`)
	if err != nil {
		return 0, fmt.Errorf("adopt spare %s: %w", t.DBName, err)
	}
	return h.Latest, nil
}

// DropSpare drops the database and role of spare id, if they are a spare's
// of this catalog: marked so, or (a database left unmarked by a crash right
// after its CREATE DATABASE) owned by the spare's marked role. Anything
// else of that name is refused, never dropped.
func (p *Provisioner) DropSpare(ctx context.Context, id int64) error {
	name := p.DBName(id)
	prefix := p.spareMarkPrefix(id)
	var roleMark sql.NullString
	roleExists := true
	err := p.admin.QueryRowContext(ctx, roleMarkQuery, name).Scan(&roleMark)
	if errors.Is(err, sql.ErrNoRows) {
		roleExists = false
	} else if err != nil {
		return err
	}
	roleSpare := roleExists && strings.HasPrefix(roleMark.String, prefix)
	var dbMark sql.NullString
	var dbOwner string
	err = p.admin.QueryRowContext(ctx, `SELECT shobj_description(oid, 'pg_database'), pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1`, name).Scan(&dbMark, &dbOwner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	case strings.HasPrefix(dbMark.String, prefix) || (!dbMark.Valid && dbOwner == name && roleSpare):
		if _, err := p.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+quote(name)+` WITH (FORCE)`); err != nil {
			return err
		}
	default:
		return fmt.Errorf("database %q exists on the tenant server but is not a spare of this catalog; refusing to drop it (inspect it, then drop or rename it by hand)", name)
	}
	if !roleExists {
		return nil
	}
	if !roleSpare {
		return fmt.Errorf("role %q exists on the tenant server but is not a spare's of this catalog; refusing to drop it (inspect it, then drop or rename it by hand)", name)
	}
	_, err = p.admin.ExecContext(ctx, `DROP ROLE IF EXISTS `+quote(name))
	return err
}

// SpareIDs lists the ids of this catalog's spares on the server, complete
// or not, by their roles (a spare's role is made first and dropped last).
func (p *Provisioner) SpareIDs(ctx context.Context) ([]int64, error) {
	rows, err := p.admin.QueryContext(ctx, `SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles
		WHERE starts_with(rolname, $1) AND starts_with(shobj_description(oid, 'pg_authid'), 'laracopilot spare ')`, p.prefix)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var name, mark string
		if err := rows.Scan(&name, &mark); err != nil {
			return nil, err
		}
		id, err := strconv.ParseInt(strings.TrimPrefix(name, p.prefix), 10, 64)
		if err != nil || p.DBName(id) != name || !strings.HasPrefix(mark, p.spareMarkPrefix(id)) {
			continue // another catalog's, or not named like ours
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
