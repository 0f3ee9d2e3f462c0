package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pg is the one PostgreSQL server every benchmark and every baseline of a
// run shares. Everything the run creates on it (databases, tenant
// databases and roles) is named with the run's prefix, and dropped at the
// end.
type pg struct {
	url   *url.URL      // the admin URL (DATABASE_URL)
	admin *pgxpool.Pool // on the admin URL's own database
	run   string        // prefix of every name this run makes, e.g. "bn3fa9c2"
	// stmts is true when pg_stat_statements can be read: the evidence of
	// statements per operation (make bench preloads it; a given server may
	// not).
	stmts bool
	// local is true when the server's processes are visible in /proc
	// (backend memory is then measured).
	local bool
	// postmaster is the server's main process (local servers; 0 when
	// unknown).
	postmaster int
	// whole is true when the server serves nothing but the measured load (a
	// cluster of the run's own): PostgreSQL's CPU is then the whole
	// cluster's, every backend counted, those that connected and left
	// within a round too.
	whole bool
	// dir and conf are, for a cluster of the run's own, its data folder
	// and the settings it was made with (halt, restart); dir is "" for the
	// run's server.
	dir  string
	conf []string
}

// appName tags the connections of the serve processes (PGAPPNAME), so
// pg_stat_activity tells them from the harness's and the baseline's.
const appName = "bench-serve"

func openPG(ctx context.Context, raw, run string) (*pg, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("DATABASE_URL must be a postgres:// URL")
	}
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.RuntimeParams["application_name"] = "bench-harness"
	admin, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := admin.Ping(ctx); err != nil {
		admin.Close()
		return nil, fmt.Errorf("connect to %s: %w", u.Redacted(), err)
	}
	p := &pg{url: u, admin: admin, run: run}
	if _, err := admin.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err == nil {
		_, err = admin.Exec(ctx, `SELECT pg_stat_statements_reset()`)
		p.stmts = err == nil
	}
	var pid int
	if err := admin.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err == nil {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), "postgres") {
			p.local = true
			p.postmaster, _, _, _ = procTimes(int(pid))
		}
	}
	return p, nil
}

func (p *pg) close() { p.admin.Close() }

// dbURL returns the admin URL pointing at database name, with extra query
// parameters.
func (p *pg) dbURL(name string, extra ...string) string {
	u := *p.url
	u.Path = "/" + name
	q := u.Query()
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// connect opens one connection to database name as the admin.
func (p *pg) connect(ctx context.Context, name string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(p.dbURL(name))
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = "bench-harness"
	return pgx.ConnectConfig(ctx, cfg)
}

// pool opens a small pool on database name as the admin.
func (p *pg) pool(ctx context.Context, name string, conns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(p.dbURL(name))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = conns
	cfg.ConnConfig.RuntimeParams["application_name"] = "bench-harness"
	return pgxpool.NewWithConfig(ctx, cfg)
}

func (p *pg) createDB(ctx context.Context, name string) error {
	_, err := p.admin.Exec(ctx, `CREATE DATABASE `+ident(name))
	return err
}

// dropPrefixed drops every database, then every role, whose name starts
// with prefix (the run's, or one benchmark's tenants). Template databases
// (the provisioner clones database-mode tenants from one) are unmarked
// first: PostgreSQL refuses to drop a template.
func (p *pg) dropPrefixed(ctx context.Context, prefix string) error {
	var errs []error
	rows, err := p.admin.Query(ctx, `SELECT datname, datistemplate FROM pg_database WHERE starts_with(datname, $1)`, prefix)
	if err != nil {
		return err
	}
	type db struct {
		name     string
		template bool
	}
	dbs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (db, error) {
		var d db
		err := r.Scan(&d.name, &d.template)
		return d, err
	})
	if err != nil {
		return err
	}
	for _, d := range dbs {
		if d.template {
			if _, err := p.admin.Exec(ctx, `ALTER DATABASE `+ident(d.name)+` IS_TEMPLATE false`); err != nil {
				errs = append(errs, fmt.Errorf("unmark template %s: %w", d.name, err))
			}
		}
		if _, err := p.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident(d.name)+` WITH (FORCE)`); err != nil {
			errs = append(errs, fmt.Errorf("drop %s: %w", d.name, err))
		}
	}
	rows, err = p.admin.Query(ctx, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, prefix)
	if err != nil {
		return err
	}
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, r := range roles {
		if _, err := p.admin.Exec(ctx, `DROP ROLE IF EXISTS `+ident(r)); err != nil {
			errs = append(errs, fmt.Errorf("drop role %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// serverInfo is what docs/BENCHMARKS.md says of the server.
type serverInfo struct {
	Version  string
	Settings [][2]string // name, value
	MaxConns int
}

func (p *pg) info(ctx context.Context) (serverInfo, error) {
	var s serverInfo
	if err := p.admin.QueryRow(ctx, `SELECT version()`).Scan(&s.Version); err != nil {
		return s, err
	}
	for _, name := range []string{"server_version", "max_connections", "shared_buffers", "fsync", "synchronous_commit", "full_page_writes", "work_mem", "shared_preload_libraries"} {
		var v string
		if err := p.admin.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v); err != nil {
			return s, err
		}
		if name == "max_connections" {
			fmt.Sscan(v, &s.MaxConns)
		}
		s.Settings = append(s.Settings, [2]string{name, v})
	}
	return s, nil
}

// stmtStat is one statement's line in pg_stat_statements.
type stmtStat struct {
	Query   string
	Calls   int64
	TotalMS float64
}

// stmtStats is what PostgreSQL executed while an operation ran.
type stmtStats struct {
	Calls   int64      // statements executed
	TotalMS float64    // their execution time inside the server
	Top     []stmtStat // every statement, costliest first
}

// add sums two windows' statistics, the statements matched by text.
func (s stmtStats) add(o stmtStats) stmtStats {
	out := stmtStats{Calls: s.Calls + o.Calls, TotalMS: s.TotalMS + o.TotalMS}
	byQuery := map[string]int{}
	for _, t := range append(append([]stmtStat{}, s.Top...), o.Top...) {
		if i, ok := byQuery[t.Query]; ok {
			out.Top[i].Calls += t.Calls
			out.Top[i].TotalMS += t.TotalMS
			continue
		}
		byQuery[t.Query] = len(out.Top)
		out.Top = append(out.Top, t)
	}
	sort.Slice(out.Top, func(i, j int) bool { return out.Top[i].TotalMS > out.Top[j].TotalMS })
	return out
}

// statements runs fn and reports what PostgreSQL executed meanwhile
// (pg_stat_statements, reset first). The harness's own queries on
// pg_stat_* are left out. ok is false when pg_stat_statements is missing.
func (p *pg) statements(ctx context.Context, fn func() error) (st stmtStats, ok bool, err error) {
	if !p.stmts {
		return st, false, fn()
	}
	if _, err := p.admin.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		return st, false, err
	}
	if err := fn(); err != nil {
		return st, false, err
	}
	// Utility statements (CREATE DATABASE "t_42", CREATE ROLE ... PASSWORD
	// '...') are not normalised by pg_stat_statements: string literals and
	// numbers are folded here so that they group.
	rows, err := p.admin.Query(ctx, `
		SELECT regexp_replace(regexp_replace(regexp_replace(query, '\s+', ' ', 'g'), '''[^'']*''', '''…''', 'g'), '[0-9]+', 'N', 'g') AS q,
			sum(calls)::bigint, sum(total_exec_time)
		FROM pg_stat_statements
		WHERE query NOT LIKE '%pg_stat%' AND query NOT LIKE '%pg_backend_pid%'
		GROUP BY q ORDER BY 3 DESC`)
	if err != nil {
		return st, false, err
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stmtStat, error) {
		var s stmtStat
		err := r.Scan(&s.Query, &s.Calls, &s.TotalMS)
		return s, err
	})
	if err != nil {
		return st, false, err
	}
	for _, s := range all {
		st.Calls += s.Calls
		st.TotalMS += s.TotalMS
	}
	st.Top = all
	return st, true, nil
}

// connSampler polls pg_stat_activity for the connections serve holds to
// the tenant server (application bench-serve, outside the catalog
// database) and keeps the maxima: of all of them, and of those to tenant
// databases (names starting with the tenant prefix: in database mode,
// exactly the router's; the provisioner's admin connection stays on the
// server's own database).
type connSampler struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	max      int
	maxNamed int
	err      error
}

func (p *pg) sampleConns(ctx context.Context, catalogDB, prefix string, every time.Duration) *connSampler {
	s := &connSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			var n, named int
			err := p.admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE starts_with(datname, $3))
				FROM pg_stat_activity WHERE application_name = $1 AND datname <> $2`, appName, catalogDB, prefix).Scan(&n, &named)
			s.mu.Lock()
			if err != nil && s.err == nil {
				s.err = err
			}
			s.max, s.maxNamed = max(s.max, n), max(s.maxNamed, named)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// finish stops the sampler and returns the most connections seen: all of
// serve's to the tenant server, and those to tenant databases.
func (s *connSampler) finish() (all, named int, err error) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.maxNamed, s.err
}

// sessions returns how many sessions have been opened, ever, on the
// databases whose names start with prefix (pg_stat_database, PostgreSQL
// 14+; -1 when unknown): the difference over a round is the connections
// the router opened.
func (p *pg) sessions(ctx context.Context, prefix string) int64 {
	var n int64
	if err := p.admin.QueryRow(ctx, `SELECT coalesce(sum(sessions), 0)::bigint FROM pg_stat_database WHERE starts_with(datname, $1)`, prefix).Scan(&n); err != nil {
		return -1
	}
	return n
}

// backendCPU returns the CPU time used so far by each backend serving
// application app, by pid (empty when the server's processes are not
// visible here). The difference over a round, per request, is what
// PostgreSQL spent on each request of that contender. On a server of the
// run's own (whole) it is the whole cluster's, under pid 0: a backend that
// connects and leaves within the round counts too.
func (p *pg) backendCPU(ctx context.Context, app string) (map[int32]time.Duration, error) {
	out := map[int32]time.Duration{}
	if !p.local {
		return out, nil
	}
	if p.whole && p.postmaster > 0 {
		d, err := treeCPU(p.postmaster)
		out[0] = d
		return out, err
	}
	rows, err := p.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		return nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	for _, pid := range pids {
		if d, err := procCPU(int(pid)); err == nil {
			out[pid] = d
		}
	}
	return out, nil
}

// cpuDelta sums what each backend of after used since before (a backend
// that is new counts from zero; one that left is not counted).
func cpuDelta(before, after map[int32]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range after {
		d += t - before[pid]
	}
	return d
}

// backendMemory returns the largest private memory (RssAnon, MB) of the
// backends serving serve's tenant-server connections: each caches the
// catalog entries of every relation it touched, which grows with the
// schemas one connection visits. ok is false if the server's processes
// are not visible here.
func (p *pg) backendMemory(ctx context.Context, catalogDB string) (maxMB float64, n int, ok bool, err error) {
	if !p.local {
		return 0, 0, false, nil
	}
	rows, err := p.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname <> $2`, appName, catalogDB)
	if err != nil {
		return 0, 0, false, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, 0, false, err
	}
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		kb, err := procField(b, "RssAnon")
		if err != nil {
			continue
		}
		n++
		maxMB = max(maxMB, float64(kb)/1024)
	}
	return maxMB, n, n > 0, nil
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
