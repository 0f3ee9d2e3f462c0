package router_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/router"
)

// connected lists, by tenant index, whether the server has a backend in
// that tenant's database now.
func (f *fixture) connected() []bool {
	f.t.Helper()
	admin := pgtest.Open(f.t, f.Server.URL)
	defer admin.Close()
	out := make([]bool, len(f.Tenants))
	for i, tn := range f.Tenants {
		require.NoError(f.t, admin.QueryRow(`SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = $1`, tn.DBName).Scan(&out[i]))
	}
	return out
}

// hold starts a transaction as tenant tn's request, so that it keeps its
// connection busy until the returned func ends it.
func hold(t *testing.T, r *router.Router, tn *controlplane.Tenant) func() {
	t.Helper()
	db, release, err := r.Acquire(context.Background(), tn)
	require.NoError(t, err)
	tx := db.Begin()
	require.NoError(t, tx.Error)
	require.NoError(t, tx.Exec(`SELECT 1`).Error)
	return func() { tx.Rollback(); release() }
}

// requireBudgetSpent holds the two connections of a budget of two (open
// transactions of ts[0] and ts[1]) and checks that a request of ts[2]
// gets, within the acquire timeout, a 503-class error; then ends them.
func requireBudgetSpent(t *testing.T, r *router.Router, ts []*controlplane.Tenant) {
	t.Helper()
	endA, endB := hold(t, r, ts[0]), hold(t, r, ts[1])
	defer endB()
	defer endA()
	start := time.Now()
	db, release, err := r.Acquire(context.Background(), ts[2]) // refused here if its schema is to be checked
	if err == nil {
		err = db.Exec(`SELECT 1`).Error
		release()
	}
	require.Error(t, err)
	require.Equal(t, controlplane.Unavailable, controlplane.ErrorCode(sqlerr.Translate(err, nil)), "%v", err)
	require.Less(t, time.Since(start), 3*time.Second)
}

// TestBudgetTakesTheLeastRecentlyUsedIdleConnection: with the budget spent
// on idle connections, a new tenant's request takes the one idle longest,
// and only that one: the other tenants stay warm.
func TestBudgetTakesTheLeastRecentlyUsedIdleConnection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 4)
	r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 2, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 3, AcquireTimeout: 5 * time.Second})

	for _, tn := range f.Tenants[:3] {
		require.Empty(t, numbers(t, r, tn))
	}
	s := r.Stats()
	require.Equal(t, 3, s.OpenConns)
	require.Zero(t, s.Taken)

	require.Empty(t, numbers(t, r, f.Tenants[3]), "a request past the budget is served, not refused")
	s = r.Stats()
	require.Equal(t, 3, s.OpenConns)
	require.EqualValues(t, 1, s.Taken)
	require.Eventually(t, func() bool {
		c := f.connected()
		return !c[0] && c[1] && c[2] && c[3]
	}, 5*time.Second, 20*time.Millisecond, "the first tenant's connection, the least recently used, went; the others stayed")

	opened := r.Stats().Opened
	require.Empty(t, numbers(t, r, f.Tenants[2]))
	require.Equal(t, opened, r.Stats().Opened, "a warm tenant reuses its connection")
}

// TestBudgetHandsAReleasedConnectionToAWaiter: with every connection of the
// budget busy, a request waits, and the first connection its request gives
// back (to its own pool) goes to the waiter instead of staying idle there.
func TestBudgetHandsAReleasedConnectionToAWaiter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 3)
	r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 2, AcquireTimeout: 10 * time.Second})

	endA := hold(t, r, f.Tenants[0])
	endB := hold(t, r, f.Tenants[1])
	defer endB()

	served := make(chan []string, 1)
	go func() {
		db, release, err := r.Acquire(context.Background(), f.Tenants[2])
		if !assert.NoError(t, err) {
			served <- nil
			return
		}
		defer release()
		var got []string
		assert.NoError(t, db.Table("extensions").Pluck("number", &got).Error)
		served <- append([]string{}, got...)
	}()
	require.Eventually(t, func() bool { return r.Stats().Waiting == 1 }, 5*time.Second, 5*time.Millisecond, "the third tenant waits for a slot")
	select {
	case <-served:
		t.Fatal("served past a spent budget")
	case <-time.After(100 * time.Millisecond):
	}

	endA() // its connection goes back to its pool: it is handed over instead
	select {
	case got := <-served:
		require.NotNil(t, got)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not handed the released connection")
	}
	require.LessOrEqual(t, r.Stats().OpenConns, 2)
	require.Eventually(t, func() bool { c := f.connected(); return !c[0] }, 5*time.Second, 20*time.Millisecond,
		"the first tenant's connection was closed for the waiter")
}

// TestTenantBurstIsCapped: one tenant's burst runs as many requests as its
// pool, queues a few more, and is refused beyond them (429 rate_limited) at
// once; meanwhile the other tenant is served, and the burst never holds
// more connections than its share. In both modes.
func TestTenantBurstIsCapped(t *testing.T) {
	t.Parallel()
	bothIsolations(t, func(t *testing.T, isolation controlplane.Isolation) {
		f := newFixture(t, isolation, 2)
		r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 2, PoolIdleTimeout: time.Minute, SchemaPoolConns: 8, ServerMaxConns: 10, AcquireTimeout: 10 * time.Second, QueueMax: 3})
		noisy, quiet := f.Tenants[0], f.Tenants[1]
		active := 2 // PoolMaxConns, and half a lane of 4 in schema mode

		var ok, limited, running, most atomic.Int64
		var wg sync.WaitGroup
		// The admitted hold their connections until the refusals are
		// counted: no slot frees early for a goroutine scheduled late.
		start, hold := make(chan struct{}), make(chan struct{})
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				db, release, err := r.Acquire(context.Background(), noisy)
				if err != nil {
					assert.Equal(t, controlplane.RateLimited, controlplane.ErrorCode(err), "%v", err)
					limited.Add(1)
					return
				}
				defer release()
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				assert.NoError(t, db.Exec(`SELECT 1`).Error)
				<-hold
				running.Add(-1)
				ok.Add(1)
			}()
		}
		close(start)
		require.Eventually(t, func() bool { return limited.Load() == 15 }, 5*time.Second, 5*time.Millisecond,
			"all but the running and the queued are refused at once")
		require.Empty(t, numbers(t, r, quiet), "the other tenant is served during the burst")
		close(hold)
		wg.Wait()
		require.EqualValues(t, 5, ok.Load(), "2 running and 3 queued are served")
		require.EqualValues(t, active, most.Load(), "no more of the burst ran at once than its share")
	})
}

// TestPoolGrowsOnlyWhenItsTenantQueues: a tenant's requests one after the
// other use one connection; it opens more only for requests that would
// otherwise wait, and gives them back once idle.
func TestPoolGrowsOnlyWhenItsTenantQueues(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 1)
	r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 4, PoolIdleTimeout: 500 * time.Millisecond, SchemaPoolConns: 1, ServerMaxConns: 10, AcquireTimeout: 5 * time.Second})
	tn := f.Tenants[0]
	for range 20 {
		require.Empty(t, numbers(t, r, tn))
	}
	require.EqualValues(t, 1, r.Stats().Opened, "sequential requests share one connection")

	var ends []func()
	for range 3 {
		ends = append(ends, hold(t, r, tn))
	}
	require.EqualValues(t, 3, r.Stats().Opened, "three at once: the pool grew by two")
	for _, end := range ends {
		end()
	}
	require.Equal(t, 3, r.Stats().OpenConns, "kept while the tenant may come back")
	require.Eventually(t, func() bool { return r.Stats().OpenConns == 0 }, 5*time.Second, 50*time.Millisecond,
		"idle connections are closed after the idle timeout")
}

// TestOverlappingRequestsShareAConnection: a request finding its tenant's
// one connection busy waits for it rather than opening another, and with
// the budget spent a tenant's pool does not grow by taking another
// tenant's idle connection: it waits for its own.
func TestOverlappingRequestsShareAConnection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 2)
	for _, tc := range []struct {
		name   string
		budget int
		grow   time.Duration
	}{
		{"within the wait", 10, time.Minute},       // released long before it would grow
		{"budget spent", 2, 10 * time.Millisecond}, // it would grow, but there is no room
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.router(router.Config{PoolsMax: 10, PoolMaxConns: 4, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: tc.budget,
				AcquireTimeout: 5 * time.Minute, GrowAfter: tc.grow})
			a, b := f.Tenants[0], f.Tenants[1]
			require.Empty(t, numbers(t, r, b)) // b keeps one idle connection
			end := hold(t, r, a)
			before := r.Stats()
			served := make(chan []string, 1)
			go func() {
				got := numbers(t, r, a)
				served <- append([]string{}, got...)
			}()
			select {
			case <-served:
				t.Fatal("the overlapping request did not wait for its tenant's connection")
			case <-time.After(300 * time.Millisecond):
			}
			end()
			select {
			case <-served:
			case <-time.After(5 * time.Second):
				t.Fatal("the waiting request was not served once its tenant's connection was free")
			}
			after := r.Stats()
			require.Equal(t, before.Opened, after.Opened, "no connection opened for an overlap")
			require.Equal(t, before.Taken, after.Taken, "no other tenant's connection taken")
			require.True(t, f.connected()[1], "the other tenant kept its connection")
		})
	}
}
