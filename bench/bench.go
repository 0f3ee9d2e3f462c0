// Package bench is the harness behind `make bench`: each
// benchmark of the control plane runs against its baseline in the same
// run, on the same PostgreSQL, and the results go to docs/BENCHMARKS.md.
//
// The product runs as it ships: the controlplane binary built from this
// checkout, started as a subprocess (serve, migrate tenants). Variants
// with extra tenant migrations (a fleet rollout, 30 migration files) and a
// serve with pprof are built with `go build -overlay`, which adds files to
// the build without touching the checkout. The load generator runs in
// this process; servers run as subprocesses with the same GOMAXPROCS.
//
// TestSmoke runs every benchmark at a tiny size inside `make test`, so the
// harness cannot rot; the real sizes are never timed tests.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/laracopilot/controlplane/tenantdb"
)

// Sizes sets how big each benchmark is.
type Sizes struct {
	Name string

	// 1. Routed reads.
	ReadSchemaTenants, ReadDBTenants, Extensions int
	Clients                                      int
	Warmup, Duration                             time.Duration
	Rounds                                       int // alternating rounds of baseline and product, per mode
	ColdSamples                                  int // cold first requests of evicted pools

	// 2. Provisioning.
	ProvisionTenants int // per isolation mode and contender
	ManyMigrations   int // migration files of the "many" variant (30)

	// 3. Fleet migrations.
	FleetConcurrency int
	FleetLoop        bool // run the golang-migrate CLI loop (needs the module proxy)

	// 4. Scale.
	ScaleTenants int
	NoopRuns     int

	// 5. Ingest.
	CDRs, CDRBatch, IngestRounds int

	// 6. Connection physics, every serve with its defaults.
	ConnDBTenants   int           // database-mode tenants on the 300-connection server (rows 1 and 4)
	ConnManyTenants int           // database-mode tenants on the 100-connection server (row 2)
	ConnFewSchema   int           // the smaller schema-mode load of row 3 (the larger: all ScaleTenants)
	ConnBurst       int           // concurrent requests of the noisy tenant (row 4)
	ConnDuration    time.Duration // measured window of a round, after Warmup
	ConnRounds      int           // rounds per contender

	// 7. Tenant servers, every serve with its defaults.
	ServerTenants  int           // database-mode tenants (a third on each of the three servers)
	ServerDuration time.Duration // measured window of a round, after Warmup
	ServerRounds   int           // rounds per contender, and outages

	// 8. Tenant backup.
	BackupCDRs   int // CDRs of the tenant backed up
	BackupRounds int // rounds per contender

	// 9. Tenant moves.
	MoveCDRs   int // CDRs of the tenant moved for the copy rate
	MoveRounds int // rounds per contender of the copy rate (one move, one pg_dump | pg_restore)
	MovePauses int // online moves under load, back and forth, for the cutover pause
}

// Full is the size of `make bench`, the one docs/BENCHMARKS.md reports.
var Full = Sizes{
	Name:              "full",
	ReadSchemaTenants: 1000, ReadDBTenants: 200, Extensions: 20,
	Clients: 16, Warmup: 2 * time.Second, Duration: 10 * time.Second, Rounds: 3, ColdSamples: 100,
	ProvisionTenants: 100, ManyMigrations: 30,
	FleetConcurrency: 4, FleetLoop: true,
	ScaleTenants: 10000, NoopRuns: 3,
	CDRs: 10000, CDRBatch: 1000, IngestRounds: 3,
	ConnDBTenants: 200, ConnManyTenants: 1000, ConnFewSchema: 1000, ConnBurst: 1000, ConnDuration: 8 * time.Second, ConnRounds: 3,
	ServerTenants: 60, ServerDuration: 8 * time.Second, ServerRounds: 3,
	// A dump of a few seconds (about 7 s on 2 CPUs): start-up and poll
	// granularity are then a small part of it, as for a real tenant's.
	// Seeding them by SQL takes about 45 s.
	BackupCDRs: 1000000, BackupRounds: 3,
	// As many CDRs as benchmark 8's, seeded by SQL alone (about 15 s); a
	// move of them (about 25 s on 2 CPUs) and a pg_dump | pg_restore
	// (about 15 s) per round, two rounds in the order product, floor,
	// floor, product (a drift over the four weighs on both alike), then
	// ten moves of a small tenant under load (about 35 s): 2.5 minutes on
	// a quiet machine, 4 to 5 when other work shares it (a third round
	// made that 6.5).
	MoveCDRs: 1000000, MoveRounds: 2, MovePauses: 10,
}

// Smoke runs every code path in seconds: TestSmoke, inside `make test`.
// It skips the golang-migrate CLI loop, which `go install`s the CLI.
var Smoke = Sizes{
	Name:              "smoke",
	ReadSchemaTenants: 3, ReadDBTenants: 2, Extensions: 2,
	Clients: 2, Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond, Rounds: 1, ColdSamples: 3,
	ProvisionTenants: 2, ManyMigrations: 3,
	FleetConcurrency: 2, FleetLoop: false,
	ScaleTenants: 12, NoopRuns: 1,
	CDRs: 20, CDRBatch: 10, IngestRounds: 1,
	ConnDBTenants: 3, ConnManyTenants: 5, ConnFewSchema: 4, ConnBurst: 20, ConnDuration: 300 * time.Millisecond, ConnRounds: 1,
	ServerTenants: 6, ServerDuration: 300 * time.Millisecond, ServerRounds: 1,
	BackupCDRs: 300, BackupRounds: 1,
	MoveCDRs: 3000, MoveRounds: 1, MovePauses: 2,
}

// Benchmarks are the names -only accepts, in the order they run.
var Benchmarks = []string{"ingest", "provision", "reads", "fleet", "scale", "connections", "servers", "backup", "move"}

// Config is one run of the harness.
type Config struct {
	Sizes Sizes
	// Only lists the benchmarks to run (see Benchmarks); empty runs all.
	Only []string
	// Rows lists benchmark 6's rows to run ("1".."5"; rows 1 and 4 run
	// together); empty runs all. For working on one row: a full
	// benchmark 6 takes about 15 minutes.
	Rows []string
	// ServerURL is the PostgreSQL server (DATABASE_URL) to use; the run
	// creates and drops its own databases and roles on it.
	ServerURL string
	// Root is the module root (the checkout being measured).
	Root string
	// GoMaxProcs is given to every server the run starts (product and
	// baseline alike); 0 means the number of CPUs.
	GoMaxProcs int
	// ClusterDir, if set, is a folder where benchmark 6 starts PostgreSQL
	// clusters of its own with scripts/pg.sh (local PostgreSQL binaries,
	// run as the postgres user when root): the servers of 300 and 100
	// max_connections its rows need. Empty: those rows run on ServerURL's
	// server, and the report says so. Benchmark 7 starts its three
	// clusters there too, and benchmark 9 its two, or, empty, in a
	// temporary folder of their own (they cannot run on one server).
	ClusterDir string
	// ProfileDir, if set, receives CPU, heap and allocation profiles of
	// serve (and of the baseline) from extra, uncounted rounds of
	// benchmarks 1, 4 and 5.
	ProfileDir string
	// Log receives progress lines.
	Log io.Writer
}

// env is the state of one run, on one PostgreSQL server: the run's
// (DATABASE_URL), or one of the clusters benchmarks 6 and 7 start (see on).
type env struct {
	*shared
	pg *pg
}

// shared is what every env of a run shares, whatever server it is on.
type shared struct {
	cfg  Config
	sz   Sizes
	work string // scratch folder: binaries, overlays, scripts
	bin  binaries
	mig  []migration // the checkout's tenant migrations
	base uint        // their latest version
	// budget is TENANT_SERVER_MAX_CONNS for benchmark 1 and 4.
	budget int
	// procs are the servers started, clusters the PostgreSQL clusters
	// (folders), all stopped when the run ends whatever happened.
	procs    []*proc
	clusters []string
	removing sync.WaitGroup // clusters being deleted in the background
	logw     io.Writer
	logMu    sync.Mutex
	start    time.Time
}

// on returns the run's env on server p: serve, the tenants and every
// measurement it makes use p.
func (e *env) on(p *pg) *env { return &env{shared: e.shared, pg: p} }

// binaries are what the run builds from the checkout.
type binaries struct {
	product  string // ./cmd/controlplane as is
	fleet    string // + one new tenant migration (benchmark 3)
	many     string // + migrations up to ManyMigrations files (benchmark 2)
	pprof    string // + net/http/pprof on BENCH_PPROF_ADDR (profiles only)
	baseline string // ./bench/baseline
}

// migration is one tenant migration file pair.
type migration struct {
	version  uint
	name     string // e.g. 000001_init
	up, down string
}

// Run runs the benchmarks and returns their report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.GoMaxProcs <= 0 {
		cfg.GoMaxProcs = runtime.NumCPU()
	}
	for _, name := range cfg.Only {
		if !slices.Contains(Benchmarks, name) {
			return nil, fmt.Errorf("unknown benchmark %q (have: %s)", name, strings.Join(Benchmarks, ", "))
		}
	}
	e := &env{shared: &shared{cfg: cfg, sz: cfg.Sizes, logw: cfg.Log, start: time.Now()}}
	var err error
	if e.work, err = os.MkdirTemp("", "controlplane-bench-"); err != nil {
		return nil, err
	}
	run := "bn" + randomHex(3)
	if e.pg, err = openPG(ctx, cfg.ServerURL, run); err != nil {
		_ = os.RemoveAll(e.work)
		return nil, err
	}
	defer e.pg.close()
	defer func() {
		// Servers first (they hold connections), the scratch folder next
		// (quick, and an interrupted run may be killed during what
		// follows), then everything the run made on the server, even when
		// a benchmark failed.
		for _, p := range e.procs {
			p.stop()
		}
		e.removing.Wait()
		for _, dir := range e.clusters {
			destroyCluster(context.WithoutCancel(ctx), e.cfg.Root, dir)
		}
		_ = os.RemoveAll(e.work)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		e.logf("cleanup: dropping the run's databases and roles (%s*)", run)
		if err := e.pg.dropPrefixed(cctx, run); err != nil {
			e.logf("cleanup: %v", err)
		}
	}()

	rep := &Report{Date: time.Now().UTC(), Size: e.sz.Name, GoMaxProcs: cfg.GoMaxProcs, Machine: machine(), Commit: e.commit(ctx), LoadBefore: loadAverage()}
	if rep.Server, err = e.pg.info(ctx); err != nil {
		return nil, err
	}
	// TENANT_SERVER_MAX_CONNS for the routed-read servers: what the issue's
	// database-mode load needs to keep 200 pools warm, within the server's
	// max_connections less the catalog pools, the baseline's pool and the
	// harness (see docs/BENCHMARKS.md).
	e.budget = min(300, rep.Server.MaxConns-90)
	if e.budget < 30 {
		return nil, fmt.Errorf("the server's max_connections (%d) is too low for the benchmarks; use at least 150", rep.Server.MaxConns)
	}
	if e.mig, err = readMigrations(filepath.Join(cfg.Root, "migrations", "tenant")); err != nil {
		return nil, err
	}
	e.base = e.mig[len(e.mig)-1].version
	if err := e.buildAll(ctx); err != nil {
		return nil, err
	}

	step := func(name string, run func() (*Section, error)) error {
		if !e.wants(name) {
			return nil
		}
		sec, err := run()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rep.add(sec)
		return nil
	}
	if err := step("ingest", func() (*Section, error) { return e.ingest(ctx) }); err != nil {
		return nil, err
	}
	if err := step("provision", func() (*Section, error) { return e.provision(ctx) }); err != nil {
		return nil, err
	}
	if e.wants("reads") || e.wants("fleet") {
		// Benchmark 3 migrates the tenants benchmark 1 reads from.
		rs, err := e.setupReads(ctx)
		if err != nil {
			return nil, fmt.Errorf("reads: %w", err)
		}
		if err := step("reads", func() (*Section, error) { return e.reads(ctx, rs) }); err != nil {
			return nil, err
		}
		if err := step("fleet", func() (*Section, error) { return e.fleet(ctx, rs) }); err != nil {
			return nil, err
		}
		if err := e.teardownReads(ctx, rs); err != nil {
			return nil, err
		}
	}
	if e.wants("scale") || e.wants("connections") && e.wantsRow("3") {
		// Benchmark 6 reads from the fleet of benchmark 4 (10,000 schema
		// tenants take minutes to make).
		f, err := e.setupScale(ctx)
		if err != nil {
			return nil, fmt.Errorf("scale: %w", err)
		}
		if err := step("scale", func() (*Section, error) { return e.scale(ctx, f) }); err != nil {
			return nil, err
		}
		if err := step("connections", func() (*Section, error) { return e.connections(ctx, f) }); err != nil {
			return nil, err
		}
		if err := e.teardownScale(ctx, f); err != nil {
			return nil, err
		}
	} else if err := step("connections", func() (*Section, error) { return e.connections(ctx, nil) }); err != nil {
		return nil, err
	}
	if err := step("servers", func() (*Section, error) { return e.servers(ctx) }); err != nil {
		return nil, err
	}
	if err := step("backup", func() (*Section, error) { return e.backup(ctx) }); err != nil {
		return nil, err
	}
	if err := step("move", func() (*Section, error) { return e.move(ctx) }); err != nil {
		return nil, err
	}
	rep.Took = time.Since(e.start)
	return rep, nil
}

func (e *env) wants(name string) bool {
	return len(e.cfg.Only) == 0 || slices.Contains(e.cfg.Only, name)
}

// wantsRow says whether benchmark 6's row is to run.
func (e *env) wantsRow(row string) bool {
	return len(e.cfg.Rows) == 0 || slices.Contains(e.cfg.Rows, row)
}

func (e *env) logf(format string, args ...any) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	fmt.Fprintf(e.logw, "[%6.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

// serveOpts configures one serve process.
type serveOpts struct {
	name, bin                   string
	catalog, tenantDB, prefix   string
	isolation                   string
	poolsMax, poolConns, schema int
	budget                      int
	// defaults leaves the router's sizes to serve (benchmark 6): none of
	// TENANT_POOLS_MAX, TENANT_POOL_MAX_CONNS, TENANT_SCHEMA_POOL_CONNS,
	// TENANT_SERVER_MAX_CONNS is set, and the others above are ignored.
	defaults bool
	extra    map[string]string
	// tap, if set, receives serve's output as well (benchmark 9).
	tap io.Writer
}

// roleSecret is TENANT_ROLE_SECRET for every serve and CLI run.
const roleSecret = "bench-role-secret-0123456789abcdef"

// serveEnv is the environment of serve and of `migrate tenants`.
func (e *env) serveEnv(o serveOpts) map[string]string {
	env := map[string]string{
		"DATABASE_URL":             e.pg.dbURL(o.catalog),
		"TENANT_DATABASE_URL":      e.pg.dbURL(o.tenantDB),
		"TENANT_DB_PREFIX":         o.prefix,
		"TENANT_ISOLATION":         o.isolation,
		"TENANT_ROLE_SECRET":       roleSecret,
		"LOG_LEVEL":                "error",
		"GOMAXPROCS":               strconv.Itoa(e.cfg.GoMaxProcs),
		"PGAPPNAME":                appName,
		"TENANT_POOLS_MAX":         strconv.Itoa(cmp(o.poolsMax, 100)),
		"TENANT_POOL_MAX_CONNS":    strconv.Itoa(cmp(o.poolConns, 4)),
		"TENANT_SCHEMA_POOL_CONNS": strconv.Itoa(cmp(o.schema, 20)),
		"TENANT_SERVER_MAX_CONNS":  strconv.Itoa(cmp(o.budget, 60)),
		// No spare databases made in the background while the other
		// benchmarks measure traffic; benchmark 2 turns them on.
		"TENANT_SPARE_DATABASES": "0",
	}
	if o.isolation == "" {
		env["TENANT_ISOLATION"] = "schema"
	}
	if o.defaults {
		for _, k := range []string{"TENANT_POOLS_MAX", "TENANT_POOL_MAX_CONNS", "TENANT_SCHEMA_POOL_CONNS", "TENANT_SERVER_MAX_CONNS"} {
			delete(env, k)
		}
	}
	for k, v := range o.extra {
		env[k] = v
	}
	return env
}

// cmp returns v, or def when v is 0.
func cmp(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// serve starts a serve process (which migrates its catalog first).
func (e *env) serve(ctx context.Context, o serveOpts) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env := e.serveEnv(o)
	env["LISTEN_ADDR"] = addr
	bin := o.bin
	if bin == "" {
		bin = e.bin.product
	}
	p, err := startProc(ctx, o.name, bin, []string{"serve"}, env, addr, o.tap)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// baseline starts the baseline server on schema of database db, with
// net/http/pprof on pprofAddr if not "". With routes (evidence, see
// bench/baseline), it routes by Host to those tenants instead: their
// schemas over 20 connections in lanes of 4, or their databases, a pool of
// 1 each as the tenant's role (as the product's warm database-mode round).
func (e *env) baseline(ctx context.Context, db, schema, pprofAddr string, routes []tenant) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env := map[string]string{
		"DATABASE_URL":    e.pg.dbURL(db, "application_name", "bench-baseline"),
		"BASELINE_SCHEMA": schema,
		"LISTEN_ADDR":     addr,
		"POOL_CONNS":      "20", // = TENANT_SCHEMA_POOL_CONNS of the product
		"GOMAXPROCS":      strconv.Itoa(e.cfg.GoMaxProcs),
		"PPROF_ADDR":      pprofAddr,
	}
	if len(routes) > 0 {
		var rs []string
		for _, t := range routes {
			r := t.Domain + "=" + t.DBName
			if t.Isolation == "database" {
				// As the tenant's own role, as serve connects (SCRAM at
				// connect; then PostgreSQL checks that role's privileges).
				r += ":" + tenantdb.RoleSecret(roleSecret).Password(t.DBName)
			}
			rs = append(rs, r)
		}
		env["BASELINE_ROUTES"] = strings.Join(rs, ",")
		env["BASELINE_ISOLATION"] = routes[0].Isolation
		if routes[0].Isolation == "database" {
			env["POOL_CONNS"] = "1"
		}
	}
	p, err := startProc(ctx, "baseline", e.bin.baseline, nil, env, addr, nil)
	if err != nil {
		return nil, err
	}
	e.procs = append(e.procs, p)
	return p, nil
}

// commit names the checkout measured: its commit, and whether files
// outside the harness differ from it.
func (e *env) commit(ctx context.Context) string {
	out, _, err := runCmdDir(ctx, e.cfg.Root, "git", []string{"rev-parse", "--short", "HEAD"}, nil)
	if err != nil {
		return "unknown (not a git checkout)"
	}
	c := strings.TrimSpace(string(out))
	out, _, err = runCmdDir(ctx, e.cfg.Root, "git", []string{"status", "--porcelain", "--", ".", ":!bench", ":!docs/BENCHMARKS.md", ":!Makefile"}, nil)
	if err == nil && len(strings.TrimSpace(string(out))) > 0 {
		c += " with uncommitted changes"
	}
	return c
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// loadAverage is the machine's 1-minute load average ("" if unknown): a
// machine busy before the run says its numbers are noisier.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// machine describes the computer the run is on.
func machine() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, err := procField(b, "MemTotal"); err == nil {
			m.MemoryGB = float64(kb) / (1 << 20)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
