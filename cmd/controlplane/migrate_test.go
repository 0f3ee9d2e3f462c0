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
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// withMigrations is the real tenant history plus extra files.
func withMigrations(t *testing.T, extra map[string]string) fs.FS {
	t.Helper()
	out, err := migrations.TenantPlus(extra)
	require.NoError(t, err)
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
		rep := newReporter(&out, io.Discard, false, 3, []uint{1, 2, 3})
		require.NoError(t, rep.status(tenantsOf(app), nil))
		require.Contains(t, out.String(), "3 tenants, latest version 3: 2 at latest, 0 behind, 1 dirty")
		require.Contains(t, out.String(), "repair gamma: if an up of 3 failed: controlplane migrate tenants force 2 --tenant gamma && controlplane migrate tenants up --tenant gamma")

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
		gamma := pgtest.Open(t, b.tenantURL(mustSlug(t, app, "gamma")))
		_, err := gamma.Exec(`DELETE FROM extensions`)
		require.NoError(t, err)
		require.NoError(t, gamma.Close())
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
	run := b.cli

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
	require.Equal(t, "at latest (verified)", line["skipped"])
	require.Nil(t, line["error"])

	out, err = run("migrate", "tenants", "up", "--tenant", "beta", "--no-verify")
	require.NoError(t, err)
	require.Contains(t, out, "skipped: at latest\n")

	out, err = run("migrate", "tenants", "status", "--verify")
	require.NoError(t, err)
	require.Contains(t, out, "verified: 0 drifted from the catalog")

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

// migrateAudit is tenant id's tenant.migrate audit entries, newest first.
func (b *bundle) migrateAudit(id int64) []map[string]any {
	b.t.Helper()
	_, audit := b.do("GET", fmt.Sprintf("/api/audit?tenant=%d&limit=100", id), nil)
	var out []map[string]any
	for _, e := range audit["data"].([]any) {
		if entry := e.(map[string]any); entry["action"] == "tenant.migrate" {
			out = append(out, entry["diff"].(map[string]any))
		}
	}
	return out
}

// Outcomes are recorded many per statement, each tenant's its own: in a
// batch where one tenant fails, exactly that one is recorded as failed.
func TestFleetBatchRecordsEachTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	slugs := []string{"t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	for _, s := range slugs {
		b.create(map[string]any{"name": s, "slug": s, "domain": s + ".example.com"})
	}
	status, _, _ := b.req("POST", "t5.example.com", "/api/extensions", map[string]any{"number": "666"})
	require.Equal(t, http.StatusCreated, status)
	ctx := context.Background()

	app, fleet := b.fleet(withMigrations(t, v2))
	results := fleet.Run(ctx, tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {})
	for _, r := range results {
		require.NoError(t, r.Err)
	}

	// Locks 3 per statement, every outcome in one record statement.
	app, fleet = b.fleet(withMigrations(t, merge(v2, v3)))
	fleet.LockBatch, fleet.RecordBatch, fleet.RecordDelay = 3, 100, time.Second
	results = fleet.Run(ctx, tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {})
	require.Len(t, results, len(slugs))
	for _, r := range results {
		if r.Tenant.Slug == "t5" {
			require.ErrorContains(t, r.Err, "extensions_no_666")
			require.True(t, r.Dirty)
			require.Equal(t, uint(3), r.To)
			continue
		}
		require.NoError(t, r.Err, r.Tenant.Slug)
		require.Equal(t, controlplane.MigrationOutcome{From: 2, To: 3}, controlplane.MigrationOutcome{From: r.From, To: r.To, Dirty: r.Dirty})
	}
	for _, s := range slugs {
		tn := mustSlug(t, app, s)
		_, got := b.do("GET", fmt.Sprintf("/api/tenants/%d", tn.ID), nil)
		require.EqualValues(t, 3, got["schema_version"], s)
		require.NotNil(t, got["migrated_at"], s)
		audit := b.migrateAudit(tn.ID)
		require.Len(t, audit, 2, s) // 1 → 2, then this run
		require.Equal(t, map[string]any{"before": 2.0, "after": 3.0}, audit[0]["schema_version"], s)
		if s == "t5" {
			require.Equal(t, true, got["schema_dirty"])
			require.Contains(t, got["migration_error"], "extensions_no_666")
			require.Equal(t, map[string]any{"before": false, "after": true}, audit[0]["schema_dirty"])
			require.Contains(t, audit[0]["migration_error"].(map[string]any)["after"], "extensions_no_666")
			require.True(t, tn.SchemaDirty, "the cache knows")
			continue
		}
		require.Equal(t, false, got["schema_dirty"], s)
		require.Empty(t, got["migration_error"], s)
		require.NotContains(t, audit[0], "schema_dirty", s)
		require.Equal(t, uint(3), tn.SchemaVersion, "the cache knows")
	}
	_, got := b.do("GET", "/api/tenants?dirty=true", nil)
	require.EqualValues(t, 1, got["total"])
}

// RecordMigrations: one statement for distinct tenants, a tenant listed
// twice recorded in order, an unknown one reported as not found.
func TestRecordMigrations(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.twoTenants()
	found, err := b.app.Store.RecordMigrations(context.Background(), []controlplane.MigrationRecord{
		{TenantID: 1, Version: 1, Dirty: true, Error: "boom"},
		{TenantID: 999, Version: 5},
		{TenantID: 2, Version: 1},
		{TenantID: 1, Version: 1},
	})
	require.NoError(t, err)
	require.Equal(t, []bool{true, false, true, true}, found)
	_, got := b.do("GET", "/api/tenants/1", nil)
	require.Equal(t, false, got["schema_dirty"])
	require.Empty(t, got["migration_error"])
	// Audited: the failure (a clean run at the same version is not).
	audit := b.migrateAudit(1)
	require.Len(t, audit, 1)
	require.Equal(t, map[string]any{"before": "", "after": "boom"}, audit[0]["migration_error"])
	require.Empty(t, b.migrateAudit(2), "nothing changed for tenant 2")
	require.Equal(t, controlplane.NotFound, controlplane.ErrorCode(b.app.Store.RecordMigration(context.Background(), 999, 1, false, "")))
}

// A tenant whose lifecycle lock is held elsewhere (being provisioned,
// deleted, or migrated by another runner) does not hold the others up: it
// is waited for at the end of the run, then migrated.
func TestFleetWaitsForALockedTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	for _, s := range []string{"a", "b", "c", "d"} {
		b.create(map[string]any{"name": s, "slug": s, "domain": s + ".example.com"})
	}
	app, fleet := b.fleet(withMigrations(t, v2))
	unlock, err := b.app.Store.LockTenant(context.Background(), mustSlug(t, app, "b").ID)
	require.NoError(t, err)
	reported := make(chan string, 4)
	var results []controlplane.MigrationResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		results = fleet.Run(context.Background(), tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(r controlplane.MigrationResult) { reported <- r.Tenant.Slug })
	}()
	var first []string
	for range 3 {
		select {
		case s := <-reported:
			first = append(first, s)
		case <-time.After(30 * time.Second):
			t.Fatal("the unlocked tenants were not migrated while b was locked")
		}
	}
	require.ElementsMatch(t, []string{"a", "c", "d"}, first)
	select {
	case s := <-reported:
		t.Fatalf("%s reported while b is locked", s)
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	<-done
	require.Equal(t, "b", <-reported)
	for _, r := range results {
		require.NoError(t, r.Err, r.Tenant.Slug)
		require.Equal(t, uint(2), r.To, r.Tenant.Slug)
	}
}

// migrate catalog goto V and force V, as golang-migrate's own: goto runs
// the migrations between (down, then up again), force only records V.
func TestMigrateCatalogGotoAndForce(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	latest, err := migrations.Latest(migrations.Catalog)
	require.NoError(t, err)
	out, err := b.cli("migrate", "catalog", "goto", fmt.Sprint(latest-1))
	require.NoError(t, err, out)
	require.Equal(t, fmt.Sprintf("catalog at version %d (dirty: false)\n", latest-1), out)
	out, err = b.cli("migrate", "catalog", "goto", fmt.Sprint(latest))
	require.NoError(t, err, out)
	require.Equal(t, fmt.Sprintf("catalog at version %d (dirty: false)\n", latest), out)
	_, err = pgtest.Open(t, b.db.URL).Exec(`UPDATE schema_migrations SET dirty = true`)
	require.NoError(t, err)
	out, err = b.cli("migrate", "catalog", "force", fmt.Sprint(latest))
	require.NoError(t, err, out)
	require.Equal(t, fmt.Sprintf("catalog at version %d (dirty: false)\n", latest), out)
	_, err = b.cli("migrate", "catalog", "goto", "x")
	require.ErrorContains(t, err, "version number")
}

// --max-failures N stops a rollout whose migration fails: once N tenants
// failed no tenant is started, the ones left are reported not started,
// and the summary says why it stopped.
func TestMigrateStopsAfterMaxFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "TENANT_SPARE_DATABASES=0")
	for i := range 12 {
		b.create(map[string]any{"name": fmt.Sprint("T", i), "slug": fmt.Sprint("t-", i), "domain": fmt.Sprintf("t%d.example.com", i), "isolation": "schema"})
	}
	bad := map[string]string{
		"000002_bad.up.sql":   "SELECT no_such_function();\n",
		"000002_bad.down.sql": "SELECT 1;\n",
	}
	app, fleet := b.fleet(withMigrations(t, bad))
	fleet.Concurrency = 1
	fleet.LockBatch = 1
	// Outcomes reach the reporter a batch later; a long batch delay lets
	// the failing migration (a few ms a tenant) run far ahead of them, as
	// it did on a fast machine when the reporter, not the fleet, counted.
	fleet.RecordDelay = 500 * time.Millisecond
	fleet.MaxFailures = 2
	var out bytes.Buffer
	rep := newReporter(&out, io.Discard, false, 12, []uint{1, 2})
	err := rep.run(context.Background(), fleet, tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp})
	require.Error(t, err)
	require.Contains(t, out.String(), "stopped after 2 failures (--max-failures 2)", out.String())
	require.Equal(t, 2, rep.failed, "one worker: no tenant started after the second failure")
	require.Contains(t, out.String(), "10 not started (interrupted)", out.String())
}
