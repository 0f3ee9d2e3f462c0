package tenantdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// The hostile-tenant suite (docs/SECURITY.md).
//
// A database-mode tenant's role owns its database, and so owns
// public.schema_migrations and every resource table: whoever holds that
// role's password (the tenant's own code, a leaked credential) can plant
// code there that runs as whoever touches those objects next. The rule
// this suite enforces: inside a tenant database the control plane never
// runs a statement with more privilege than that tenant's role. Not as the
// admin, not as another tenant's role, and not "as the admin after SET
// ROLE <tenant>" either: a session whose session_user is the admin can take
// the admin's identity back (SET ROLE is checked against session_user), so
// planted code running under SET ROLE is as good as running as the admin.
//
// Each case (one plant) provisions a victim B, and attackers A (one per
// chain of operations, see hostileOps), plants something as A (A's own
// role and password, nothing more), runs control-plane operations on A one
// at a time, and after each one audits:
//
//  1. every time the planted spy() ran, current_user and session_user were
//     both A's role (a transactional log, plus sequences that count the
//     foreign runs and survive rollbacks);
//  2. B is untouched: its role logs in with its real password and not with
//     'pwned', its data is there, A is not a member of B (nor is anyone but
//     the admin), A gained no attribute, and no "evil" role exists;
//  3. the operation returned (nil or an error) within its timeout and did
//     not panic; and if it reports a schema version, A's migrations table
//     says exactly that (a correct result, or a clear error).

// hostileOpTimeout bounds each operation: a plant must not make the
// control plane hang. It is generous because a DROP DATABASE (deprovision)
// waits for a checkpoint, which on a busy shared cluster, right after this
// suite made a few dozen databases, has been seen to take 15-30 s.
const hostileOpTimeout = 45 * time.Second

// hostileCaseTimeout bounds making, or running, one case: every operation
// at its own bound, one after another, with room for the queue.
const hostileCaseTimeout = 15 * time.Minute

// hostilePlus and hostileBad are the later releases the migration operations run:
// plus adds a file that also touches extensions (a data backfill, as real
// migrations do: it fires the tenant's triggers on that table), bad adds a
// file that fails (so the "mark dirty" paths run).
var hostilePlus, hostileBad = func() (fs.FS, fs.FS) {
	plus, err := migrations.TenantPlus(map[string]string{
		"000002_department.up.sql":   "ALTER TABLE extensions ADD COLUMN department text NOT NULL DEFAULT '';\nUPDATE extensions SET department = 'sales';\n",
		"000002_department.down.sql": "UPDATE extensions SET name = name;\nALTER TABLE extensions DROP COLUMN department;\n",
	})
	if err != nil {
		panic(err)
	}
	bad, err := migrations.TenantPlus(map[string]string{
		"000002_broken.up.sql":   "UPDATE extensions SET name = name;\nSELECT no_such_function();\n",
		"000002_broken.down.sql": "SELECT 1;\n",
	})
	if err != nil {
		panic(err)
	}
	return plus, bad
}()

// hostileNames are the identifiers a plant is written with.
type hostileNames struct {
	A, B string // the attacker's and the victim's roles (= databases)
	Evil string // the superuser role the spy tries to create
}

// hostilePlant is one thing the attacker leaves in its own database.
type hostilePlant struct {
	name string
	// sql runs as A, on A's database, after the spy (public.spy(),
	// public.spy_trigger()) exists.
	sql func(n hostileNames) string
	// probe runs as A on a new connection to A's database, right after the
	// plant: it must make spy() run, which proves the plant is live (a
	// plant that never fires would prove nothing).
	probe string
}

// spyTriggers creates BEFORE and AFTER triggers, at statement level (which
// fire even when no row is touched, and on TRUNCATE) and at row level, on
// table, all calling spy().
func spyTriggers(table string) string {
	var b strings.Builder
	for _, when := range []string{"BEFORE", "AFTER"} {
		fmt.Fprintf(&b, "CREATE TRIGGER spy_%s_stmt %s INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION public.spy_trigger();\n",
			strings.ToLower(when), when, table)
		fmt.Fprintf(&b, "CREATE TRIGGER spy_%s_row %s INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION public.spy_trigger();\n",
			strings.ToLower(when), when, table)
	}
	return b.String()
}

// spyPolicy puts schema_migrations under row-level security whose policy
// is spy(): every read and write of the table, by anyone subject to RLS,
// calls it. FORCE makes it apply to the owner (A) too, which is how the
// probe sees it fire. A superuser bypasses RLS even when forced, so in the
// tests (admin = postgres) this catches statements run as A under an admin
// session (SET ROLE) and as B; a control plane whose role is not a
// superuser would run into it as itself.
const spyPolicy = `ALTER TABLE public.schema_migrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.schema_migrations FORCE ROW LEVEL SECURITY;
CREATE POLICY spy ON public.schema_migrations USING (public.spy()) WITH CHECK (public.spy());
`

var hostilePlants = []hostilePlant{
	{
		// No plant: the control. Every operation must pass its audit on a
		// tenant that only has the spy, or the failures below prove nothing.
		name:  "none",
		sql:   func(hostileNames) string { return "" },
		probe: `SELECT public.spy()`,
	},
	{
		// The control plane reads and writes schema_migrations in every
		// migration operation: a policy on it runs spy() as whoever does.
		name:  "rls",
		sql:   func(hostileNames) string { return spyPolicy },
		probe: `SELECT version FROM public.schema_migrations`,
	},
	{
		// Triggers on schema_migrations run as whoever writes the version
		// (the one-trip up's version bump, markDirty, golang-migrate's
		// TRUNCATE + INSERT).
		name:  "triggers",
		sql:   func(hostileNames) string { return spyTriggers("public.schema_migrations") },
		probe: `UPDATE public.schema_migrations SET dirty = dirty`,
	},
	{
		// Migration files touch resource tables (backfills): a trigger on
		// extensions runs as whoever runs the file.
		name:  "ext-trigger",
		sql:   func(hostileNames) string { return spyTriggers("public.extensions") },
		probe: `UPDATE public.extensions SET name = name`,
	},
	{
		// schema_migrations need not be a table: a view of the same shape,
		// whose rows are filtered by spy() and whose writes go through
		// INSTEAD OF triggers calling spy(), is read and written by every
		// migration path but golang-migrate's version write (TRUNCATE
		// refuses a view: its down, goto and force end in an error, which
		// is allowed, or find nothing to do).
		name: "view",
		sql: func(hostileNames) string {
			return `ALTER TABLE public.schema_migrations RENAME TO schema_migrations_real;
CREATE VIEW public.schema_migrations AS SELECT version, dirty FROM public.schema_migrations_real WHERE public.spy();
CREATE FUNCTION public.spy_view_write() RETURNS trigger LANGUAGE plpgsql AS $w$
BEGIN
	PERFORM public.spy();
	IF TG_OP = 'INSERT' THEN
		INSERT INTO public.schema_migrations_real (version, dirty) VALUES (NEW.version, NEW.dirty);
		RETURN NEW;
	ELSIF TG_OP = 'UPDATE' THEN
		UPDATE public.schema_migrations_real SET version = NEW.version, dirty = NEW.dirty WHERE version = OLD.version;
		RETURN NEW;
	END IF;
	DELETE FROM public.schema_migrations_real WHERE version = OLD.version;
	RETURN OLD;
END $w$;
CREATE TRIGGER spy_write INSTEAD OF INSERT OR UPDATE OR DELETE ON public.schema_migrations
	FOR EACH ROW EXECUTE FUNCTION public.spy_view_write();
`
		},
		probe: `SELECT version FROM public.schema_migrations`,
	},
	{
		// The control plane's SQL in a tenant database calls functions and
		// operators by unqualified names (pg_advisory_xact_lock, count,
		// bool_and, =, /). The database owner may set its database's
		// default search_path (and its role's) to put public before
		// pg_catalog, and then its own functions of the same signatures
		// win: every call runs spy() as the caller. The shadows still do
		// the real work, so nothing else changes.
		name: "shadow",
		sql: func(n hostileNames) string {
			return `CREATE FUNCTION public.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); PERFORM pg_catalog.pg_advisory_xact_lock($1); END $f$;
CREATE FUNCTION public.pg_advisory_lock(bigint) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); PERFORM pg_catalog.pg_advisory_lock($1); END $f$;
CREATE FUNCTION public.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); RETURN pg_catalog.pg_advisory_unlock($1); END $f$;
CREATE FUNCTION public.spy_count(bigint) RETURNS bigint LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); RETURN $1 OPERATOR(pg_catalog.+) 1; END $f$;
CREATE AGGREGATE public.count(*) (SFUNC = public.spy_count, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION public.spy_bool_and(boolean, boolean) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); RETURN coalesce($1, true) AND $2; END $f$;
CREATE AGGREGATE public.bool_and(boolean) (SFUNC = public.spy_bool_and, STYPE = boolean);
CREATE FUNCTION public.spy_eq84(bigint, integer) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $f$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = public.spy_eq84);
CREATE FUNCTION public.spy_eq88(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); RETURN $1 OPERATOR(pg_catalog.=) $2; END $f$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.spy_eq88);
CREATE FUNCTION public.spy_div44(integer, integer) RETURNS integer LANGUAGE plpgsql AS $f$
BEGIN PERFORM public.spy(); RETURN $1 OPERATOR(pg_catalog./) $2; END $f$;
CREATE OPERATOR public./ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.spy_div44);
ALTER DATABASE ` + ident(n.A) + ` SET search_path = public, pg_catalog;
ALTER ROLE ` + ident(n.A) + ` SET search_path = public, pg_catalog;
`
		},
		// A new connection picks the database's search_path up.
		probe: `SELECT pg_advisory_xact_lock(1)`,
	},
	{
		// The owner of a database may ALTER DATABASE ... SET role: for a
		// role it is not a member of, PostgreSQL only says NOTICE, and every
		// later session that may become that role (any member of it: the
		// admin is a member of every tenant role) silently starts as it. So
		// the admin's connections to A's database run as B. A grants its
		// migrations table to PUBLIC so that B may read it, and puts the
		// spy policy on it: the admin's first read runs spy() as B, which
		// may set B's own password.
		name: "setrole",
		sql: func(n hostileNames) string {
			return `GRANT ALL ON public.schema_migrations TO PUBLIC;
` + spyPolicy + `ALTER DATABASE ` + ident(n.A) + ` SET role = ` + literal(n.B) + `;
`
		},
		probe: `SELECT version FROM public.schema_migrations`,
	},
	{
		// A migrations table that breaks golang-migrate's one-row protocol:
		// two rows, the first one read (heap order) a dirty version far
		// ahead. Every operation must end in a clear error or a correct
		// result (its version is what the table says), never a panic, a
		// hang, or anything done to B.
		name: "bogus",
		sql: func(hostileNames) string {
			return `DELETE FROM public.schema_migrations;
INSERT INTO public.schema_migrations (version, dirty) VALUES (999999, true);
INSERT INTO public.schema_migrations (version, dirty) VALUES (1, false);
`
		},
		probe: `SELECT public.spy()`,
	},
}

// spySQL is the attacker's instrument, made in A's database as A.
//
// spy() logs who runs it (current_user, session_user, the operation's tag)
// in spy_log, which A owns and lets PUBLIC insert into (so that a run as B
// is logged too), and counts in sequences the runs in which an identity is
// not A (spy_cur_b: current_user is B; spy_cur_other: current_user is
// neither A nor B, i.e. the admin; spy_sess_other: session_user is not A):
// a sequence survives the rollback of the transaction it ran in, so a
// foreign run is seen even when its log row is not. Then it tries to
// escalate, each attempt in its own exception block
// so that a refusal never aborts the caller:
//
//   - ALTER ROLE B PASSWORD 'pwned' (B may do that to itself; the admin may);
//   - GRANT B TO A (the admin may);
//   - CREATE ROLE <evil> LOGIN SUPERUSER (the admin may);
//
// and, when session_user is not current_user (the caller did SET ROLE, or
// a database default set it), it sets role back to session_user (allowed:
// SET ROLE is checked against session_user) and tries again, then restores
// the role so that the caller carries on unaware.
func spySQL(n hostileNames) string {
	a, b := literal(n.A), literal(n.B)
	return `CREATE TABLE public.spy_log (
	at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	cur text NOT NULL,
	sess text NOT NULL,
	tag text NOT NULL
);
GRANT INSERT ON public.spy_log TO PUBLIC;
CREATE TABLE public.spy_tag (tag text NOT NULL);
INSERT INTO public.spy_tag (tag) VALUES ('plant');
GRANT SELECT ON public.spy_tag TO PUBLIC;
CREATE SEQUENCE public.spy_cur_b;
CREATE SEQUENCE public.spy_cur_other;
CREATE SEQUENCE public.spy_sess_other;
GRANT USAGE ON SEQUENCE public.spy_cur_b, public.spy_cur_other, public.spy_sess_other TO PUBLIC;
CREATE FUNCTION public.spy_escalate() RETURNS void LANGUAGE plpgsql AS $e$
BEGIN
	BEGIN ALTER ROLE ` + ident(n.B) + ` PASSWORD 'pwned'; EXCEPTION WHEN OTHERS THEN NULL; END;
	BEGIN GRANT ` + ident(n.B) + ` TO ` + ident(n.A) + `; EXCEPTION WHEN OTHERS THEN NULL; END;
	BEGIN CREATE ROLE ` + ident(n.Evil) + ` LOGIN SUPERUSER; EXCEPTION WHEN OTHERS THEN NULL; END;
END $e$;
CREATE FUNCTION public.spy() RETURNS boolean LANGUAGE plpgsql AS $s$
DECLARE
	me text := current_user;
	op text;
BEGIN
	SELECT t.tag INTO op FROM public.spy_tag t LIMIT 1;
	INSERT INTO public.spy_log (cur, sess, tag) VALUES (current_user, session_user, coalesce(op, '?'));
	IF current_user = ` + b + ` THEN
		PERFORM pg_catalog.nextval('public.spy_cur_b');
	ELSIF current_user <> ` + a + ` THEN
		PERFORM pg_catalog.nextval('public.spy_cur_other');
	END IF;
	IF session_user <> ` + a + ` THEN
		PERFORM pg_catalog.nextval('public.spy_sess_other');
	END IF;
	PERFORM public.spy_escalate();
	IF session_user <> current_user THEN
		BEGIN
			PERFORM pg_catalog.set_config('role', session_user::text, true);
			PERFORM public.spy_escalate();
			PERFORM pg_catalog.set_config('role', me, true);
		EXCEPTION WHEN OTHERS THEN NULL;
		END;
	END IF;
	RETURN true;
END $s$;
CREATE FUNCTION public.spy_trigger() RETURNS trigger LANGUAGE plpgsql AS $t$
BEGIN
	PERFORM public.spy();
	IF TG_LEVEL = 'STATEMENT' THEN
		RETURN NULL;
	ELSIF TG_OP = 'DELETE' THEN
		RETURN OLD;
	END IF;
	RETURN NEW;
END $t$;
`
}

// opResult is what one operation returned.
type opResult struct {
	v         uint
	dirty     bool
	versioned bool // v and dirty are a version the operation claims A is at
	err       error
	panicked  string
	timedOut  bool
	elapsed   time.Duration
}

func migrated(out controlplane.MigrationOutcome) opResult {
	return opResult{v: out.To, dirty: out.Dirty, versioned: true, err: out.Err}
}

// hostileOp is one control-plane operation run on the attacker.
type hostileOp struct {
	name string
	// spare: the attacker is a spare database (planted through the spare's
	// role), which the operation adopts.
	spare bool
	// next: the operation runs on the previous operation's attacker, after
	// it. Every tenant database costs a clone now and a DROP DATABASE (a
	// checkpoint) at cleanup, so operations that leave the attacker as
	// they found it, or where the next one can meaningfully start, share
	// one; the spy's log is kept per operation (its tag) and its counters
	// are read before and after each.
	next bool
	run  func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult
}

// The operations, grouped in chains that share an attacker (next): each
// starts from a state that keeps it meaningful under every plant. The
// read-only ones come first (the bogus table is still there for them),
// force after what it would repair, deprovision last.
var hostileOps = []hostileOp{
	{name: "version", run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		a.SchemaVersion = 1
		return migrated(fx.plus.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateVersion}))
	}},
	{name: "provision", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// A retry or a reconcile: the database exists, so the slow path
		// (role, database, reassignment, golang-migrate) runs.
		v, err := fx.base.Provision(ctx, &a)
		return opResult{v: v, versioned: true, err: err}
	}},
	{name: "rotate", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// Like deprovision and adopt, it works in the server's own database
		// only, never in A's: the plants cannot reach it today, and this
		// keeps it so.
		return opResult{err: fx.base.RotateRolePassword(ctx, &a)}
	}},
	{name: "up", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// The catalog is right (1): fastUp's one-trip path.
		a.SchemaVersion = 1
		return migrated(fx.plus.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateUp}))
	}},
	{name: "deprovision", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		return opResult{err: fx.base.Deprovision(ctx, &a)}
	}},

	{name: "up-read", run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// The catalog says dirty: fastUpRead reads the version first.
		a.SchemaVersion, a.SchemaDirty = 1, true
		return migrated(fx.plus.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateUp}))
	}},
	{name: "down", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// At 2: the later file's down (which touches extensions).
		a.SchemaVersion = 2
		return migrated(fx.plus.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateDown, N: 1}))
	}},
	{name: "goto", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		a.SchemaVersion = 1
		return migrated(fx.plus.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateGoto, Version: 2}))
	}},

	{name: "up-fail", run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// A failing file on the one-trip path: its dirty mark.
		a.SchemaVersion = 1
		return migrated(fx.bad.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateUp}))
	}},

	{name: "adopt", spare: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// AdoptSpare answers the template's version without reading the
		// spare's migrations table (by design: nobody but the control plane
		// has touched a spare), so its version is not held against the
		// table here; the other audits apply. Planting in a spare takes
		// its role's password, which a tenant learns only once it is its.
		v, err := fx.base.AdoptSpare(ctx, &a)
		return opResult{v: v, err: err}
	}},
	{name: "up-read-fail", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// A failing file on the read-first path: markDirty.
		a.SchemaVersion, a.SchemaDirty = 1, true
		return migrated(fx.bad.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateUp}))
	}},
	{name: "force", next: true, run: func(ctx context.Context, fx *hostileFixture, a controlplane.Tenant) opResult {
		// The repair of the dirty mark just left (or of the bogus table).
		a.SchemaVersion, a.SchemaDirty = 2, true
		return migrated(fx.plus.Migrate(ctx, &a, controlplane.MigrationOp{Kind: controlplane.MigrateForce, Version: 1}))
	}},
}

// hostileFixture is the suite's server: its throwaway database (and name
// prefix, shared by every case: one template) and provisioners for the
// current history and the later ones.
type hostileFixture struct {
	db              pgtest.DB
	admin           *sql.DB // on the server's own database, never a tenant's
	base, plus, bad *tenantdb.Provisioner
}

func newHostileFixture(t *testing.T) *hostileFixture {
	t.Helper()
	fx := &hostileFixture{db: pgtest.New(t)}
	// Registered after pgtest's cleanup, so it runs first. Every DROP
	// DATABASE waits for a checkpoint: pgtest drops one at a time, and a
	// hundred of them in a row on a busy shared cluster take minutes; at
	// once they share their checkpoints. pgtest then drops what is left
	// and the roles.
	t.Cleanup(func() { dropDatabasesAtOnce(t, fx.db) })
	fx.admin = pgtest.Open(t, fx.db.URL)
	open := func(src fs.FS) *tenantdb.Provisioner {
		p, err := tenantdb.NewProvisioner(context.Background(), tenantdb.ProvisionerConfig{
			URL: fx.db.URL, Prefix: fx.db.Prefix, Owner: "hostile", Migrations: src, RoleSecret: tenanttest.Secret,
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	fx.base, fx.plus, fx.bad = open(migrations.Tenant), open(hostilePlus), open(hostileBad)
	return fx
}

// dropDatabasesAtOnce drops the databases under d's prefix concurrently.
func dropDatabasesAtOnce(t *testing.T, d pgtest.DB) {
	admin := pgtest.Open(t, pgtest.ServerURL(t))
	admin.SetMaxOpenConns(16)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err := admin.QueryContext(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, d.Prefix)
	if err != nil {
		return // pgtest's own cleanup reports it
	}
	var names []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil {
			names = append(names, n)
		}
	}
	_ = rows.Close()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, _ = admin.ExecContext(ctx, `ALTER DATABASE `+ident(n)+` WITH IS_TEMPLATE false`)
			_, _ = admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+ident(n)+` WITH (FORCE)`)
		}()
	}
	wg.Wait()
}

// hostileCase is one plant's run: its victim, and an attacker per
// operation.
type hostileCase struct {
	plant hostilePlant
	b     controlplane.Tenant
	err   error // the victim could not be made
	runs  []*hostileRun
}

// hostileRun is one operation on one attacker, and what its audit found.
type hostileRun struct {
	a        controlplane.Tenant
	names    hostileNames
	next     bool  // A is the previous run's
	err      error // the attacker could not be made
	res      opResult
	failures []string
	notes    []string
}

func (r *hostileRun) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *hostileRun) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// dial connects to database as role with password.
func dial(ctx context.Context, serverURL, role, password, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password, cfg.Database = role, password, database
	return pgx.ConnectConfig(ctx, cfg)
}

// dialTenant connects to a tenant's database as its role, as that role:
// the test's own sessions ignore a role the database may default to (the
// setrole plant), so that they see what A sees.
func dialTenant(ctx context.Context, serverURL, role string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password, cfg.Database = role, tenanttest.Secret.Password(role), role
	cfg.RuntimeParams["role"] = "none"
	return pgx.ConnectConfig(ctx, cfg)
}

func exec(ctx context.Context, serverURL, role, sql string, args ...any) error {
	c, err := dialTenant(ctx, serverURL, role)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql, args...)
	return err
}

// victim provisions the case's victim and gives it data, through its role.
func (fx *hostileFixture) victim(ctx context.Context, hc *hostileCase) error {
	if _, err := fx.base.Provision(ctx, &hc.b); err != nil {
		return fmt.Errorf("provision the victim: %w", err)
	}
	if err := exec(ctx, fx.db.URL, hc.b.DBName, `INSERT INTO extensions (number, name) VALUES ('1001', 'victim')`); err != nil {
		return fmt.Errorf("the victim's data: %w", err)
	}
	return nil
}

// attacker provisions run's attacker (or makes it a spare) and plants pl
// in its database as its role.
func (fx *hostileFixture) attacker(ctx context.Context, run *hostileRun, op hostileOp, pl hostilePlant) error {
	a := run.a.DBName
	if op.spare {
		if err := fx.base.MakeSpare(ctx, run.a.ID); err != nil {
			return fmt.Errorf("make the spare: %w", err)
		}
	} else if _, err := fx.base.Provision(ctx, &run.a); err != nil {
		return fmt.Errorf("provision the attacker: %w", err)
	}
	if err := exec(ctx, fx.db.URL, a, spySQL(run.names)+pl.sql(run.names)); err != nil {
		return fmt.Errorf("plant: %w", err)
	}
	// The plant is live: the probe makes spy() run, as A only.
	if err := exec(ctx, fx.db.URL, a, `UPDATE public.spy_tag SET tag = 'probe'`); err != nil {
		return err
	}
	if err := exec(ctx, fx.db.URL, a, pl.probe); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	log, foreign, err := spyLog(ctx, fx.db.URL, a)
	if err != nil {
		return err
	}
	if log["probe"] == 0 || foreign.any() || len(log) != 1 {
		return fmt.Errorf("the probe did not run the spy as A alone: log %v, %s", log, foreign)
	}
	return nil
}

// foreignRuns are the spy's counters of runs not wholly as A, rolled-back
// runs included.
type foreignRuns struct{ curB, curOther, sessOther int64 }

func (f foreignRuns) any() bool { return f != foreignRuns{} }

func (f foreignRuns) String() string {
	return fmt.Sprintf("current_user B: %d, current_user neither A nor B (the admin): %d, session_user not A: %d", f.curB, f.curOther, f.sessOther)
}

// spyLog reads A's spy log, as A: runs per tag (those logged with another
// identity as "<tag> as current_user=.. session_user=.."), and the
// foreign-run counters.
func spyLog(ctx context.Context, serverURL, role string) (map[string]int, foreignRuns, error) {
	var f foreignRuns
	c, err := dialTenant(ctx, serverURL, role)
	if err != nil {
		return nil, f, fmt.Errorf("connect as the attacker: %w", err)
	}
	defer c.Close(ctx)
	// Plain reads only: the shadow plant redefines count, =, / for A.
	rows, err := c.Query(ctx, `SELECT cur, sess, tag FROM public.spy_log`)
	if err != nil {
		return nil, f, err
	}
	out := map[string]int{}
	for rows.Next() {
		var cur, sess, tag string
		if err := rows.Scan(&cur, &sess, &tag); err != nil {
			return nil, f, err
		}
		if cur != role || sess != role {
			tag += fmt.Sprintf(" as current_user=%s session_user=%s", cur, sess)
		}
		out[tag]++
	}
	if err := rows.Err(); err != nil {
		return nil, f, err
	}
	for _, counter := range []struct {
		seq string
		n   *int64
	}{{"spy_cur_b", &f.curB}, {"spy_cur_other", &f.curOther}, {"spy_sess_other", &f.sessOther}} {
		var called bool
		if err := c.QueryRow(ctx, `SELECT last_value, is_called FROM public.`+counter.seq).Scan(counter.n, &called); err != nil {
			return nil, f, err
		}
		if !called {
			*counter.n = 0
		}
	}
	return out, f, nil
}

// guarded runs fn with a timeout, turning a panic into a result; a run that
// outlives the timeout (fastUp ignores cancellation on purpose) is
// reported as timed out and left behind.
func guarded(timeout time.Duration, fn func(ctx context.Context) opResult) opResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	done := make(chan opResult, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- opResult{panicked: fmt.Sprintf("%v\n%s", r, debug.Stack())}
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case r := <-done:
		r.elapsed = time.Since(start)
		return r
	case <-ctx.Done():
		return opResult{timedOut: true, elapsed: time.Since(start)}
	}
}

// TestHostileTenants runs every plant against every operation.
//
// The work is done up front in goroutines (the cluster does it; -parallel
// is only GOMAXPROCS): the cases run at once, each making its victim and
// attackers, then running its operations one after the other, auditing
// each right after it ran and then restoring the victim (its password, its
// members, no evil role), so that an operation is charged only with what
// it did. The subtests report the audits.
func TestHostileTenants(t *testing.T) {
	t.Parallel()
	start := time.Now()
	fx := newHostileFixture(t)
	sem := make(chan struct{}, 16) // tenant-server work at once, all cases together
	cases := make([]*hostileCase, len(hostilePlants))
	var wg sync.WaitGroup
	for c, pl := range hostilePlants {
		base := int64(100 * c)
		hc := &hostileCase{plant: pl, runs: make([]*hostileRun, len(hostileOps)),
			b: controlplane.Tenant{ID: base + 1, DBName: fx.base.DBName(base + 1), Isolation: controlplane.IsolationDatabase, SchemaVersion: 1, Provisioning: controlplane.ProvisionReady}}
		cases[c] = hc
		for i, op := range hostileOps {
			if op.next {
				prev := *hc.runs[i-1]
				hc.runs[i] = &hostileRun{a: prev.a, names: prev.names, next: true}
				continue
			}
			id := base + 2 + int64(i)
			hc.runs[i] = &hostileRun{
				a: controlplane.Tenant{ID: id, DBName: fx.base.DBName(id), Isolation: controlplane.IsolationDatabase, SchemaVersion: 1, Provisioning: controlplane.ProvisionReady},
				// Per operation, under the prefix (pgtest's cleanup drops
				// it should the spy ever make it).
				names: hostileNames{A: fx.base.DBName(id), B: hc.b.DBName, Evil: fmt.Sprintf("%sevil_%d", fx.db.Prefix, id)},
			}
		}
	}
	// Made first, all at once.
	for _, hc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fx.makeCase(hc, sem)
		}()
	}
	wg.Wait()
	t.Logf("all cases made in %s", time.Since(start).Round(time.Millisecond))
	// A DROP DATABASE (deprovision, near the end of each case) waits for a
	// checkpoint, and the first one must flush everything just made: on a
	// busy shared cluster that can take longer than an operation's
	// timeout. Started now, beside the first operations, it is done or
	// nearly so by then.
	checkpoint := make(chan error, 1)
	go func() {
		_, err := fx.admin.Exec(`CHECKPOINT`)
		checkpoint <- err
	}()
	for _, hc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fx.runCase(hc, sem)
		}()
	}
	wg.Wait()
	if err := <-checkpoint; err != nil {
		t.Logf("checkpoint: %v", err)
	}
	t.Logf("all cases run and audited in %s", time.Since(start).Round(time.Millisecond))

	for _, hc := range cases {
		t.Run(hc.plant.name, func(t *testing.T) {
			for i, op := range hostileOps {
				run := hc.runs[i]
				t.Run(op.name, func(t *testing.T) {
					if hc.err != nil {
						t.Fatalf("fixture: %v", hc.err)
					}
					if run.err != nil {
						t.Fatalf("fixture: %v", run.err)
					}
					for _, n := range run.notes {
						t.Log(n)
					}
					for _, f := range run.failures {
						t.Error(f)
					}
				})
			}
		})
	}
}

// makeCase makes hc's victim and attackers.
func (fx *hostileFixture) makeCase(hc *hostileCase, sem chan struct{}) {
	// A bound for the whole case, waits for sem included; each operation
	// has its own (hostileOpTimeout). It was two minutes, below what 12
	// operations may take at their own bounds.
	ctx, cancel := context.WithTimeout(context.Background(), hostileCaseTimeout)
	defer cancel()
	sem <- struct{}{}
	hc.err = fx.victim(ctx, hc)
	<-sem
	if hc.err != nil {
		return
	}
	var wg sync.WaitGroup
	for i, op := range hostileOps {
		run := hc.runs[i]
		if run.next {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			run.err = fx.attacker(ctx, run, op, hc.plant)
		}()
	}
	wg.Wait()
	for i, run := range hc.runs {
		if run.next {
			run.err = hc.runs[i-1].err
		}
	}
}

// runCase runs, audits and restores, one operation of hc at a time.
func (fx *hostileFixture) runCase(hc *hostileCase, sem chan struct{}) {
	if hc.err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostileCaseTimeout)
	defer cancel()
	var broken string // why the victim can no longer be trusted
	for i, op := range hostileOps {
		run := hc.runs[i]
		if run.err != nil {
			continue
		}
		if broken != "" {
			run.note("earlier in this case: %s; failures below may not be this operation's", broken)
		}
		if run.next {
			run.note("on the attacker of %s, after it", hostileOps[i-1].name)
		}
		sem <- struct{}{}
		// The spy tags its log with the operation; its counters are read
		// before it.
		_, before, err := spyLog(ctx, fx.db.URL, run.a.DBName)
		if err == nil {
			err = exec(ctx, fx.db.URL, run.a.DBName, `UPDATE public.spy_tag SET tag = $1`, op.name)
		}
		if err != nil {
			run.fail("before the operation: %v", err)
			<-sem
			continue
		}
		run.res = guarded(hostileOpTimeout, func(ctx context.Context) opResult { return op.run(ctx, fx, run.a) })
		fx.audit(ctx, op, run, before)
		if run.res.timedOut {
			broken = op.name + " never returned and may still be running"
		}
		if err := fx.restoreVictim(ctx, hc, run); err != nil && broken == "" {
			broken = "the victim could not be restored after " + op.name + ": " + err.Error()
		}
		<-sem
	}
}

// audit checks what the operation left (see the top of this file).
func (fx *hostileFixture) audit(ctx context.Context, op hostileOp, run *hostileRun, before foreignRuns) {
	r := run.res
	a, b := run.names.A, run.names.B

	// (3) It returned, in time, without a panic.
	switch {
	case r.panicked != "":
		run.fail("the operation panicked: %s", r.panicked)
	case r.timedOut:
		run.fail("the operation did not return within %s", hostileOpTimeout)
	case r.err != nil:
		run.note("the operation returned an error (allowed) after %s: %v", r.elapsed.Round(time.Millisecond), r.err)
	default:
		run.note("the operation returned nil after %s", r.elapsed.Round(time.Millisecond))
	}

	var aExists bool
	if err := fx.admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, a).Scan(&aExists); err != nil {
		run.fail("audit: %v", err)
		return
	}

	// (1) Nothing ran as anyone but A. A deprovisioned tenant's log went
	// with its database; nothing of Deprovision connects to it, and (2)
	// still sees any effect.
	if aExists {
		log, after, err := spyLog(ctx, fx.db.URL, a)
		if err != nil {
			run.fail("read the spy log: %v", err)
		}
		mine := map[string]int{}
		for tag, n := range log {
			if tag != op.name && !strings.HasPrefix(tag, op.name+" as ") {
				continue // the probe's, or an earlier operation's
			}
			mine[tag] = n
			if tag != op.name {
				run.fail("spy() ran %d time(s) with more than A's privilege: %s", n, tag)
			}
		}
		foreign := foreignRuns{after.curB - before.curB, after.curOther - before.curOther, after.sessOther - before.sessOther}
		if err == nil && foreign.any() {
			run.fail("spy() ran as an identity other than A (counted by sequences, rolled-back runs included): %s", foreign)
		}
		run.note("spy runs logged during the operation: %v", mine)
	} else {
		run.note("A's database is gone, and its spy log with it")
	}

	// (3) A version it reports is what A's migrations table says.
	if r.versioned && r.err == nil && r.panicked == "" && !r.timedOut {
		if err := checkVersionTable(ctx, fx.db.URL, a, r.v, r.dirty); err != nil {
			run.fail("the operation reported version %d (dirty %t) without an error, but %v", r.v, r.dirty, err)
		}
	}

	// (2) B is intact.
	if c, err := dial(ctx, fx.db.URL, b, tenanttest.Secret.Password(b), b); err != nil {
		run.fail("the victim's role no longer logs in with its password: %v", err)
	} else {
		var name string
		if err := c.QueryRow(ctx, `SELECT name FROM extensions WHERE number = '1001'`).Scan(&name); err != nil || name != "victim" {
			run.fail("the victim's data: %q, %v", name, err)
		}
		_ = c.Close(ctx)
	}
	if c, err := dial(ctx, fx.db.URL, b, "pwned", b); err == nil {
		_ = c.Close(ctx)
		run.fail("the victim's role logs in with the password 'pwned'")
	}
	members, err := fx.strings(ctx, `SELECT m.rolname FROM pg_auth_members am
		JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
		WHERE r.rolname = $1 AND m.rolname <> current_user ORDER BY 1`, b)
	if err != nil || len(members) > 0 {
		run.fail("roles other than the admin are members of the victim's role: %v %v (the attacker is %s)", members, err, a)
	}
	if evil, err := fx.strings(ctx, `SELECT rolname FROM pg_roles WHERE rolname = $1`, run.names.Evil); err != nil || len(evil) > 0 {
		run.fail("the role %s was created %v", run.names.Evil, err)
	}
	if attrs, err := fx.strings(ctx, `SELECT rolname FROM pg_roles WHERE rolname = $1 AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication)`, a); err != nil || len(attrs) > 0 {
		run.fail("the attacker's role gained an attribute %v", err)
	}
}

// restoreVictim undoes what the spy can do to the victim, for the next
// operation of the case: its password (the provisioner's own reset), its
// members, the evil role.
func (fx *hostileFixture) restoreVictim(ctx context.Context, hc *hostileCase, run *hostileRun) error {
	if err := fx.base.RotateRolePassword(ctx, &hc.b); err != nil {
		return err
	}
	members, err := fx.strings(ctx, `SELECT m.rolname FROM pg_auth_members am
		JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
		WHERE r.rolname = $1 AND m.rolname <> current_user`, hc.b.DBName)
	if err != nil {
		return err
	}
	for _, m := range members {
		if _, err := fx.admin.ExecContext(ctx, `REVOKE `+ident(hc.b.DBName)+` FROM `+ident(m)); err != nil {
			return err
		}
	}
	_, err = fx.admin.ExecContext(ctx, `DROP ROLE IF EXISTS `+ident(run.names.Evil))
	return err
}

// strings runs q on the server's own database and returns its one text
// column.
func (fx *hostileFixture) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := fx.admin.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// checkVersionTable reads A's migrations table as A: it must hold exactly
// the row (v, dirty), or no row for version 0.
func checkVersionTable(ctx context.Context, serverURL, role string, v uint, dirty bool) error {
	c, err := dialTenant(ctx, serverURL, role)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT version, dirty FROM public.schema_migrations`)
	if err != nil {
		return err
	}
	var got []string
	for rows.Next() {
		var ver int64
		var d bool
		if err := rows.Scan(&ver, &d); err != nil {
			return err
		}
		got = append(got, fmt.Sprintf("(%d, %t)", ver, d))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	want := []string{fmt.Sprintf("(%d, %t)", v, dirty)}
	if v == 0 && !dirty {
		want = nil
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		return fmt.Errorf("its migrations table holds %v", got)
	}
	return nil
}

// Schema-mode tenants have no role of their own: their schemas live in the
// tenant server's own database (the URL's; in a default deployment, the
// catalog's), owned by the control plane's role, and the control plane runs
// everything there as itself. The only thing that keeps a database-mode
// tenant's role out of them is that it cannot get into that database at
// all: there it could shadow functions in public or plant in any schema it
// can reach, and every schema tenant's run would execute it as the admin.
// So a tenant role must not CONNECT to the host database, which PUBLIC may
// by default.
func TestHostileSchemaModeHost(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := tenantdb.NewProvisioner(ctx, tenantdb.ProvisionerConfig{URL: db.URL, Prefix: db.Prefix, Owner: "hostile", Migrations: migrations.Tenant, RoleSecret: tenanttest.Secret})
	require.NoError(t, err)
	defer p.Close()
	schema := &controlplane.Tenant{ID: 1, DBName: p.DBName(1), Isolation: controlplane.IsolationSchema}
	attacker := &controlplane.Tenant{ID: 2, DBName: p.DBName(2), Isolation: controlplane.IsolationDatabase}
	for _, tn := range []*controlplane.Tenant{schema, attacker} {
		_, err := p.Provision(ctx, tn)
		require.NoError(t, err)
	}

	// serve closes the host database to PUBLIC at start
	// (cmd/controlplane/access.go; TestHostileTenantRoleCannotConnectToTheSchemaHost
	// checks it through the app); the Provisioner alone does not. Here, the
	// second line of defence: even connected, the role can plant nothing
	// (PostgreSQL 15 gives PUBLIC no CREATE in public; the schemas are the
	// admin's).
	c, err := dial(ctx, db.URL, attacker.DBName, tenanttest.Secret.Password(attacker.DBName), db.Name)
	if err != nil {
		require.Contains(t, err.Error(), "permission denied for database")
		return
	}
	defer c.Close(ctx)
	t.Logf("the database-mode tenant's role %s connects to %s (open to PUBLIC until serve closes it)", attacker.DBName, db.Name)
	// What it can do there, for the record (each on its own: a refusal
	// does not stop the next).
	s := ident(schema.DBName)
	for _, plant := range []struct{ what, sql string }{
		{"shadow a function the control plane calls, in public", `CREATE FUNCTION public.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT'`},
		{"create a schema of its own", `CREATE SCHEMA hostile`},
		{"read the schema tenant's data", `SELECT number FROM ` + s + `.extensions`},
		{"write the schema tenant's migrations table", `UPDATE ` + s + `.schema_migrations SET dirty = true`},
		{"plant in the schema tenant's schema", `CREATE FUNCTION ` + s + `.spy() RETURNS boolean LANGUAGE sql AS 'SELECT true'`},
	} {
		if _, err := c.Exec(ctx, plant.sql); err == nil {
			t.Errorf("and it can %s", plant.what)
		} else {
			t.Logf("it cannot %s: %v", plant.what, err)
		}
	}
	var names []string
	rows, err := c.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, db.Prefix)
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	rows.Close()
	t.Logf("and it lists the schema tenants: %v", names)
}

// ident quotes an identifier; literal quotes a string literal (only the
// test's own names reach them).
func ident(s string) string   { return pgx.Identifier{s}.Sanitize() }
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
