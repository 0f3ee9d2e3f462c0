package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/laracopilot/controlplane/controlplane"
)

// Benchmark 9, tenant moves: one serve, two PostgreSQL clusters of the
// run's own (A, the default server, and B, registered as pg-b), with
// MOVE_SOURCE_GRACE=0 so that the reconciler (RECONCILE_INTERVAL=1s) drops
// the source a move sets aside before the next round starts.
//
//   - Copy rate: a database-mode tenant with MoveCDRs CDRs moved online
//     back and forth (POST /api/tenants/{id}/move, the operation polled
//     until it ends) against the floor, `pg_dump -Fc | pg_restore` of the
//     same database into a fresh database on the other cluster, with the
//     same client programs, in alternating rounds. Target: the floor's
//     time ÷ the move's ≥ 0.8.
//   - Cutover pause: a second tenant under a steady mixed load (extension
//     writes and reads, CDR batches, paced) moved MovePauses times back and
//     forth; per move, the pause serve logs (hold to flip) and the longest
//     request the load saw while it ran; every failed request counts.
//     Targets: p99 of the pause ≤ 500 ms, no failed request.
//
// The catalog is on the run's server, the tenants on A and B.

const (
	// moveMaxConns is each cluster's max_connections: serve's pools, the
	// move's replication (a walsender and tablesync workers) and the
	// harness fit in it many times over.
	moveMaxConns = 100
	// movePoll is the pause between an answer about a move's operation and
	// the next question (as benchmark 8's backupPoll).
	movePoll = 20 * time.Millisecond
	// moveDropLimit is how long the reconciler may take to drop the source
	// a move set aside (MOVE_SOURCE_GRACE=0, a pass every second).
	moveDropLimit = 2 * time.Minute
	// moveLogLimit is how long after its operation succeeded a move's
	// cutover log line may take to reach the harness (it is written
	// before the operation ends; the pipe may lag).
	moveLogLimit = 5 * time.Second
	// moveSteady is how long the load runs before the first move under
	// load and between two (once the previous move's aside is dropped).
	moveSteady = 500 * time.Millisecond
	// moveLoadWriters post extensions, moveLoadReaders list them, and
	// moveLoadCDRs post batches of moveCDRBatch CDRs, each one request at
	// a time, as TestOnlineMoveUnderLoadWithTwoReplicas does, but paced:
	// each sends a request every 1/moveLoadRate s (at once when the last
	// took longer). A steady load, not the most the machine can send: the
	// tenant grows at a known rate over the moves (closed loops on these 2
	// CPUs wrote 870,000 CDRs in 5 minutes, and every move copies all of
	// them), and the load generator leaves PostgreSQL and serve the CPU a
	// real tenant's clients (on other machines) would.
	moveLoadWriters = 2
	moveLoadReaders = 1
	moveLoadCDRs    = 1
	moveCDRBatch    = 20
	moveLoadRate    = 50
	// moveMaxExtensions is the load tenant's max_extensions (the API's
	// maximum): the writers never reach it.
	moveMaxExtensions = 100000
	// movePauseTarget and moveCopyTarget are the targets.
	movePauseTarget = 500 * time.Millisecond
	moveCopyTarget  = 0.8
	// moveFlipped is the message of the log line serve writes when a
	// move's cutover flipped the catalog (tenantdb.Move), with the pause.
	moveFlipped = "a move's cutover flipped the tenant to its new server"
	// moveAbandoned is that of a cutover abandoned and tried again.
	moveAbandoned = "a move's cutover was abandoned"
)

// moveCopyRun is one timed copy of the tenant, a move or the floor's.
type moveCopyRun struct {
	From, To string // the clusters' labels, A or B
	// Took is what the client waits: the POST to the answer that says
	// succeeded (a move); CREATE DATABASE and pg_dump | pg_restore (the
	// floor).
	Took time.Duration
	// Bytes is the tenant's database's size on the cluster it was copied
	// from (pg_database_size), the rate's numerator for both.
	Bytes int64
	// Move only: the operation's own started_at → finished_at, when the
	// polls first saw the phases copying and cutover (from the POST), and
	// how many polls.
	OpTook              time.Duration
	Copying, Cutover    time.Duration
	Polls               int
	Pause               time.Duration // the cutover's, from serve's log
	ServeCPU            time.Duration // serve's own over the move
	PGCPU               time.Duration // both clusters' (every process: backends, walsender, workers)
	Op                  int64
	Create              time.Duration // floor only: CREATE DATABASE
	DumpCPU, RestoreCPU time.Duration // floor only: the programs' user+system time
}

// mbps is the run's rate in MB/s (10⁶ bytes) of the source database.
func (r moveCopyRun) mbps() float64 { return float64(r.Bytes) / 1e6 / r.Took.Seconds() }

// moveCopyContender is one side of the copy rate.
type moveCopyContender struct {
	Label string
	Runs  []moveCopyRun
}

func (c *moveCopyContender) med(f func(moveCopyRun) float64) float64 { return medianBy(c.Runs, f) }

func (c *moveCopyContender) medDur(f func(moveCopyRun) time.Duration) time.Duration {
	return time.Duration(c.med(func(r moveCopyRun) float64 { return float64(f(r)) }))
}

// movePauseRun is one move under load.
type movePauseRun struct {
	From, To string
	Op       int64
	Took     time.Duration // the POST to the answer that says succeeded
	// Pause is the cutover's as serve logs it: from the hold (before
	// MoveHooks.Hold) to the flip committed. Attempts counts the cutovers
	// (one, or more when one was abandoned and tried again).
	Pause    time.Duration
	Attempts int
	// Longest is the longest request of the load that overlapped the
	// move (sent before it ended, answered after it started); Requests and
	// Failed count those requests.
	Longest          time.Duration
	LongestWhat      string
	Requests, Failed int
}

// moveReq is one request of the load under moves.
type moveReq struct {
	Start time.Time
	Took  time.Duration
	What  string // e.g. POST /api/extensions
	OK    bool
	Err   string // why it failed: HTTP status and body, or the transport error
}

// moveResult is benchmark 9.
type moveResult struct {
	CDRs                 int
	Rated                int
	SeedTook, VacuumTook time.Duration
	TableBytes, DBBytes  int64 // cdrs with its indexes, the database, on A after seeding
	PgDump, PgRestore    string
	Version              string
	Own                  bool // clusters in ClusterDir
	Product, Floor       moveCopyContender
	Pauses               []movePauseRun
	// The load over the whole pause part: requests sent, those that
	// failed (the first few described), by kind.
	LoadTook      time.Duration
	Requests      int
	Failed        int
	FirstFailures []string
	ByKind        map[string]int
	Acked, Found  int // extensions the load's writers had acknowledged, and found on the tenant's last server
	CDRsAcked     int
	CDRsFound     int
	LoadBytes     int64 // the load tenant's database at the end
}

// moveEnv is what the benchmark's parts share.
type moveEnv struct {
	srv     *proc
	a       *api
	servers [2]tenantServer
	tap     *lineTap
	tenant  string // TENANT_DATABASE_URL's database on A (and alike on B)
}

// move is benchmark 9.
func (e *env) move(ctx context.Context) (*Section, error) {
	if e.sz.MoveCDRs < 1 || e.sz.MoveRounds < 1 || e.sz.MovePauses < 1 {
		return nil, fmt.Errorf("MoveCDRs, MoveRounds and MovePauses must be at least 1, got %d, %d and %d", e.sz.MoveCDRs, e.sz.MoveRounds, e.sz.MovePauses)
	}
	r := &moveResult{CDRs: e.sz.MoveCDRs, Own: e.cfg.ClusterDir != "",
		Product: moveCopyContender{Label: "product: online move, `POST /api/tenants/{id}/move`, polled"},
		Floor:   moveCopyContender{Label: "floor: `CREATE DATABASE`, then `pg_dump -Fc` piped into `pg_restore`"}}
	var err error
	if r.PgDump, err = exec.LookPath("pg_dump"); err != nil {
		return nil, fmt.Errorf("pg_dump is not on PATH: %w", err)
	}
	if r.PgRestore, err = exec.LookPath("pg_restore"); err != nil {
		return nil, fmt.Errorf("pg_restore is not on PATH: %w", err)
	}
	out, _, err := runCmd(ctx, r.PgDump, []string{"--version"}, nil)
	if err != nil {
		return nil, err
	}
	r.Version = strings.TrimSpace(string(out))

	root, done, err := e.clusterRoot("controlplane-bench-move-")
	if err != nil {
		return nil, err
	}
	defer done()
	m := &moveEnv{tenant: e.pg.run + "_move", tap: newLineTap("a move's cutover", `"level":"WARN"`, `"level":"ERROR"`)}
	for i, name := range []string{controlplane.DefaultServer, "pg-b"} {
		label := string(rune('A' + i))
		p, stop, err := e.clusterIn(ctx, root, "move-"+label, moveMaxConns)
		if err != nil {
			return nil, err
		}
		defer stop()
		m.servers[i] = tenantServer{Label: label, Name: name, env: e.on(p)}
		if err := p.createDB(ctx, m.tenant); err != nil {
			return nil, err
		}
	}
	e.settleClusters() // the previous benchmarks' clusters' files, deleted meanwhile
	cat := e.pg.run + "_move_cat"
	if err := e.pg.createDB(ctx, cat); err != nil {
		return nil, err
	}
	a := m.servers[0].env
	m.srv, err = e.serve(ctx, serveOpts{name: "serve (move)", catalog: cat, tenantDB: m.tenant, prefix: e.pg.run + "mv_", isolation: "database", defaults: true,
		tap: m.tap, extra: map[string]string{
			"TENANT_DATABASE_URL": a.pg.dbURL(m.tenant),
			// The cutover's log line is at info (a line per request too,
			// as in production, where info is the default).
			"LOG_LEVEL":          "info",
			"MOVE_SOURCE_GRACE":  "0",
			"RECONCILE_INTERVAL": "1s",
			"BACKUP_DIR":         filepath.Join(e.work, "move-backups"),
		}})
	if err != nil {
		return nil, err
	}
	defer m.srv.stop()
	m.a = newAPI(m.srv)
	// No password in B's URL (the harness's postgres role is trusted), so
	// no SERVER_SECRET_KEY either; B's subscriptions reach A the same way.
	spec := map[string]any{"name": m.servers[1].Name, "url": m.servers[1].env.pg.dbURL(m.tenant), "capacity": 100}
	if err := m.a.do(ctx, http.MethodPost, "", "/api/servers", spec, nil, http.StatusCreated); err != nil {
		return nil, err
	}

	if err := e.moveCopy(ctx, m, r); err != nil {
		return nil, err
	}
	if err := e.movePauses(ctx, m, r); err != nil {
		return nil, err
	}
	m.srv.stop()
	if _, err := e.pg.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident(cat)+` WITH (FORCE)`); err != nil {
		return nil, err
	}
	return e.moveSection(r), nil
}

// moveTenant creates tenant tag-1 on A through the API.
func (e *env) moveTenant(ctx context.Context, m *moveEnv, tag string, extra map[string]any) (tenant, error) {
	spec := e.tenantSpec(tag, 1, "database")
	spec["server"] = controlplane.DefaultServer
	maps.Copy(spec, extra)
	t, err := m.a.createTenant(ctx, spec)
	if err != nil {
		return t, err
	}
	if t.Provisioning != "ready" || t.Server != controlplane.DefaultServer {
		return t, fmt.Errorf("tenant %s is %s on %q, want ready on %s", t.Slug, t.Provisioning, t.Server, controlplane.DefaultServer)
	}
	return t, nil
}

// moveCopy is the copy rate: the tenant moved back and forth against the
// floor's pg_dump | pg_restore, in alternating rounds.
func (e *env) moveCopy(ctx context.Context, m *moveEnv, r *moveResult) error {
	t, err := e.moveTenant(ctx, m, "mvc", nil)
	if err != nil {
		return err
	}
	if err := e.seedMove(ctx, m, t, r); err != nil {
		return fmt.Errorf("seed %d CDRs: %w", r.CDRs, err)
	}
	cur := 0 // the cluster the tenant is on
	repro := fmt.Sprintf("reproduce: a database-mode tenant with %d CDRs on one server, a second server registered, then POST /api/tenants/{id}/move {\"server\": …} and GET /api/operations/{op id}", r.CDRs)
	product := func() (moveCopyRun, error) {
		from, to := m.servers[cur], m.servers[1-cur]
		run := moveCopyRun{From: from.Label, To: to.Label}
		var err error
		if run.Bytes, err = dbSize(ctx, from.env.pg, t.DBName); err != nil {
			return run, err
		}
		cpu0, err := m.srv.cpu()
		if err != nil {
			return run, err
		}
		pg0, err := clustersCPU(ctx, m)
		if err != nil {
			return run, err
		}
		op, seen, polls, took, err := e.runMove(ctx, m, t, to.Name)
		run.Took, run.Polls, run.Op = took, polls, op.ID
		if err != nil {
			return run, fmt.Errorf("%w; %s", err, repro)
		}
		cpu1, err := m.srv.cpu()
		if err != nil {
			return run, err
		}
		pg1, err := clustersCPU(ctx, m)
		if err != nil {
			return run, err
		}
		run.ServeCPU, run.PGCPU = cpu1-cpu0, pg1-pg0
		run.OpTook = op.FinishedAt.Sub(op.StartedAt)
		run.Copying, run.Cutover = seen["copying"], seen["cutover"]
		if run.Pause, _, err = e.movePause(ctx, m, op.ID); err != nil {
			return run, err
		}
		cur = 1 - cur
		if err := e.afterMove(ctx, m, op, from, to, t); err != nil {
			return run, err
		}
		if n, err := countCDRs(ctx, to.env.pg, t.DBName); err != nil || n != r.CDRs {
			return run, fmt.Errorf("after move %d the tenant has %d CDRs on %s (%v), want %d; %s", op.ID, n, to.Label, err, r.CDRs, repro)
		}
		return run, settle(ctx, m, to, t.DBName)
	}

	// The floor: what moving the database costs with PostgreSQL's own
	// tools, the programs the product's offline move and backups run (the
	// ones on PATH), as the superuser both clusters trust: a fresh
	// database on the other cluster, then pg_dump's custom format piped
	// into pg_restore. --no-owner and --no-privileges: the tenant's role
	// need not exist there (an ALTER OWNER and a few GRANTs fewer).
	fresh := e.pg.run + "_move_floor"
	floor := func() (moveCopyRun, error) {
		from, to := m.servers[cur], m.servers[1-cur]
		run := moveCopyRun{From: from.Label, To: to.Label}
		var err error
		if run.Bytes, err = dbSize(ctx, from.env.pg, t.DBName); err != nil {
			return run, err
		}
		env := func(p *pg, db string) []string {
			return append(baseEnv(), "PGHOST="+p.url.Hostname(), "PGPORT="+portOf(p.url.Port()), "PGUSER=postgres", "PGDATABASE="+db,
				"PGAPPNAME="+floorApp, "PGCONNECT_TIMEOUT=10", "PGOPTIONS=", "PGPASSWORD=")
		}
		dump := exec.CommandContext(ctx, r.PgDump, "--format=custom", "--no-password")
		dump.Env = env(from.env.pg, t.DBName)
		restore := exec.CommandContext(ctx, r.PgRestore, "--no-password", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname="+fresh)
		restore.Env = env(to.env.pg, fresh)
		dumpErr, restoreErr := &tail{max: 4 << 10}, &tail{max: 4 << 10}
		dump.Stderr, restore.Stderr = dumpErr, restoreErr
		pr, pw, err := os.Pipe()
		if err != nil {
			return run, err
		}
		dump.Stdout, restore.Stdin = pw, pr
		pg0, err := clustersCPU(ctx, m)
		if err != nil {
			pr.Close()
			pw.Close()
			return run, err
		}
		t0 := time.Now()
		if _, err := to.env.pg.admin.Exec(ctx, `CREATE DATABASE `+ident(fresh)); err != nil {
			pr.Close()
			pw.Close()
			return run, err
		}
		run.Create = time.Since(t0)
		err = restore.Start()
		if err == nil {
			if err = dump.Start(); err != nil {
				_ = restore.Process.Kill()
			}
		}
		// The children hold their ends; the harness's copies go, so that
		// pg_restore sees the end of the archive when pg_dump exits.
		pr.Close()
		pw.Close()
		if err != nil {
			_ = restore.Wait()
			return run, err
		}
		derr := dump.Wait()
		rerr := restore.Wait()
		run.Took = time.Since(t0)
		if derr != nil || rerr != nil {
			return run, fmt.Errorf("pg_dump -Fc | pg_restore from %s to %s: pg_dump: %v: %s; pg_restore: %v: %s", from.Label, to.Label, derr, dumpErr.String(), rerr, restoreErr.String())
		}
		pg1, err := clustersCPU(ctx, m)
		if err != nil {
			return run, err
		}
		run.PGCPU = pg1 - pg0
		run.DumpCPU = dump.ProcessState.UserTime() + dump.ProcessState.SystemTime()
		run.RestoreCPU = restore.ProcessState.UserTime() + restore.ProcessState.SystemTime()
		if n, err := countCDRs(ctx, to.env.pg, fresh); err != nil || n != r.CDRs {
			return run, fmt.Errorf("pg_restore left %d CDRs on %s (%v), want %d", n, to.Label, err, r.CDRs)
		}
		if _, err := to.env.pg.admin.Exec(ctx, `DROP DATABASE `+ident(fresh)+` WITH (FORCE)`); err != nil {
			return run, err
		}
		return run, settle(ctx, m, from, t.DBName)
	}

	e.logf("move: %d rounds of an online move and a pg_dump | pg_restore, %d CDRs (the database %s)", e.sz.MoveRounds, r.CDRs, mb(r.DBBytes))
	for round := range e.sz.MoveRounds {
		for k := range 2 {
			if (round+k)%2 == 0 {
				run, err := product()
				if err != nil {
					return err
				}
				r.Product.Runs = append(r.Product.Runs, run)
				e.logf("move round %d: online move %s→%s %s (%s), pause %s, operation's own %s", round+1, run.From, run.To, ms(run.Took),
					rate(run.mbps(), "MB/s"), ms(run.Pause), ms(run.OpTook))
			} else {
				run, err := floor()
				if err != nil {
					return err
				}
				r.Floor.Runs = append(r.Floor.Runs, run)
				e.logf("move round %d: pg_dump | pg_restore %s→%s %s (%s), CREATE DATABASE %s", round+1, run.From, run.To, ms(run.Took),
					rate(run.mbps(), "MB/s"), ms(run.Create))
			}
		}
	}
	return nil
}

// runMove moves t to server target online and polls its operation every
// movePoll until it is no longer running. It returns the operation as
// last read, when each phase was first seen (from the POST), the polls,
// and the time from the POST to the answer that says it ended; an error
// unless it succeeded with the progress a move reports.
func (e *env) runMove(ctx context.Context, m *moveEnv, t tenant, target string) (op backupOp, seen map[string]time.Duration, polls int, took time.Duration, err error) {
	seen = map[string]time.Duration{}
	t0 := time.Now()
	if err := m.a.do(ctx, http.MethodPost, "", fmt.Sprintf("/api/tenants/%d/move", t.ID), map[string]any{"server": target}, &op, http.StatusAccepted); err != nil {
		return op, seen, 0, 0, err
	}
	for op.State == "running" {
		select {
		case <-ctx.Done():
			return op, seen, polls, 0, ctx.Err()
		case <-time.After(movePoll):
		}
		var o struct {
			backupOp
			Phase string `json:"phase"`
		}
		if err := m.a.do(ctx, http.MethodGet, "", fmt.Sprintf("/api/operations/%d", op.ID), nil, &o, http.StatusOK); err != nil {
			return op, seen, polls, 0, err
		}
		polls++
		op = o.backupOp
		if _, ok := seen[o.Phase]; !ok && o.Phase != "" {
			seen[o.Phase] = time.Since(t0)
		}
	}
	took = time.Since(t0)
	if op.Kind != "move" || op.State != "succeeded" || op.FinishedAt == nil {
		return op, seen, polls, took, fmt.Errorf("move %d of tenant %d to %s (kind %q) ended %q after %s: %s", op.ID, t.ID, target, op.Kind, op.State, ms(took), op.Error)
	}
	aside := fmt.Sprintf("%s_m%d", t.DBName, op.ID)
	if op.Progress["target"] != target || op.Progress["aside"] != aside || op.Progress["source"] == nil {
		return op, seen, polls, took, fmt.Errorf("move %d succeeded with progress %v, want target %s, aside %s and its source", op.ID, op.Progress, target, aside)
	}
	return op, seen, polls, took, nil
}

// movePause reads move op's cutover pause from serve's log line, and how
// many cutovers it took (abandoned ones logged too).
func (e *env) movePause(ctx context.Context, m *moveEnv, op int64) (time.Duration, int, error) {
	deadline := time.Now().Add(moveLogLimit)
	for {
		abandoned := 0
		for _, line := range m.tap.Lines() {
			var l struct {
				Msg   string          `json:"msg"`
				Op    int64           `json:"operation_id"`
				Pause json.RawMessage `json:"pause"`
			}
			if json.Unmarshal([]byte(line), &l) != nil || l.Op != op {
				continue
			}
			if strings.HasPrefix(l.Msg, moveAbandoned) {
				abandoned++
				continue
			}
			if l.Msg != moveFlipped {
				continue
			}
			d, err := logDuration(l.Pause)
			if err != nil {
				return 0, 0, fmt.Errorf("serve's line %q: pause: %w", line, err)
			}
			// Where the pause went (the line's marks from the hold): in
			// the run's log, for whoever tunes the cutover.
			e.logf("move %d: %s", op, line)
			return d, abandoned + 1, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("move %d succeeded but serve logged no %q line with its pause within %s", op, moveFlipped, moveLogLimit)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// logDuration reads a duration of a slog line: nanoseconds (JSON) or
// Go's text ("123ms", LOG_FORMAT=text).
func logDuration(raw json.RawMessage) (time.Duration, error) {
	var ns int64
	if err := json.Unmarshal(raw, &ns); err == nil {
		return time.Duration(ns), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("neither nanoseconds nor a duration: %s", raw)
	}
	return time.ParseDuration(s)
}

// afterMove waits, untimed, until the reconciler has dropped the source
// move op set aside on from (MOVE_SOURCE_GRACE=0), as the operation's
// progress ("dropped") and the cluster say, so that the next round starts
// with one copy of the tenant.
func (e *env) afterMove(ctx context.Context, m *moveEnv, op backupOp, from, to tenantServer, t tenant) error {
	aside, _ := op.Progress["aside"].(string)
	deadline := time.Now().Add(moveDropLimit)
	for {
		if err := m.a.do(ctx, http.MethodGet, "", fmt.Sprintf("/api/operations/%d", op.ID), nil, &op, http.StatusOK); err != nil {
			return err
		}
		if op.Progress["dropped"] == true {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("move %d: the reconciler did not drop the source's aside %s on %s within %s (MOVE_SOURCE_GRACE=0, RECONCILE_INTERVAL=1s): progress %v; serve's log: %s",
				op.ID, aside, from.Label, moveDropLimit, op.Progress, m.tap.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var left []string
	for _, s := range []tenantServer{from, to} {
		var names []string
		rows, err := s.env.pg.admin.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1`, t.DBName)
		if err != nil {
			return err
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			names = append(names, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		want := []string{}
		if s.Label == to.Label {
			want = []string{t.DBName}
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			left = append(left, fmt.Sprintf("%s has %v, want %v", s.Label, names, want))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("after move %d and its aside's drop: %s", op.ID, strings.Join(left, "; "))
	}
	return nil
}

// settle leaves both clusters as every round starts (untimed): the
// tenant's database on s vacuumed (VACUUM (FREEZE, ANALYZE): a moved copy
// is read next as the seeded one was, its hint bits set) and a CHECKPOINT
// on both, so that no timed copy meets the previous one's writes.
func settle(ctx context.Context, m *moveEnv, s tenantServer, db string) error {
	conn, err := s.env.pg.connect(ctx, db)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `VACUUM (FREEZE, ANALYZE)`)
	conn.Close(ctx)
	if err != nil {
		return err
	}
	for _, c := range m.servers {
		if _, err := c.env.pg.admin.Exec(ctx, `CHECKPOINT`); err != nil {
			return err
		}
	}
	return nil
}

// clustersCPU is both clusters' CPU so far (every process of each: the
// backends, the walsender and the subscription's workers).
func clustersCPU(ctx context.Context, m *moveEnv) (time.Duration, error) {
	var d time.Duration
	for _, s := range m.servers {
		c, err := s.env.pg.backendCPU(ctx, appName)
		if err != nil {
			return 0, err
		}
		for _, x := range c {
			d += x
		}
	}
	return d, nil
}

func dbSize(ctx context.Context, p *pg, db string) (int64, error) {
	var n int64
	err := p.admin.QueryRow(ctx, `SELECT pg_database_size($1)`, db).Scan(&n)
	return n, err
}

func countCDRs(ctx context.Context, p *pg, db string) (int, error) {
	conn, err := p.connect(ctx, db)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM cdrs`).Scan(&n)
	return n, err
}

// seedMove gives tenant t r.CDRs CDRs: benchmark 5's rate deck posted
// through the API, then the calls inserted with SQL alone (as the
// superuser, into the table the tenant's role owns), in benchmark 5's mix
// (six in ten answered outbound calls to rated destinations, one to a
// destination without a rate, one answered inbound, one unanswered, one
// internal), each with a fresh uuid, the cost as the product rates it
// (the longest prefix; minimum, then increments; rounded up to 4
// decimals), ids from the table's identity (its sequence so advanced), in
// one transaction, the table's indexes made after its rows. Then VACUUM
// (FREEZE, ANALYZE) and a CHECKPOINT, as benchmark 8 does.
func (e *env) seedMove(ctx context.Context, m *moveEnv, t tenant, r *moveResult) error {
	for _, rt := range ingestRates {
		spec := maps.Clone(rt)
		spec["effective_from"] = "2025-01-01T00:00:00Z"
		if err := m.a.do(ctx, http.MethodPost, t.Domain, "/api/rates", spec, nil, http.StatusCreated); err != nil {
			return err
		}
	}
	a := m.servers[0].env.pg
	conn, err := a.connect(ctx, t.DBName)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	start := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// The rows first, the table's indexes after, as pg_restore loads a
	// table: its constraints' indexes (primary key, unique) and the
	// others, read from the catalog, dropped and made again alike (a
	// difference would fail the first move, which compares the source's
	// objects with the target's), with the foreign keys unchecked
	// (session_replication_role; every rate_id is the tenant's).
	type def struct{ name, def string }
	read := func(q string) ([]def, error) {
		rows, err := tx.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (def, error) {
			var d def
			err := r.Scan(&d.name, &d.def)
			return d, err
		})
	}
	cons, err := read(`SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'cdrs'::regclass AND contype IN ('p', 'u') ORDER BY contype, conname`)
	if err != nil {
		return err
	}
	idx, err := read(`SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i WHERE indrelid = 'cdrs'::regclass
		AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = i.indrelid AND c.conindid = i.indexrelid) ORDER BY 1`)
	if err != nil {
		return err
	}
	var drop, redo []string
	for _, d := range idx {
		drop, redo = append(drop, `DROP INDEX `+d.name), append(redo, d.def)
	}
	for _, c := range cons {
		drop = append(drop, `ALTER TABLE cdrs DROP CONSTRAINT `+ident(c.name))
		redo = append(redo, `ALTER TABLE cdrs ADD CONSTRAINT `+ident(c.name)+` `+c.def)
	}
	drop = append(drop, `SET LOCAL session_replication_role = replica`, `SET LOCAL maintenance_work_mem = '256MB'`)
	if _, err := tx.Exec(ctx, strings.Join(drop, ";\n")); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `
		WITH dst(k, number) AS (VALUES (0, '+442071838750'), (1, '+4930123456'), (2, '+15557654321'), (3, '+33142685300'),
				(4, '+447700900123'), (5, '+12125550100'), (6, '+61291234567'), (7, '+15557654321')),
			book AS (SELECT d.k, d.number, r.id, r.rate_per_minute, r.connect_fee, r.min_seconds, r.increment_seconds
				FROM dst d LEFT JOIN LATERAL (SELECT * FROM rates WHERE starts_with(substr(d.number, 2), prefix)
					ORDER BY length(prefix) DESC LIMIT 1) r ON true),
			c AS (SELECT g, g % 10 AS m, CASE WHEN g % 10 IN (6, 7) THEN g % 10 WHEN g % 10 = 9 THEN NULL ELSE g % 6 END AS k,
					timestamptz '2025-11-02 00:00:00+00' - g * interval '3 seconds' AS start_at,
					CASE WHEN g % 10 = 8 THEN 0 ELSE 5 + (g::bigint * 7919 % 600)::int END AS billsec
				FROM generate_series(0, $1::int - 1) g),
			x AS (SELECT c.*, b.id AS rate_id, b.rate_per_minute, b.connect_fee, b.min_seconds, b.increment_seconds,
					CASE c.m WHEN 7 THEN 'inbound' WHEN 9 THEN 'internal' ELSE 'outbound' END AS direction,
					CASE c.m WHEN 7 THEN '+15551230000' ELSE '1001' END AS src,
					coalesce(b.number, '1002') AS dst,
					CASE WHEN c.m = 8 THEN NULL ELSE c.start_at + interval '4 seconds' END AS answer_at,
					CASE WHEN c.m = 8 THEN 25 ELSE 4 + c.billsec END AS duration,
					c.m <> 8 AND c.m <> 9 AND b.id IS NOT NULL AS rated
				FROM c LEFT JOIN book b ON b.k = c.k)
		INSERT INTO cdrs (uuid, direction, src, dst, start_at, answer_at, end_at, duration, billsec, disposition, rate_id, cost, unrated_reason)
		SELECT gen_random_uuid(), direction, src, dst, start_at, answer_at, start_at + duration * interval '1 second', duration, billsec,
			CASE WHEN m = 8 THEN 'NO ANSWER' ELSE 'ANSWERED' END,
			CASE WHEN rated THEN rate_id END,
			CASE WHEN rated THEN ceil((connect_fee + rate_per_minute / 60 * (min_seconds
				+ ceil(greatest(billsec - min_seconds, 0)::numeric / increment_seconds) * increment_seconds)) * 10000) / 10000 END,
			CASE WHEN m = 8 THEN 'not_answered' WHEN m = 9 THEN 'internal' WHEN NOT rated THEN 'no_rate' END
		FROM x ORDER BY g`, r.CDRs)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, strings.Join(redo, ";\n")); err != nil {
		return fmt.Errorf("make cdrs' indexes again: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	r.SeedTook = time.Since(start)
	start = time.Now()
	if _, err := conn.Exec(ctx, `VACUUM (FREEZE, ANALYZE)`); err != nil {
		return err
	}
	for _, s := range m.servers {
		if _, err := s.env.pg.admin.Exec(ctx, `CHECKPOINT`); err != nil {
			return err
		}
	}
	r.VacuumTook = time.Since(start)
	var total int
	err = conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE rate_id IS NOT NULL), pg_total_relation_size('cdrs'), pg_database_size(current_database()) FROM cdrs`).
		Scan(&total, &r.Rated, &r.TableBytes, &r.DBBytes)
	if err != nil {
		return err
	}
	if total != r.CDRs {
		return fmt.Errorf("the tenant has %d CDRs, want %d", total, r.CDRs)
	}
	// Through the API too: the product reads the rows as its own.
	var list struct {
		Data []map[string]any `json:"data"`
	}
	if err := m.a.do(ctx, http.MethodGet, t.Domain, "/api/cdrs?limit=5", nil, &list, http.StatusOK); err != nil {
		return err
	}
	if len(list.Data) != min(5, r.CDRs) {
		return fmt.Errorf("GET /api/cdrs?limit=5 listed %d CDRs of the %d seeded", len(list.Data), r.CDRs)
	}
	e.logf("move: %d CDRs (%d rated) inserted in %s, vacuumed in %s; cdrs %s with its indexes, the database %s",
		total, r.Rated, r.SeedTook.Round(time.Millisecond), r.VacuumTook.Round(time.Millisecond), mb(r.TableBytes), mb(r.DBBytes))
	return nil
}

// movePauses is the cutover pause: a tenant under a steady mixed load
// moved MovePauses times back and forth.
func (e *env) movePauses(ctx context.Context, m *moveEnv, r *moveResult) error {
	t, err := e.moveTenant(ctx, m, "mvp", map[string]any{"max_extensions": moveMaxExtensions})
	if err != nil {
		return err
	}
	e.logf("move: %d online moves of a tenant under load (%d extension writers, %d readers, %d CDR posters of %d)",
		e.sz.MovePauses, moveLoadWriters, moveLoadReaders, moveLoadCDRs, moveCDRBatch)
	client := newClient(moveLoadWriters + moveLoadReaders + moveLoadCDRs)
	defer client.CloseIdleConnections()
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var stop atomic.Bool
	var wg sync.WaitGroup
	workers := moveLoadWriters + moveLoadReaders + moveLoadCDRs
	reqs := make([][]moveReq, workers)
	acked := make([]int, workers) // extensions (writers) or CDRs (posters) acknowledged
	send := func(method, path string, body any, want int) moveReq {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = strings.NewReader(string(b))
		}
		q := moveReq{What: method + " " + strings.SplitN(path, "?", 2)[0], Start: time.Now()}
		req, _ := http.NewRequestWithContext(lctx, method, m.srv.base+path, rd)
		req.Host = t.Domain
		if rd != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			q.Took, q.Err = time.Since(q.Start), err.Error()
			return q
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		q.Took = time.Since(q.Start)
		q.OK = resp.StatusCode == want
		if !q.OK {
			q.Err = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return q
	}
	loadStart := time.Now()
	every := time.Second / moveLoadRate
	for w := range workers {
		wg.Go(func() {
			next := time.Now()
			for i := 0; !stop.Load(); i++ {
				if d := time.Until(next); d > 0 {
					select {
					case <-lctx.Done():
						return
					case <-time.After(d):
					}
				}
				if stop.Load() {
					return
				}
				next = time.Now().Add(every)
				var q moveReq
				switch {
				case w < moveLoadWriters:
					// Numbers of 7 digits, the first the writer's: never
					// taken twice.
					q = send(http.MethodPost, "/api/extensions", map[string]any{"number": fmt.Sprintf("%d%06d", w+1, i), "name": "Load"}, http.StatusCreated)
				case w < moveLoadWriters+moveLoadReaders:
					q = send(http.MethodGet, "/api/extensions?limit=5", nil, http.StatusOK)
				default:
					q = send(http.MethodPost, "/api/cdrs", map[string]any{"cdrs": ingestCDRs(moveCDRBatch, uint64(w)<<32|uint64(i)+1)}, http.StatusCreated)
				}
				if stop.Load() && lctx.Err() != nil {
					return // cut short by the end of the load: not a request that failed
				}
				reqs[w] = append(reqs[w], q)
				if q.OK && w < moveLoadWriters {
					acked[w]++
				} else if q.OK && w >= moveLoadWriters+moveLoadReaders {
					acked[w] += moveCDRBatch
				}
			}
		})
	}
	finish := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer finish()

	wait := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	if err := wait(moveSteady); err != nil {
		return err
	}
	type window struct{ from, to time.Time }
	var windows []window
	cur := 0
	for i := range e.sz.MovePauses {
		from, to := m.servers[cur], m.servers[1-cur]
		t0 := time.Now()
		op, _, _, took, err := e.runMove(ctx, m, t, to.Name)
		if err != nil {
			return fmt.Errorf("move %d of %d under load: %w; serve's log (moves, warnings, errors): %s", i+1, e.sz.MovePauses, err, m.tap.String())
		}
		windows = append(windows, window{t0, t0.Add(took)})
		run := movePauseRun{From: from.Label, To: to.Label, Op: op.ID, Took: took}
		if run.Pause, run.Attempts, err = e.movePause(ctx, m, op.ID); err != nil {
			return err
		}
		r.Pauses = append(r.Pauses, run)
		e.logf("move under load %d: %s→%s in %s, pause %s (%d cutover attempts)", i+1, run.From, run.To, ms(run.Took), ms(run.Pause), run.Attempts)
		cur = 1 - cur
		if err := e.afterMove(ctx, m, op, from, to, t); err != nil {
			return err
		}
		if err := wait(moveSteady); err != nil {
			return err
		}
	}
	// Let the requests in flight end (answered: they count), then stop.
	stop.Store(true)
	wg.Wait()
	r.LoadTook = time.Since(loadStart)
	stopLoad()

	r.ByKind = map[string]int{}
	for w, rs := range reqs {
		for _, q := range rs {
			r.Requests++
			r.ByKind[q.What]++
			if !q.OK {
				r.Failed++
				if len(r.FirstFailures) < 5 {
					r.FirstFailures = append(r.FirstFailures, fmt.Sprintf("%s at +%s: %s", q.What, ms(q.Start.Sub(loadStart)), q.Err))
				}
			}
			end := q.Start.Add(q.Took)
			for k, win := range windows {
				if q.Start.After(win.to) || end.Before(win.from) {
					continue
				}
				p := &r.Pauses[k]
				p.Requests++
				if !q.OK {
					p.Failed++
				}
				if q.Took > p.Longest {
					p.Longest, p.LongestWhat = q.Took, q.What
				}
			}
		}
		if w < moveLoadWriters {
			r.Acked += acked[w]
		} else if w >= moveLoadWriters+moveLoadReaders {
			r.CDRsAcked += acked[w]
		}
	}
	// Every acknowledged write is on the tenant's last server, once.
	last := m.servers[cur]
	conn, err := last.env.pg.connect(ctx, t.DBName)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM extensions WHERE name = 'Load'), (SELECT count(*) FROM cdrs), pg_database_size(current_database())`).
		Scan(&r.Found, &r.CDRsFound, &r.LoadBytes); err != nil {
		return err
	}
	e.logf("move: the load sent %d requests over %s, %d failed; %d of %d acknowledged extensions and %d of %d acknowledged CDRs on %s",
		r.Requests, r.LoadTook.Round(time.Millisecond), r.Failed, r.Found, r.Acked, r.CDRsFound, r.CDRsAcked, last.Label)
	return nil
}
