package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/laracopilot/controlplane/controlplane"
)

// Benchmark 7, tenant servers: routed reads with the same database-mode
// tenants spread over three PostgreSQL clusters by serve's placement
// against all of them on one, in alternating rounds of the same run; then,
// with the three-server serve, one server stopped under load: the other
// servers' tenants' rate and errors while it is down against the same load
// just before, what its own tenants get meanwhile (503 with Retry-After),
// and how long after it returns they are served again, serve not
// restarted.
//
// The clusters are the run's own: in ClusterDir, or in a temporary folder
// of this benchmark's when the run has none (it cannot run on one server).
// The catalogs are on the run's server, so stopping a tenant server leaves
// every catalog alone.

const (
	// serversMaxConns is each cluster's max_connections: serve derives a
	// budget of about 160 connections from it, so that all the tenants'
	// pools stay open on one server as on three (the ratio is then
	// routing, not a budget turning pools over).
	serversMaxConns = 200
	// serverCapacity is every server's capacity in the three-server
	// catalog: equal capacities make placement fill them evenly.
	serverCapacity = 500
	// outageClients read from the stopped server's tenants during an
	// outage: enough to see what they get, not a load.
	outageClients = 2
	// recoveryLimit is how long the stopped server's tenants may take to
	// be served again once it accepts connections.
	recoveryLimit = 30 * time.Second
	// probeEvery is the pause between two passes of the recovery probe.
	probeEvery = 100 * time.Millisecond
)

// tenantServer is one of the three clusters as the benchmark uses it.
type tenantServer struct {
	Label string // A, B, C
	Name  string // in the three-server catalog's registry
	env   *env   // the harness on it
}

// serverSplit is how many tenants of the three-server catalog placement put
// on one server (the create responses' server field).
type serverSplit struct {
	Label, Name string
	Tenants     int
}

// outage is one outage of server A, with the three-server serve.
type outage struct {
	// Stop is how long scripts/pg.sh stop took (a fast shutdown), from the
	// start of the during round's warm-up.
	Stop time.Duration
	// A is what the clients of A's tenants got over the outage (its whole
	// window: warm-up and measured), by HTTP status (0: no answer).
	A loadResult
	// Window is how long those clients ran (from A stopped to the end of
	// the round), NoRetryAfter how many 503 or 429 answers lacked a usable
	// Retry-After.
	Window       time.Duration
	NoRetryAfter int
	// Start is how long scripts/pg.sh start took until A accepted
	// connections; FirstOK and AllOK are how long after that one of A's
	// tenants, and every one in one pass of the probe, answered 200.
	Start, FirstOK, AllOK time.Duration
	Probes                int
	// Pid is serve's process, the same before and after: never restarted.
	Pid int
}

// serversResult is benchmark 7.
type serversResult struct {
	Tenants  int
	MaxConns int
	// Own says the clusters were in ClusterDir; false: in a temporary
	// folder of the benchmark's own.
	Own     bool
	Servers [3]tenantServer
	Split   []serverSplit
	// One and Three are the reads across every tenant; Before and During
	// those across B's and C's tenants, all servers up and A stopped.
	One, Three     connContender
	Before, During connContender
	Outages        []outage
	// OnA is how many of the three-server catalog's tenants are on A, the
	// outage's stopped server.
	OnA int
}

// serversFleet is one catalog of benchmark 7's tenants.
type serversFleet struct {
	catalog  string // on the run's server
	tenantDB string // TENANT_DATABASE_URL's database, on A (and alike on B and C)
	prefix   string
	spread   bool // over the three servers; false: all on A
	ts       []tenant
}

// opts is serve on the fleet with its defaults: the catalog on the run's
// server, TENANT_DATABASE_URL on A.
func (fl *serversFleet) opts(name string, a *env) serveOpts {
	return serveOpts{name: name, catalog: fl.catalog, tenantDB: fl.tenantDB, prefix: fl.prefix, isolation: "database", defaults: true,
		extra: map[string]string{"TENANT_DATABASE_URL": a.pg.dbURL(fl.tenantDB)}}
}

// on returns the fleet's tenants on server name, and the others.
func (fl *serversFleet) on(name string) (on, others []tenant) {
	for _, t := range fl.ts {
		if t.Server == name {
			on = append(on, t)
		} else {
			others = append(others, t)
		}
	}
	return on, others
}

// servers is benchmark 7.
func (e *env) servers(ctx context.Context) (*Section, error) {
	n := e.sz.ServerTenants
	if n < 3 || n%3 != 0 {
		return nil, fmt.Errorf("ServerTenants must be a multiple of 3, got %d", n)
	}
	r := &serversResult{Tenants: n, MaxConns: serversMaxConns, Own: e.cfg.ClusterDir != ""}
	root, done, err := e.clusterRoot("controlplane-bench-servers-")
	if err != nil {
		return nil, err
	}
	defer done()
	for i, name := range []string{controlplane.DefaultServer, "pg-b", "pg-c"} {
		label := string(rune('A' + i))
		p, stop, err := e.clusterIn(ctx, root, "servers-"+label, serversMaxConns)
		if err != nil {
			return nil, err
		}
		defer stop()
		r.Servers[i] = tenantServer{Label: label, Name: name, env: e.on(p)}
	}
	one, err := e.serversFleet(ctx, r, "sv1", false)
	if err != nil {
		return nil, err
	}
	three, err := e.serversFleet(ctx, r, "sv3", true)
	if err != nil {
		return nil, err
	}
	for _, s := range r.Servers {
		on, _ := three.on(s.Name)
		r.Split = append(r.Split, serverSplit{Label: s.Label, Name: s.Name, Tenants: len(on)})
	}
	onA, others := three.on(controlplane.DefaultServer)
	r.OnA = len(onA)
	if len(onA) == 0 || len(others) == 0 {
		return nil, fmt.Errorf("placement put %d of the %d tenants on A: the outage needs tenants on A and on the others", len(onA), n)
	}
	e.settleClusters() // the previous benchmarks' clusters' files, deleted meanwhile

	r.One = connContender{Label: "1 server", Tenants: n, Server: "A"}
	r.Three = connContender{Label: "3 servers", Tenants: n, Server: "A, B, C"}
	r.Before = connContender{Label: "3 servers, B's and C's tenants, all servers up", Tenants: len(others), Server: "B, C"}
	r.During = connContender{Label: "3 servers, B's and C's tenants, A stopped", Tenants: len(others), Server: "B, C"}
	all := []*pg{r.Servers[0].env.pg, r.Servers[1].env.pg, r.Servers[2].env.pg}
	a := r.Servers[0].env
	for i := range e.sz.ServerRounds {
		runOne := func() error {
			return e.withServers(ctx, r, one.opts("serve (1 server)", a), func(srv *proc) error {
				if err := prime(ctx, srv, one.ts, e.sz.Clients); err != nil {
					return err
				}
				return e.serversRound(ctx, srv, all, one.prefix, &r.One, i, e.serversLoad(srv, one.ts))
			})
		}
		runThree := func() error {
			return e.withServers(ctx, r, three.opts("serve (3 servers)", a), func(srv *proc) error {
				if err := prime(ctx, srv, three.ts, e.sz.Clients); err != nil {
					return err
				}
				if err := e.serversRound(ctx, srv, all, three.prefix, &r.Three, i, e.serversLoad(srv, three.ts)); err != nil {
					return err
				}
				return e.outageRound(ctx, srv, r, three, i)
			})
		}
		order := []func() error{runOne, runThree}
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, run := range order {
			if err := run(); err != nil {
				return nil, err
			}
		}
	}
	return e.serversSection(r), nil
}

// serversFleet creates benchmark 7's tenants in a catalog of their own
// through the API (serve with its defaults), with Extensions extensions
// each, seeded on the server each lives on. spread registers B and C and
// lets placement choose; otherwise every tenant is on A, the only server.
// Both fleets have the same slugs and domains.
func (e *env) serversFleet(ctx context.Context, r *serversResult, tag string, spread bool) (*serversFleet, error) {
	fl := &serversFleet{catalog: e.pg.run + "_" + tag + "_cat", tenantDB: e.pg.run + "_" + tag, prefix: e.pg.run + tag + "_", spread: spread}
	if err := e.pg.createDB(ctx, fl.catalog); err != nil {
		return nil, err
	}
	// TENANT_DATABASE_URL's database on A; the URLs B and C are registered
	// with name one alike on theirs (the provisioner's admin connections).
	for i, s := range r.Servers {
		if i == 0 || spread {
			if err := s.env.pg.createDB(ctx, fl.tenantDB); err != nil {
				return nil, err
			}
		}
	}
	a := r.Servers[0].env
	srv, err := e.serve(ctx, fl.opts("serve ("+tag+" setup)", a))
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	api := newAPI(srv)
	start := time.Now()
	if spread {
		// The default server's capacity is 1,000,000 until set: it would
		// stay the least loaded (tenants ÷ capacity) for ever.
		capacity := map[string]any{"capacity": serverCapacity}
		if err := api.do(ctx, http.MethodPatch, "", "/api/servers/"+controlplane.DefaultServer, capacity, nil, http.StatusOK); err != nil {
			return nil, err
		}
		for _, s := range r.Servers[1:] {
			// No password in the URL (the harness's postgres role is
			// trusted), so no SERVER_SECRET_KEY either.
			spec := map[string]any{"name": s.Name, "url": s.env.pg.dbURL(fl.tenantDB), "capacity": serverCapacity}
			if err := api.do(ctx, http.MethodPost, "", "/api/servers", spec, nil, http.StatusCreated); err != nil {
				return nil, err
			}
		}
	}
	// One at a time: placement reads the servers' counts as a create
	// starts, so concurrent creates may all choose the same least loaded
	// server; one at a time, the split says what the policy does.
	if fl.ts, err = e.createTenants(ctx, api, "sv", "database", 1, e.sz.ServerTenants, 1); err != nil {
		return nil, err
	}
	placed := 0
	for _, s := range r.Servers {
		on, _ := fl.on(s.Name)
		placed += len(on)
		if !spread && len(on) > 0 && s.Name != controlplane.DefaultServer {
			return nil, fmt.Errorf("%d tenants on %s, a server the one-server catalog does not have", len(on), s.Name)
		}
		if len(on) == 0 {
			continue
		}
		if err := s.env.seedExtensions(ctx, fl.tenantDB, on, e.sz.Extensions); err != nil {
			return nil, fmt.Errorf("seed the tenants on %s: %w", s.Name, err)
		}
	}
	if placed != len(fl.ts) {
		return nil, fmt.Errorf("%d of the %d tenants are on no server the benchmark knows (their server field)", len(fl.ts)-placed, len(fl.ts))
	}
	e.logf("servers: %d database tenants through the API (%s) in %s", len(fl.ts), tag, time.Since(start).Round(time.Millisecond))
	return fl, nil
}

// withServers is withServe once none of serve's connections is left on any
// of the three clusters either.
func (e *env) withServers(ctx context.Context, r *serversResult, o serveOpts, fn func(srv *proc) error) error {
	for _, s := range r.Servers {
		if err := s.env.waitIdle(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.Label, err)
		}
	}
	return e.withServe(ctx, o, fn)
}

// serversSpec is the read load of benchmark 7 across ts.
func (e *env) serversSpec(ts []tenant) loadSpec {
	s := e.connSpec(ts)
	s.duration = e.sz.ServerDuration
	return s
}

// serversLoad is a load function of serversRound: the read load across ts
// against srv.
func (e *env) serversLoad(srv *proc, ts []tenant) func(ctx context.Context) (loadResult, int) {
	spec := e.serversSpec(ts)
	spec.base = srv.base
	return func(ctx context.Context) (loadResult, int) {
		res := runLoad(ctx, spec)
		return res, res.Total
	}
}

// serversRound runs load (which returns what it measured and the requests
// serve handled meanwhile) against srv and adds the round to c with, per
// request, serve's CPU and that of the clusters pgs (each whole: every
// backend), the connections opened per second on their databases named
// with prefix, the harness's CPU and serve's gauges (every server's router
// summed).
func (e *env) serversRound(ctx context.Context, srv *proc, pgs []*pg, prefix string, c *connContender, i int, load func(context.Context) (loadResult, int)) error {
	sessions := func() int64 {
		var n int64
		for _, p := range pgs {
			s := p.sessions(ctx, prefix)
			if s < 0 {
				return -1
			}
			n += s
		}
		return n
	}
	pgCPU := func() ([]map[int32]time.Duration, error) {
		out := make([]map[int32]time.Duration, len(pgs))
		for j, p := range pgs {
			var err error
			if out[j], err = p.backendCPU(ctx, appName); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	s0 := sessions()
	h0, err := procCPU(os.Getpid())
	if err != nil {
		return err
	}
	cpu0, err := srv.cpu()
	if err != nil {
		return err
	}
	m0, err := mallocs(ctx, srv, true)
	if err != nil {
		return err
	}
	pg0, err := pgCPU()
	if err != nil {
		return err
	}
	t0 := time.Now()
	res, served := load(ctx)
	took := time.Since(t0)
	if err := ctx.Err(); err != nil {
		return err
	}
	cpu1, err := srv.cpu()
	if err != nil {
		return err
	}
	pg1, err := pgCPU()
	if err != nil {
		return err
	}
	m1, err := mallocs(ctx, srv, true)
	if err != nil {
		return err
	}
	h1, err := procCPU(os.Getpid())
	if err != nil {
		return err
	}
	if res.Requests == 0 {
		return fmt.Errorf("%s answered no request with 200 (%d errors; first: %s)", srv.name, res.Errors+res.WarmErrors, res.FirstErr)
	}
	if res.Errors+res.WarmErrors > 0 {
		e.logf("  %s: %d failed requests (%d in the warm-up); first: %s", srv.name, res.Errors+res.WarmErrors, res.WarmErrors, res.FirstErr)
	}
	var pgTotal time.Duration
	for j := range pgs {
		pgTotal += cpuDelta(pg0[j], pg1[j])
	}
	per := float64(max(served, 1))
	cr := connRound{
		round: round{loadResult: res, CPUPerReq: time.Duration(float64(cpu1-cpu0) / per),
			PGCPUPerReq: time.Duration(float64(pgTotal) / per), AllocsPerReq: (m1 - m0) / per},
		NewConns: -1, Harness: float64(h1-h0) / float64(took), HarnessPerReq: (h1 - h0) / time.Duration(max(served, 1)),
		Budget: gauge(ctx, srv, "controlplane_tenant_connections_max"), ConnsOpen: gauge(ctx, srv, "controlplane_tenant_connections_open"), Handles: -1,
	}
	if s1 := sessions(); s0 >= 0 && s1 >= 0 {
		cr.NewConns = float64(s1-s0) / took.Seconds()
	}
	c.Rounds = append(c.Rounds, cr)
	e.logf("servers, %s, %d tenants, round %d: %.0f req/s p50 %s p99 %s, %d errors (%d in the warm-up), %.1f new connections/s, budget %d",
		c.Label, c.Tenants, i+1, res.RPS, ms(res.P50), ms(res.P99), res.Errors+res.WarmErrors, res.WarmErrors, cr.NewConns, cr.Budget)
	return nil
}

// outageRound is one outage of A with the three-server serve srv, after
// its read round: the load across B's and C's tenants with every server up
// (before the outage, or after A's recovery in odd rounds), and the same
// load while A is stopped as its warm-up starts (during; outageClients
// more clients read from A's tenants once it is down), then A started
// again on its port and probed until every one of its tenants is served
// again, serve untouched.
func (e *env) outageRound(ctx context.Context, srv *proc, r *serversResult, fl *serversFleet, i int) error {
	a := r.Servers[0].env
	onA, others := fl.on(r.Servers[0].Name)
	up := []*pg{r.Servers[1].env.pg, r.Servers[2].env.pg} // A is idle, then stopped: not part of the load
	// The all-up round comes before the outage in even rounds and after
	// A's recovery in odd ones, so that a machine growing busier or
	// quieter over the pair weighs on both sides alike.
	allUp := func() error { return e.serversRound(ctx, srv, up, fl.prefix, &r.Before, i, e.serversLoad(srv, others)) }
	if i%2 == 0 {
		if err := allUp(); err != nil {
			return err
		}
	}

	var o outage
	var stopErr error
	bc := e.serversLoad(srv, others)
	err := e.serversRound(ctx, srv, up, fl.prefix, &r.During, i, func(ctx context.Context) (loadResult, int) {
		end := time.Now().Add(e.sz.Warmup + e.sz.ServerDuration)
		var wg sync.WaitGroup
		wg.Go(func() {
			t0 := time.Now()
			if stopErr = a.halt(ctx); stopErr != nil {
				return
			}
			o.Stop = time.Since(t0)
			// At least a second (the smoke run's rounds are shorter than
			// a fast shutdown), so that A's tenants are asked at all.
			aEnd := end
			if least := time.Now().Add(time.Second); aEnd.Before(least) {
				aEnd = least
			}
			o.Window = time.Until(aEnd)
			o.A, o.NoRetryAfter = e.outageClients(ctx, srv, onA, aEnd)
		})
		res, served := bc(ctx)
		wg.Wait()
		return res, served + o.A.Total
	})
	if stopErr != nil {
		return fmt.Errorf("stop A: %w", stopErr)
	}
	if err != nil {
		return err
	}
	e.logf("  A stopped in %s; its tenants got %s over %s (%d answers without Retry-After)",
		o.Stop.Round(time.Millisecond), statusCounts(o.A.Status), o.Window.Round(time.Millisecond), o.NoRetryAfter)

	t0 := time.Now()
	if err := a.restart(ctx); err != nil {
		return fmt.Errorf("start A again: %w", err)
	}
	o.Start = time.Since(t0)
	if o.FirstOK, o.AllOK, o.Probes, err = e.recovery(ctx, srv, onA); err != nil {
		return err
	}
	select {
	case <-srv.done:
		return fmt.Errorf("%s exited during A's outage (%v): %s", srv.name, srv.err, srv.logs.String())
	default:
	}
	o.Pid = srv.cmd.Process.Pid
	r.Outages = append(r.Outages, o)
	e.logf("  A back in %s; all %d of its tenants served again %s later (%d probes), the same serve (pid %d)",
		o.Start.Round(time.Millisecond), len(onA), o.AllOK.Round(time.Millisecond), o.Probes, o.Pid)
	if i%2 == 1 {
		return allUp()
	}
	return nil
}

// outageClients runs outageClients clients until end, each reading from a
// random tenant of ts back to back, except that after a 503 or 429 it waits
// as docs/API.md asks (Retry-After plus a random part of as much again,
// cut at end), as benchmark 6's burst clients do: a client hammering a
// server that is down only measures how fast serve says no. Every answer
// counts (no warm-up: the outage's first moments are the point). It also
// returns how many 503 or 429 answers lacked a usable Retry-After.
func (e *env) outageClients(ctx context.Context, srv *proc, ts []tenant, end time.Time) (loadResult, int) {
	client := newClient(outageClients)
	defer client.CloseIdleConnections()
	var noRetry atomic.Int64
	res := closedLoop(ctx, outageClients, 0, time.Until(end), func(ctx context.Context, rng *rand.Rand) (int, error) {
		t := ts[rng.IntN(len(ts))]
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.base+"/api/extensions/"+strconv.Itoa(1+rng.IntN(e.sz.Extensions)), nil)
		req.Host = t.Domain
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
			wait, ok := retryWait(resp.Header.Get("Retry-After"), rng)
			if !ok {
				noRetry.Add(1)
			}
			select {
			case <-ctx.Done():
			case <-time.After(min(wait, time.Until(end))):
			}
		}
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, errors.New(t.Domain + ": HTTP " + strconv.Itoa(resp.StatusCode))
		}
		return http.StatusOK, nil
	})
	return res, int(noRetry.Load())
}

// recovery probes ts through srv once A accepts connections again: every
// tenant's GET /api/extensions/1, Clients at a time, a pass every
// probeEvery, until one pass finds all of them answering 200. The probe is
// the harness's instrument, not a client: it does not wait Retry-After,
// which would hide when they are served again. It returns how long until
// the first answer 200 and until the end of the pass with nothing else, and
// fails if that takes longer than recoveryLimit: a product that does not
// reconnect is a finding, not something to wait out.
func (e *env) recovery(ctx context.Context, srv *proc, ts []tenant) (first, all time.Duration, probes int, err error) {
	client := newClient(e.sz.Clients)
	defer client.CloseIdleConnections()
	t0 := time.Now()
	for {
		var mu sync.Mutex
		st := map[int]int{}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(e.sz.Clients)
		for _, t := range ts {
			g.Go(func() error {
				rctx, cancel := context.WithTimeout(gctx, 5*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(rctx, http.MethodGet, srv.base+"/api/extensions/1", nil)
				req.Host = t.Domain
				code := 0
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				st[code]++
				if code == http.StatusOK && first == 0 {
					first = time.Since(t0)
				}
				mu.Unlock()
				return nil
			})
		}
		_ = g.Wait()
		probes++
		if err := ctx.Err(); err != nil {
			return 0, 0, probes, err
		}
		if st[http.StatusOK] == len(ts) {
			return first, time.Since(t0), probes, nil
		}
		if time.Since(t0) > recoveryLimit {
			return 0, 0, probes, fmt.Errorf("server A's %d tenants were not all served again %s after A accepted connections, serve not restarted (%s): "+
				"the last of %d probes got %s", len(ts), recoveryLimit, srv.name, probes, statusCounts(st))
		}
		select {
		case <-ctx.Done():
			return 0, 0, probes, ctx.Err()
		case <-time.After(probeEvery):
		}
	}
}
