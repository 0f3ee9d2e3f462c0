package tenantdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

// Creating a tenant from nothing does not replay its migration history
// file by file (dozens of round trips, growing with every release):
//
//   - database mode clones a template database kept at the latest version
//     (CREATE DATABASE ... TEMPLATE), then hands its objects to the tenant's
//     role (REASSIGN OWNED): two statements whatever the history's length;
//   - schema mode applies the whole history, and the migrations table
//     golang-migrate would leave, in one transaction of three round trips.
//
// Both leave exactly what golang-migrate would have: the same tables and a
// schema_migrations table at the latest version, not dirty. A database or
// schema that already exists (an interrupted attempt) takes the slow,
// idempotent path instead: golang-migrate from wherever it stands.

// freshState is computed once per Provisioner.
type freshState struct {
	once    sync.Once
	history *migrations.History
	err     error

	mu       sync.Mutex
	template string // name of the template database once it exists
}

func (p *Provisioner) history() (*migrations.History, error) {
	p.fresh.once.Do(func() {
		p.fresh.history, p.fresh.err = migrations.ReadHistory(p.migrations)
	})
	return p.fresh.history, p.fresh.err
}

// templateOwner owns the objects of template databases, so that a clone can
// give them all to the tenant's role with one REASSIGN OWNED.
func (p *Provisioner) templateOwner() string { return p.prefix + "template_owner" }

// templateName is the template database of history h: its version and a
// digest of its content, so a changed file can never be cloned stale.
func (p *Provisioner) templateName(h *migrations.History) string {
	return p.prefix + "tpl_" + strconv.FormatUint(uint64(h.Latest), 10) + "_" + h.Hash[:10]
}

// cloneDatabase creates tenant t's database from the template (made on
// first use), then its role, and gives the database and its objects to the
// role. The role's SCRAM verifier (4,096 PBKDF2 rounds) is computed while
// the clone runs, and the role, the ownership, the marks and the REVOKE go
// in one round trip (one implicit transaction). A role left by an
// interrupted attempt is checked to be t's and reused. If the role step
// fails, the database just cloned is dropped: it is unmarked, and nothing
// else would ever drop it.
func (p *Provisioner) cloneDatabase(ctx context.Context, t *controlplane.Tenant, h *migrations.History) error {
	tpl, err := p.ensureTemplate(ctx, h)
	if err != nil {
		return fmt.Errorf("template database: %w", err)
	}
	verifier := make(chan string, 1)
	go func() { verifier <- scramVerifier(p.roles.Password(t.DBName)) }()
	db := quote(t.DBName)
	if _, err := p.admin.ExecContext(ctx, `CREATE DATABASE `+db+` TEMPLATE `+quote(tpl)); err != nil {
		return fmt.Errorf("create database %s: %w", t.DBName, err)
	}
	own := `ALTER DATABASE ` + db + ` OWNER TO ` + db + `;
		COMMENT ON DATABASE ` + db + ` IS ` + literal(p.mark(t)) + `;
		REVOKE CONNECT, TEMPORARY ON DATABASE ` + db + ` FROM PUBLIC`
	_, err = p.admin.ExecContext(ctx, `CREATE ROLE `+db+` WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD `+literal(<-verifier)+`;
		COMMENT ON ROLE `+db+` IS `+literal(p.mark(t))+`;
		GRANT `+db+` TO CURRENT_USER;
		`+own)
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "42710" { // the role exists: an interrupted attempt's?
		if err = p.ensureRole(ctx, t); err == nil {
			_, err = p.admin.ExecContext(ctx, own)
		}
	}
	if err != nil {
		if _, dropErr := p.admin.ExecContext(context.WithoutCancel(ctx), `DROP DATABASE IF EXISTS `+db+` WITH (FORCE)`); dropErr != nil {
			err = errors.Join(err, fmt.Errorf("drop the unmarked database %s: %w", t.DBName, dropErr))
		}
		return fmt.Errorf("create role %s: %w", t.DBName, err)
	}
	return p.reassignToTenant(ctx, t)
}

// reassignToTenant gives the objects a template left in t's database to
// t's role (a no-op when there are none).
func (p *Provisioner) reassignToTenant(ctx context.Context, t *controlplane.Tenant) error {
	conn := p.open(t.DBName, "", "")
	defer conn.Close()
	_, err := conn.ExecContext(ctx, `REASSIGN OWNED BY `+quote(p.templateOwner())+` TO `+quote(t.DBName)+`;
		REVOKE CREATE ON SCHEMA public FROM `+quote(p.templateOwner()))
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "42704" { // the owner role does not exist: no template was ever used
		return nil
	}
	return err
}

// ensureTemplate returns the template database of h, building it once:
// under a temporary name, migrated by golang-migrate as the template owner,
// then renamed, so a template that exists is always complete. An advisory
// lock makes concurrent provisioners (and replicas) build it once.
func (p *Provisioner) ensureTemplate(ctx context.Context, h *migrations.History) (string, error) {
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	name := p.templateName(h)
	if p.fresh.template == name {
		return name, nil
	}
	conn, err := p.admin.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	key := int64(crc32.ChecksumIEEE([]byte(name)))
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return "", err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)

	var open bool
	err = conn.QueryRowContext(ctx, `SELECT has_database_privilege('public', oid, 'CONNECT') OR has_database_privilege('public', oid, 'TEMPORARY')
		FROM pg_database WHERE datname = $1`, name).Scan(&open)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if err := p.buildTemplate(ctx, conn, name); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	case open:
		// Built by an older version, which left PUBLIC its default rights.
		if _, err := conn.ExecContext(ctx, `REVOKE CONNECT, TEMPORARY ON DATABASE `+quote(name)+` FROM PUBLIC`); err != nil {
			return "", err
		}
	}
	p.fresh.template = name
	return name, nil
}

func (p *Provisioner) buildTemplate(ctx context.Context, conn *sql.Conn, name string) error {
	owner, building := quote(p.templateOwner()), name+"_building"
	var ownerExists bool
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, p.templateOwner()).Scan(&ownerExists); err != nil {
		return err
	}
	steps := []string{}
	if !ownerExists {
		steps = append(steps, `CREATE ROLE `+owner+` NOLOGIN`, `GRANT `+owner+` TO CURRENT_USER`)
	}
	// A crash while building left a half-made copy: start over. Nobody but
	// the admin (its owner) ever connects to it, building or built: the
	// template's ALLOW_CONNECTIONS false already says so to every role, and
	// this says it again to PUBLIC, should that flag ever be lifted (a
	// REVOKE on a database is not copied to its clones, which revoke their
	// own).
	steps = append(steps, `DROP DATABASE IF EXISTS `+quote(building)+` WITH (FORCE)`, `CREATE DATABASE `+quote(building),
		`REVOKE CONNECT, TEMPORARY ON DATABASE `+quote(building)+` FROM PUBLIC`)
	for _, s := range steps {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	// The template database stays the admin's (a REASSIGN OWNED in a clone
	// would otherwise hand the template itself to the tenant); its owner
	// role may create in public, a right the clone takes back.
	grant := p.open(building, "", "")
	_, err := grant.ExecContext(ctx, `GRANT CREATE ON SCHEMA public TO `+owner)
	_ = grant.Close()
	if err != nil {
		return err
	}
	cfg := p.server.Copy()
	cfg.Database = building
	cfg.RuntimeParams["role"] = p.templateOwner() // objects are created owned by it
	db := openConfig(cfg)
	if _, err := migrations.Up(db, p.migrations, migrations.Target{}); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `DROP DATABASE IF EXISTS `+quote(building)+` WITH (FORCE)`)
		return fmt.Errorf("migrate %s: %w", building, err)
	}
	// The migration's connection may take a moment to leave the server;
	// a rename needs the database to itself.
	for i := 0; i < 50; i++ {
		if _, err = conn.ExecContext(ctx, `ALTER DATABASE `+quote(building)+` RENAME TO `+quote(name)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	// Nobody connects to a template: a connected session would block every
	// clone.
	for _, s := range []string{
		`ALTER DATABASE ` + quote(name) + ` WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`,
		`COMMENT ON DATABASE ` + quote(name) + ` IS ` + literal("laracopilot tenant template of catalog "+p.owner),
	} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// createSchemaFresh creates t's schema with the whole history and the
// migrations table, in one transaction and one round trip: BEGIN, the
// script and COMMIT sent as one simple-protocol query on a connection of
// its own. SET LOCAL confines the search_path to this transaction.
func (p *Provisioner) createSchemaFresh(ctx context.Context, t *controlplane.Tenant, h *migrations.History) error {
	s := quote(t.DBName)
	script := `BEGIN;
CREATE SCHEMA ` + s + `;
COMMENT ON SCHEMA ` + s + ` IS ` + literal(p.mark(t)) + `;
SET LOCAL search_path TO ` + s + `;
` + h.Script + `
CREATE TABLE ` + s + `.` + quote(migrations.Table) + ` (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
INSERT INTO ` + s + `.` + quote(migrations.Table) + ` (version, dirty) VALUES (` + strconv.FormatUint(uint64(h.Latest), 10) + `, false);
COMMIT;`
	conn, err := p.admin.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, script); err != nil {
		// A failed statement leaves the transaction open and aborted: end
		// it before the connection goes back to the pool, or drop it.
		if _, rbErr := conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`); rbErr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		return fmt.Errorf("create schema %s: %w", t.DBName, err)
	}
	return nil
}

// isDuplicate reports a "database/schema already exists" error.
func isDuplicate(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "42P04" || pg.Code == "42P06")
}
