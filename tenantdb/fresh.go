package tenantdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
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

// templateOwner is the role the template's migrations run as while it is
// built; its objects are then handed to pg_database_owner (see
// buildTemplate), so it owns nothing in a finished template.
func (p *Provisioner) templateOwner() string { return p.prefix + "template_owner" }

// templateName is the template database of history h: its version and a
// digest of its content, so a changed file can never be cloned stale.
// "tpl2": the objects of these templates belong to pg_database_owner
// (templates named "tpl_" gave theirs to a role a clone had to REASSIGN).
func (p *Provisioner) templateName(h *migrations.History) string {
	return p.prefix + "tpl2_" + strconv.FormatUint(uint64(h.Latest), 10) + "_" + h.Hash[:10]
}

// createTenantDatabase makes tenant t's database, in an order a crash can
// always be recognised in and finished from (docs/OPERATIONS.md):
//
//  1. its role, marked as t's, in one implicit transaction with the
//     membership the admin needs (skipped if a role of t's already exists),
//     made without a password;
//  2. CREATE DATABASE … OWNER that role, from tpl (or empty), closed to
//     every connection (ALLOW_CONNECTIONS false): from its first instant
//     the database belongs to a role that names its tenant, and nobody can
//     use it half-made; meanwhile, on another connection, the role's
//     password is set;
//  3. openDatabase: marked, CONNECT revoked from PUBLIC, opened, in one
//     implicit transaction.
//
// A clone needs nothing more: the template's objects belong to
// pg_database_owner, which is whoever owns the database, so the tenant's
// role owns them without a REASSIGN (which needed a connection to the new
// database, the costliest step of a create).
//
// The password is set beside CREATE DATABASE rather than with the role
// because setting it costs 4,096 PBKDF2 rounds twice (the client makes the
// SCRAM verifier; PostgreSQL, at CREATE or ALTER ROLE, checks that it is
// not the empty password's): about 11 ms of CPU on a small machine, a
// sixth of a clone, which the clone's own work now hides. Nothing uses the
// password before the database opens, and a role left without one by a
// crash is given it by the retry (ensureRole).
//
// created is false when the database existed already (this tenant's, from
// an interrupted attempt): it is opened as it is, and the caller migrates
// it on.
func (p *Provisioner) createTenantDatabase(ctx context.Context, t *controlplane.Tenant, mark, tpl string) (created bool, err error) {
	db := quote(t.DBName)
	password := make(chan error, 1)
	err = p.createRole(ctx, t.DBName, mark, false)
	if isDuplicateRole(err) {
		err = p.ensureRole(ctx, t) // with its password
		password <- nil
	}
	if err != nil {
		return false, err
	}
	p.step("database:role") // a kill here leaves the role without a password
	if len(password) == 0 {
		go func() { password <- p.setPassword(ctx, t.DBName) }()
	}
	create := `CREATE DATABASE ` + db + ` OWNER ` + db + ` ALLOW_CONNECTIONS false`
	if tpl != "" {
		create += ` TEMPLATE ` + quote(tpl)
	}
	_, err = p.admin.ExecContext(ctx, create)
	if perr := <-password; perr != nil && err == nil {
		return false, fmt.Errorf("set the password of role %s: %w", t.DBName, perr)
	}
	switch {
	case err == nil:
		created = true
	case isDuplicate(err):
		if _, err := p.checkDatabase(ctx, t); err != nil {
			return false, err
		}
	default:
		return false, fmt.Errorf("create database %s: %w", t.DBName, err)
	}
	p.step("database:created")
	return created, p.openDatabase(ctx, t.DBName, mark)
}

// openDatabase marks database name, takes CONNECT and TEMPORARY from
// PUBLIC (a new database grants them) and lets connections in, in one
// implicit transaction: idempotent, the last step of every create.
func (p *Provisioner) openDatabase(ctx context.Context, name, mark string) error {
	db := quote(name)
	_, err := p.admin.ExecContext(ctx, `COMMENT ON DATABASE `+db+` IS `+literal(mark)+`;
		REVOKE CONNECT, TEMPORARY ON DATABASE `+db+` FROM PUBLIC;
		ALTER DATABASE `+db+` WITH ALLOW_CONNECTIONS true`)
	return err
}

// checkDatabase reports whether t's database exists, and fails if one of
// that name exists that is not t's. Ours is marked as t's (or as the spare
// t claimed), or, unmarked, owned by t's role while that role carries
// t's mark or t's spare mark: a create cut short between CREATE DATABASE
// and its mark.
func (p *Provisioner) checkDatabase(ctx context.Context, t *controlplane.Tenant) (bool, error) {
	var dbMark, roleMark sql.NullString
	var owner string
	err := p.admin.QueryRowContext(ctx, `SELECT shobj_description(d.oid, 'pg_database'), pg_get_userbyid(d.datdba),
			(SELECT shobj_description(r.oid, 'pg_authid') FROM pg_roles r WHERE r.oid = d.datdba)
		FROM pg_database d WHERE d.datname = $1`, t.DBName).Scan(&dbMark, &owner, &roleMark)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ours := func(m sql.NullString) bool {
		return m.Valid && (m.String == p.mark(t) || strings.HasPrefix(m.String, p.spareMarkPrefix(t.ID)))
	}
	if ours(dbMark) || (!dbMark.Valid && owner == t.DBName && ours(roleMark)) {
		return true, nil
	}
	return true, fmt.Errorf("database %q already exists on the tenant server but does not belong to tenant %d of this catalog; "+
		"refusing to adopt or drop it (inspect it, then drop or rename it by hand)", t.DBName, t.ID)
}

// isDuplicateRole reports a "role already exists" error.
func isDuplicateRole(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == pgerrcode.DuplicateObject
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
	if err := dropBuilding(ctx, conn, building); err != nil {
		return err
	}
	steps = append(steps, `CREATE DATABASE `+quote(building),
		`REVOKE CONNECT, TEMPORARY ON DATABASE `+quote(building)+` FROM PUBLIC`)
	for _, s := range steps {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	// The template database stays the admin's; its owner role may create
	// in public while it is built.
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
		_ = dropBuilding(context.WithoutCancel(ctx), conn, building)
		return fmt.Errorf("migrate %s: %w", building, err)
	}
	p.step("template:migrated")
	// Everything the migrations made goes to pg_database_owner, the role
	// that is whoever owns the database: in a clone, the tenant's role. And
	// the builder's right to create in public goes (DROP OWNED, with
	// nothing owned left, only revokes privileges).
	hand := p.open(building, "", "")
	_, err = hand.ExecContext(ctx, `REASSIGN OWNED BY `+owner+` TO pg_database_owner; DROP OWNED BY `+owner)
	_ = hand.Close()
	if err != nil {
		return fmt.Errorf("hand %s's objects to pg_database_owner: %w", building, err)
	}
	// Marked and closed before it takes its name: the rename is the last
	// step, so a database of the template's name is always complete.
	// Nobody connects to a template: a connected session would block
	// every clone.
	for _, s := range []string{
		`ALTER DATABASE ` + quote(building) + ` WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`,
		`COMMENT ON DATABASE ` + quote(building) + ` IS ` + literal("laracopilot tenant template of catalog "+p.owner),
	} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	p.step("template:closed")
	// The migration's connection may take a moment to leave the server;
	// a rename needs the database to itself.
	for i := 0; i < 50; i++ {
		if _, err = conn.ExecContext(ctx, `ALTER DATABASE `+quote(building)+` RENAME TO `+quote(name)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// createSchemaFresh creates t's schema with the whole history and the
// migrations table, in one transaction and one round trip: BEGIN, the
// script and COMMIT sent as one simple-protocol query on a connection of
// its own. SET LOCAL confines the search_path to this transaction.
func (p *Provisioner) createSchemaFresh(ctx context.Context, t *controlplane.Tenant, h *migrations.History) error {
	return p.createSchemaScript(ctx, t, h, p.mark(t))
}

// createSchemaScript is createSchemaFresh with the schema marked mark (a
// move's target carries its move's).
func (p *Provisioner) createSchemaScript(ctx context.Context, t *controlplane.Tenant, h *migrations.History, mark string) error {
	s := quote(t.DBName)
	script := `BEGIN;
CREATE SCHEMA ` + s + `;
COMMENT ON SCHEMA ` + s + ` IS ` + literal(mark) + `;
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
	return errors.As(err, &pg) && (pg.Code == pgerrcode.DuplicateDatabase || pg.Code == pgerrcode.DuplicateSchema)
}

// DropHalfBuiltTemplates drops the template databases a crash left half
// built ("…_building"), each under the lock its builder would hold, so
// one being built right now is left alone. The next create would drop it
// anyway; this does it for a server no create has reached since.
func (p *Provisioner) DropHalfBuiltTemplates(ctx context.Context) (dropped int, err error) {
	rows, err := p.admin.QueryContext(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND datname LIKE '%\_building'`, p.prefix+"tpl")
	if err != nil {
		return 0, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return 0, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, building := range names {
		conn, err := p.admin.Conn(ctx)
		if err != nil {
			return dropped, err
		}
		key := int64(crc32.ChecksumIEEE([]byte(strings.TrimSuffix(building, "_building"))))
		var ok bool
		if err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err == nil && ok {
			err = dropBuilding(ctx, conn, building)
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
			if err == nil {
				dropped++
			}
		}
		_ = conn.Close()
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// dropBuilding drops a template database being built, if it exists; one
// killed after it was closed as a template must stop being one first
// (PostgreSQL refuses to drop a template).
func dropBuilding(ctx context.Context, conn *sql.Conn, building string) error {
	var isTemplate bool
	err := conn.QueryRowContext(ctx, `SELECT datistemplate FROM pg_database WHERE datname = $1`, building).Scan(&isTemplate)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if isTemplate {
		if _, err := conn.ExecContext(ctx, `ALTER DATABASE `+quote(building)+` WITH IS_TEMPLATE false`); err != nil {
			return err
		}
	}
	_, err = conn.ExecContext(ctx, `DROP DATABASE IF EXISTS `+quote(building)+` WITH (FORCE)`)
	return err
}
