package router_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/extensions"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// fixture adapts tenanttest to these tests: a router of their own config.
type fixture struct {
	t *testing.T
	*tenanttest.Fixture
}

func newFixture(t *testing.T, isolation controlplane.Isolation, n int) *fixture {
	return &fixture{t: t, Fixture: tenanttest.New(t, isolation, n, router.Config{})}
}

func (f *fixture) router(c router.Config) *router.Router {
	f.t.Helper()
	c.URL = f.Server.URL
	c.RoleSecret = tenanttest.Secret
	c.Latest = tenanttest.Latest(f.t)
	if c.QueueMax == 0 {
		c.QueueMax = 28 // serve's default
	}
	r, err := router.New(c)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { _ = r.Close() })
	return r
}

func (f *fixture) backends() int { return f.Backends(f.t) }

// numbers lists a tenant's extension numbers through the router.
func numbers(t *testing.T, r *router.Router, tn *controlplane.Tenant) []string {
	db, release, err := r.Acquire(context.Background(), tn)
	require.NoError(t, err)
	defer release()
	list, _, err := (&extensions.Store{DB: db, Tenant: tn}).List(context.Background(), 100, 0)
	require.NoError(t, err)
	var out []string
	for _, e := range list {
		out = append(out, e.Number)
	}
	return out
}

func create(t *testing.T, r *router.Router, tn *controlplane.Tenant, number string) {
	db, release, err := r.Acquire(context.Background(), tn)
	require.NoError(t, err)
	defer release()
	_, err = (&extensions.Store{DB: db, Tenant: tn}).Create(context.Background(), extensions.Spec{Number: number, Enabled: true})
	require.NoError(t, err)
}

// TestSchemaPoolCarriesNoTenantState interleaves two schema tenants over a
// shared pool of one connection: each sees only its own rows, and the
// connection itself never points at a tenant.
func TestSchemaPoolCarriesNoTenantState(t *testing.T) {
	t.Parallel()
	schemaPoolCarriesNoTenantState(t, (*fixture).router)
}

// schemaPoolCarriesNoTenantState is the test on a router from open: direct
// to the server, or through the pooler (TestPoolerSchemaCarriesNoTenantState).
func schemaPoolCarriesNoTenantState(t *testing.T, open func(*fixture, router.Config) *router.Router) {
	f := newFixture(t, controlplane.IsolationSchema, 2)
	r := open(f, router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 1, AcquireTimeout: 5 * time.Second})
	a, b := f.Tenants[0], f.Tenants[1]
	create(t, r, a, "10")
	create(t, r, a, "11")
	create(t, r, b, "20")

	// Sequential interleaving, then concurrent: all over one connection.
	for i := 0; i < 50; i++ {
		require.Equal(t, []string{"10", "11"}, numbers(t, r, a))
		require.Equal(t, []string{"20"}, numbers(t, r, b))
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(tn *controlplane.Tenant, want []string) {
			defer wg.Done()
			for j := 0; j < 25; j++ {
				require.Equal(t, want, numbers(t, r, tn))
			}
		}(f.Tenants[i%2], map[int][]string{0: {"10", "11"}, 1: {"20"}}[i%2])
	}
	wg.Wait()

	db, release, err := r.Acquire(context.Background(), a)
	require.NoError(t, err)
	defer release()
	var path string
	require.NoError(t, db.Raw(`SHOW search_path`).Scan(&path).Error)
	require.Equal(t, `"$user", public`, path, "no request left a search_path behind")
	err = db.Exec(`SELECT count(*) FROM extensions`).Error
	require.Error(t, err, "an unqualified name resolves to no tenant at all")
	require.Equal(t, 1, r.Stats().OpenConns)
}

func TestDatabasePoolsAreBoundedAndEvicted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 3)
	r := f.router(router.Config{PoolsMax: 2, PoolMaxConns: 2, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 10, AcquireTimeout: 5 * time.Second})
	t1, t2, t3 := f.Tenants[0], f.Tenants[1], f.Tenants[2]

	// t1's handle stays in use while t2 and t3 push its pool out of the LRU:
	// the pool must not close under it.
	held, release, err := r.Acquire(context.Background(), t1)
	require.NoError(t, err)
	create(t, r, t2, "20")
	create(t, r, t3, "30")
	require.Equal(t, 2, r.Stats().DatabasePools)
	var n int64
	require.NoError(t, held.Raw(`SELECT count(*) FROM extensions`).Scan(&n).Error, "an evicted pool still serves the request holding it")
	release()
	require.Eventually(t, func() bool { return f.backends() <= 2 }, 5*time.Second, 20*time.Millisecond,
		"the evicted pool is closed once released")

	// A cold tenant gets a fresh pool.
	require.Empty(t, numbers(t, r, t1))
	require.Equal(t, []string{"30"}, numbers(t, r, t3))
	require.LessOrEqual(t, r.Stats().DatabasePools, 2)
}

func TestIdlePoolsAreClosed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 2)
	r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 2, PoolIdleTimeout: 200 * time.Millisecond, SchemaPoolConns: 1, ServerMaxConns: 10, AcquireTimeout: time.Second})
	// Both held while counted: a pool in use is never idle, however long
	// the second tenant's first connection takes on a loaded machine.
	var releases []func()
	for _, tn := range f.Tenants[:2] {
		held, release, err := r.Acquire(context.Background(), tn)
		require.NoError(t, err)
		var n int64
		require.NoError(t, held.Raw(`SELECT count(*) FROM extensions`).Scan(&n).Error)
		releases = append(releases, release)
	}
	require.Equal(t, 2, r.Stats().DatabasePools)
	for _, release := range releases {
		release()
	}
	require.Eventually(t, func() bool { return r.Stats().DatabasePools == 0 && f.backends() == 0 }, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, 0, r.Stats().OpenConns)
}

// TestConnectionBudget: many tenant databases, few connections allowed.
func TestConnectionBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 4)
	r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 2, AcquireTimeout: 300 * time.Millisecond})

	// Round after round over all four tenants: idle connections of other
	// pools are shed to make room, and the server never sees more than two.
	for round := 0; round < 3; round++ {
		for _, tn := range f.Tenants {
			require.Empty(t, numbers(t, r, tn))
			require.LessOrEqual(t, r.Stats().OpenConns, 2)
			// A backend exits a moment after its client closed the
			// connection, so the server's count may lag behind.
			require.Eventually(t, func() bool { return f.backends() <= 2 }, 5*time.Second, 10*time.Millisecond)
		}
	}

	// Two requests hold both connections (open transactions); a third
	// tenant's request waits, then gets a clear 503-class error.
	requireBudgetSpent(t, r, f.Tenants)
	require.Empty(t, numbers(t, r, f.Tenants[2]), "works again once connections are free")
}

// TestCachedStatementsSurviveAddedColumn: pools cache prepared statements,
// and a fleet migration adds columns under live connections. gorm reads
// with SELECT *, so the cached statement fails once per connection ("cached
// plan must not change result type"); the handles retry it, so the read on
// the same warm connection just works.
func TestCachedStatementsSurviveAddedColumn(t *testing.T) {
	t.Parallel()
	statementsSurviveAddedColumn(t, (*fixture).router)
}

// statementsSurviveAddedColumn is the test on routers from open: direct to
// the server, or through the pooler (TestPoolerStatementsSurviveAddedColumn).
func statementsSurviveAddedColumn(t *testing.T, open func(*fixture, router.Config) *router.Router) {
	bothIsolations(t, func(t *testing.T, isolation controlplane.Isolation) {
		f := newFixture(t, isolation, 1)
		r := open(f, router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 4, AcquireTimeout: 5 * time.Second})
		tn := f.Tenants[0]
		create(t, r, tn, "10")
		get := func() {
			t.Helper()
			db, release, err := r.Acquire(context.Background(), tn)
			require.NoError(t, err)
			e, err := (&extensions.Store{DB: db, Tenant: tn}).Get(context.Background(), 1)
			require.NoError(t, err)
			require.Equal(t, "10", e.Number)
			// A read inside a transaction (the update's row lock) cannot be
			// retried: transactions name their columns (query.Tx).
			name := "renamed"
			_, err = (&extensions.Store{DB: db, Tenant: tn}).Patch(context.Background(), 1, extensions.Patch{Name: &name})
			require.NoError(t, err)
			release() // a request runs at once with PoolMaxConns 1: release before the next
			require.Equal(t, []string{"10"}, numbers(t, r, tn))
		}
		get()
		get() // the statements are prepared and cached on the pool's one connection

		dsn, table := f.Server.URL, `"`+tn.DBName+`".extensions`
		if isolation == controlplane.IsolationDatabase {
			dsn, table = pgtest.WithDatabase(t, f.Server.URL, tn.DBName), "extensions"
		}
		admin := pgtest.Open(t, dsn)
		defer admin.Close()
		_, err := admin.Exec(`ALTER TABLE ` + table + ` ADD COLUMN added_later text`)
		require.NoError(t, err)
		get()
	})
}

func bothIsolations(t *testing.T, f func(*testing.T, controlplane.Isolation)) {
	for _, iso := range []controlplane.Isolation{controlplane.IsolationSchema, controlplane.IsolationDatabase} {
		t.Run(string(iso), func(t *testing.T) {
			t.Parallel()
			f(t, iso)
		})
	}
}

// TestSchemaTenantsKeepToTheirLane: the shared schema connections are split
// in lanes of 4 and a tenant only ever uses its own lane's backends, however
// many of its requests run at once.
func TestSchemaTenantsKeepToTheirLane(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationSchema, 12)
	r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 8, ServerMaxConns: 20, AcquireTimeout: 5 * time.Second})
	var mu sync.Mutex
	backends := map[int64]map[int32]bool{} // tenant → backend pids it used
	var wg sync.WaitGroup
	for _, tn := range f.Tenants {
		backends[tn.ID] = map[int32]bool{}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db, release, err := r.Acquire(context.Background(), tn)
				if !assert.NoError(t, err) {
					return
				}
				defer release()
				var pid int32
				if assert.NoError(t, db.Raw(`SELECT pg_backend_pid() FROM pg_sleep(0.02)`).Scan(&pid).Error) {
					mu.Lock()
					backends[tn.ID][pid] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	all := map[int32]bool{}
	for id, pids := range backends {
		require.LessOrEqual(t, len(pids), 4, "tenant %d used more backends than its lane has", id)
		for pid := range pids {
			all[pid] = true
		}
	}
	require.Greater(t, len(all), 4, "12 tenants spread over both lanes")
	require.LessOrEqual(t, len(all), 8)
}

// TestSchemaTenantsHaveAHomeConnection: a schema tenant's requests, one at
// a time, all run on one backend (its home slot), so a schema's catalog
// entries are cached in one backend, not in every one of its lane; the
// tenants' homes spread over the lane; and a request arriving while its
// tenant's home is held runs at once on another connection of the lane.
func TestSchemaTenantsHaveAHomeConnection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationSchema, 12)
	r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 4, ServerMaxConns: 20, AcquireTimeout: 5 * time.Second})
	pid := func(tn *controlplane.Tenant) int32 {
		db, release, err := r.Acquire(context.Background(), tn)
		require.NoError(t, err)
		defer release()
		var p int32
		require.NoError(t, db.Raw(`SELECT pg_backend_pid()`).Scan(&p).Error)
		return p
	}
	homes := map[int32]bool{}
	for _, tn := range f.Tenants {
		home := pid(tn)
		for range 5 {
			require.Equal(t, home, pid(tn), "tenant %d left its home connection while it was free", tn.ID)
		}
		homes[home] = true
	}
	require.Greater(t, len(homes), 1, "12 tenants' homes spread over the lane's 4 connections")

	tn := f.Tenants[0]
	home := pid(tn)
	db, release, err := r.Acquire(context.Background(), tn)
	require.NoError(t, err)
	var held int32
	require.NoError(t, db.Raw(`SELECT pg_backend_pid()`).Scan(&held).Error)
	require.Equal(t, home, held)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	db2, release2, err := r.Acquire(ctx, tn)
	require.NoError(t, err)
	var other int32
	require.NoError(t, db2.WithContext(ctx).Raw(`SELECT pg_backend_pid()`).Scan(&other).Error, "the second request waited for the held home")
	require.NotEqual(t, home, other)
	release2()
	release()
}

// TestLaneModeFollowsTheFleet: a lane prepares and caches its statements
// while its share of the schema tenants fits the cache, and runs them
// unprepared (one round trip, nothing kept in the backend) past it.
func TestLaneModeFollowsTheFleet(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationSchema, 1)
	tn := f.Tenants[0]
	for _, tc := range []struct {
		tenants  int
		prepared bool
	}{{10, true}, {10_000, false}} {
		n := tc.tenants
		r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 2, AcquireTimeout: 5 * time.Second,
			SchemaTenants: func() int { return n }})
		require.Empty(t, numbers(t, r, tn))
		db, release, err := r.Acquire(context.Background(), tn)
		require.NoError(t, err)
		var prepared int
		require.NoError(t, db.Raw(`SELECT count(*) FROM pg_prepared_statements`).Scan(&prepared).Error) // the lane's one connection
		release()
		require.Equal(t, tc.prepared, prepared > 0, "%d schema tenants: %d statements prepared", n, prepared)
	}
}
