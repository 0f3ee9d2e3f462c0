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

// stockCLI opens tenant t with golang-migrate's own postgres driver from a
// URL, as the stock `migrate -database postgres://…` CLI does: database mode
// as the tenant's role on its database, schema mode with the schema as
// search_path.
func (b *bundle) stockCLI(t *controlplane.Tenant) *migrate.Migrate {
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
	driver, err := (&mpostgres.Postgres{}).Open(u.String())
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
		b.app.Router.Forget(tn) // as after an idle timeout or a restart

		status, hdr, got := b.req("GET", "acme.example.com", "/api/extensions", nil)
		require.Equal(t, http.StatusServiceUnavailable, status, "%v", got)
		require.Equal(t, "tenant_unavailable", errCode(got))
		require.Contains(t, got["error"].(map[string]any)["message"], "migrated out of band")
		require.NotEmpty(t, hdr.Get("Retry-After"))

		app, fleet := b.fleet(migrations.Tenant)
		var out bytes.Buffer
		tenants := tenantsOf(app)
		rep := newReporter(&out, io.Discard, false, len(tenants), app.LatestTenantSchema)
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
