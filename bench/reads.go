package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// readsSetup is the fleet of benchmarks 1 and 3: ReadSchemaTenants
// schema-mode and ReadDBTenants database-mode tenants in one catalog, each
// with Extensions extensions, and the serve that routes to them.
type readsSetup struct {
	catalog, tenantDB, prefix string
	exemplar                  tenant
	schema, db                []tenant
	serve                     *proc // the product under load (benchmark 1)
	opts                      serveOpts
}

// setupReads creates the tenants: the schema-mode ones in bulk (one
// through the API, the exemplar, the rest copied from it; see
// bulkSchemaTenants), the database-mode ones through the API with four
// parallel creators. Then it starts the serve of benchmark 1, which loads
// them all from the catalog at start, and checks that a bulk-created
// tenant is indistinguishable from the exemplar.
func (e *env) setupReads(ctx context.Context) (*readsSetup, error) {
	rs := &readsSetup{catalog: e.pg.run + "_reads_cat", tenantDB: e.pg.run + "_reads", prefix: e.pg.run + "r_"}
	for _, db := range []string{rs.catalog, rs.tenantDB} {
		if err := e.pg.createDB(ctx, db); err != nil {
			return nil, err
		}
	}
	e.logf("reads: creating %d schema-mode and %d database-mode tenants with %d extensions each", e.sz.ReadSchemaTenants, e.sz.ReadDBTenants, e.sz.Extensions)
	// The settings of benchmark 1: every database-mode tenant keeps its
	// pool (TENANT_POOLS_MAX above their count), within the budget.
	rs.opts = serveOpts{name: "serve", catalog: rs.catalog, tenantDB: rs.tenantDB, prefix: rs.prefix, isolation: "schema",
		poolsMax: e.sz.ReadDBTenants + 50, poolConns: 1, budget: e.budget}
	setup := rs.opts
	setup.name = "serve (setup)"
	srv, err := e.serve(ctx, setup)
	if err != nil {
		return nil, err
	}
	a := newAPI(srv)
	if rs.exemplar, err = a.createTenant(ctx, e.tenantSpec("exemplar", 0, "schema")); err != nil {
		return nil, err
	}
	start := time.Now()
	bulk, err := e.bulkSchemaTenants(ctx, rs.catalog, rs.tenantDB, rs.exemplar, "s", 1, e.sz.ReadSchemaTenants-1, e.sz.Extensions)
	if err != nil {
		return nil, err
	}
	e.logf("reads: %d schema tenants in bulk in %s", len(bulk), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if rs.db, err = e.createTenants(ctx, a, "d", "database", 1, e.sz.ReadDBTenants, 4); err != nil {
		return nil, err
	}
	e.logf("reads: %d database tenants through the API in %s", len(rs.db), time.Since(start).Round(time.Millisecond))
	if err := e.seedExtensions(ctx, rs.tenantDB, append([]tenant{rs.exemplar}, rs.db...), e.sz.Extensions); err != nil {
		return nil, err
	}
	srv.stop()
	rs.schema = append([]tenant{rs.exemplar}, bulk...)
	if rs.serve, err = e.serve(ctx, rs.opts); err != nil {
		return nil, err
	}
	a = newAPI(rs.serve)
	for _, t := range []tenant{bulk[0], bulk[len(bulk)-1]} {
		if err := e.verifyLike(ctx, a, rs.tenantDB, rs.exemplar, t); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// teardownReads stops the servers and drops the fleet: the scale
// benchmark that follows gets a cluster without it.
func (e *env) teardownReads(ctx context.Context, rs *readsSetup) error {
	rs.serve.stop()
	for _, db := range []string{rs.catalog, rs.tenantDB} {
		if _, err := e.pg.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident(db)+` WITH (FORCE)`); err != nil {
			return err
		}
	}
	return e.pg.dropPrefixed(ctx, rs.prefix)
}

// round is one closed-loop run of one contender.
type round struct {
	loadResult
	CPUPerReq    time.Duration // the server's CPU time per request
	PGCPUPerReq  time.Duration // its PostgreSQL backends' CPU time per request
	AllocsPerReq float64       // the server's heap allocations per request
}

// modeResult is benchmark 1 in one isolation mode and configuration.
type modeResult struct {
	Mode      string // schema | database
	Label     string
	Target    float64 // on the throughput ratio; 0: none
	Tenants   int
	PoolConns int // TENANT_POOL_MAX_CONNS (database mode)
	Base      []round
	Prod      []round
	// MaxConns is the most connections serve held to the tenant server
	// (pg_stat_activity), MaxRouter those to tenant databases: in database
	// mode exactly the router's.
	MaxConns, MaxRouter int
	// NewConns is how many connections the router opened per second of
	// product rounds (pg_stat_database.sessions; -1: unknown).
	NewConns float64
	// BaseRouted is one round of the baseline routing by Host across the
	// same tenants (evidence: what the tenants' spread costs by itself).
	BaseRouted *round
	Stmts      stmtStats
	StmtsOK    bool
	StmtReqs   int // requests during the pg_stat_statements window
}

// med is the median round of a contender.
type med struct {
	rps        float64
	p50, p99   time.Duration
	cpu, pgCPU time.Duration
	allocs     float64
}

func medians(rs []round) med {
	var r, a []float64
	var l50, l99, c, pc []time.Duration
	for _, x := range rs {
		r, a = append(r, x.RPS), append(a, x.AllocsPerReq)
		l50, l99, c, pc = append(l50, x.P50), append(l99, x.P99), append(c, x.CPUPerReq), append(pc, x.PGCPUPerReq)
	}
	return med{median(r), medianDur(l50), medianDur(l99), medianDur(c), medianDur(pc), median(a)}
}

// coldResult is the first request of a tenant whose pool was evicted.
type coldResult struct {
	Pools      int // TENANT_POOLS_MAX of the cold server
	Cold, Warm latencies
}

// reads is benchmark 1: routed reads against the single-tenant baseline,
// in alternating rounds, per isolation mode. Database mode runs with one
// connection per tenant pool, so that all 200 pools stay warm within the
// budget; one more round shows the default pool size of 4, where pools
// may outgrow the budget and take each other's idle connections.
func (e *env) reads(ctx context.Context, rs *readsSetup) (*Section, error) {
	base, err := e.baseline(ctx, rs.tenantDB, rs.exemplar.DBName, "", nil)
	if err != nil {
		return nil, err
	}
	defer base.stop()
	schema := &modeResult{Mode: "schema", Label: "schema mode", Target: 0.95, Tenants: len(rs.schema)}
	if err := e.readRounds(ctx, rs, schema, rs.serve, base, rs.schema, e.sz.Rounds, true); err != nil {
		return nil, err
	}
	if err := e.routedBaseline(ctx, rs, schema, rs.schema); err != nil {
		return nil, err
	}
	warm := &modeResult{Mode: "database", Label: "database mode, warm pools", Target: 0.90, Tenants: len(rs.db), PoolConns: rs.opts.poolConns}
	if err := e.readRounds(ctx, rs, warm, rs.serve, base, rs.db, e.sz.Rounds, true); err != nil {
		return nil, err
	}
	rs.serve.stop()
	// After serve is gone: its 200 pools and the baseline's would not fit
	// max_connections together.
	if err := e.routedBaseline(ctx, rs, warm, rs.db); err != nil {
		return nil, err
	}

	o := rs.opts
	o.name, o.poolConns = "serve (pools of 4)", 4
	srv, err := e.serve(ctx, o)
	if err != nil {
		return nil, err
	}
	four := &modeResult{Mode: "database", Label: "database mode, pools of 4 (the default)", Tenants: len(rs.db), PoolConns: 4}
	err = e.readRounds(ctx, rs, four, srv, base, rs.db, 1, false)
	srv.stop()
	if err != nil {
		return nil, err
	}

	cold, err := e.cold(ctx, rs)
	if err != nil {
		return nil, err
	}
	if e.cfg.ProfileDir != "" {
		if err := e.profiles(ctx, rs); err != nil {
			return nil, err
		}
	}
	return e.readsSection([]*modeResult{schema, warm, four}, cold), nil
}

// routedBaseline measures one round of the baseline routing by Host across
// ts (evidence, not a contender).
func (e *env) routedBaseline(ctx context.Context, rs *readsSetup, m *modeResult, ts []tenant) error {
	b, err := e.baseline(ctx, rs.tenantDB, rs.exemplar.DBName, "", ts)
	if err != nil {
		return err
	}
	defer b.stop()
	spec := loadSpec{hosts: domains(ts), ids: e.sz.Extensions, clients: e.sz.Clients, warmup: e.sz.Warmup, duration: e.sz.Duration}
	if m.Mode == "database" {
		if err := prime(ctx, b, ts, e.sz.Clients); err != nil {
			return err
		}
	}
	// One round unmeasured first: the product's medians come from rounds
	// after its first, when each connection has prepared its tenants'
	// statements and PostgreSQL settled on their plans.
	if _, err := e.measure(ctx, b, false, spec); err != nil {
		return err
	}
	x, err := e.measure(ctx, b, false, spec)
	if err != nil {
		return err
	}
	m.BaseRouted = &x
	e.logf("reads %s: baseline routed across %d tenants %.0f req/s", m.Label, len(ts), x.RPS)
	return nil
}

// readRounds runs rounds alternating rounds of baseline and product
// (baseline first in odd rounds) against ts, sampling serve's connections
// during product rounds; with stmts, a short extra window measures the
// statements PostgreSQL runs per request.
func (e *env) readRounds(ctx context.Context, rs *readsSetup, m *modeResult, srv, base *proc, ts []tenant, rounds int, stmts bool) error {
	spec := loadSpec{hosts: domains(ts), ids: e.sz.Extensions, clients: e.sz.Clients, warmup: e.sz.Warmup, duration: e.sz.Duration}
	if m.Mode == "database" {
		// Open every tenant's pool before the first round: the target is
		// for warm pools (cold ones are measured on their own).
		if err := prime(ctx, srv, ts, e.sz.Clients); err != nil {
			return err
		}
	}
	var opened int64
	var prodTime time.Duration
	for r := range rounds {
		order := []bool{false, true} // product?
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, product := range order {
			if !product {
				x, err := e.measure(ctx, base, false, spec)
				if err != nil {
					return err
				}
				m.Base = append(m.Base, x)
				e.logf("reads %s round %d: baseline %.0f req/s p50 %s p99 %s", m.Label, r+1, x.RPS, x.P50, x.P99)
				continue
			}
			s0 := e.pg.sessions(ctx, rs.prefix)
			sampler := e.pg.sampleConns(ctx, rs.catalog, rs.prefix, 25*time.Millisecond)
			x, err := e.measure(ctx, srv, true, spec)
			all, router, serr := sampler.finish()
			if err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
			if s1 := e.pg.sessions(ctx, rs.prefix); s0 >= 0 && s1 >= 0 && opened >= 0 {
				opened += s1 - s0
			} else {
				opened = -1
			}
			prodTime += spec.warmup + spec.duration
			m.MaxConns, m.MaxRouter = max(m.MaxConns, all), max(m.MaxRouter, router)
			m.Prod = append(m.Prod, x)
			e.logf("reads %s round %d: product %.0f req/s p50 %s p99 %s, %d conns (%d to tenant databases)", m.Label, r+1, x.RPS, x.P50, x.P99, all, router)
		}
	}
	m.NewConns = -1
	if opened >= 0 {
		m.NewConns = float64(opened) / prodTime.Seconds()
	}
	if !stmts {
		return nil
	}
	// What PostgreSQL runs per routed read: a short extra window.
	short := spec
	short.base, short.warmup, short.duration = srv.base, 0, min(2*time.Second, e.sz.Duration)
	var res loadResult
	var err error
	m.Stmts, m.StmtsOK, err = e.pg.statements(ctx, func() error {
		res = runLoad(ctx, short)
		if res.Errors > 0 {
			return fmt.Errorf("%d failed requests: %s", res.Errors, res.FirstErr)
		}
		return nil
	})
	m.StmtReqs = res.Total
	return err
}

// prime sends one request to every tenant, clients at a time.
func prime(ctx context.Context, p *proc, ts []tenant, clients int) error {
	a := newAPI(p)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(clients)
	for _, t := range ts {
		g.Go(func() error {
			return a.do(gctx, http.MethodGet, t.Domain, "/api/extensions/1", nil, nil, http.StatusOK)
		})
	}
	return g.Wait()
}

// measure runs spec against p and adds the server's CPU time and heap
// allocations per request.
func (e *env) measure(ctx context.Context, p *proc, product bool, spec loadSpec) (round, error) {
	spec.base = p.base
	app := "bench-baseline"
	if product {
		app = appName
	}
	return e.measureWith(ctx, p, app, func() (loadResult, int) {
		res := runLoad(ctx, spec)
		return res, res.Total
	})
}

// measureWith runs load, which returns what it measured and how many
// requests the server handled meanwhile (warm-up included), and adds per
// request: the CPU time of server p (of the harness itself when p is nil:
// a load without a server), that of the PostgreSQL backends of
// application app, and p's heap allocations.
func (e *env) measureWith(ctx context.Context, p *proc, app string, load func() (loadResult, int)) (round, error) {
	product := app == appName
	cpu := func() (time.Duration, error) {
		if p == nil {
			return procCPU(os.Getpid())
		}
		return p.cpu()
	}
	allocs := func() (float64, error) {
		if p == nil {
			return 0, nil
		}
		return mallocs(ctx, p, product)
	}
	cpu0, err := cpu()
	if err != nil {
		return round{}, err
	}
	m0, err := allocs()
	if err != nil {
		return round{}, err
	}
	pg0, err := e.pg.backendCPU(ctx, app)
	if err != nil {
		return round{}, err
	}
	res, served := load()
	cpu1, err := cpu()
	if err != nil {
		return round{}, err
	}
	pg1, err := e.pg.backendCPU(ctx, app)
	if err != nil {
		return round{}, err
	}
	m1, err := allocs()
	if err != nil {
		return round{}, err
	}
	name := "the harness"
	if p != nil {
		name = p.name
	}
	if res.Requests == 0 {
		return round{}, fmt.Errorf("%s answered no request with 200 (%d errors; first: %s)", name, res.Errors, res.FirstErr)
	}
	if res.Errors > 0 {
		e.logf("  %s: %d failed requests; first: %s", name, res.Errors, res.FirstErr)
	}
	n := float64(max(served, 1))
	return round{loadResult: res, CPUPerReq: time.Duration(float64(cpu1-cpu0) / n),
		PGCPUPerReq: time.Duration(float64(cpuDelta(pg0, pg1)) / n), AllocsPerReq: (m1 - m0) / n}, nil
}

// mallocs reads the server's count of heap allocations: the product's
// go_memstats_mallocs_total on /metrics, the baseline's /debug/mallocs.
func mallocs(ctx context.Context, p *proc, product bool) (float64, error) {
	path := "/debug/mallocs"
	if product {
		path = "/metrics"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := newClient(1).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if !product {
		var v struct{ Mallocs float64 }
		err := json.NewDecoder(resp.Body).Decode(&v)
		return v.Mallocs, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("no go_memstats_mallocs_total in %s/metrics", p.base)
}

// cold measures the first request of a database-mode tenant whose pool
// the LRU evicted: a serve with TENANT_POOLS_MAX=k gets requests for k+1
// tenants in turn, so every request finds its tenant's pool gone and opens
// a new one (connect, authenticate as the tenant's role, prepare). The
// warm reference is the same request to a tenant whose pool is open.
func (e *env) cold(ctx context.Context, rs *readsSetup) (coldResult, error) {
	var c coldResult
	if len(rs.db) < 2 {
		return c, nil
	}
	c.Pools = min(10, len(rs.db)-1)
	o := rs.opts
	o.name, o.poolsMax = "serve (cold pools)", c.Pools
	srv, err := e.serve(ctx, o)
	if err != nil {
		return c, err
	}
	defer srv.stop()
	a := newAPI(srv)
	ring := rs.db[:c.Pools+1]
	get := func(t tenant) (time.Duration, error) {
		t0 := time.Now()
		err := a.do(ctx, http.MethodGet, t.Domain, "/api/extensions/1", nil, nil, http.StatusOK)
		return time.Since(t0), err
	}
	for _, t := range ring {
		if _, err := get(t); err != nil {
			return c, err
		}
	}
	for i := range e.sz.ColdSamples {
		d, err := get(ring[i%len(ring)])
		if err != nil {
			return c, err
		}
		c.Cold = append(c.Cold, d)
	}
	for range e.sz.ColdSamples {
		d, err := get(ring[0])
		if err != nil {
			return c, err
		}
		c.Warm = append(c.Warm, d)
	}
	e.logf("reads: cold first request p50 %s (warm %s)", c.Cold.p(0.5), c.Warm.p(0.5))
	return c, nil
}

// readsSection reports benchmark 1.
func (e *env) readsSection(modes []*modeResult, cold coldResult) *Section {
	s := &Section{Title: "1. Routed reads"}
	var b strings.Builder
	fmt.Fprintf(&b, "`GET /api/extensions/{id}` with a random tenant's `Host` and a random id (1–%d) each request, from %d closed-loop clients "+
		"(keep-alive connections, back to back), %s warm-up then %s measured, %d alternating rounds per contender (baseline first in odd rounds, "+
		"product first in even ones); medians of the rounds. %d schema-mode and %d database-mode tenants with %d extensions each, in one catalog.\n\n",
		e.sz.Extensions, e.sz.Clients, e.sz.Warmup, e.sz.Duration, e.sz.Rounds, e.sz.ReadSchemaTenants, e.sz.ReadDBTenants, e.sz.Extensions)
	fmt.Fprintf(&b, "- **Product**: `controlplane serve` with `TENANT_SCHEMA_POOL_CONNS=20` (5 lanes of 4 connections, a tenant always on the same one), `TENANT_POOLS_MAX=%d` (every database-mode tenant keeps its pool: warm), "+
		"`TENANT_POOL_MAX_CONNS=1` (%d pools of one connection fit the budget), `TENANT_SERVER_MAX_CONNS=%d` (the budget), `LOG_LEVEL=error`, development mode "+
		"(no credentials); then one round with `TENANT_POOL_MAX_CONNS=4`, the default.\n",
		e.sz.ReadDBTenants+50, e.sz.ReadDBTenants, e.budget)
	b.WriteString("- **Baseline** (`bench/baseline`): gin + gorm, one tenant, no middleware, pool of 20, gorm's default pgx driver; " +
		"the same statement on one tenant schema of the same database (`SELECT * FROM \"<schema>\".\"extensions\" WHERE \"extensions\".\"id\" = $1 ORDER BY \"extensions\".\"id\" LIMIT $2`), the same JSON.\n")
	b.WriteString("- **Baseline routed across the tenants** (evidence, one round per mode after an unmeasured one, not a contender): the same baseline picking the tenant by " +
		"`Host` in a map, the least a multi-tenant server can do, and reading from that tenant: schema mode, each tenant its own gorm handle over " +
		"20 connections in lanes of 4, a tenant always on the same lane (the product's router's layout), statements prepared per connection; " +
		"database mode, a pool of one connection per tenant database (as the product's warm round), connecting as the admin. It measures what spreading the reads over the " +
		"tenants costs by itself, whoever routes them.\n")
	b.WriteString("- CPU per request is the server process's user+system time (`/proc/PID/stat`) over the round ÷ requests, and likewise for the PostgreSQL backends serving it; allocations per request come from " +
		"`go_memstats_mallocs_total` (product `/metrics`) and `runtime.MemStats` (baseline).\n\n")
	var rows [][]string
	for _, m := range modes {
		for _, c := range []struct {
			who string
			rs  []round
		}{{"baseline", m.Base}, {"product", m.Prod}} {
			x := medians(c.rs)
			var each []string
			for _, r := range c.rs {
				each = append(each, fmt.Sprintf("%.0f", r.RPS))
			}
			rows = append(rows, []string{m.Label, c.who, rate(x.rps, "req/s"), ms(x.p50), ms(x.p99), us(x.cpu), us(x.pgCPU), fmt.Sprintf("%.0f", x.allocs), strings.Join(each, ", ")})
			if c.who == "baseline" && m.BaseRouted != nil {
				x := medians([]round{*m.BaseRouted})
				rows = append(rows, []string{m.Label, fmt.Sprintf("baseline routed across the %d tenants (evidence)", m.Tenants), rate(x.rps, "req/s"), ms(x.p50), ms(x.p99), us(x.cpu), us(x.pgCPU), fmt.Sprintf("%.0f", x.allocs), fmt.Sprintf("%.0f", x.rps)})
			}
		}
	}
	b.WriteString(table([]string{"mode", "contender", "req/s", "p50", "p99", "server CPU / req", "PostgreSQL CPU / req", "allocs / req", "req/s per round"}, rows))
	b.WriteString("\n")
	for _, m := range modes {
		bm, pm := medians(m.Base), medians(m.Prod)
		ratio := pm.rps / bm.rps
		row := Row{Bench: "1. Routed reads", Metric: "req/s, " + m.Label, Ours: rate(pm.rps, "req/s"), Base: rate(bm.rps, "req/s"), Ratio: ratio}
		if m.Target > 0 {
			row.Target, row.Met = fmt.Sprintf("≥ %.2f×", m.Target), yesNo(ratio >= m.Target)
		}
		s.Rows = append(s.Rows, row,
			Row{Bench: "1. Routed reads", Metric: "p50 / p99, " + m.Label, Ours: ms(pm.p50) + " / " + ms(pm.p99), Base: ms(bm.p50) + " / " + ms(bm.p99), Ratio: math.NaN()})
		fmt.Fprintf(&b, "**%s**: %.2f× the baseline's throughput", m.Label, ratio)
		if m.Target > 0 {
			fmt.Fprintf(&b, " (target ≥ %.2f×: %s)", m.Target, yesNo(ratio >= m.Target))
		}
		fmt.Fprintf(&b, ". Per request the product uses %s of server CPU against %s (%+.0f%%), %s of PostgreSQL CPU against %s, and %.0f heap allocations against %.0f.",
			us(pm.cpu), us(bm.cpu), 100*(float64(pm.cpu)/float64(bm.cpu)-1), us(pm.pgCPU), us(bm.pgCPU), pm.allocs, bm.allocs)
		if m.StmtsOK && m.StmtReqs > 0 {
			fmt.Fprintf(&b, " PostgreSQL executed %.2f statements per routed read (pg_stat_statements over %d requests).",
				float64(m.Stmts.Calls)/float64(m.StmtReqs), m.StmtReqs)
		}
		connections := m.MaxConns
		what := "serve's connections to the tenant server, the provisioner's idle admin connection included"
		if m.Mode == "database" {
			connections, what = m.MaxRouter, "the router's connections to tenant databases"
			fmt.Fprintf(&b, " TENANT_POOL_MAX_CONNS=%d: at most %d of %s (%d of serve's in all, the shared schema pool's and the provisioner's included), %.1f new connections per second.",
				m.PoolConns, m.MaxRouter, what, m.MaxConns, m.NewConns)
		} else {
			fmt.Fprintf(&b, " At most %d of %s.", m.MaxConns, what)
		}
		b.WriteString("\n\n")
		s.Rows = append(s.Rows, Row{Bench: "4. Scale", Metric: "max connections during 1, " + m.Label,
			Ours: strconv.Itoa(connections), Base: fmt.Sprintf("budget %d", e.budget), Ratio: math.NaN(), Target: "≤ budget", Met: yesNo(connections <= e.budget)})
	}
	fmt.Fprintf(&b, "**Connections**: a sampler polled `pg_stat_activity` every 25 ms during every product round for serve's connections "+
		"(application name `bench-serve`) outside the catalog database, against the budget `TENANT_SERVER_MAX_CONNS=%d`; new connections come from "+
		"`pg_stat_database.sessions` of the tenant databases.\n\n", e.budget)
	if len(cold.Cold) > 0 {
		fmt.Fprintf(&b, "**Cold first request** (database mode): a serve with `TENANT_POOLS_MAX=%d` gets requests for %d tenants in turn, one at a time, so that "+
			"every request finds its tenant's pool evicted and opens a new one (TCP connect, SCRAM authentication as the tenant's role, session start, "+
			"statement preparation): p50 %s, p99 %s, max %s over %d requests, against %s (p50) for the same request on a warm pool.\n",
			cold.Pools, cold.Pools+1, ms(cold.Cold.p(0.5)), ms(cold.Cold.p(0.99)), ms(cold.Cold.p(1)), len(cold.Cold), ms(cold.Warm.p(0.5)))
		s.Rows = append(s.Rows, Row{Bench: "1. Routed reads", Metric: "cold first request, evicted pool (p50 / p99)", Ours: ms(cold.Cold.p(0.5)) + " / " + ms(cold.Cold.p(0.99)),
			Base: "warm " + ms(cold.Warm.p(0.5)), Ratio: math.NaN()})
	}
	s.Body = b.String() + "\n" + readsAnalysis(modes, e.budget)
	return s
}
