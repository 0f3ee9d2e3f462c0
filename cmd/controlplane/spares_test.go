package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// spareRows returns the catalog's spares: id → state.
func (b *bundle) spareRows() map[int64]string {
	b.t.Helper()
	spares, err := b.app.Store.SparesOn(controlplane.DefaultServer).Spares(context.Background())
	require.NoError(b.t, err)
	out := map[int64]string{}
	for _, s := range spares {
		out[s.ID] = s.State
	}
	return out
}

// mark reads the COMMENT of a database or role.
func (b *bundle) mark(kind, name string) string {
	b.t.Helper()
	q := `SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1`
	if kind == "role" {
		q = `SELECT coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1`
	}
	var m string
	require.NoError(b.t, pgtest.Open(b.t, b.db.URL).QueryRow(q, name).Scan(&m))
	return m
}

func (b *bundle) roleExists(name string) bool {
	b.t.Helper()
	var ok bool
	require.NoError(b.t, pgtest.Open(b.t, b.db.URL).QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, name).Scan(&ok))
	return ok
}

func tenantBody(slug string, isolation controlplane.Isolation) map[string]any {
	return map[string]any{"name": slug, "slug": slug, "domain": slug + ".example.com", "isolation": string(isolation)}
}

// A create in database mode claims a ready spare: the tenant takes the
// spare's id, its database is re-marked as the tenant's and works like any
// other. Spares never show as tenants; with none left a create takes the
// ordinary path, and the filler makes more.
func TestSparesAreClaimedByCreates(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	ctx := context.Background()
	spares := b.app.Tenants.Spares
	require.NotNil(t, spares, "spares are on by default")
	require.Equal(t, 2, spares.Want)
	require.NoError(t, spares.Fill(ctx))
	require.Equal(t, map[int64]string{1: "ready", 2: "ready"}, b.spareRows())
	require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), 2)
	status, list := b.do("GET", "/api/tenants", nil)
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, 0, list["total"], "spares are not tenants")

	// A schema-mode tenant never takes a spare.
	schemaTenant := b.create(tenantBody("in-a-schema", controlplane.IsolationSchema))
	require.EqualValues(t, 3, schemaTenant["id"])

	acme := b.create(seed())
	require.EqualValues(t, 1, acme["id"], "the oldest spare is claimed")
	require.Equal(t, "ready", acme["provisioning"])
	require.EqualValues(t, 1, acme["schema_version"])
	require.NotEmpty(t, acme["api_key"].(map[string]any)["key"])
	require.Equal(t, allTenantTables, b.tenantTables(acme))
	name := acme["db_name"].(string)
	require.Regexp(t, `^laracopilot tenant 1 of catalog `, b.mark("database", name))
	require.Regexp(t, `^laracopilot tenant 1 of catalog `, b.mark("role", name))
	require.Equal(t, map[int64]string{2: "ready"}, b.spareRows())
	// The tenant's data goes to its database through its own role.
	status, _, got := b.req("POST", "acme.example.com", "/api/extensions", map[string]any{"number": "1001", "name": "Alice"})
	require.Equal(t, http.StatusCreated, status, "%v", got)

	second := b.create(tenantBody("second", controlplane.IsolationDatabase))
	require.EqualValues(t, 2, second["id"])
	// No spare left: the ordinary path, with a fresh id.
	third := b.create(tenantBody("third", controlplane.IsolationDatabase))
	require.EqualValues(t, 4, third["id"])
	require.Equal(t, "ready", third["provisioning"])
	require.Equal(t, allTenantTables, b.tenantTables(third))
	require.Empty(t, b.spareRows())

	require.NoError(t, spares.Fill(ctx))
	require.Equal(t, map[int64]string{5: "ready", 6: "ready"}, b.spareRows())
	_, list = b.do("GET", "/api/tenants", nil)
	require.EqualValues(t, 4, list["total"])

	// Deleting a tenant made from a spare drops its database and role.
	status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"status": "suspended"})
	require.Equal(t, http.StatusOK, status)
	status, _ = b.do("DELETE", "/api/tenants/1?purge=now", nil)
	require.Equal(t, http.StatusNoContent, status)
	require.False(t, contains(pgtest.TenantDatabases(t, b.db.Prefix), name))
	require.False(t, b.roleExists(name))
	// The reconciler leaves ready spares of the current template alone.
	require.NoError(t, spares.Reconcile(ctx))
	require.Equal(t, map[int64]string{5: "ready", 6: "ready"}, b.spareRows())

	// Fewer wanted: the newest extra is dropped; none wanted: all are, and
	// creates claim none.
	spares.Want = 1
	require.NoError(t, spares.Reconcile(ctx))
	require.Equal(t, map[int64]string{5: "ready"}, b.spareRows())
	require.False(t, b.roleExists(b.app.Provisioner.DBName(6)))
	spares.Want = 0
	require.NoError(t, spares.Fill(ctx))
	require.NoError(t, spares.Reconcile(ctx))
	require.Empty(t, b.spareRows())
	ids, err := b.app.Provisioner.SpareIDs(ctx)
	require.NoError(t, err)
	require.Empty(t, ids)
	require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), 2, "the two database-mode tenants left")
	last := b.create(tenantBody("last", controlplane.IsolationDatabase))
	require.EqualValues(t, 7, last["id"])
}

// Concurrent creates never claim the same spare: each spare goes to one
// tenant, and the creates beyond the spares take the ordinary path.
func TestConcurrentCreatesClaimDistinctSpares(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "TENANT_SPARE_DATABASES=3")
	ctx := context.Background()
	require.NoError(t, b.app.Tenants.Spares.Fill(ctx))
	require.Len(t, b.spareRows(), 3)

	const n = 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []int
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, got := b.do("POST", "/api/tenants", tenantBody(fmt.Sprintf("racer-%d", i), controlplane.IsolationDatabase))
			require.Equal(t, http.StatusCreated, status, "%v", got)
			require.Equal(t, "ready", got["provisioning"])
			mu.Lock()
			ids = append(ids, int(got["id"].(float64)))
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Ints(ids)
	require.Equal(t, []int{1, 2, 3}, ids[:3], "every spare was claimed, each once")
	require.Len(t, ids, n)
	for i := 1; i < n; i++ {
		require.NotEqual(t, ids[i-1], ids[i])
	}
	require.Empty(t, b.spareRows())
	require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), n)
	for _, id := range ids {
		_, got := b.do("GET", "/api/tenants/"+itoa(int64(id)), nil)
		require.Equal(t, allTenantTables, b.tenantTables(got))
		require.Regexp(t, fmt.Sprintf(`^laracopilot tenant %d of catalog `, id), b.mark("database", got["db_name"].(string)))
	}
}

// Spares made from an older template (an older migration history) are
// never handed out; the reconciler drops them and the filler makes new ones.
func TestSparesOfAnOldTemplateAreNeverClaimed(t *testing.T) {
	t.Parallel()
	old := setup(t, controlplane.IsolationDatabase)
	ctx := context.Background()
	require.NoError(t, old.app.Tenants.Spares.Fill(ctx))
	require.Equal(t, map[int64]string{1: "ready", 2: "ready"}, old.spareRows())

	upgraded := old.restart(withMigrations(t, v2))
	tn := upgraded.create(seed())
	require.EqualValues(t, 3, tn["id"], "no old spare is claimed")
	require.EqualValues(t, 2, tn["schema_version"])
	require.Equal(t, map[int64]string{1: "ready", 2: "ready"}, upgraded.spareRows())

	spares := upgraded.app.Tenants.Spares
	require.NoError(t, spares.Reconcile(ctx))
	require.Empty(t, upgraded.spareRows())
	require.Equal(t, []string{tn["db_name"].(string)}, pgtest.TenantDatabases(t, old.db.Prefix), "the old spares are dropped")
	require.False(t, upgraded.roleExists(upgraded.app.Provisioner.DBName(1)))

	require.NoError(t, spares.Fill(ctx))
	require.Equal(t, map[int64]string{4: "ready", 5: "ready"}, upgraded.spareRows())
	next := upgraded.create(tenantBody("next", controlplane.IsolationDatabase))
	require.EqualValues(t, 4, next["id"])
	require.EqualValues(t, 2, next["schema_version"])
	require.Contains(t, upgraded.tenantColumns(next, "extensions"), "department")
}

// tenantColumns lists a table's columns in a database-mode tenant.
func (b *bundle) tenantColumns(t map[string]any, table string) []string {
	b.t.Helper()
	db := pgtest.Open(b.t, pgtest.WithDatabase(b.t, b.db.URL, t["db_name"].(string)))
	rows, err := db.Query(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`, table)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		require.NoError(b.t, rows.Scan(&c))
		out = append(out, c)
	}
	return out
}

// A process killed while making a spare, or in the middle of a claim,
// leaves nothing the reconcilers do not finish or clean; a spare being
// made by a live process is left alone; a database the catalog did not
// make is never dropped.
func TestSparesAfterCrash(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	ctx := context.Background()
	p, store, spares := b.app.Provisioner, b.app.Store.SparesOn(controlplane.DefaultServer), b.app.Tenants.Spares
	tpl, err := p.SpareTemplate()
	require.NoError(t, err)
	admin := pgtest.Open(t, b.db.URL)

	// 1. Killed right after CREATE DATABASE: the role is marked, the
	// database not yet.
	halfID, unlockHalf, ok, err := store.ReserveSpare(ctx, tpl, p.DBPrefix(), 10)
	require.NoError(t, err)
	require.True(t, ok)
	half := p.DBName(halfID)
	require.NoError(t, p.MakeSpare(ctx, halfID))
	_, err = admin.Exec(`COMMENT ON DATABASE ` + pgx.Identifier{half}.Sanitize() + ` IS NULL`)
	require.NoError(t, err)

	// 2. A spare still being made by a live process (its lock is held).
	liveID, unlockLive, ok, err := store.ReserveSpare(ctx, tpl, p.DBPrefix(), 10)
	require.NoError(t, err)
	require.True(t, ok)

	// 3. A complete spare whose catalog row is lost.
	lostID, unlockLost, ok, err := store.ReserveSpare(ctx, tpl, p.DBPrefix(), 10)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, p.MakeSpare(ctx, lostID))
	unlockLost()
	require.NoError(t, store.DeleteSpare(ctx, lostID))

	// 4. A ready spare, claimed by a create that died before adopting it.
	readyID, unlockReady, ok, err := store.ReserveSpare(ctx, tpl, p.DBPrefix(), 10)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, p.MakeSpare(ctx, readyID))
	require.NoError(t, store.SpareReady(ctx, readyID))
	unlockReady()
	spec := controlplane.NewTenantSpec()
	claimed := &controlplane.Tenant{Name: "Claimed", Slug: "claimed", Domain: "claimed.example.com", Status: spec.Status,
		Timezone: spec.Timezone, MaxExtensions: spec.MaxExtensions, Settings: spec.Settings,
		Isolation: controlplane.IsolationDatabase, Provisioning: controlplane.ProvisionPending}
	lock, wasSpare, err := store.CreateTenantLocked(ctx, claimed, controlplane.CreateOptions{DBPrefix: p.DBPrefix(), SpareTemplate: tpl})
	require.NoError(t, err)
	require.True(t, wasSpare)
	require.Equal(t, readyID, claimed.ID)
	lock.Unlock() // the process dies here

	// 5. A database of a spare's name that this catalog did not make.
	foreignID, unlockForeign, ok, err := store.ReserveSpare(ctx, tpl, p.DBPrefix(), 10)
	require.NoError(t, err)
	require.True(t, ok)
	foreign := p.DBName(foreignID)
	_, err = admin.Exec(`CREATE DATABASE ` + pgx.Identifier{foreign}.Sanitize())
	require.NoError(t, err)
	unlockForeign()

	unlockHalf() // its maker dies
	err = spares.Reconcile(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "refusing to drop it")

	dbs := pgtest.TenantDatabases(t, b.db.Prefix)
	require.False(t, contains(dbs, half), "the half-made spare is dropped")
	require.False(t, b.roleExists(half))
	require.False(t, contains(dbs, p.DBName(lostID)), "the spare the catalog lost is dropped")
	require.False(t, b.roleExists(p.DBName(lostID)))
	require.True(t, contains(dbs, foreign), "a foreign database is never dropped")
	require.True(t, contains(dbs, claimed.DBName), "the claimed spare is the tenant's")
	require.Equal(t, map[int64]string{liveID: "making"}, b.spareRows(), "the live maker's spare is left alone")
	unlockLive()

	// The tenant reconciler finishes the interrupted claim.
	require.NoError(t, b.app.Tenants.Reconcile(ctx))
	_, got := b.do("GET", "/api/tenants/"+itoa(claimed.ID), nil)
	require.Equal(t, "ready", got["provisioning"])
	require.EqualValues(t, 1, got["schema_version"])
	require.Equal(t, allTenantTables, b.tenantTables(got))
	require.Regexp(t, fmt.Sprintf(`^laracopilot tenant %d of catalog `, claimed.ID), b.mark("database", claimed.DBName))
	require.Regexp(t, fmt.Sprintf(`^laracopilot tenant %d of catalog `, claimed.ID), b.mark("role", claimed.DBName))
	status, _, body := b.req("POST", "claimed.example.com", "/api/extensions", map[string]any{"number": "1001", "name": "Alice"})
	require.Equal(t, http.StatusCreated, status, "%v", body)

	// With its maker gone, the spare left making is dropped too.
	_, err = admin.Exec(`DROP DATABASE ` + pgx.Identifier{foreign}.Sanitize())
	require.NoError(t, err)
	require.NoError(t, spares.Reconcile(ctx))
	require.Empty(t, b.spareRows())
	require.Equal(t, []string{claimed.DBName}, pgtest.TenantDatabases(t, b.db.Prefix))
	ids, err := p.SpareIDs(ctx)
	require.NoError(t, err)
	require.Empty(t, ids)
}

// Spares whose roles were made with another role secret (rotated since)
// are never handed out: their role would not accept the password the
// router derives now. The reconciler drops them.
func TestSparesOfARotatedSecretAreNeverClaimed(t *testing.T) {
	t.Parallel()
	old := setup(t, controlplane.IsolationDatabase)
	ctx := context.Background()
	require.NoError(t, old.app.Tenants.Spares.Fill(ctx))
	require.Len(t, old.spareRows(), 2)

	rotatedCfg := *old
	rotatedCfg.cfg.TenantRoleSecret = config.Secret("a-rotated-role-secret-0123456789")
	rotated := rotatedCfg.restart(nil)
	tn := rotated.create(seed())
	require.EqualValues(t, 3, tn["id"], "no spare of the old secret is claimed")
	spares := rotated.app.Tenants.Spares
	require.NoError(t, spares.Reconcile(ctx))
	require.Empty(t, rotated.spareRows())
	require.NoError(t, spares.Fill(ctx))
	next := rotated.create(tenantBody("next", controlplane.IsolationDatabase))
	require.EqualValues(t, 4, next["id"])
	for _, host := range []string{"acme.example.com", "next.example.com"} {
		status, _, got := rotated.req("POST", host, "/api/extensions", map[string]any{"number": "1001", "name": "Alice"})
		require.Equal(t, http.StatusCreated, status, "%s: %v", host, got)
	}
}
