// Package tenantdb owns the tenants' own databases: their names, creating
// and dropping them (a database or a schema per tenant), migrating them with
// golang-migrate, moving, backing up and restoring them. Routing a
// tenant's requests to them is tenantdb/router's.
package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/migrations"
)

// Provisioner implements controlplane.Provisioner on one PostgreSQL server
// (TENANT_DATABASE_URL). Database-mode tenants get a database on that
// server; schema-mode tenants get a schema inside the database the URL
// names.
type Provisioner struct {
	server     *pgx.ConnConfig
	tls        []string // the URL's TLS settings as libpq environment (pg_dump)
	pgBin      string
	admin      *sql.DB // the URL's own database: CREATE/DROP DATABASE, schemas
	prefix     string
	owner      string
	roles      RoleSecret
	migrations fs.FS
	fresh      freshState
	migPool    migrationPool
	// BeforeDrop, if set, runs before a tenant's database or schema is
	// dropped: the Router closes the tenant's pool there.
	BeforeDrop func(t *controlplane.Tenant)
	// Step, if set, is called after each step of provisioning that leaves
	// something on the server ("database:role", "database:created",
	// "template:migrated", …): the crash tests kill the process there.
	Step func(name string)
}

// step reports a finished provisioning step to Step.
func (p *Provisioner) step(name string) {
	if p.Step != nil {
		p.Step(name)
	}
}

var _ controlplane.Provisioner = (*Provisioner)(nil)

// ProvisionerConfig configures a Provisioner.
type ProvisionerConfig struct {
	URL    string // the tenant server
	Prefix string // database/schema name prefix, e.g. "tenant_"
	// Owner identifies the catalog. Each database or schema is marked with
	// it, and one not carrying this catalog's mark is never adopted or
	// dropped: a name clash with another catalog's leftovers fails loudly.
	Owner      string
	Migrations fs.FS // the tenant migrations (migrations.Tenant)
	// RoleSecret derives the passwords of database-mode tenants' roles.
	RoleSecret RoleSecret
	// PgBinDir is where pg_dump is (PG_BIN_DIR); "" looks it up on PATH.
	PgBinDir string
}

// NewProvisioner connects to the tenant server.
func NewProvisioner(ctx context.Context, c ProvisionerConfig) (*Provisioner, error) {
	cfg, err := pgx.ParseConfig(c.URL)
	if err != nil {
		return nil, errors.New("tenant server: invalid connection string")
	}
	admin := stdlib.OpenDB(*cfg)
	admin.SetMaxOpenConns(4)
	admin.SetMaxIdleConns(adminIdle)
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		return nil, fmt.Errorf("connect to tenant server: %w", err)
	}
	return &Provisioner{server: cfg, tls: libpqTLS(c.URL), pgBin: c.PgBinDir, admin: admin, prefix: c.Prefix, owner: c.Owner, roles: c.RoleSecret, migrations: c.Migrations}, nil
}

// Close closes the connections to the tenant server.
func (p *Provisioner) Close() error {
	if p.migPool.db != nil {
		_ = p.migPool.db.Close()
	}
	return p.admin.Close()
}

// Ping checks that the server answers (the health check of its tenant
// server).
func (p *Provisioner) Ping(ctx context.Context) error {
	return p.admin.PingContext(ctx)
}

// DBName derives the database or schema name from the immutable tenant id,
// never from user text, so it is always a safe identifier.
func (p *Provisioner) DBName(id int64) string {
	return p.prefix + strconv.FormatInt(id, 10)
}

// DBPrefix is what every tenant's database or schema name starts with.
func (p *Provisioner) DBPrefix() string { return p.prefix }

// mark is the COMMENT a tenant's database or schema carries.
func (p *Provisioner) mark(t *controlplane.Tenant) string {
	return fmt.Sprintf("laracopilot tenant %d of catalog %s", t.ID, p.owner)
}

// Provision creates the tenant's database or schema unless it exists (and
// is this tenant's), then migrates it to the latest version. A tenant made
// from nothing takes the fast path of fresh.go; one that exists already (an
// interrupted attempt) is migrated on by golang-migrate.
//
// Every step is idempotent, so a run that met an outage is tried once more
// after a moment, on new connections: a connection of the admin pool lost
// within the second before (pgx checks only connections idle longer) fails
// the first try without the server being down, and so would the next idle
// one the retry took. What still fails for an outage is an Unavailable
// error whose message names no host.
func (p *Provisioner) Provision(ctx context.Context, t *controlplane.Tenant) (uint, error) {
	v, err := p.provision(ctx, t)
	if sqlerr.Outage(err) != nil && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		p.dropIdle()
		v, err = p.provision(ctx, t)
	}
	return v, outage(err)
}

// adminIdle is how many idle connections the admin pool keeps (database/
// sql's default, stated so that dropIdle can restore it).
const adminIdle = 2

// dropIdle closes the admin pool's idle connections, which an outage may
// have broken, so that the next statements open new ones; connections in
// use are left to their statements. (database/sql closes the idle
// connections above a lowered limit at once.)
func (p *Provisioner) dropIdle() {
	p.admin.SetMaxIdleConns(0)
	p.admin.SetMaxIdleConns(adminIdle)
}

// outage makes an outage of the tenant server an Unavailable error (its
// message names no host; the cause stays in Err, for the log).
func outage(err error) error {
	if o := sqlerr.Outage(err); o != nil {
		o.Message = "the tenant database server is unavailable; retry shortly"
		return o
	}
	return err
}

func (p *Provisioner) provision(ctx context.Context, t *controlplane.Tenant) (uint, error) {
	if err := p.checkName(t); err != nil {
		return 0, err
	}
	h, err := p.history()
	if err != nil {
		return 0, err
	}
	switch t.Isolation {
	case controlplane.IsolationDatabase:
		// A clone of the template when the history allows one (the common
		// case: nothing there yet, and the clone is at the latest version);
		// one that exists already (a retry, a reconcile), or a history
		// that cannot be cloned, is migrated on by golang-migrate.
		tpl := ""
		if h.Transactional {
			if tpl, err = p.ensureTemplate(ctx, h); err != nil {
				return 0, fmt.Errorf("template database: %w", err)
			}
		}
		created, err := p.createTenantDatabase(ctx, t, p.mark(t), tpl)
		if err != nil {
			return 0, err
		}
		if created && tpl != "" {
			return h.Latest, nil
		}
		// As the tenant's role, so that it owns every table it will use.
		db, target := p.tenantDB(t)
		return migrations.Up(db, p.migrations, target)
	case controlplane.IsolationSchema:
		if h.Transactional {
			err := p.createSchemaFresh(ctx, t, h)
			if !isDuplicate(err) {
				return h.Latest, err
			}
		}
		if err := p.createSchema(ctx, t); err != nil {
			return 0, err
		}
		db, target := p.tenantDB(t)
		return migrations.Up(db, p.migrations, target)
	}
	return 0, fmt.Errorf("unknown isolation %q", t.Isolation)
}

// Deprovision drops the tenant's database or schema if it exists and is
// this tenant's. Connections still open to a tenant database are
// terminated: the tenant is being deleted.
func (p *Provisioner) Deprovision(ctx context.Context, t *controlplane.Tenant) error {
	return outage(p.deprovision(ctx, t))
}

func (p *Provisioner) deprovision(ctx context.Context, t *controlplane.Tenant) error {
	if err := p.checkName(t); err != nil {
		return err
	}
	if p.BeforeDrop != nil {
		p.BeforeDrop(t)
	}
	// What restores of the tenant kept aside goes with it.
	if err := p.dropAsides(ctx, t); err != nil {
		return err
	}
	id := quote(t.DBName)
	switch t.Isolation {
	case controlplane.IsolationDatabase:
		exists, err := p.checkDatabase(ctx, t)
		if err != nil {
			return err
		}
		if exists {
			if _, err := p.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+id+` WITH (FORCE)`); err != nil {
				return err
			}
		}
		return p.dropRole(ctx, t)
	case controlplane.IsolationSchema:
		exists, err := p.checkOwner(ctx, t, "schema", schemaMarkQuery)
		if err != nil || !exists {
			return err
		}
		_, err = p.admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+id+` CASCADE`)
		return err
	}
	return fmt.Errorf("unknown isolation %q", t.Isolation)
}

// Exists reports whether the tenant's database or schema exists.
func (p *Provisioner) Exists(ctx context.Context, t *controlplane.Tenant) (bool, error) {
	return p.exists(ctx, t.Isolation, t.DBName)
}

// exists reports whether a database (database mode) or a schema (schema
// mode) named name exists on the server.
func (p *Provisioner) exists(ctx context.Context, isolation controlplane.Isolation, name string) (bool, error) {
	q := `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`
	if isolation == controlplane.IsolationSchema {
		q = `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`
	}
	var ok bool
	err := p.admin.QueryRowContext(ctx, q, name).Scan(&ok)
	return ok, err
}

// The queries reading the catalog's mark (a COMMENT) on each kind of object.
const (
	databaseMarkQuery = `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`
	schemaMarkQuery   = `SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1`
)

// createSchema creates and marks the schema in one transaction.
func (p *Provisioner) createSchema(ctx context.Context, t *controlplane.Tenant) error {
	exists, err := p.checkOwner(ctx, t, "schema", schemaMarkQuery)
	if err != nil || exists {
		return err
	}
	tx, err := p.admin.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE SCHEMA `+quote(t.DBName)); err != nil {
		return fmt.Errorf("create schema %s: %w", t.DBName, err)
	}
	if _, err := tx.ExecContext(ctx, `COMMENT ON SCHEMA `+quote(t.DBName)+` IS `+literal(p.mark(t))); err != nil {
		return err
	}
	return tx.Commit()
}

// checkOwner looks the object (a database, schema or role named like the
// tenant) up with query, which selects its comment, and reports whether it
// exists; one that exists without this tenant's mark is an error, so it is
// neither adopted nor dropped.
func (p *Provisioner) checkOwner(ctx context.Context, t *controlplane.Tenant, kind, query string) (bool, error) {
	var comment sql.NullString
	err := p.admin.QueryRowContext(ctx, query, t.DBName).Scan(&comment)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if comment.String != p.mark(t) && strings.HasPrefix(comment.String, p.spareMarkPrefix(t.ID)) {
		// A spare this tenant claimed (spares take ids from the tenants'
		// sequence, so only the tenant of that id can have claimed it)
		// whose adoption was cut short: it is this tenant's now.
		_, err := p.admin.ExecContext(ctx, `COMMENT ON `+strings.ToUpper(kind)+` `+quote(t.DBName)+` IS `+literal(p.mark(t)))
		return true, err
	}
	if comment.String != p.mark(t) {
		return true, fmt.Errorf("%s %q already exists on the tenant server but does not belong to tenant %d of this catalog; "+
			"refusing to adopt or drop it (inspect it, then drop or rename it by hand)", kind, t.DBName, t.ID)
	}
	return true, nil
}

// checkName guards the one place user-reachable data meets SQL identifiers:
// the name must be the one derived from the id.
func (p *Provisioner) checkName(t *controlplane.Tenant) error {
	if t.DBName != p.DBName(t.ID) {
		return fmt.Errorf("tenant %d has db_name %q, expected %q (was TENANT_DB_PREFIX changed?)", t.ID, t.DBName, p.DBName(t.ID))
	}
	return nil
}

// open returns a small pool on the tenant server's database dbname.
//
// With a role (a tenant's), it logs in as that role: a tenant database is
// only ever entered with the tenant's own privileges, so whatever the
// tenant planted there (policies, triggers, views, functions) runs as the
// tenant and reaches nothing the tenant could not reach by itself
// (docs/SECURITY.md). Its search_path is pinned to public, where database
// tenants' tables live.
//
// Without a role, as the admin, for the few statements that need it
// (REASSIGN OWNED in a fresh clone, template builds, schema tenants). The
// startup parameters outrank any ALTER DATABASE/ROLE … SET the owner of
// dbname made: role=none, because a tenant owning its database can set
// "role" there and every member of that role who connects (the admin is a
// member of every tenant role) silently becomes it; and a search_path of
// pg_catalog (or the schema given), so no function a tenant made can
// shadow a built-in.
func (p *Provisioner) open(dbname, schema, role string) *sql.DB {
	cfg := p.server.Copy()
	cfg.Database = dbname
	cfg.RuntimeParams["search_path"] = "public"
	if role != "" {
		cfg.User, cfg.Password = role, p.roles.Password(role)
	} else {
		cfg.RuntimeParams["role"] = "none"
		cfg.RuntimeParams["search_path"] = "pg_catalog"
	}
	if schema != "" {
		cfg.RuntimeParams["search_path"] = quote(schema)
	}
	return openConfig(cfg)
}

// openConfig opens a small pool of its own on cfg.
func openConfig(cfg *pgx.ConnConfig) *sql.DB {
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(2)
	return db
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

// literal quotes a string literal for the few statements (COMMENT ON) that
// take no bind parameters. Only our own text reaches it.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
