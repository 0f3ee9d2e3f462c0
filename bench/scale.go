package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scaleResult is benchmark 4.
type scaleResult struct {
	Tenants          int
	CreateTook       time.Duration
	ServeStart       time.Duration
	WarmTook         time.Duration
	RSSWarm, RSSLoad int64 // kB
	HWM              int64 // kB, peak RSS
	Prod, Base       round
	MaxConns         int
	Noop             []time.Duration // verified (the default): every tenant's real version read
	NoopTrusted      []time.Duration // --no-verify: the catalog alone
	Resolve          []resolveBench
	BackendMB        float64
	Backends         int
	BackendOK        bool
	// Handles is how many schema-mode gorm handles serve held after the
	// load (its /metrics gauge; -1 when missing).
	Handles int
}

type resolveBench struct {
	Tenants int
	NsOp    float64
	Allocs  float64
}

// scaleFleet is the fleet of benchmark 4, which benchmark 6 reads from
// too: ScaleTenants schema-mode tenants in one catalog, the exemplar
// through the API, the rest in bulk (see bulkSchemaTenants).
type scaleFleet struct {
	cat, ten, prefix string
	opts             serveOpts // the serve of benchmark 4
	ex               tenant
	bulk             []tenant // every tenant but the exemplar
	createTook       time.Duration
}

// all returns every tenant of the fleet, the exemplar first.
func (f *scaleFleet) all() []tenant { return append([]tenant{f.ex}, f.bulk...) }

// setupScale creates the fleet of benchmark 4.
func (e *env) setupScale(ctx context.Context) (*scaleFleet, error) {
	f := &scaleFleet{cat: e.pg.run + "_scale_cat", ten: e.pg.run + "_scale", prefix: e.pg.run + "s_"}
	for _, db := range []string{f.cat, f.ten} {
		if err := e.pg.createDB(ctx, db); err != nil {
			return nil, err
		}
	}
	f.opts = serveOpts{name: "serve (scale setup)", catalog: f.cat, tenantDB: f.ten, prefix: f.prefix, isolation: "schema", poolsMax: e.sz.ReadDBTenants + 50, budget: e.budget}
	srv, err := e.serve(ctx, f.opts)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	a := newAPI(srv)
	if f.ex, err = a.createTenant(ctx, e.tenantSpec("exemplar", 0, "schema")); err != nil {
		return nil, err
	}
	if err := e.seedExtensions(ctx, f.ten, []tenant{f.ex}, e.sz.Extensions); err != nil {
		return nil, err
	}
	e.logf("scale: creating %d schema tenants in bulk", e.sz.ScaleTenants-1)
	start := time.Now()
	if f.bulk, err = e.bulkSchemaTenants(ctx, f.cat, f.ten, f.ex, "s", 1, e.sz.ScaleTenants-1, e.sz.Extensions); err != nil {
		return nil, err
	}
	f.createTook = time.Since(start)
	e.logf("scale: %d tenants in %s", len(f.bulk), f.createTook.Round(time.Second))
	return f, nil
}

// teardownScale drops the fleet of benchmark 4.
func (e *env) teardownScale(ctx context.Context, f *scaleFleet) error {
	for _, db := range []string{f.cat, f.ten} {
		if _, err := e.pg.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident(db)+` WITH (FORCE)`); err != nil {
			return err
		}
	}
	return nil
}

// scale is benchmark 4, on the fleet of setupScale. It measures a no-op
// fleet run over all of the tenants, the RSS of serve once every tenant's
// route is warm, the routed-read load of benchmark 1 across all of them
// with the connection sampler, and the catalog cache's BenchmarkResolve.
func (e *env) scale(ctx context.Context, f *scaleFleet) (*Section, error) {
	r := &scaleResult{Tenants: e.sz.ScaleTenants, CreateTook: f.createTook}
	cat, ten, prefix, o, ex, bulk := f.cat, f.ten, f.prefix, f.opts, f.ex, f.bulk
	ts := f.all()

	// A no-op fleet run: every tenant is at the latest version already.
	// By default it reads every tenant's real version before skipping it
	// (drift), 200 schemas per statement; --no-verify trusts the catalog.
	for range e.sz.NoopRuns {
		for _, verify := range []bool{true, false} {
			args := []string{"migrate", "tenants", "up", "--all", "--json"}
			if !verify {
				args = append(args, "--no-verify")
			}
			out, took, err := runCmd(ctx, e.bin.product, args, e.serveEnv(o))
			if err != nil {
				return nil, err
			}
			if skipped := summaryField(out, "skipped"); skipped != r.Tenants {
				return nil, fmt.Errorf("the no-op fleet run skipped %d tenants, want %d", skipped, r.Tenants)
			}
			if verify {
				r.Noop = append(r.Noop, took)
			} else {
				r.NoopTrusted = append(r.NoopTrusted, took)
			}
		}
	}
	e.logf("scale: no-op fleet run over %d tenants: %s verified, %s from the catalog alone", r.Tenants, medianDur(r.Noop), medianDur(r.NoopTrusted))

	o.name = "serve (scale)"
	start := time.Now()
	srv, err := e.serve(ctx, o)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	r.ServeStart = time.Since(start)
	a := newAPI(srv)
	if err := e.verifyLike(ctx, a, ten, ex, bulk[len(bulk)-1]); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := prime(ctx, srv, ts, e.sz.Clients); err != nil {
		return nil, err
	}
	r.WarmTook = time.Since(start)
	if r.RSSWarm, err = srv.status("VmRSS"); err != nil {
		return nil, err
	}
	e.logf("scale: every route warm in %s, serve RSS %d MB", r.WarmTook.Round(time.Millisecond), r.RSSWarm/1024)

	base, err := e.baseline(ctx, ten, ex.DBName, "", nil)
	if err != nil {
		return nil, err
	}
	defer base.stop()
	spec := loadSpec{hosts: domains(ts), ids: e.sz.Extensions, clients: e.sz.Clients, warmup: e.sz.Warmup, duration: e.sz.Duration}
	if r.Base, err = e.measure(ctx, base, false, spec); err != nil {
		return nil, err
	}
	s := e.pg.sampleConns(ctx, cat, prefix, 25*time.Millisecond)
	r.Prod, err = e.measure(ctx, srv, true, spec)
	n, _, serr := s.finish()
	if err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	r.MaxConns = n
	if r.BackendMB, r.Backends, r.BackendOK, err = e.pg.backendMemory(ctx, cat); err != nil {
		return nil, err
	}
	r.Handles = gauge(ctx, srv, "controlplane_tenant_schema_handles")
	if r.RSSLoad, err = srv.status("VmRSS"); err != nil {
		return nil, err
	}
	if r.HWM, err = srv.status("VmHWM"); err != nil {
		return nil, err
	}
	e.logf("scale: load across %d tenants: %.0f req/s (baseline %.0f), %d conns, RSS %d MB", r.Tenants, r.Prod.RPS, r.Base.RPS, r.MaxConns, r.RSSLoad/1024)
	srv.stop()
	base.stop()
	if e.cfg.ProfileDir != "" {
		// An extra round (not counted) on a serve with pprof.
		pprofAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		po := o
		po.name, po.bin, po.extra = "serve (scale, pprof)", e.bin.pprof, map[string]string{"BENCH_PPROF_ADDR": pprofAddr}
		psrv, err := e.serve(ctx, po)
		if err != nil {
			return nil, err
		}
		spec.base = psrv.base
		err = prime(ctx, psrv, ts, e.sz.Clients)
		if err == nil {
			err = e.profileLoad(ctx, pprofAddr, "scale", spec)
		}
		psrv.stop()
		if err != nil {
			return nil, err
		}
	}

	if r.Resolve, err = e.resolveBench(ctx); err != nil {
		return nil, err
	}
	return e.scaleSection(r), nil
}

// gauge reads a metric without labels from serve's /metrics (-1 when
// missing).
func gauge(ctx context.Context, p *proc, name string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/metrics", nil)
	if err != nil {
		return -1
	}
	resp, err := newClient(1).Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	// The series of every label set (the router's are by tenant server),
	// summed.
	sum, found := 0.0, false
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok && strings.HasPrefix(line, name+"{") {
			_, rest, ok = strings.Cut(line, "} ")
		}
		if ok {
			if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				sum, found = sum+v, true
			}
		}
	}
	if !found {
		return -1
	}
	return int(sum)
}

// summaryField reads an integer field of the summary line of
// `migrate tenants --json` (-1 when missing).
func summaryField(out []byte, field string) int {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	n := -1
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil || m["summary"] == nil {
			continue
		}
		if v, ok := m[field].(float64); ok {
			n = int(v)
		}
	}
	return n
}

// resolveBench runs the catalog cache's BenchmarkResolve (100 and 10,000
// tenants) and returns the median of its runs per size.
func (e *env) resolveBench(ctx context.Context) ([]resolveBench, error) {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkResolve$", "-benchmem", "-count", "5", "./controlplane/catalog"}
	if e.sz.Name == Smoke.Name {
		args = []string{"test", "-run", "^$", "-bench", "^BenchmarkResolve$", "-benchmem", "-benchtime", "2000x", "-count", "1", "./controlplane/catalog"}
	}
	out, _, err := runCmdDir(ctx, e.cfg.Root, "go", args, nil)
	if err != nil {
		return nil, err
	}
	ns, allocs := map[int][]float64{}, map[int][]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkResolve/") {
			continue
		}
		size, err := strconv.Atoi(strings.Split(strings.TrimPrefix(f[0], "BenchmarkResolve/"), "-")[0])
		if err != nil {
			continue
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				ns[size] = append(ns[size], v)
			case "allocs/op":
				allocs[size] = append(allocs[size], v)
			}
		}
	}
	var res []resolveBench
	for _, size := range []int{100, 10000} {
		if len(ns[size]) == 0 {
			return nil, fmt.Errorf("BenchmarkResolve/%d missing from:\n%s", size, out)
		}
		res = append(res, resolveBench{Tenants: size, NsOp: median(ns[size]), Allocs: median(allocs[size])})
	}
	return res, nil
}

// scaleSection reports benchmark 4.
func (e *env) scaleSection(r *scaleResult) *Section {
	s := &Section{Title: "4. Scale"}
	var b strings.Builder
	fmt.Fprintf(&b, "%d schema-mode tenants in one catalog, %d extensions each. One was created through the API (the exemplar); the other %d in bulk "+
		"in %s, by SQL that leaves exactly what provisioning leaves (`bench/tenants.go`, `bulkSchemaTenants`): per tenant one transaction in one round trip "+
		"with the schema, its ownership mark, the tenant migrations run under `SET LOCAL search_path`, golang-migrate's `schema_migrations` table at the "+
		"latest version, and the extensions (4 in parallel); then the catalog rows, audit entries and API keys, copied from the exemplar's, 1,000 per statement. "+
		"serve loads them from the catalog at start like any other tenant; the run checks that a bulk tenant's catalog fields, relations, constraints and "+
		"migrations table equal the exemplar's, and that it routes. (Through the API, with 4 parallel creators, it would take about 10 times longer: "+
		"provisioning is benchmark 2.)\n\n", r.Tenants, e.sz.Extensions, r.Tenants-1, r.CreateTook.Round(time.Second))
	rssMB := func(kb int64) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }
	noop := medianDur(r.Noop)
	rows := [][]string{
		{"serve start (catalog migrated and loaded, until /healthz)", ms(r.ServeStart)},
		{fmt.Sprintf("one request to each of the %d tenants (%d clients)", r.Tenants, e.sz.Clients), ms(r.WarmTook)},
		{"serve RSS after every route is warm", rssMB(r.RSSWarm)},
		{fmt.Sprintf("serve RSS after the load below (peak %s)", rssMB(r.HWM)), rssMB(r.RSSLoad)},
		{fmt.Sprintf("routed reads across all %d tenants, product", r.Tenants), fmt.Sprintf("%.0f req/s, p50 %s, p99 %s; per request %s CPU in serve, %s in PostgreSQL", r.Prod.RPS, ms(r.Prod.P50), ms(r.Prod.P99), us(r.Prod.CPUPerReq), us(r.Prod.PGCPUPerReq))},
		{"the same load, baseline (one schema)", fmt.Sprintf("%.0f req/s, p50 %s, p99 %s; per request %s CPU in the server, %s in PostgreSQL", r.Base.RPS, ms(r.Base.P50), ms(r.Base.P99), us(r.Base.CPUPerReq), us(r.Base.PGCPUPerReq))},
		{"max serve connections to the tenant server during that load", fmt.Sprintf("%d (budget %d)", r.MaxConns, e.budget)},
		{"schema-mode gorm handles serve held after that load (`controlplane_tenant_schema_handles`)", strconv.Itoa(r.Handles)},
		{fmt.Sprintf("no-op `migrate tenants up --all` over %d tenants, every real version read (median of %d, process start included)", r.Tenants, len(r.Noop)), ms(noop)},
		{fmt.Sprintf("the same with `--no-verify` (the catalog alone; median of %d)", len(r.NoopTrusted)), ms(medianDur(r.NoopTrusted))},
	}
	if r.BackendOK {
		rows = append(rows, []string{fmt.Sprintf("largest private memory (RssAnon) of the %d PostgreSQL backends serving serve after the load", r.Backends), fmt.Sprintf("%.0f MB", r.BackendMB)})
	}
	b.WriteString(table([]string{"measure", "value"}, rows))
	b.WriteString("\n")
	var rrows [][]string
	for _, x := range r.Resolve {
		rrows = append(rrows, []string{strconv.Itoa(x.Tenants), fmt.Sprintf("%.1f ns/op", x.NsOp), fmt.Sprintf("%.0f allocs/op", x.Allocs)})
	}
	b.WriteString("`go test -bench BenchmarkResolve ./controlplane/catalog` (normalise the Host, look it up among N cached tenants; median of 5 runs):\n\n")
	b.WriteString(table([]string{"tenants", "time", "allocations"}, rrows))
	resolveRatio := r.Resolve[1].NsOp / r.Resolve[0].NsOp
	s.Rows = append(s.Rows,
		Row{Bench: "4. Scale", Metric: fmt.Sprintf("serve RSS, every route of %d tenants warm", r.Tenants), Ours: rssMB(r.RSSWarm), Base: "–", Ratio: math.NaN(), Target: "≤ 200 MB", Met: yesNo(r.RSSWarm <= 200*1024)},
		Row{Bench: "4. Scale", Metric: fmt.Sprintf("max server connections, load across %d tenants", r.Tenants), Ours: strconv.Itoa(r.MaxConns), Base: fmt.Sprintf("budget %d", e.budget), Ratio: math.NaN(), Target: "≤ budget", Met: yesNo(r.MaxConns <= e.budget)},
		Row{Bench: "4. Scale", Metric: fmt.Sprintf("req/s across %d tenants", r.Tenants), Ours: rate(r.Prod.RPS, "req/s"), Base: rate(r.Base.RPS, "req/s"), Ratio: r.Prod.RPS / r.Base.RPS},
		Row{Bench: "4. Scale", Metric: "cache lookup, 10,000 vs 100 tenants (BenchmarkResolve)", Ours: fmt.Sprintf("%.1f ns", r.Resolve[1].NsOp), Base: fmt.Sprintf("%.1f ns", r.Resolve[0].NsOp), Ratio: resolveRatio, Target: "O(1): ≤ 1.5×", Met: yesNo(resolveRatio <= 1.5)},
		Row{Bench: "3. Fleet migrations", Metric: fmt.Sprintf("no-op run over %d tenants, versions verified", r.Tenants), Ours: ms(noop), Base: ms(medianDur(r.NoopTrusted)) + " (--no-verify)", Ratio: float64(noop) / float64(medianDur(r.NoopTrusted)), Target: "≤ 2 s", Met: yesNo(noop <= 2*time.Second)},
	)
	s.Body = b.String() + "\n" + scaleAnalysis(r, e.budget)
	return s
}
