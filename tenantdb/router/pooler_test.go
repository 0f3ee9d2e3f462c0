package router_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/extensions"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/query"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// These tests route through the PgBouncer make test starts (transaction
// pooling, PGTEST_POOLER_URL) and skip, saying so, without it.

// pooled is f.router whose connections go through the test PgBouncer.
func (f *fixture) pooled(c router.Config) *router.Router {
	f.t.Helper()
	c.PoolerURL = pgtest.PoolerURL(f.t, f.Server.Name)
	return f.router(c)
}

// pooledWith is pooled with extra settings on the pooler's URL.
func (f *fixture) pooledWith(c router.Config, query string) *router.Router {
	f.t.Helper()
	c.PoolerURL = pgtest.PoolerURL(f.t, f.Server.Name) + "&" + query
	return f.router(c)
}

// TestPoolerIsolation: two tenants of each mode, each served by two
// routers (two serve replicas) through one PgBouncer in transaction mode,
// under concurrent load with transactions among the reads (a store's
// update, and one that sets search_path with SET LOCAL, committed or rolled
// back). Every read sees its own tenant's rows only, and no backend is left
// with a search_path. Database tenants never share a server connection
// (the pooler pools per database and role); schema tenants do, which is
// what makes the check mean something.
func TestPoolerIsolation(t *testing.T) {
	t.Parallel()
	bothIsolations(t, func(t *testing.T, isolation controlplane.Isolation) {
		f := newFixture(t, isolation, 2)
		cfg := router.Config{PoolsMax: 10, PoolMaxConns: 3, PoolIdleTimeout: time.Minute, SchemaPoolConns: 3, ServerMaxConns: 12, AcquireTimeout: 5 * time.Second}
		replicas := []*router.Router{f.pooled(cfg), f.pooled(cfg)}
		a, b := f.Tenants[0], f.Tenants[1]
		create(t, replicas[0], a, "10")
		create(t, replicas[1], a, "11")
		create(t, replicas[0], b, "20")
		want := map[int64][]string{a.ID: {"10", "11"}, b.ID: {"20"}}

		var mu sync.Mutex
		backends := map[int32]map[int64]bool{} // backend pid → tenants it served
		read := func(r *router.Router, tn *controlplane.Tenant) {
			db, release, err := r.Acquire(context.Background(), tn)
			if !assert.NoError(t, err) {
				return
			}
			defer release()
			ctx := context.Background()
			list, _, err := (&extensions.Store{DB: db, Tenant: tn}).List(ctx, 100, 0)
			if !assert.NoError(t, err) {
				return
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Number)
			}
			assert.Equal(t, want[tn.ID], got, "tenant %s read another tenant's rows", tn.Slug)

			// The same read in raw SQL, with who ran it: the role, the
			// database, the backend and its search_path.
			var rows []struct {
				Number, Role, Database, Path string
				Pid                          int32
			}
			err = db.Raw(`SELECT number, current_user AS role, current_database() AS database, current_setting('search_path') AS path, pg_backend_pid() AS pid FROM ` +
				query.Table(db, "extensions") + ` ORDER BY number`).Scan(&rows).Error
			if !assert.NoError(t, err) {
				return
			}
			got = got[:0]
			for _, row := range rows {
				got = append(got, row.Number)
				assert.Equal(t, `"$user", public`, row.Path, "a transaction's SET LOCAL outlived it")
				if isolation == controlplane.IsolationDatabase {
					assert.Equal(t, tn.DBName, row.Role)
					assert.Equal(t, tn.DBName, row.Database)
				}
				mu.Lock()
				if backends[row.Pid] == nil {
					backends[row.Pid] = map[int64]bool{}
				}
				backends[row.Pid][tn.ID] = true
				mu.Unlock()
			}
			assert.Equal(t, want[tn.ID], got)
		}
		// A request's transaction: the store's update (a row lock, then
		// the write), and one that points search_path at its own tenant
		// for its duration, as DESIGN allows (SET LOCAL), then commits or
		// fails.
		transact := func(r *router.Router, tn *controlplane.Tenant, i int) {
			db, release, err := r.Acquire(context.Background(), tn)
			if !assert.NoError(t, err) {
				return
			}
			defer release()
			ctx := context.Background()
			name := fmt.Sprintf("renamed %d", i)
			_, err = (&extensions.Store{DB: db, Tenant: tn}).Patch(ctx, 1, extensions.Patch{Name: &name})
			assert.NoError(t, err)
			schema := "public"
			if isolation == controlplane.IsolationSchema {
				schema = tn.DBName
			}
			failed := errors.New("request failed")
			err = query.Tx(ctx, db, func(tx *gorm.DB) error {
				if err := tx.Exec(`SET LOCAL search_path TO ` + schema).Error; err != nil {
					return err
				}
				var n int64
				if err := tx.Raw(`SELECT count(*) FROM extensions`).Scan(&n).Error; err != nil {
					return err
				}
				assert.EqualValues(t, len(want[tn.ID]), n, "the unqualified name inside the transaction is the tenant's own")
				if i%2 == 1 {
					return failed
				}
				return nil
			})
			if i%2 == 1 {
				assert.ErrorIs(t, err, failed)
			} else {
				assert.NoError(t, err)
			}
		}

		var wg sync.WaitGroup
		for w := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tn, r := f.Tenants[w%2], replicas[(w/2)%2]
				for i := range 30 {
					if i%5 == 4 {
						transact(r, tn, i)
					}
					read(r, tn)
				}
			}()
		}
		wg.Wait()

		shared := 0
		for _, tenants := range backends {
			if len(tenants) > 1 {
				shared++
			}
		}
		if isolation == controlplane.IsolationDatabase {
			require.Zero(t, shared, "a server connection served two tenant databases")
		} else {
			require.Positive(t, shared, "schema tenants shared no server connection: the test proved nothing")
		}
	})
}

// TestPoolerRefusesPreparedStatements shows why the router runs statements
// unprepared through the pooler: told to cache prepared statements (pgx's
// default), two replicas reading the same tenant one after the other meet
// on the pooler's one server connection, where the first one's statement
// already has its name. The same reads in the router's pooler mode work.
func TestPoolerRefusesPreparedStatements(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationSchema, 1)
	cfg := router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 4, AcquireTimeout: 5 * time.Second}
	tn := f.Tenants[0]
	get := func(r *router.Router) error {
		db, release, err := r.Acquire(context.Background(), tn)
		if err != nil {
			return err
		}
		defer release()
		_, _, err = (&extensions.Store{DB: db, Tenant: tn}).List(context.Background(), 100, 0)
		return err
	}

	var err error
	replicas := []*router.Router{f.pooledWith(cfg, "default_query_exec_mode=cache_statement"), f.pooledWith(cfg, "default_query_exec_mode=cache_statement")}
	for i := 0; i < 6 && err == nil; i++ {
		err = get(replicas[i%2])
	}
	require.Error(t, err)
	require.Regexp(t, `prepared statement "stmtcache_\w+" (already|does not) exist`, err.Error())

	replicas = []*router.Router{f.pooled(cfg), f.pooled(cfg)}
	for i := range 6 {
		require.NoError(t, get(replicas[i%2]))
	}
}

// TestPoolerRefusesStartupParameters: a setting in the pooler's URL that
// PgBouncer would refuse (or drop, with ignore_startup_parameters) fails
// the router's start, naming the setting and never the URL.
func TestPoolerRefusesStartupParameters(t *testing.T) {
	t.Parallel()
	_, err := router.New(router.Config{
		URL:       "postgres://admin:pw@127.0.0.1:5432/cp",
		PoolerURL: "postgres://admin:s3cret@127.0.0.1:6432/cp?search_path=tenant_1&application_name=serve",
		PoolsMax:  1, PoolMaxConns: 1, SchemaPoolConns: 1, ServerMaxConns: 1, PoolIdleTimeout: time.Minute, AcquireTimeout: time.Second,
	})
	require.Error(t, err)
	require.Contains(t, err.Error(), "sets search_path")
	require.NotContains(t, err.Error(), "s3cret")
	require.NotContains(t, err.Error(), "application_name=serve")
}

// TestPoolerBudget: through the pooler the budget bounds the router's
// client connections to it, and a request that finds it spent still gets
// the 503-class error in time.
func TestPoolerBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, controlplane.IsolationDatabase, 4)
	r := f.pooled(router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Minute, SchemaPoolConns: 1, ServerMaxConns: 2, AcquireTimeout: 300 * time.Millisecond})
	for range 3 {
		for _, tn := range f.Tenants {
			require.Empty(t, numbers(t, r, tn))
			require.LessOrEqual(t, r.Stats().OpenConns, 2)
		}
	}
	requireBudgetSpent(t, r, f.Tenants)
	require.Empty(t, numbers(t, r, f.Tenants[2]), "works again once connections are free")
}

// TestPoolerSchemaCarriesNoTenantState: TestSchemaPoolCarriesNoTenantState
// through the pooler.
func TestPoolerSchemaCarriesNoTenantState(t *testing.T) {
	t.Parallel()
	schemaPoolCarriesNoTenantState(t, (*fixture).pooled)
}

// TestPoolerStatementsSurviveAddedColumn: a migration adds a column under
// live connections to the pooler; unprepared statements have nothing to go
// stale, so every read works at once (TestCachedStatementsSurviveAddedColumn
// through the pooler).
func TestPoolerStatementsSurviveAddedColumn(t *testing.T) {
	t.Parallel()
	statementsSurviveAddedColumn(t, (*fixture).pooled)
}

// BenchmarkPoolerExecModes measures a routed read of one extension (gorm
// First by id) and of a page of 20 (List), from one client: direct to the
// server with cached prepared statements (the router's mode without a
// pooler, the baseline) and unprepared (what the server's parsing and
// planning every statement costs), and through the pooler in each mode
// that works there. Run it by hand against make test's setup (DATABASE_URL and
// PGTEST_POOLER_URL):
//
//	go test -run '^$' -bench BenchmarkPoolerExecModes -count 5 ./tenantdb/router/
func BenchmarkPoolerExecModes(b *testing.B) {
	for _, iso := range []controlplane.Isolation{controlplane.IsolationSchema, controlplane.IsolationDatabase} {
		f := &fixture{Fixture: tenanttest.New(b, iso, 1, router.Config{})}
		cfg := router.Config{PoolsMax: 10, PoolMaxConns: 1, PoolIdleTimeout: time.Hour, SchemaPoolConns: 1, ServerMaxConns: 4, AcquireTimeout: 5 * time.Second}
		tn := f.Tenants[0]
		db, release, err := f.Router.Acquire(context.Background(), tn)
		require.NoError(b, err)
		store := &extensions.Store{DB: db, Tenant: tn}
		for i := range 20 {
			_, err := store.Create(context.Background(), extensions.Spec{Number: fmt.Sprint(100 + i), Enabled: true})
			require.NoError(b, err)
		}
		release()
		for _, mode := range []struct {
			name, query string
			pooled      bool
		}{
			{"direct-cache_statement", "", false},
			{"direct-exec", "&default_query_exec_mode=exec", false},
			{"pooler-exec", "&default_query_exec_mode=exec", true},
			{"pooler-cache_describe", "&default_query_exec_mode=cache_describe", true},
		} {
			c := cfg
			c.URL, c.RoleSecret, c.Latest = f.Server.URL+mode.query, tenanttest.Secret, tenanttest.Latest(b)
			if mode.pooled {
				c.URL = f.Server.URL
				c.PoolerURL = pgtest.PoolerURL(b, f.Server.Name) + mode.query
			}
			r, err := router.New(c)
			require.NoError(b, err)
			db, release, err := r.Acquire(context.Background(), tn)
			require.NoError(b, err)
			store := &extensions.Store{DB: db, Tenant: tn}
			ctx := context.Background()
			b.Run(string(iso)+"/"+mode.name+"/get", func(b *testing.B) {
				for range b.N {
					if _, err := store.Get(ctx, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(string(iso)+"/"+mode.name+"/list20", func(b *testing.B) {
				for range b.N {
					if list, _, err := store.List(ctx, 20, 0); err != nil || len(list) != 20 {
						b.Fatal(err, len(list))
					}
				}
			})
			release()
			_ = r.Close()
		}
	}
}

// TestCheckPooler: serve checks at start that the pooler leads where the
// tenant server's URL does; a pooler down is another error (a warning).
func TestCheckPooler(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	require.NoError(t, router.CheckPooler(ctx, db.URL, pgtest.PoolerURL(t, db.Name)))

	err := router.CheckPooler(ctx, db.URL, pgtest.PoolerURL(t, "postgres"))
	var mismatch *router.PoolerMismatchError
	require.ErrorAs(t, err, &mismatch)
	require.Equal(t, "database", mismatch.What)
	require.Equal(t, db.Name, mismatch.Direct)
	require.Equal(t, "postgres", mismatch.Pooled)

	err = router.CheckPooler(ctx, db.URL, "postgres://postgres:s3cret@127.0.0.1:1/"+db.Name)
	require.Error(t, err)
	require.NotErrorAs(t, err, &mismatch)
	require.NotContains(t, err.Error(), "s3cret")
}
