package main

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	mpostgres "github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// tenantURL is how an operator's tool reaches tenant t: database mode as
// the tenant's role on its database, schema mode with the schema as
// search_path.
func (b *bundle) tenantURL(t *controlplane.Tenant) string {
	b.t.Helper()
	u, err := url.Parse(b.db.URL)
	require.NoError(b.t, err)
	if t.Isolation == controlplane.IsolationDatabase {
		u.User = url.UserPassword(t.DBName, b.app.RoleSecret.Password(t.DBName))
		u.Path = "/" + t.DBName
	} else {
		q := u.Query()
		q.Set("search_path", t.DBName)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// stockCLI opens tenant t with golang-migrate's own postgres driver from a
// URL, as the stock `migrate -database postgres://…` CLI does.
func (b *bundle) stockCLI(t *controlplane.Tenant) *migrate.Migrate {
	b.t.Helper()
	driver, err := (&mpostgres.Postgres{}).Open(b.tenantURL(t))
	require.NoError(b.t, err)
	src, err := iofs.New(migrations.Tenant, ".")
	require.NoError(b.t, err)
	m, err := migrate.NewWithInstance("iofs", src, "postgres", driver)
	require.NoError(b.t, err)
	b.t.Cleanup(func() { _, _ = m.Close() })
	return m
}

// A tenant migrated down out of band by the stock CLI is found: serve
// refuses it when it opens its pool (instead of serving code that expects
// tables it lacks), `status --verify` reports the drift with the repair,
// and a fleet `up` (which the catalog alone would have skipped) converges.
func TestDriftFromTheStockCLI(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		ctx := context.Background()
		b.create(seed())
		status, _, _ := b.req("GET", "acme.example.com", "/api/extensions", nil)
		require.Equal(t, http.StatusOK, status)
		tn := mustSlug(t, b.app, "acme-corp")
		require.Equal(t, uint(1), tn.SchemaVersion)

		require.NoError(t, b.stockCLI(tn).Steps(-1))
		b.app.Router.Forget(tn) // as after a restart, or a minute after the last check

		status, hdr, got := b.req("GET", "acme.example.com", "/api/extensions", nil)
		require.Equal(t, http.StatusServiceUnavailable, status, "%v", got)
		require.Equal(t, "tenant_unavailable", errCode(got))
		require.Contains(t, got["error"].(map[string]any)["message"], "migrated out of band")
		require.NotEmpty(t, hdr.Get("Retry-After"))

		app, fleet := b.fleet(migrations.Tenant)
		var out bytes.Buffer
		tenants := tenantsOf(app)
		rep := newReporter(&out, io.Discard, false, len(tenants), []uint{app.LatestTenantSchema})
		require.NoError(t, rep.status(tenants, app.Provisioner.ReadVersions(ctx, tenants, 2)))
		require.Contains(t, out.String(), "DRIFT: the catalog records version 1, the tenant's migrations table is at 0")
		require.Contains(t, out.String(), "verified: 1 drifted from the catalog")
		require.Contains(t, out.String(), "repair acme-corp: controlplane migrate tenants up --tenant acme-corp")

		// Without a verifier the catalog says "at latest": the drift is
		// what the verifier is for.
		up := controlplane.MigrationOp{Kind: controlplane.MigrateUp}
		require.Equal(t, "at latest", fleet.Skip(tenants[0], up))
		fleet.Verifier = app.Provisioner
		results := fleet.Run(ctx, tenants, up, func(controlplane.MigrationResult) {})
		require.NoError(t, results[0].Err)
		require.Empty(t, results[0].Skipped)
		require.Contains(t, results[0].Drift, "migrated out of band")
		require.Equal(t, uint(0), results[0].From)
		require.Equal(t, uint(1), results[0].To)

		// Converged: verified and skipped, and served again.
		results = fleet.Run(ctx, tenantsOf(app), up, func(controlplane.MigrationResult) {})
		require.Equal(t, "at latest (verified)", results[0].Skipped)
		status, _, got = b.req("GET", "acme.example.com", "/api/extensions", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
	})
}

// A dirty tenant (the stock CLI's failed run) and a bogus migrations table
// (two rows, written by the tenant) are refused by serve and reported by
// status --verify, never served and never a 500.
func TestDirtyOrBogusMigrationsTableIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.create(seed())
	tn := mustSlug(t, b.app, "acme-corp")
	m := b.stockCLI(tn)
	require.NoError(t, m.Force(1))
	_, _ = m.Close()
	for _, tc := range []struct{ sql, msg string }{
		{`UPDATE schema_migrations SET dirty = true`, "dirty at version 1"},
		{`UPDATE schema_migrations SET dirty = false; INSERT INTO schema_migrations VALUES (7, false)`, "cannot be read"},
	} {
		conn := tenantConn(t, b, tn)
		_, err := conn.Exec(tc.sql)
		require.NoError(t, err)
		b.app.Router.Forget(tn)
		status, _, got := b.req("GET", "acme.example.com", "/api/extensions", nil)
		require.Equal(t, http.StatusServiceUnavailable, status, "%v", got)
		require.Contains(t, got["error"].(map[string]any)["message"], tc.msg)
	}
	real := b.app.Provisioner.ReadVersions(context.Background(), []*controlplane.Tenant{tn}, 1)
	require.ErrorContains(t, real[0].Err, "holds 2 rows")
}

// tenantConn is a connection to database tenant t's database as its own
// role, as a tenant holding its credentials would have.
func tenantConn(t *testing.T, b *bundle, tn *controlplane.Tenant) *sql.DB {
	t.Helper()
	u, err := url.Parse(b.db.URL)
	require.NoError(t, err)
	u.User = url.UserPassword(tn.DBName, b.app.RoleSecret.Password(tn.DBName))
	u.Path = "/" + tn.DBName
	return pgtest.Open(t, u.String())
}

// The repair printed for a dirty tenant is right in each case it prints,
// and following it literally gets the tenant clean at the version its
// schema is really at: a failed up with versions that are not consecutive
// (the schema is at the previous file's version, not v-1), and a failed
// down (golang-migrate marks the target dirty while the schema stays at
// the version above it).
func TestRepairCommandsAreRight(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.create(seed())
	ctx := context.Background()
	run := func(app *App, fleet *controlplane.Fleet, op controlplane.MigrationOp) controlplane.MigrationResult {
		return fleet.Run(ctx, tenantsOf(app), op, func(controlplane.MigrationResult) {})[0]
	}
	report := func(app *App, versions []uint, res controlplane.MigrationResult) (line, status string) {
		var out bytes.Buffer
		rep := newReporter(&out, io.Discard, false, 1, versions)
		line = rep.line(res)
		out.Reset()
		require.NoError(t, rep.status(tenantsOf(app), nil))
		return line, out.String()
	}
	hasColumn := func() bool {
		var ok bool
		require.NoError(t, tenantConn(t, b, mustSlug(t, b.app, "acme-corp")).QueryRow(
			`SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'extensions' AND column_name = 'dept')`).Scan(&ok))
		return ok
	}

	// 1. Versions 1 and 5; 5 fails on its up. The schema is at 1.
	bad := map[string]string{
		"000005_dept.up.sql":   "ALTER TABLE extensions ADD COLUMN dept text;\nSELECT 1/0;\n",
		"000005_dept.down.sql": "ALTER TABLE extensions DROP COLUMN dept;\n",
	}
	app, fleet := b.fleet(withMigrations(t, bad))
	res := run(app, fleet, controlplane.MigrationOp{Kind: controlplane.MigrateUp})
	require.Error(t, res.Err)
	require.True(t, res.Dirty)
	require.Equal(t, uint(5), res.To)
	line, status := report(app, []uint{1, 5}, res)
	require.Contains(t, line, "repair: controlplane migrate tenants force 1 --tenant acme-corp && controlplane migrate tenants up --tenant acme-corp")
	require.Contains(t, status, "if an up of 5 failed: controlplane migrate tenants force 1 --tenant acme-corp")
	require.False(t, hasColumn())
	// Followed literally, with the file fixed.
	require.NoError(t, run(app, fleet, controlplane.MigrationOp{Kind: controlplane.MigrateForce, Version: 1}).Err)
	good := map[string]string{
		"000005_dept.up.sql":   "ALTER TABLE extensions ADD COLUMN dept text;\n",
		"000005_dept.down.sql": "ALTER TABLE extensions DROP COLUMN dept;\nSELECT 1/0;\n", // for step 2
	}
	app, fleet = b.fleet(withMigrations(t, good))
	res = run(app, fleet, controlplane.MigrationOp{Kind: controlplane.MigrateUp})
	require.NoError(t, res.Err)
	require.Equal(t, uint(5), res.To)
	require.True(t, hasColumn())

	// 2. 5's down fails: golang-migrate marks 1 dirty, the schema is at 5.
	res = run(app, fleet, controlplane.MigrationOp{Kind: controlplane.MigrateDown, N: 1})
	require.Error(t, res.Err)
	require.True(t, res.Dirty)
	require.Equal(t, uint(1), res.To)
	line, status = report(app, []uint{1, 5}, res)
	require.Contains(t, line, "repair: controlplane migrate tenants force 5 --tenant acme-corp && controlplane migrate tenants up --tenant acme-corp")
	require.Contains(t, status, "if a down from 5 failed: controlplane migrate tenants force 5 --tenant acme-corp")
	require.True(t, hasColumn(), "the failed down changed nothing")
	require.NoError(t, run(app, fleet, controlplane.MigrationOp{Kind: controlplane.MigrateForce, Version: 5}).Err)
	fleet.Verifier = app.Provisioner
	res = run(app, fleet, controlplane.MigrationOp{Kind: controlplane.MigrateUp})
	require.NoError(t, res.Err)
	require.Equal(t, "at latest (verified)", res.Skipped)
}
