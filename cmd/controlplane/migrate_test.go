package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb"
)

// withMigrations is the real tenant history plus extra files.
func withMigrations(t *testing.T, extra map[string]string) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	entries, err := fs.ReadDir(migrations.Tenant, ".")
	require.NoError(t, err)
	for _, e := range entries {
		data, err := fs.ReadFile(migrations.Tenant, e.Name())
		require.NoError(t, err)
		out[e.Name()] = &fstest.MapFile{Data: data}
	}
	for name, sql := range extra {
		out[name] = &fstest.MapFile{Data: []byte(sql)}
	}
	return out
}

// v2 adds a column; v3 adds a rule that one tenant's data breaks.
var (
	v2 = map[string]string{
		"000002_extension_department.up.sql":   "ALTER TABLE extensions ADD COLUMN department text NOT NULL DEFAULT '';\n",
		"000002_extension_department.down.sql": "ALTER TABLE extensions DROP COLUMN department;\n",
	}
	v3 = map[string]string{
		"000003_no_666.up.sql":   "ALTER TABLE extensions ADD CONSTRAINT extensions_no_666 CHECK (number <> '666');\n",
		"000003_no_666.down.sql": "ALTER TABLE extensions DROP CONSTRAINT extensions_no_666;\n",
	}
)

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// fleet opens the core of a control plane (as `controlplane migrate` does)
// with the given tenant migrations.
func (b *bundle) fleet(src fs.FS) (*App, *controlplane.Fleet) {
	b.t.Helper()
	app, err := openCore(context.Background(), b.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), src)
	require.NoError(b.t, err)
	b.t.Cleanup(app.Close)
	return app, &controlplane.Fleet{Migrator: app.Provisioner, Catalog: app.Store, Latest: app.LatestTenantSchema, Concurrency: 2}
}

func tenantsOf(app *App) []*controlplane.Tenant {
	var ts []*controlplane.Tenant
	app.Store.Cache().Each(func(t *controlplane.Tenant) { ts = append(ts, t) })
	controlplane.SortBySlug(ts)
	return ts
}

func TestFleetMigration(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		b.create(map[string]any{"name": "Gamma", "slug": "gamma", "domain": "gamma.example.net"})
		status, _, _ := b.req("POST", "", "/t/gamma/api/extensions", map[string]any{"number": "666"})
		require.Equal(t, http.StatusCreated, status)
		ctx := context.Background()

		// Up to v2 everywhere.
		app, fleet := b.fleet(withMigrations(t, v2))
		results := fleet.Run(ctx, tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {})
		require.Len(t, results, 3)
		for _, r := range results {
			require.NoError(t, r.Err, r.Tenant.Slug)
			require.Equal(t, uint(1), r.From)
			require.Equal(t, uint(2), r.To)
		}
		// The catalog knows, and the new column exists in each tenant.
		_, got := b.do("GET", "/api/tenants?schema_version_lt=2", nil)
		require.EqualValues(t, 0, got["total"])
		_, got = b.do("GET", "/api/tenants/3", nil)
		require.EqualValues(t, 2, got["schema_version"])
		require.NotNil(t, got["migrated_at"])

		// A no-op run opens nothing.
		app, fleet = b.fleet(withMigrations(t, v2))
		for _, r := range fleet.Run(ctx, tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {}) {
			require.Equal(t, "at latest", r.Skipped)
			require.Zero(t, r.Duration)
		}

		// v3 fails on gamma only: the others go on, gamma is dirty.
		app, fleet = b.fleet(withMigrations(t, merge(v2, v3)))
		var reported int
		results = fleet.Run(ctx, tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) { reported++ })
		require.Equal(t, 3, reported)
		bySlug := map[string]controlplane.MigrationResult{}
		for _, r := range results {
			bySlug[r.Tenant.Slug] = r
		}
		require.NoError(t, bySlug["acme-corp"].Err)
		require.NoError(t, bySlug["beta"].Err)
		require.Equal(t, uint(3), bySlug["beta"].To)
		require.Error(t, bySlug["gamma"].Err)
		require.True(t, bySlug["gamma"].Dirty)
		_, got = b.do("GET", "/api/tenants?dirty=true", nil)
		require.EqualValues(t, 1, got["total"])
		dirty := got["data"].([]any)[0].(map[string]any)
		require.Equal(t, "gamma", dirty["slug"])
		require.Equal(t, true, dirty["schema_dirty"])
		require.Contains(t, dirty["migration_error"], "extensions_no_666")

		// status names it with the exact repair.
		var out bytes.Buffer
		rep := newReporter(&out, io.Discard, false, 3, 3)
		require.NoError(t, rep.status(tenantsOf(app)))
		require.Contains(t, out.String(), "3 tenants, latest version 3: 2 at latest, 0 behind, 1 dirty")
		require.Contains(t, out.String(), "repair gamma: controlplane migrate tenants force 2 --tenant gamma && controlplane migrate tenants up --tenant gamma")

		// Nothing is forced silently: a plain re-run still fails on gamma.
		results = fleet.Run(ctx, []*controlplane.Tenant{mustSlug(t, app, "gamma")}, controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {})
		require.Error(t, results[0].Err)
		require.Contains(t, results[0].Err.Error(), "Dirty")

		// The repair: force the previous version, fix the data, migrate up.
		results = fleet.Run(ctx, []*controlplane.Tenant{mustSlug(t, app, "gamma")}, controlplane.MigrationOp{Kind: controlplane.MigrateForce, Version: 2}, func(controlplane.MigrationResult) {})
		require.NoError(t, results[0].Err)
		require.False(t, results[0].Dirty)
		// (The server under test knows version 1 only and refuses gamma's
		// traffic now, as designed: fix the data directly.)
		status, _, _ = b.req("DELETE", "", "/t/gamma/api/extensions/1", nil)
		require.Equal(t, http.StatusServiceUnavailable, status)
		db, release, err := b.app.Router.Acquire(mustSlug(t, app, "gamma"))
		require.NoError(t, err)
		require.NoError(t, db.Exec(`DELETE FROM `+tenantdb.Table(db, "extensions")).Error)
		release()
		results = fleet.Run(ctx, []*controlplane.Tenant{mustSlug(t, app, "gamma")}, controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {})
		require.NoError(t, results[0].Err)
		require.Equal(t, uint(3), results[0].To)

		_, got = b.do("GET", "/api/migrations/status", nil)
		require.Equal(t, map[string]any{"3": 3.0}, got["versions"])
		require.EqualValues(t, 0, got["dirty"])

		// The trail has gamma's runs, newest first: 2 → 3, the forced 3 → 2,
		// the refused re-run, the failure, 1 → 2.
		_, audit := b.do("GET", "/api/audit?tenant=3", nil)
		var migrate []map[string]any
		for _, e := range audit["data"].([]any) {
			if entry := e.(map[string]any); entry["action"] == "tenant.migrate" {
				migrate = append(migrate, entry["diff"].(map[string]any))
			}
		}
		require.Len(t, migrate, 5)
		require.Equal(t, map[string]any{"before": 2.0, "after": 3.0}, migrate[0]["schema_version"])
		require.Equal(t, map[string]any{"before": 3.0, "after": 2.0}, migrate[1]["schema_version"])
		require.Contains(t, migrate[2]["migration_error"].(map[string]any)["after"], "Dirty database version 3")
		require.Contains(t, migrate[3]["migration_error"].(map[string]any)["after"], "extensions_no_666")
		require.Equal(t, map[string]any{"before": false, "after": true}, migrate[3]["schema_dirty"])
		require.Equal(t, map[string]any{"before": 1.0, "after": 2.0}, migrate[4]["schema_version"])

		// Down one step, on one tenant.
		results = fleet.Run(ctx, []*controlplane.Tenant{mustSlug(t, app, "beta")}, controlplane.MigrationOp{Kind: controlplane.MigrateDown, N: 1}, func(controlplane.MigrationResult) {})
		require.NoError(t, results[0].Err)
		require.Equal(t, uint(2), results[0].To)
	})
}

func mustSlug(t *testing.T, app *App, slug string) *controlplane.Tenant {
	tn, ok := app.Store.Cache().BySlug(slug)
	require.True(t, ok, slug)
	return tn
}

// Two runners at once migrate each tenant exactly once, both succeed.
func TestConcurrentFleetRuns(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	for _, s := range []string{"a", "b", "c", "d"} {
		b.create(map[string]any{"name": s, "slug": s, "domain": s + ".example.com"})
	}
	var wg sync.WaitGroup
	all := make([][]controlplane.MigrationResult, 2)
	for i := range all {
		app, fleet := b.fleet(withMigrations(t, v2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			all[i] = fleet.Run(context.Background(), tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {})
		}()
	}
	wg.Wait()
	migrated := map[string]int{}
	for _, results := range all {
		for _, r := range results {
			require.NoError(t, r.Err)
			require.Equal(t, uint(2), r.To)
			if r.From == 1 {
				migrated[r.Tenant.Slug]++
			}
		}
	}
	require.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1, "d": 1}, migrated, "each tenant migrated by one runner")
}

// A tenant migrated by a newer release is refused rather than misread.
func TestTenantAheadOfBinaryIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.create(seed())
	require.NoError(t, b.app.Store.RecordMigration(context.Background(), 1, 99, false, ""))
	status, hdr, got := b.req("GET", "acme.example.com", "/api/extensions", nil)
	require.Equal(t, http.StatusServiceUnavailable, status, "%v", got)
	require.Equal(t, "tenant_unavailable", errCode(got))
	require.Contains(t, got["error"].(map[string]any)["message"], "newer than this server knows")
	require.NotEmpty(t, hdr.Get("Retry-After"))
}

// The CLI end to end: status, dry-run, a no-op run, JSON, exit codes.
func TestMigrateCLI(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.twoTenants()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := newRoot()
		root.SetOut(&out)
		root.SetErr(io.Discard)
		root.SetArgs(append(args, "--database-url", b.db.URL, "--tenant-db-prefix", b.db.Prefix, "--log-level", "error"))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}

	out, err := run("migrate", "tenants", "status")
	require.NoError(t, err)
	require.Contains(t, out, "2 tenants, latest version 1: 2 at latest, 0 behind, 0 dirty")

	out, err = run("migrate", "tenants", "up", "--all", "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "acme-corp")
	require.Contains(t, out, "skip: at latest")

	out, err = run("migrate", "tenants", "up", "--tenant", "beta", "--json")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &line))
	require.Equal(t, "beta", line["tenant"])
	require.Equal(t, "at latest", line["skipped"])
	require.Nil(t, line["error"])

	out, err = run("migrate", "tenants", "version", "--all")
	require.NoError(t, err, out)
	require.Contains(t, out, "1 → 1")
	require.Contains(t, out, "2 tenants")

	_, err = run("migrate", "tenants", "up")
	require.ErrorAs(t, err, new(usageError), "no selection")
	_, err = run("migrate", "tenants", "up", "--tenant", "nobody")
	require.ErrorAs(t, err, new(usageError))
	_, err = run("migrate", "tenants", "sideways", "--all")
	require.ErrorAs(t, err, new(usageError))

	out, err = run("migrate", "catalog", "version")
	require.NoError(t, err)
	latest, err := migrations.Latest(migrations.Catalog)
	require.NoError(t, err)
	require.Contains(t, out, fmt.Sprintf("catalog at version %d (dirty: false)", latest))
}

func TestRotateRolePasswords(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.twoTenants()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"tenants", "rotate-role-passwords", "--database-url", b.db.URL, "--tenant-db-prefix", b.db.Prefix, "--log-level", "error"})
	require.NoError(t, root.ExecuteContext(context.Background()))
	require.Equal(t, "2 tenant roles updated, 0 failed\n", out.String())
	status, _, _ := b.req("GET", "acme.example.com", "/api/extensions", nil)
	require.Equal(t, http.StatusOK, status)
}

// cancelAfterFirst is a Migrator that cancels the run once its first
// tenant is migrated, as a Ctrl-C during that tenant would.
type cancelAfterFirst struct {
	controlplane.Migrator
	once   sync.Once
	cancel context.CancelFunc
}

func (m *cancelAfterFirst) Migrate(ctx context.Context, t *controlplane.Tenant, op controlplane.MigrationOp) controlplane.MigrationOutcome {
	out := m.Migrator.Migrate(ctx, t, op)
	m.once.Do(m.cancel)
	return out
}

// Ctrl-C: no tenant is started after the cancel, the ones running finish
// and are recorded, and the run reports the rest as not started.
func TestFleetRunStopsDispatchingOnCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		b.create(map[string]any{"name": s, "slug": s, "domain": s + ".example.com"})
	}
	app, fleet := b.fleet(withMigrations(t, v2))
	fleet.Concurrency = 1
	ctx, cancel := context.WithCancel(context.Background())
	fleet.Migrator = &cancelAfterFirst{Migrator: fleet.Migrator, cancel: cancel}
	var reported int
	results := fleet.Run(ctx, tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) { reported++ })
	var done, notStarted int
	for _, r := range results {
		switch r.Skipped {
		case "":
			require.NoError(t, r.Err)
			require.Equal(t, uint(2), r.To)
			done++
			// Recorded in the catalog although the run was cancelled.
			_, got := b.do("GET", fmt.Sprintf("/api/tenants/%d", r.Tenant.ID), nil)
			require.EqualValues(t, 2, got["schema_version"], r.Tenant.Slug)
		case "interrupted before it started":
			notStarted++
		}
	}
	require.GreaterOrEqual(t, done, 1)
	require.LessOrEqual(t, done, 2, "at most the one running and the one already handed over")
	require.Equal(t, done, reported)
	require.Equal(t, 5, done+notStarted)
}
