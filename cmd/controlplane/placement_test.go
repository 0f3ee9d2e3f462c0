package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/servers"
)

// threeServers is a control plane whose tenants may live on three
// PostgreSQL clusters: the shared test server (default) and two more,
// registered as pg-b and pg-c.
type threeServers struct {
	*bundle
	clusters map[string]*pgtest.Cluster
}

// setupThreeServers is a control plane on the test server and the two
// clusters the tests of this binary share (sharedClusters): for a test
// that neither stops them nor changes their settings. One that does
// takes setupServersOn(t, ownClusters(t), ...).
func setupThreeServers(t *testing.T, capacities map[string]int, env ...string) *threeServers {
	t.Helper()
	return setupServersOn(t, sharedClusters(t), capacities, env...)
}

// sharedClusters are pg-b and pg-c as every test of this binary shares
// them (pgtest.Shared): each test has its own catalog and tenant names
// there, and starting two clusters per test cost about four seconds of
// CPU each time.
func sharedClusters(t *testing.T) map[string]*pgtest.Cluster {
	t.Helper()
	c := pgtest.Shared(t, "pg-b", "pg-c")
	return map[string]*pgtest.Cluster{"pg-b": c[0], "pg-c": c[1]}
}

// ownClusters starts a pg-b and a pg-c of the test's own, side by side,
// for a test that stops one of them.
func ownClusters(t *testing.T) map[string]*pgtest.Cluster {
	t.Helper()
	c := pgtest.NewClusters(t, 2)
	return map[string]*pgtest.Cluster{"pg-b": c[0], "pg-c": c[1]}
}

// setupServersOn is setupThreeServers on clusters that several tests
// share: each has its own catalog, and tenant names (its prefix) there.
func setupServersOn(t *testing.T, clusters map[string]*pgtest.Cluster, capacities map[string]int, env ...string) *threeServers {
	t.Helper()
	b := setup(t, controlplane.IsolationDatabase, append([]string{"TENANT_SPARE_DATABASES=0"}, env...)...)
	ts := &threeServers{bundle: b, clusters: clusters}
	status, got := b.do("PATCH", "/api/servers/default", map[string]any{"capacity": capacities["default"]})
	require.Equal(t, http.StatusOK, status, "%v", got)
	for _, name := range []string{"pg-b", "pg-c"} {
		status, got := b.do("POST", "/api/servers", map[string]any{"name": name, "url": ts.clusters[name].URL, "capacity": capacities[name]})
		require.Equal(t, http.StatusCreated, status, "%v", got)
	}
	return ts
}

// placed is tenant i's create body, naming server if not "".
func placed(i int, isolation, server string) map[string]any {
	body := tenantBody(fmt.Sprintf("t-%d", i), controlplane.Isolation(isolation))
	if server != "" {
		body["server"] = server
	}
	return body
}

func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

// onServer says whether tenant's database or schema exists on the cluster
// at url (the default server: the shared test server).
func (ts *threeServers) onServer(url string, tenant map[string]any) bool {
	ts.t.Helper()
	db := pgtest.Open(ts.t, url)
	defer db.Close()
	var n int
	q := `SELECT count(*) FROM pg_database WHERE datname = $1`
	if tenant["isolation"] == "schema" {
		q = `SELECT count(*) FROM pg_namespace WHERE nspname = $1`
	}
	require.NoError(ts.t, db.QueryRow(q, tenant["db_name"]).Scan(&n))
	return n == 1
}

func (ts *threeServers) serverURL(name string) string {
	if name == controlplane.DefaultServer {
		return ts.cfg.TenantDatabaseURL.Value()
	}
	return ts.clusters[name].URL
}

// TestPlacementSpreadsTenantsAcrossServers: 60 concurrent creates with no
// server named land by the policy (least loaded by tenants ÷ capacity),
// never past a server's capacity; each tenant's database or schema is on
// its server and nowhere else, and its routed requests reach it there.
func TestPlacementSpreadsTenantsAcrossServers(t *testing.T) {
	t.Parallel()
	caps := map[string]int{"default": 20, "pg-b": 20, "pg-c": 40}
	ts := setupThreeServers(t, caps)
	const n = 60
	tenants := make([]map[string]any, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			iso := "database"
			if i%2 == 1 {
				iso = "schema"
			}
			status, got := ts.do("POST", "/api/tenants", placed(i, iso, ""))
			if assert.Equal(t, http.StatusCreated, status, "%v", got) {
				tenants[i] = got
			}
		}()
	}
	wg.Wait()
	count := map[string]int{}
	for _, tn := range tenants {
		require.NotNil(t, tn)
		count[tn["server"].(string)]++
	}
	// Equal load (tenants ÷ capacity) is 15, 15 and 30; creates choosing at
	// once (8 in flight) from the same counts may land a few off.
	for name, want := range map[string]int{"default": 15, "pg-b": 15, "pg-c": 30} {
		assert.InDelta(t, want, count[name], 5, "tenants on %s: %v", name, count)
		assert.LessOrEqual(t, count[name], caps[name], "over capacity: %v", count)
	}
	for _, tn := range tenants[:12] {
		server := tn["server"].(string)
		for name := range caps {
			assert.Equal(t, name == server, ts.onServer(ts.serverURL(name), tn), "tenant %v (on %s) on %s", tn["slug"], server, name)
		}
		host := tn["domain"].(string)
		status, _, got := ts.req("POST", host, "/api/extensions", map[string]any{"number": "1001", "name": "Desk of " + tn["slug"].(string)})
		require.Equal(t, http.StatusCreated, status, "%v", got)
		status, _, got = ts.req("GET", host, "/api/extensions", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Len(t, got["data"], 1)
	}
	status, got := ts.do("GET", "/api/tenants?server=pg-c&limit=500", nil)
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, count["pg-c"], got["total"])
	status, got = ts.do("GET", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, count["pg-b"], got["database_tenants"].(float64)+got["schema_tenants"].(float64))
}

// TestPlacementRules: a named server is honoured; an unknown one is a 422
// naming server; a draining server takes no new tenant (named: 409); a
// full fleet answers 409 no_capacity naming each server's state; a
// tenant's server cannot be changed by an update.
func TestPlacementRules(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 100, "pg-b": 100, "pg-c": 2})

	got := ts.create(placed(1, "database", "pg-c"))
	require.Equal(t, "pg-c", got["server"])
	require.True(t, ts.onServer(ts.clusters["pg-c"].URL, got))

	status, got := ts.do("POST", "/api/tenants", placed(2, "database", "pg-x"))
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
	require.Contains(t, fields(got), "server")

	status, got = ts.do("PUT", "/api/tenants/"+fmt.Sprint(ts.create(placed(3, "schema", "pg-b"))["id"]), placed(3, "schema", "pg-c"))
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
	require.Contains(t, fields(got), "server")

	status, _ = ts.do("PATCH", "/api/servers/pg-b", map[string]any{"status": "draining"})
	require.Equal(t, http.StatusOK, status)
	for i := 10; i < 16; i++ {
		got := ts.create(placed(i, "schema", ""))
		require.NotEqual(t, "pg-b", got["server"], "a draining server took a new tenant")
	}
	status, got = ts.do("POST", "/api/tenants", placed(20, "schema", "pg-b"))
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Contains(t, errMessage(got), "draining")

	// pg-c holds 1 of 2; a second named create fills it, a third is refused.
	ts.create(placed(21, "schema", "pg-c"))
	status, got = ts.do("POST", "/api/tenants", placed(22, "schema", "pg-c"))
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Equal(t, "no_capacity", errCode(got))

	status, _ = ts.do("PATCH", "/api/servers/default", map[string]any{"status": "disabled"})
	require.Equal(t, http.StatusOK, status)
	status, got = ts.do("POST", "/api/tenants", placed(23, "schema", ""))
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Equal(t, "no_capacity", errCode(got))
	for _, want := range []string{"default", "disabled", "pg-b", "draining", "pg-c", "full"} {
		require.Contains(t, errMessage(got), want)
	}
}

// TestServerOutageTouchesOnlyItsTenants: with one of three servers stopped,
// the other servers' tenants keep being served with no error while the
// stopped server's get 503 with Retry-After, promptly; placement skips it
// once its health check fails; when it returns, its tenants are served
// again without a restart.
func TestServerOutageTouchesOnlyItsTenants(t *testing.T) {
	t.Parallel()
	ts := setupServersOn(t, ownClusters(t), map[string]int{"default": 100, "pg-b": 100, "pg-c": 100})
	byServer := map[string][]string{} // server → hosts
	for i, server := range []string{"default", "pg-b", "pg-c", "default", "pg-b", "pg-c"} {
		iso := []string{"database", "schema"}[i%2]
		got := ts.create(placed(i, iso, server))
		host := got["domain"].(string)
		status, _, body := ts.req("POST", host, "/api/extensions", map[string]any{"number": "1001", "name": "Desk"})
		require.Equal(t, http.StatusCreated, status, "%v", body)
		byServer[server] = append(byServer[server], host)
	}
	read := func(host string) (int, string) {
		status, hdr, _ := ts.req("GET", host, "/api/extensions", nil)
		return status, hdr.Get("Retry-After")
	}

	ts.clusters["pg-b"].Stop()
	ts.app.TenantServers.Check(context.Background(), []string{"default", "pg-b", "pg-c"})
	require.Error(t, ts.app.TenantServers.Health("pg-b"))
	for range 5 {
		for _, server := range []string{"default", "pg-c"} {
			for _, host := range byServer[server] {
				status, _ := read(host)
				require.Equal(t, http.StatusOK, status, "%s on %s while pg-b is down", host, server)
			}
		}
		for _, host := range byServer["pg-b"] {
			start := time.Now()
			status, retry := read(host)
			require.Equal(t, http.StatusServiceUnavailable, status, host)
			require.NotEmpty(t, retry)
			require.Less(t, time.Since(start), ts.cfg.TenantAcquireTimeout+2*time.Second)
		}
	}
	for i := 30; i < 36; i++ {
		got := ts.create(placed(i, "schema", ""))
		require.NotEqual(t, "pg-b", got["server"], "placement chose a server that does not answer")
	}
	status, got := ts.do("POST", "/api/tenants", placed(40, "schema", "pg-b"))
	require.Equal(t, http.StatusServiceUnavailable, status, "%v", got)

	ts.clusters["pg-b"].Start()
	require.Eventually(t, func() bool {
		for _, host := range byServer["pg-b"] {
			if status, _ := read(host); status != http.StatusOK {
				return false
			}
		}
		return true
	}, 30*time.Second, 200*time.Millisecond, "pg-b's tenants are served again without a restart")
	ts.app.TenantServers.Check(context.Background(), []string{"pg-b"})
	require.NoError(t, ts.app.TenantServers.Health("pg-b"))
}

// TestFleetMigrationWithAServerDown: with one of three servers stopped,
// migrate tenants up --all migrates the other servers' tenants, fails the
// stopped server's at once naming it, and exits non-zero; --server selects
// one server's tenants.
func TestFleetMigrationWithAServerDown(t *testing.T) {
	t.Parallel()
	ts := setupServersOn(t, ownClusters(t), map[string]int{"default": 100, "pg-b": 100, "pg-c": 100})
	onServer := map[string]string{} // slug → server
	for i, server := range []string{"default", "pg-b", "pg-c", "default", "pg-b", "pg-c"} {
		got := ts.create(placed(i, []string{"database", "schema"}[i%2], server))
		onServer[got["slug"].(string)] = server
	}
	run := ts.cli
	_, err := run("migrate", "tenants", "down", "1", "--all")
	require.NoError(t, err)

	ts.clusters["pg-b"].Stop()
	start := time.Now()
	out, err := run("migrate", "tenants", "up", "--all", "--json")
	require.ErrorContains(t, err, "2 of 6 tenants failed, on pg-b (2)", "a run with a server down exits non-zero, naming it")
	require.Less(t, time.Since(start), time.Minute, "the stopped server did not stall the run")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(onServer)+1, out)
	var summary struct {
		Servers map[string]struct{ Tenants, Migrated, Failed int }
	}
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &summary))
	require.Equal(t, 2, summary.Servers["pg-b"].Failed, out)
	require.Equal(t, 2, summary.Servers["pg-c"].Migrated, out)
	for _, l := range lines[:len(onServer)] {
		var line map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &line))
		slug := line["tenant"].(string)
		require.Equal(t, onServer[slug], line["server"], "%v", line)
		if onServer[slug] == "pg-b" {
			require.Contains(t, line["error"], "pg-b", "%s: %v", slug, line)
		} else {
			require.Nil(t, line["error"], "%s on %s: %v", slug, onServer[slug], line)
			require.EqualValues(t, 1, line["to"], "%s: %v", slug, line)
		}
	}

	out, err = run("migrate", "tenants", "status", "--server", "pg-c", "--json")
	require.NoError(t, err)
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var line map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &line))
		if slug, ok := line["tenant"].(string); ok {
			require.Equal(t, "pg-c", onServer[slug], out)
			require.Equal(t, "pg-c", line["server"], out)
			n++
		}
	}
	require.Equal(t, 2, n, out)

	// The text status lists the fleet server by server, with each server's
	// counts: pg-b's tenants are the ones whose migration failed.
	out, err = run("migrate", "tenants", "status")
	require.NoError(t, err)
	require.Contains(t, out, "  on pg-b: 2 tenants: 0 at latest, 0 behind, 0 dirty, 2 failed", out)
	require.Contains(t, out, "  on pg-c: 2 tenants: 2 at latest, 0 behind,", out)
	var servers []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && onServer[f[0]] != "" {
			require.Equal(t, onServer[f[0]], f[2], l)
			if len(servers) == 0 || servers[len(servers)-1] != f[2] {
				servers = append(servers, f[2])
			}
		}
	}
	require.Equal(t, []string{"default", "pg-b", "pg-c"}, servers, "tenants grouped by server:\n%s", out)
}

// TestFleetMigrationSlowServerHoldsOnlyItsTenants: --concurrency is per
// server. With one worker, a server whose migrations hang (here: a
// session holds its tenants' migrations tables locked, as a long
// transaction or a stuck server would) holds up only its own tenants: the
// other servers' tenants are all migrated meanwhile, and the slow
// server's finish once it moves again.
func TestFleetMigrationSlowServerHoldsOnlyItsTenants(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 100, "pg-b": 100, "pg-c": 100})
	onServer := map[string]string{} // slug → server
	var slow []string               // pg-b's databases
	for i, server := range []string{"default", "pg-b", "pg-c", "default", "pg-b", "pg-c"} {
		iso := []string{"database", "schema"}[i%2]
		if server == "pg-b" {
			iso = "database"
		}
		got := ts.create(placed(i, iso, server))
		onServer[got["slug"].(string)] = server
		if server == "pg-b" {
			slow = append(slow, got["db_name"].(string))
		}
	}
	_, err := ts.cli("migrate", "tenants", "down", "1", "--all")
	require.NoError(t, err)
	latest := ts.app.LatestTenantSchema
	var tenants []*controlplane.Tenant
	require.Eventually(t, func() bool { // the down reaches this process's catalog cache
		tenants = tenants[:0]
		behind := true
		ts.app.Store.Cache().Each(func(tn *controlplane.Tenant) {
			tenants = append(tenants, tn)
			behind = behind && tn.SchemaVersion == latest-1
		})
		return behind && len(tenants) == len(onServer)
	}, 10*time.Second, 20*time.Millisecond)
	controlplane.SortBySlug(tenants) // t-1, a pg-b tenant, comes second

	ctx := context.Background()
	var held []pgx.Tx
	for _, db := range slow {
		conn, err := pgx.Connect(ctx, pgtest.WithDatabase(t, ts.clusters["pg-b"].URL, db))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE`)
		require.NoError(t, err)
		held = append(held, tx)
	}

	fleet := &controlplane.Fleet{Migrator: ts.app.TenantServers, Catalog: ts.app.Store, Latest: latest, Concurrency: 1}
	reported := make(chan controlplane.MigrationResult, len(tenants))
	done := make(chan []controlplane.MigrationResult, 1)
	go func() {
		done <- fleet.Run(ctx, tenants, controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(r controlplane.MigrationResult) { reported <- r })
	}()
	timeout := time.After(time.Minute)
	for range len(tenants) - len(slow) {
		select {
		case r := <-reported:
			require.NotEqual(t, "pg-b", r.Tenant.Server, "a pg-b tenant finished while its table was locked: %+v", r)
			require.NoError(t, r.Err, r.Tenant.Slug)
			require.Equal(t, latest, r.To, r.Tenant.Slug)
		case <-timeout:
			t.Fatal("the other servers' tenants waited for the slow server")
		}
	}
	for _, tx := range held {
		require.NoError(t, tx.Rollback(ctx))
	}
	select {
	case results := <-done:
		for _, r := range results {
			require.NoError(t, r.Err, r.Tenant.Slug)
			require.Equal(t, latest, r.To, "%s on %s", r.Tenant.Slug, onServer[r.Tenant.Slug])
		}
	case <-time.After(time.Minute):
		t.Fatal("the slow server's tenants never finished after it moved again")
	}
}

// TestServerRemovedAndRegisteredAgain: serve closes a server once it is
// removed from the registry (at its next health pass), so that a server
// registered again under the same name at another address is reached
// there, never through the old one's connections.
func TestServerRemovedAndRegisteredAgain(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 100, "pg-b": 100, "pg-c": 100}, "TENANT_SPARE_DATABASES=1")
	ctx := context.Background()
	ts.app.TenantServers.Check(ctx, []string{"pg-b", "pg-c"}) // opens them, and their fillers
	require.NotNil(t, ts.app.Tenants.SparesOn("pg-b"))
	open := func() []string {
		var names []string
		ts.app.TenantServers.Each(func(c *servers.Conn) { names = append(names, c.Name) })
		slices.Sort(names)
		return names
	}
	require.Equal(t, []string{"default", "pg-b", "pg-c"}, open())

	for _, name := range []string{"pg-b", "pg-c"} {
		status, got := ts.do("PATCH", "/api/servers/"+name, map[string]any{"status": "draining"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		// A draining server keeps no spares: its filler drops any it made.
		require.NoError(t, ts.app.Tenants.SparesOn(name).Reconcile(ctx))
		status, got = ts.do("DELETE", "/api/servers/"+name, nil)
		require.Equal(t, http.StatusNoContent, status, "%v", got)
	}
	require.NoError(t, ts.app.TenantServers.Refresh(ctx, ts.app.checkedServers))
	require.Equal(t, []string{"default"}, open(), "removed servers are closed")
	require.Nil(t, ts.app.Tenants.SparesOn("pg-b"), "and their fillers stopped")

	// pg-b again, now at pg-c's cluster.
	status, got := ts.do("POST", "/api/servers", map[string]any{"name": "pg-b", "url": ts.clusters["pg-c"].URL, "capacity": 100})
	require.Equal(t, http.StatusCreated, status, "%v", got)
	tenant := ts.create(placed(1, "database", "pg-b"))
	require.True(t, ts.onServer(ts.clusters["pg-c"].URL, tenant), "created at pg-b's new address")
	require.False(t, ts.onServer(ts.clusters["pg-b"].URL, tenant), "not at its old one")
	status, _, body := ts.req("POST", tenant["domain"].(string), "/api/extensions", map[string]any{"number": "1001", "name": "Desk"})
	require.Equal(t, http.StatusCreated, status, "%v", body)
}

// TestSparesPerServer: each server keeps spare databases of its own, made
// on it; a create placed there claims one of them (taking its id), never
// another server's; a server set draining drops its spares at its next
// reconcile, so that it can be removed once its tenants are gone.
func TestSparesPerServer(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 100, "pg-b": 100, "pg-c": 100}, "TENANT_SPARE_DATABASES=1")
	ctx := context.Background()
	ts.app.TenantServers.Check(ctx, []string{"pg-b"}) // opens it, and its filler
	spares := ts.app.Tenants.SparesOn("pg-b")
	require.NotNil(t, spares)
	require.NoError(t, spares.Fill(ctx))
	list, err := ts.app.Store.SparesOn("pg-b").Spares(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	spare := list[0]
	require.True(t, ts.onServer(ts.clusters["pg-b"].URL, map[string]any{"db_name": spare.DBName, "isolation": "database"}), "the spare is made on pg-b")
	require.False(t, ts.onServer(ts.cfg.TenantDatabaseURL.Value(), map[string]any{"db_name": spare.DBName, "isolation": "database"}))
	defaults, err := ts.app.Store.SparesOn(controlplane.DefaultServer).Spares(ctx)
	require.NoError(t, err)
	for _, d := range defaults {
		require.NotEqual(t, spare.ID, d.ID)
	}

	got := ts.create(placed(1, "database", "pg-c"))
	require.NotEqual(t, float64(spare.ID), got["id"], "a create on pg-c took pg-b's spare")
	got = ts.create(placed(2, "database", "pg-b"))
	require.Equal(t, float64(spare.ID), got["id"], "a create on pg-b claims pg-b's spare")
	require.True(t, ts.onServer(ts.clusters["pg-b"].URL, got))
	host := got["domain"].(string)
	status, _, body := ts.req("POST", host, "/api/extensions", map[string]any{"number": "1001", "name": "Desk"})
	require.Equal(t, http.StatusCreated, status, "%v", body)

	require.NoError(t, spares.Fill(ctx))
	list, err = ts.app.Store.SparesOn("pg-b").Spares(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "refilled")
	refilled := list[0]
	status, _ = ts.do("PATCH", "/api/servers/pg-b", map[string]any{"status": "draining"})
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, spares.Reconcile(ctx))
	list, err = ts.app.Store.SparesOn("pg-b").Spares(ctx)
	require.NoError(t, err)
	require.Empty(t, list, "a draining server keeps no spares")
	require.False(t, ts.onServer(ts.clusters["pg-b"].URL, map[string]any{"db_name": refilled.DBName, "isolation": "database"}), "its database dropped")
}
