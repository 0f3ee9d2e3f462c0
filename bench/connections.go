package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/laracopilot/controlplane/tenantdb"
)

// Benchmark 6, connection physics (docs/BENCHMARKS.md): routed reads with serve's
// defaults (no sizing variable set) where connections are scarce or many
// tenants share them, each row against a contender measured in the same
// run:
//
//  1. 200 database-mode tenants on a server of max_connections 300, against
//     the tuned warm configuration of benchmark 1 on the same server;
//  2. 1,000 database-mode tenants on a server of max_connections 100,
//     against the connection-setup floor: a new connection as the tenant's
//     role per request (pgbench -C);
//  3. 10,000 schema-mode tenants against 1,000, on benchmark 4's fleet;
//  4. the 200 tenants of row 1 while one more tenant gets ConnBurst
//     concurrent requests, against the same load without the burst.
//
// The servers of rows 1, 2 and 4 are clusters of the run's own
// (Config.ClusterDir), or the run's server when there is none.

// floorApp is the application name of the floor's connections.
const floorApp = "bench-floor"

// floorQuery is the statement serve runs for GET /api/extensions/{id} on a
// tenant database (gorm's First, as the baseline shows).
const floorQuery = `SELECT * FROM "extensions" WHERE "extensions"."id" = $1 ORDER BY "extensions"."id" LIMIT $2`

// connRound is one round of one contender of benchmark 6.
type connRound struct {
	round
	// NewConns is the connections opened per second on the tenant
	// databases (pg_stat_database.sessions over the round; -1: unknown).
	NewConns float64
	// Harness is the load generator's CPU, in CPUs (CPU-seconds per
	// second), and per request of the round's own load.
	Harness       float64
	HarnessPerReq time.Duration
	// serve's gauges after the round (-1: no serve, or no such gauge).
	Budget, ConnsOpen, Handles int
}

// connContender is one configuration measured in rounds.
type connContender struct {
	Label   string
	Tenants int
	Server  string // where it ran, e.g. "max_connections 300"
	Rounds  []connRound
	// Burst is, per round, what the noisy tenant's requests got (row 4).
	Burst []loadResult
	// Failed is why the contender stopped (row 5), "" if it did not.
	Failed string
}

func (c *connContender) med() med {
	rs := make([]round, len(c.Rounds))
	for i, r := range c.Rounds {
		rs[i] = r.round
	}
	return medians(rs)
}

func (c *connContender) errors() int {
	n := 0
	for _, r := range c.Rounds {
		n += r.Errors
	}
	return n
}

// field is the median of one number of the rounds (NaN without rounds).
func (c *connContender) field(f func(connRound) float64) float64 {
	xs := make([]float64, len(c.Rounds))
	for i, r := range c.Rounds {
		xs[i] = f(r)
	}
	return median(xs)
}

func (c *connContender) firstErr() string {
	for _, r := range c.Rounds {
		if r.FirstErr != "" {
			return r.FirstErr
		}
	}
	return ""
}

// connServer says where rows ran.
type connServer struct {
	MaxConns int
	Own      bool // a cluster of the run's own; false: the run's server
	// IdleCPU is the CPUs the cluster used with no load, just before the
	// rounds (its background processes; -1: not measured).
	IdleCPU float64
}

func (s connServer) String() string {
	if s.Own {
		return fmt.Sprintf("max_connections %d", s.MaxConns)
	}
	return fmt.Sprintf("the run's server, max_connections %d", s.MaxConns)
}

// connResult is benchmark 6.
type connResult struct {
	Want300, Want100 connServer // what the rows ask for
	S300, S100       connServer // what they ran on
	Tuned, Defaults  connContender
	Floor, Many      connContender
	Few, All         connContender
	// PrimeAll is how long row 3's priming took: one request to each of
	// its tenants, cold.
	PrimeAll time.Duration
	Noisy    connContender
	// Row 5, on a server of its own (S5): as many database tenants as
	// row 1 and as many schema tenants, each direct and through PgBouncer.
	DirectDB, PooledDB, DirectSchema, PooledSchema connContender
	// Pooler says whether row 5 ran (a cluster of the run's own).
	Pooler bool
	S5     connServer
}

// dbFleet is a catalog of tenants of one isolation on one server.
type dbFleet struct {
	catalog, tenantDB, prefix string
	isolation                 string
	ts                        []tenant
}

// connections is benchmark 6. f is benchmark 4's fleet (row 3).
func (e *env) connections(ctx context.Context, f *scaleFleet) (*Section, error) {
	r := &connResult{Want300: connServer{MaxConns: 300, Own: true}, Want100: connServer{MaxConns: 100, Own: true}}
	for _, part := range []struct {
		rows []string
		run  func() error
	}{
		{[]string{"3"}, func() error { return e.connsSchema(ctx, f, r) }},
		{[]string{"1", "4"}, func() error { return e.conns300(ctx, r) }},
		{[]string{"2"}, func() error { return e.conns100(ctx, r) }},
		{[]string{"5"}, func() error { return e.connsPooler(ctx, r) }},
	} {
		if slices.ContainsFunc(part.rows, e.wantsRow) {
			if err := part.run(); err != nil {
				return nil, err
			}
		}
	}
	return e.connectionsSection(r), nil
}

// server returns an env on a cluster of the run's own with max_connections
// maxConns, or on the run's server when the run has no ClusterDir, and a
// function that destroys the cluster.
func (e *env) server(ctx context.Context, name string, maxConns int) (*env, connServer, func(), error) {
	if e.cfg.ClusterDir == "" {
		info, err := e.pg.info(ctx)
		return e, connServer{MaxConns: info.MaxConns, IdleCPU: -1}, func() {}, err
	}
	p, stop, err := e.cluster(ctx, name, maxConns)
	if err != nil {
		return nil, connServer{}, nil, err
	}
	return e.on(p), connServer{MaxConns: maxConns, Own: true, IdleCPU: -1}, stop, nil
}

// idleCPU measures the CPUs a cluster of the run's own uses over Warmup
// with no load (-1 elsewhere): its background processes, which its
// PostgreSQL CPU per request includes.
func (e *env) idleCPU(ctx context.Context) (float64, error) {
	if !e.pg.whole || !e.pg.local {
		return -1, nil
	}
	// A backend's CPU counts when it ends: those of a serve just stopped
	// must not land in the window.
	if err := e.waitIdle(ctx); err != nil {
		return 0, err
	}
	time.Sleep(100 * time.Millisecond)
	c0, err := e.pg.backendCPU(ctx, "")
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(e.sz.Warmup):
	}
	c1, err := e.pg.backendCPU(ctx, "")
	if err != nil {
		return 0, err
	}
	return float64(cpuDelta(c0, c1)) / float64(time.Since(t0)), nil
}

// dbFleet creates n database-mode tenants through the API (4 creators,
// serve with its defaults) with Extensions extensions each.
func (e *env) dbFleet(ctx context.Context, tag string, n int) (*dbFleet, error) {
	return e.tenantFleet(ctx, tag, n, "database")
}

// tenantFleet creates n tenants of the given isolation through the API in a
// catalog of their own, with Extensions extensions each.
func (e *env) tenantFleet(ctx context.Context, tag string, n int, isolation string) (*dbFleet, error) {
	fl := &dbFleet{catalog: e.pg.run + "_" + tag + "_cat", tenantDB: e.pg.run + "_" + tag, prefix: e.pg.run + tag + "_", isolation: isolation}
	for _, db := range []string{fl.catalog, fl.tenantDB} {
		if err := e.pg.createDB(ctx, db); err != nil {
			return nil, err
		}
	}
	srv, err := e.serve(ctx, serveOpts{name: "serve (" + tag + " setup)", catalog: fl.catalog, tenantDB: fl.tenantDB, prefix: fl.prefix, isolation: isolation, defaults: true})
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	start := time.Now()
	if fl.ts, err = e.createTenants(ctx, newAPI(srv), tag, isolation, 1, n, 4); err != nil {
		return nil, err
	}
	if err := e.seedExtensions(ctx, fl.tenantDB, fl.ts, e.sz.Extensions); err != nil {
		return nil, err
	}
	e.logf("connections: %d %s tenants through the API in %s", n, isolation, time.Since(start).Round(time.Millisecond))
	return fl, nil
}

// opts is serve on the fleet with the router's sizes of o, or its
// defaults.
func (fl *dbFleet) opts(name string, o serveOpts, defaults bool) serveOpts {
	o.name, o.catalog, o.tenantDB, o.prefix, o.isolation, o.defaults = name, fl.catalog, fl.tenantDB, fl.prefix, fl.isolation, defaults
	return o
}

// conns300 runs rows 1 and 4 on the server of max_connections 300. Each
// round starts its serves afresh, one at a time (two would not fit the
// server), tuned and defaults in alternating order; the defaults' serve
// then runs the noisy round.
func (e *env) conns300(ctx context.Context, r *connResult) error {
	es, where, stop, err := e.server(ctx, "c300", 300)
	if err != nil {
		return err
	}
	defer stop()
	fl, err := es.dbFleet(ctx, "c3", e.sz.ConnDBTenants)
	if err != nil {
		return err
	}
	if where.IdleCPU, err = es.idleCPU(ctx); err != nil {
		return err
	}
	r.S300 = where
	n := len(fl.ts)
	r.Tuned = connContender{Label: "tuned warm (benchmark 1's)", Tenants: n, Server: where.String()}
	r.Defaults = connContender{Label: "defaults", Tenants: n, Server: where.String()}
	r.Noisy = connContender{Label: fmt.Sprintf("defaults, with a burst of %d concurrent requests on one more tenant", e.sz.ConnBurst), Tenants: n - 1, Server: where.String()}
	// Benchmark 1's warm database round: every pool kept (250 pools of one
	// connection), the budget it gives the router.
	tuned := fl.opts("serve (tuned warm)", serveOpts{poolsMax: n + 50, poolConns: 1, budget: e.budget}, false)
	defaults := fl.opts("serve (defaults)", serveOpts{}, true)
	noisy, others := fl.ts[0], fl.ts[1:]
	for i := range e.sz.ConnRounds {
		runTuned := func() error {
			return es.withServe(ctx, tuned, func(srv *proc) error {
				if err := prime(ctx, srv, fl.ts, e.sz.Clients); err != nil {
					return err
				}
				return es.readRound(ctx, srv, fl.prefix, fl.ts, &r.Tuned, i)
			})
		}
		runDefaults := func() error {
			return es.withServe(ctx, defaults, func(srv *proc) error {
				if err := prime(ctx, srv, fl.ts, e.sz.Clients); err != nil {
					return err
				}
				if err := es.readRound(ctx, srv, fl.prefix, fl.ts, &r.Defaults, i); err != nil {
					return err
				}
				return es.noisyRound(ctx, srv, fl.prefix, others, noisy, &r.Noisy, i)
			})
		}
		order := []func() error{runTuned, runDefaults}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, run := range order {
			if err := run(); err != nil {
				return err
			}
		}
	}
	return nil
}

// connsPooler runs row 5 on a server of its own sized as docs/OPERATIONS.md
// sizes one behind PgBouncer 1.18 ("Behind PgBouncer"): 1.18 runs its
// auth_query in each tenant database, so every database tenant active within
// server_idle_timeout may hold two server connections (its pool's and the
// lookup's), and row 1's max_connections 300 cannot hold 200 such tenants
// (the first run of this row failed there once 146 tenants were primed:
// "remaining connection slots are reserved"). Database and schema tenants,
// each direct and through the pooler, all on this server.
func (e *env) connsPooler(ctx context.Context, r *connResult) error {
	if e.cfg.ClusterDir == "" {
		return nil // no cluster of the run's own to put a pooler in front of
	}
	n := e.sz.ConnDBTenants
	es, where, stop, err := e.server(ctx, "c5", 2*n+100)
	if err != nil {
		return err
	}
	defer stop()
	fl, err := es.dbFleet(ctx, "c5", n)
	if err != nil {
		return err
	}
	sfl, err := es.tenantFleet(ctx, "c5s", n, "schema")
	if err != nil {
		return err
	}
	e.settleClusters() // the previous clusters' files, deleted meanwhile
	if where.IdleCPU, err = es.idleCPU(ctx); err != nil {
		return err
	}
	poolerURL, stopPooler, err := es.pooler(ctx, "c5")
	if err != nil {
		return err
	}
	defer stopPooler()
	r.Pooler, r.S5 = true, where
	via := func(o serveOpts, db string) serveOpts {
		o.extra = map[string]string{"TENANT_POOLER_URL": withDatabase(poolerURL, db)}
		return o
	}
	r.DirectDB = connContender{Label: "database mode, defaults", Tenants: n, Server: where.String()}
	r.PooledDB = connContender{Label: "database mode, defaults, through PgBouncer", Tenants: n, Server: where.String()}
	r.DirectSchema = connContender{Label: "schema mode, defaults", Tenants: len(sfl.ts), Server: where.String()}
	r.PooledSchema = connContender{Label: "schema mode, defaults, through PgBouncer", Tenants: len(sfl.ts), Server: where.String()}
	// A contender that fails is reported as failed (Failed), its later
	// rounds skipped, and the others go on.
	round := func(o serveOpts, ts []tenant, prefix string, c *connContender) func(int) error {
		return func(i int) error {
			if c.Failed != "" {
				return nil
			}
			err := es.withServe(ctx, o, func(srv *proc) error {
				if err := prime(ctx, srv, ts, e.sz.Clients); err != nil {
					return err
				}
				return es.readRound(ctx, srv, prefix, ts, c, i)
			})
			if err != nil && ctx.Err() == nil {
				c.Failed = err.Error()
				e.logf("  %s failed: %v", c.Label, err)
				return nil
			}
			return err
		}
	}
	order := []func(int) error{
		round(fl.opts("serve (database, defaults)", serveOpts{}, true), fl.ts, fl.prefix, &r.DirectDB),
		round(via(fl.opts("serve (database, defaults, through PgBouncer)", serveOpts{}, true), fl.tenantDB), fl.ts, fl.prefix, &r.PooledDB),
		round(sfl.opts("serve (schema, defaults)", serveOpts{}, true), sfl.ts, sfl.prefix, &r.DirectSchema),
		round(via(sfl.opts("serve (schema, defaults, through PgBouncer)", serveOpts{}, true), sfl.tenantDB), sfl.ts, sfl.prefix, &r.PooledSchema),
	}
	for i := range e.sz.ConnRounds {
		for _, run := range order {
			if err := run(i); err != nil {
				return err
			}
		}
		slices.Reverse(order)
	}
	return nil
}

// pooler starts a PgBouncer of the run's own (scripts/pg.sh pooler-start:
// transaction pooling, as make test's) in front of the env's cluster, and
// returns its URL and how to stop it.
func (e *env) pooler(ctx context.Context, name string) (string, func(), error) {
	dir := filepath.Join(e.cfg.ClusterDir, name+"-pgbouncer")
	script := filepath.Join(e.cfg.Root, "scripts", "pg.sh")
	out, _, err := runCmd(ctx, "bash", []string{script, "pooler-start", dir, e.pg.url.Port()}, nil)
	if err != nil {
		return "", nil, err
	}
	url := strings.TrimSpace(string(out))
	e.logf("%s: PgBouncer of its own in front of it, %s", name, url)
	return url, func() {
		_, _, _ = runCmd(context.WithoutCancel(ctx), "bash", []string{script, "pooler-stop", dir}, nil)
	}, nil
}

// withDatabase is url naming database db.
func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

// conns100 runs row 2 on the server of max_connections 100: serve with its
// defaults and the connection-setup floor in alternating rounds, serve
// stopped during the floor's.
func (e *env) conns100(ctx context.Context, r *connResult) error {
	es, where, stop, err := e.server(ctx, "c100", 100)
	if err != nil {
		return err
	}
	defer stop()
	fl, err := es.dbFleet(ctx, "c1", e.sz.ConnManyTenants)
	if err != nil {
		return err
	}
	e.settleClusters() // the previous cluster's files, deleted meanwhile
	if where.IdleCPU, err = es.idleCPU(ctx); err != nil {
		return err
	}
	r.S100 = where
	r.Floor = connContender{Label: "connection-setup floor (a new connection per request)", Tenants: len(fl.ts), Server: where.String()}
	r.Many = connContender{Label: "defaults", Tenants: len(fl.ts), Server: where.String()}
	defaults := fl.opts("serve (defaults)", serveOpts{}, true)
	for i := range e.sz.ConnRounds {
		runFloor := func() error {
			if err := es.waitIdle(ctx); err != nil {
				return err
			}
			return es.floorRound(ctx, fl, &r.Floor, i)
		}
		runServe := func() error {
			return es.withServe(ctx, defaults, func(srv *proc) error {
				return es.readRound(ctx, srv, fl.prefix, fl.ts, &r.Many, i)
			})
		}
		order := []func() error{runFloor, runServe}
		if i%2 == 1 {
			order = []func() error{runServe, runFloor}
		}
		for _, run := range order {
			if err := run(); err != nil {
				return err
			}
		}
	}
	return nil
}

// connsSchema runs row 3 on benchmark 4's fleet: one serve with its
// defaults, the load across ConnFewSchema of the tenants and across all of
// them in alternating rounds.
func (e *env) connsSchema(ctx context.Context, f *scaleFleet, r *connResult) error {
	ts := f.all()
	few := ts[:min(e.sz.ConnFewSchema, len(ts))]
	r.Few = connContender{Label: "defaults", Tenants: len(few), Server: "the run's server"}
	r.All = connContender{Label: "defaults", Tenants: len(ts), Server: "the run's server"}
	o := serveOpts{name: "serve (defaults, scale fleet)", catalog: f.cat, tenantDB: f.ten, prefix: f.prefix, isolation: "schema", defaults: true}
	return e.withServe(ctx, o, func(srv *proc) error {
		// Primed like rows 1 and 5: one request to every tenant first, so
		// the rounds measure a fleet in service, not a backend's first
		// meeting with each schema (its catalog reads, once per lane
		// connection's life of 10 minutes). What priming took is the
		// cold cost, reported beside.
		start := time.Now()
		if err := prime(ctx, srv, ts, e.sz.Clients); err != nil {
			return err
		}
		r.PrimeAll = time.Since(start)
		e.logf("connections: %d schema tenants primed in %s", len(ts), r.PrimeAll.Round(time.Millisecond))
		for i := range e.sz.ConnRounds {
			order := []bool{false, true} // all?
			if i%2 == 1 {
				order = []bool{true, false}
			}
			for _, all := range order {
				c, hosts := &r.Few, few
				if all {
					c, hosts = &r.All, ts
				}
				// The tenant database holds the schemas; its prefix also
				// matches the catalog's, whose pool serve opened at start.
				if err := e.readRound(ctx, srv, f.ten, hosts, c, i); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// withServe starts serve with o once the server shows none of serve's
// connections (a derived budget counts the connections open at start),
// runs fn, and stops it.
func (e *env) withServe(ctx context.Context, o serveOpts, fn func(srv *proc) error) error {
	if err := e.waitIdle(ctx); err != nil {
		return err
	}
	srv, err := e.serve(ctx, o)
	if err != nil {
		return err
	}
	defer srv.stop()
	return fn(srv)
}

// waitIdle waits until no connection of this run's serves is left on the
// server (a stopped serve's backends end just after it).
func (e *env) waitIdle(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := e.pg.admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND starts_with(datname, $2)`,
			appName, e.pg.run).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections of a stopped serve still open after 30 s", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// spec is the read load of benchmark 6 across ts.
func (e *env) connSpec(ts []tenant) loadSpec {
	owners := make(map[string]string, len(ts))
	for _, t := range ts {
		owners[t.Domain] = t.DBName
	}
	return loadSpec{hosts: domains(ts), ids: e.sz.Extensions, clients: e.sz.Clients, warmup: e.sz.Warmup, duration: e.sz.ConnDuration, owners: owners}
}

// readRound runs one round of the read load across ts against srv and
// adds it to c, with the connections opened on the databases named with
// prefix, the harness's CPU and serve's gauges.
func (e *env) readRound(ctx context.Context, srv *proc, prefix string, ts []tenant, c *connContender, i int) error {
	return e.connRound(ctx, srv, prefix, c, i, func() (round, error) { return e.measure(ctx, srv, true, e.connSpec(ts)) })
}

// noisyRound is readRound across others while ConnBurst clients send
// requests back to back to noisy over the same window; c gets the others'
// numbers (CPU per request counts the burst's requests too) and the
// burst's.
func (e *env) noisyRound(ctx context.Context, srv *proc, prefix string, others []tenant, noisy tenant, c *connContender, i int) error {
	spec := e.connSpec(others)
	spec.base = srv.base
	burst := e.connSpec([]tenant{noisy})
	burst.base, burst.clients, burst.retryAfter = srv.base, e.sz.ConnBurst, true
	var b loadResult
	err := e.connRound(ctx, srv, prefix, c, i, func() (round, error) {
		return e.measureWith(ctx, srv, appName, func() (loadResult, int) {
			var wg sync.WaitGroup
			wg.Go(func() { b = runLoad(ctx, burst) })
			res := runLoad(ctx, spec)
			wg.Wait()
			return res, res.Total + b.Total
		})
	})
	if err == nil {
		c.Burst = append(c.Burst, b)
		e.logf("  burst tenant: %.0f req/s answered 200; statuses %v", b.RPS, b.Status)
	}
	return err
}

// floorRound is one round of the connection-setup floor across fl's
// tenants: Clients workers, each request a new connection to a random
// tenant database as that tenant's role (SCRAM, as serve connects), the
// statement serve runs for the read, and close.
func (e *env) floorRound(ctx context.Context, fl *dbFleet, c *connContender, i int) error {
	secret := tenantdb.RoleSecret(roleSecret)
	cfgs := make([]*pgx.ConnConfig, len(fl.ts))
	for j, t := range fl.ts {
		u := *e.pg.url
		u.User, u.Path = url.UserPassword(t.DBName, secret.Password(t.DBName)), "/"+t.DBName
		cfg, err := pgx.ParseConfig(u.String())
		if err != nil {
			return err
		}
		cfg.RuntimeParams["application_name"] = floorApp
		cfgs[j] = cfg
	}
	op := func(ctx context.Context, rng *rand.Rand) (int, error) {
		conn, err := pgx.ConnectConfig(ctx, cfgs[rng.IntN(len(cfgs))])
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, floorQuery, 1+rng.IntN(e.sz.Extensions), 1)
		if err != nil {
			return 0, err
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			return 0, err
		}
		if n != 1 {
			return 404, fmt.Errorf("%d rows", n)
		}
		return 200, nil
	}
	return e.connRound(ctx, nil, fl.prefix, c, i, func() (round, error) {
		return e.measureWith(ctx, nil, floorApp, func() (loadResult, int) {
			res := closedLoop(ctx, e.sz.Clients, e.sz.Warmup, e.sz.ConnDuration, op)
			return res, res.Total
		})
	})
}

// connRound runs measure (one round against srv, nil for the floor) and
// adds to it the connections opened per second on the databases named
// with prefix, the harness's CPU and serve's gauges.
func (e *env) connRound(ctx context.Context, srv *proc, prefix string, c *connContender, i int, measure func() (round, error)) error {
	s0 := e.pg.sessions(ctx, prefix)
	h0, err := procCPU(os.Getpid())
	if err != nil {
		return err
	}
	t0 := time.Now()
	x, err := measure()
	if err != nil {
		return err
	}
	took := time.Since(t0)
	h1, err := procCPU(os.Getpid())
	if err != nil {
		return err
	}
	cr := connRound{round: x, NewConns: -1, Harness: float64(h1-h0) / float64(took), Budget: -1, ConnsOpen: -1, Handles: -1}
	if srv != nil { // the floor's harness CPU is its CPUPerReq: the client
		cr.HarnessPerReq = (h1 - h0) / time.Duration(max(x.Total, 1))
	}
	if s1 := e.pg.sessions(ctx, prefix); s0 >= 0 && s1 >= 0 {
		cr.NewConns = float64(s1-s0) / took.Seconds()
	}
	if srv != nil {
		cr.Budget = gauge(ctx, srv, "controlplane_tenant_connections_max")
		cr.ConnsOpen = gauge(ctx, srv, "controlplane_tenant_connections_open")
		cr.Handles = gauge(ctx, srv, "controlplane_tenant_schema_handles")
	}
	c.Rounds = append(c.Rounds, cr)
	e.logf("connections %d tenants, %s, %s, round %d: %.0f req/s p50 %s p99 %s, %d errors, %.0f new connections/s, budget %d",
		c.Tenants, c.Server, c.Label, i+1, x.RPS, ms(x.P50), ms(x.P99), x.Errors, cr.NewConns, cr.Budget)
	return nil
}

func itoa(n int) string {
	if n < 0 {
		return "–"
	}
	return strconv.Itoa(n)
}
