package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/laracopilot/controlplane/tenantdb"
)

// Benchmark 8, tenant backup: one database-mode tenant with BackupCDRs
// CDRs backed up through the API (POST /api/tenants/{id}/backups, the
// operation polled until it ends) against the floor, the same pg_dump the
// product runs, as the same tenant role, writing its archive itself into
// the same folder, in alternating rounds. Both are pg_dump's custom format
// (compressed, single-threaded), so the floor is what any backup of this
// database costs; the product's rate is held to 0.90× of it (issue: "backup
// rate vs raw pg_dump -Fc (≥ 0.9×)").

const (
	// backupPoll is the pause between an answer about the operation and
	// the next question: the product's time is known to within this much
	// and a request (a client polling less often would see it later
	// still).
	backupPoll = 20 * time.Millisecond
	// backupTemplates is how many CDRs the product rates through the API
	// (ingestCDRs' mix, ten of each kind per hundred) before SQL copies
	// them up to BackupCDRs: the rows are the product's own, rated as it
	// rates, at a fraction of the time a million POSTed CDRs would take.
	backupTemplates = 100
	// backupSizeSlack is how far an archive's size may be from the first
	// floor archive's: both are pg_dump of the same unchanged database,
	// so a larger difference is a product that lost or added bytes.
	backupSizeSlack = 0.01
)

// backupRun is one timed backup.
type backupRun struct {
	Took  time.Duration // what the client waits: request (or exec) to the end seen
	Bytes int64         // the archive's size on disk
	// OpTook is the operation's own started_at → finished_at, as the
	// catalog records them (product only; poll granularity excluded).
	OpTook time.Duration
	// ServeCPU is serve's own CPU over the backup (product only: its copy
	// of pg_dump's output, the hash, the catalog, the polls answered);
	// DumpCPU is pg_dump's (a child of serve for the product).
	ServeCPU, DumpCPU time.Duration
	// Polls is how many times the harness asked for the operation (product
	// only): serve's CPU includes answering them.
	Polls int
}

// mbps is the run's rate in MB/s (10⁶ bytes).
func (r backupRun) mbps() float64 { return float64(r.Bytes) / 1e6 / r.Took.Seconds() }

// backupContender is one side of benchmark 8.
type backupContender struct {
	Label string
	Runs  []backupRun
}

// med is the median of one number of the runs.
func (c *backupContender) med(f func(backupRun) float64) float64 { return medianBy(c.Runs, f) }

// backupResult is benchmark 8.
type backupResult struct {
	CDRs  int
	Rated int // of them, with a rate (the product rated the templates)
	// SeedTook is the SQL copy, VacuumTook the VACUUM (FREEZE, ANALYZE)
	// and CHECKPOINT after it.
	SeedTook, VacuumTook time.Duration
	TableBytes           int64 // cdrs with its indexes
	DBBytes              int64 // the tenant's database
	PgDump, Version      string
	// Entries is how many entries pg_restore --list shows in every
	// archive (checked equal).
	Entries        int
	Product, Floor backupContender
}

// backupOp is what the harness reads of an operation.
type backupOp struct {
	ID         int64          `json:"id"`
	Kind       string         `json:"kind"`
	State      string         `json:"state"`
	Progress   map[string]any `json:"progress"`
	Error      string         `json:"error"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	BackupID   *int64         `json:"backup_id"`
}

// backupRecord is what the harness reads of a backup.
type backupRecord struct {
	ID        int64  `json:"id"`
	State     string `json:"state"`
	SizeBytes *int64 `json:"size_bytes"`
	SHA256    string `json:"sha256"`
}

// backup is benchmark 8.
func (e *env) backup(ctx context.Context) (*Section, error) {
	r := &backupResult{CDRs: e.sz.BackupCDRs, Product: backupContender{Label: "product: `POST /api/tenants/{id}/backups`, polled"},
		Floor: backupContender{Label: "floor: `pg_dump --format=custom -f FILE`"}}
	if r.CDRs < 1 || e.sz.BackupRounds < 1 {
		return nil, fmt.Errorf("BackupCDRs and BackupRounds must be at least 1, got %d and %d", r.CDRs, e.sz.BackupRounds)
	}
	cat, ten, prefix := e.pg.run+"_backup_cat", e.pg.run+"_backup", e.pg.run+"bk_"
	for _, db := range []string{cat, ten} {
		if err := e.pg.createDB(ctx, db); err != nil {
			return nil, err
		}
	}
	// BACKUP_DIR in the run's scratch folder: the floor writes there too,
	// so both write to the same file system.
	dir := filepath.Join(e.work, "backups")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	srv, err := e.serve(ctx, serveOpts{name: "serve (backup)", catalog: cat, tenantDB: ten, prefix: prefix, isolation: "database", defaults: true,
		extra: map[string]string{"BACKUP_DIR": dir}})
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	a := newAPI(srv)
	t, err := a.createTenant(ctx, e.tenantSpec("backup", 1, "database"))
	if err != nil {
		return nil, err
	}
	if t.Provisioning != "ready" {
		return nil, fmt.Errorf("tenant %s is %s, want ready", t.Slug, t.Provisioning)
	}
	if err := e.seedBackup(ctx, a, t, r); err != nil {
		return nil, fmt.Errorf("seed %d CDRs: %w", r.CDRs, err)
	}

	// The product finds pg_dump on PATH (serve is given no PG_BIN_DIR and
	// the harness's PATH): the floor runs that same program. On Debian it
	// is postgresql-common's wrapper, which execs the newest pg_dump; both
	// pay its start alike.
	if r.PgDump, err = exec.LookPath("pg_dump"); err != nil {
		return nil, fmt.Errorf("pg_dump is not on PATH (Debian's postgresql package brings it): %w", err)
	}
	pgRestore, err := exec.LookPath("pg_restore")
	if err != nil {
		return nil, fmt.Errorf("pg_restore is not on PATH: %w", err)
	}
	out, _, err := runCmd(ctx, r.PgDump, []string{"--version"}, nil)
	if err != nil {
		return nil, err
	}
	r.Version = strings.TrimSpace(string(out))

	// Every archive must list the same entries (pg_restore --list, its
	// header comments aside): the product's is then the whole database, as
	// the floor's is. The list is read from the archive's table of
	// contents, untimed.
	var toc string
	checkArchive := func(who, path string) error {
		out, _, err := runCmd(ctx, pgRestore, []string{"--list", path}, nil)
		if err != nil {
			return fmt.Errorf("%s's archive: %w", who, err)
		}
		var entries []string
		for _, line := range strings.Split(string(out), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, ";") {
				entries = append(entries, line)
			}
		}
		list := strings.Join(entries, "\n")
		if toc == "" {
			toc, r.Entries = list, len(entries)
		} else if list != toc {
			return fmt.Errorf("%s's archive lists %d entries, not the %d of the first archive (or not the same ones)", who, len(entries), r.Entries)
		}
		return nil
	}
	var refSize int64
	checkSize := func(who string, n int64) error {
		if refSize == 0 {
			refSize = n
		}
		if d := math.Abs(float64(n-refSize)) / float64(refSize); d > backupSizeSlack {
			return fmt.Errorf("%s's archive is %d bytes, %.1f%% off the first archive's %d bytes (same database, unchanged)", who, n, 100*d, refSize)
		}
		return nil
	}

	// The product, as a client uses it: the POST, then GET the operation
	// every backupPoll until it is no longer running. Then, untimed, the
	// backup as recorded checked against its file (size, SHA-256, pg_restore
	// --list), and deleted through the API, which removes the file.
	repro := fmt.Sprintf("reproduce: a database-mode tenant with %d CDRs, serve with BACKUP_DIR set, then POST /api/tenants/{id}/backups and GET /api/operations/{op id}", r.CDRs)
	product := func() (backupRun, error) {
		var run backupRun
		_, self0, child0, err := procTimes(srv.cmd.Process.Pid)
		if err != nil {
			return run, err
		}
		var op backupOp
		t0 := time.Now()
		if err := a.do(ctx, http.MethodPost, "", fmt.Sprintf("/api/tenants/%d/backups", t.ID), nil, &op, http.StatusAccepted); err != nil {
			return run, err
		}
		for op.State == "running" {
			select {
			case <-ctx.Done():
				return run, ctx.Err()
			case <-time.After(backupPoll):
			}
			if err := a.do(ctx, http.MethodGet, "", fmt.Sprintf("/api/operations/%d", op.ID), nil, &op, http.StatusOK); err != nil {
				return run, err
			}
			run.Polls++
		}
		run.Took = time.Since(t0)
		_, self1, child1, err := procTimes(srv.cmd.Process.Pid)
		if err != nil {
			return run, err
		}
		run.ServeCPU, run.DumpCPU = self1-self0, child1-child0
		if op.Kind != "backup" || op.State != "succeeded" || op.BackupID == nil || op.FinishedAt == nil {
			return run, fmt.Errorf("operation %d (kind %q) ended %q (error %q, backup %s) after %s; %s", op.ID, op.Kind, op.State, op.Error, ptrText(op.BackupID), ms(run.Took), repro)
		}
		run.OpTook = op.FinishedAt.Sub(op.StartedAt)
		var b backupRecord
		if err := a.do(ctx, http.MethodGet, "", fmt.Sprintf("/api/backups/%d", *op.BackupID), nil, &b, http.StatusOK); err != nil {
			return run, err
		}
		// The file's place is documented (docs/OPERATIONS.md), never shown
		// by the API.
		path := filepath.Join(dir, fmt.Sprintf("tenant-%d", t.ID), fmt.Sprintf("backup-%d.dump", b.ID))
		st, err := os.Stat(path)
		if err != nil {
			return run, fmt.Errorf("backup %d is %s but its file: %w; %s", b.ID, b.State, err, repro)
		}
		run.Bytes = st.Size()
		sum, err := fileSHA256(path)
		if err != nil {
			return run, err
		}
		progress, _ := op.Progress["bytes"].(float64)
		if b.State != "ready" || b.SizeBytes == nil || *b.SizeBytes != run.Bytes || b.SHA256 != sum || int64(progress) != run.Bytes {
			return run, fmt.Errorf("backup %d: state %q, size_bytes %v, sha256 %q, operation progress.bytes %.0f; its file has %d bytes, SHA-256 %s; %s",
				b.ID, b.State, ptrText(b.SizeBytes), b.SHA256, progress, run.Bytes, sum, repro)
		}
		if err := checkSize("the product", run.Bytes); err != nil {
			return run, fmt.Errorf("%w; %s", err, repro)
		}
		if err := checkArchive("the product", path); err != nil {
			return run, fmt.Errorf("%w; %s", err, repro)
		}
		if err := a.do(ctx, http.MethodDelete, "", fmt.Sprintf("/api/backups/%d", b.ID), nil, nil, http.StatusNoContent); err != nil {
			return run, err
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			return run, fmt.Errorf("DELETE /api/backups/%d answered 204 but its file is still there (%v)", b.ID, err)
		}
		return run, nil
	}

	// The floor: the product's pg_dump command line (tenantdb.DumpFile:
	// the same flags, the same connection settings in the environment, the
	// tenant's role and password), writing its file (-f) as the product's
	// does. pg_dump syncs its output file before it exits (its default,
	// --no-sync not given).
	floorEnv := append(baseEnv(), "PGHOST="+e.pg.url.Hostname(), "PGPORT="+portOf(e.pg.url.Port()), "PGUSER="+t.DBName,
		"PGDATABASE="+t.DBName, "PGPASSWORD="+tenantdb.RoleSecret(roleSecret).Password(t.DBName), "PGAPPNAME="+floorApp,
		"PGCONNECT_TIMEOUT=10", "PGOPTIONS=")
	floor := func(i int) (backupRun, error) {
		var run backupRun
		path := filepath.Join(dir, fmt.Sprintf("floor-%d.dump", i))
		cmd := exec.CommandContext(ctx, r.PgDump, "--format=custom", "--no-password", "--lock-wait-timeout=60000", "-f", path)
		cmd.Env = floorEnv
		errw := &tail{max: 4 << 10}
		cmd.Stderr = errw
		t0 := time.Now()
		err := cmd.Run()
		run.Took = time.Since(t0)
		if err != nil {
			return run, fmt.Errorf("pg_dump as the tenant's role: %v: %s", err, errw.String())
		}
		run.DumpCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		st, err := os.Stat(path)
		if err != nil {
			return run, err
		}
		run.Bytes = st.Size()
		if err := checkSize("the floor", run.Bytes); err != nil {
			return run, err
		}
		if err := checkArchive("the floor", path); err != nil {
			return run, err
		}
		return run, os.Remove(path)
	}

	// Alternating order, each round a product backup and a floor dump, one
	// at a time: the database is read from memory by both (the seeding and
	// the VACUUM left it in the page cache), and a machine growing busier
	// or quieter over the run weighs on both alike.
	e.logf("backup: %d rounds of a product backup and a raw pg_dump, %d CDRs (%s of data and indexes)", e.sz.BackupRounds, r.CDRs, mb(r.TableBytes))
	for round := range e.sz.BackupRounds {
		for k := range 2 {
			if (round+k)%2 == 0 {
				run, err := product()
				if err != nil {
					return nil, err
				}
				r.Product.Runs = append(r.Product.Runs, run)
				e.logf("backup round %d: product %s, %s (%s), operation's own %s", round+1, ms(run.Took), mb(run.Bytes), rate(run.mbps(), "MB/s"), ms(run.OpTook))
			} else {
				run, err := floor(round)
				if err != nil {
					return nil, err
				}
				r.Floor.Runs = append(r.Floor.Runs, run)
				e.logf("backup round %d: raw pg_dump %s, %s (%s)", round+1, ms(run.Took), mb(run.Bytes), rate(run.mbps(), "MB/s"))
			}
		}
	}

	srv.stop()
	// Leave the cluster (and the disk) as lean as the next benchmarks
	// expect.
	for _, db := range []string{cat, ten} {
		if _, err := e.pg.admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident(db)+` WITH (FORCE)`); err != nil {
			return nil, err
		}
	}
	if err := e.pg.dropPrefixed(ctx, prefix); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return e.backupSection(r), nil
}

// seedBackup gives tenant t r.CDRs CDRs: backupTemplates of ingestCDRs'
// mix posted to POST /api/cdrs and rated by the product against
// ingestRates, then copied with SQL (as the harness's superuser, into the
// table the tenant's role owns) until there are r.CDRs, each copy with a
// fresh uuid and its times a minute earlier per pass. Then VACUUM (FREEZE,
// ANALYZE) and a CHECKPOINT, so that no timed dump is the first to read
// the new rows (setting their hint bits) or meets the checkpoint writing
// them.
func (e *env) seedBackup(ctx context.Context, a *api, t tenant, r *backupResult) error {
	for _, rt := range ingestRates {
		spec := maps.Clone(rt)
		spec["effective_from"] = "2025-01-01T00:00:00Z"
		if err := a.do(ctx, http.MethodPost, t.Domain, "/api/rates", spec, nil, http.StatusCreated); err != nil {
			return err
		}
	}
	n := min(backupTemplates, r.CDRs)
	body, err := json.Marshal(map[string]any{"cdrs": ingestCDRs(n, 8)})
	if err != nil {
		return err
	}
	if err := a.do(ctx, http.MethodPost, t.Domain, "/api/cdrs", body, nil, http.StatusCreated); err != nil {
		return err
	}
	conn, err := e.pg.connect(ctx, t.DBName)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	start := time.Now()
	_, err = conn.Exec(ctx, `INSERT INTO cdrs (uuid, direction, src, dst, start_at, answer_at, end_at, duration, billsec, disposition,
			extension_id, queue_id, rate_id, cost, unrated_reason)
		SELECT gen_random_uuid(), c.direction, c.src, c.dst, c.start_at - s.shift, c.answer_at - s.shift, c.end_at - s.shift, c.duration, c.billsec,
			c.disposition, c.extension_id, c.queue_id, c.rate_id, c.cost, c.unrated_reason
		FROM generate_series(0, $1::int - 1) g
		CROSS JOIN LATERAL (SELECT (g / $2::int + 1) * interval '1 minute' AS shift) s
		JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS j, * FROM cdrs) c ON c.j = g % $2::int`, r.CDRs-n, n)
	if err != nil {
		return err
	}
	r.SeedTook = time.Since(start)
	start = time.Now()
	if _, err := conn.Exec(ctx, `VACUUM (FREEZE, ANALYZE) cdrs`); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `CHECKPOINT`); err != nil {
		return err
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
	e.logf("backup: %d CDRs (%d rated) copied in %s, vacuumed in %s; cdrs %s with its indexes, the database %s",
		total, r.Rated, r.SeedTook.Round(time.Millisecond), r.VacuumTook.Round(time.Millisecond), mb(r.TableBytes), mb(r.DBBytes))
	return nil
}

// backupSection reports benchmark 8.
func (e *env) backupSection(r *backupResult) *Section {
	s := &Section{Title: "8. Tenant backup"}
	var b strings.Builder
	fmt.Fprintf(&b, "One database-mode tenant, created through `POST /api/tenants` (serve with its defaults, no spare databases, `BACKUP_DIR` in the run's "+
		"scratch folder), with %d CDRs: %d of benchmark 5's mix posted to `POST /api/cdrs` and rated by the product, then copied with SQL (a fresh "+
		"`uuid` each, times shifted), %d of them rated; then `VACUUM (FREEZE, ANALYZE)` and a `CHECKPOINT`, untimed, so that no timed dump is the "+
		"first to read the new rows. `cdrs` with its indexes is %s, the database %s (an archive holds the rows, compressed, and only the "+
		"definitions of the indexes).\n\n", r.CDRs, min(backupTemplates, r.CDRs), r.Rated, mb(r.TableBytes), mb(r.DBBytes))
	fmt.Fprintf(&b, "- **Product**: `POST /api/tenants/{id}/backups`, then `GET /api/operations/{id}` %s after each answer until its `state` is no longer "+
		"`running`, timed from the POST to the answer that says `succeeded`. Then, untimed: the backup's `size_bytes` and `sha256` checked against "+
		"its file (and the operation's `progress.bytes`), the file listed by `pg_restore --list`, and the backup deleted (`DELETE /api/backups/{id}`, "+
		"which removes the file).\n", backupPoll)
	fmt.Fprintf(&b, "- **Floor**: the product's own `pg_dump` command line (`tenantdb.DumpFile`: `--format=custom --no-password --lock-wait-timeout=60000 --file=…`, "+
		"the connection in `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`), as the tenant's role with its password (SCRAM), run by the "+
		"harness with `-f FILE` in the same `BACKUP_DIR`, timed from the exec to its exit; pg_dump syncs the file before it exits (its default). "+
		"The file is then listed and removed.\n")
	fmt.Fprintf(&b, "- Both run `%s` (%s), the one on `PATH` that serve finds without `PG_BIN_DIR`. %d rounds, one backup of each per round, "+
		"in alternating order, one at a time; medians. Every archive, the product's and the floor's, must list the same %d entries with "+
		"`pg_restore --list` and be within %.0f%% of the first one's size, or the run fails. Rate: the archive's bytes ÷ the time (MB = 10⁶ bytes).\n\n",
		r.PgDump, r.Version, e.sz.BackupRounds, r.Entries, 100*backupSizeSlack)

	mp, mf := r.Product.med(backupRun.mbps), r.Floor.med(backupRun.mbps)
	tp := time.Duration(r.Product.med(func(x backupRun) float64 { return float64(x.Took) }))
	tf := time.Duration(r.Floor.med(func(x backupRun) float64 { return float64(x.Took) }))
	each := func(c *backupContender) string {
		var p []string
		for _, x := range c.Runs {
			p = append(p, fmt.Sprintf("%.1f", x.mbps()))
		}
		return strings.Join(p, ", ")
	}
	cpu := func(c *backupContender, f func(backupRun) time.Duration) string {
		return ms(time.Duration(c.med(func(x backupRun) float64 { return float64(f(x)) })))
	}
	size := func(c *backupContender) string {
		return mb(int64(c.med(func(x backupRun) float64 { return float64(x.Bytes) })))
	}
	b.WriteString(table([]string{"contender", "MB/s", "time per backup", "archive", "pg_dump CPU", "serve CPU", "MB/s per round"}, [][]string{
		{r.Product.Label, rate(mp, "MB/s"), ms(tp), size(&r.Product), cpu(&r.Product, func(x backupRun) time.Duration { return x.DumpCPU }),
			cpu(&r.Product, func(x backupRun) time.Duration { return x.ServeCPU }), each(&r.Product)},
		{r.Floor.Label, rate(mf, "MB/s"), ms(tf), size(&r.Floor), cpu(&r.Floor, func(x backupRun) time.Duration { return x.DumpCPU }), "–", each(&r.Floor)},
	}))
	op := time.Duration(r.Product.med(func(x backupRun) float64 { return float64(x.OpTook) }))
	ratio := mp / mf
	fmt.Fprintf(&b, "\nThe operation's own time (`started_at` → `finished_at` as the catalog records them, the HTTP request and the polling "+
		"excluded) was %s (median), %s less than the client's. pg_dump CPU is the program's user+system time (the product's: serve's children's, "+
		"`/proc`); serve CPU is serve's own over the backup: the SHA-256 of the file, the catalog, "+
		"and the %.0f polls it answered (median).\n\n", ms(op), ms(tp-op), r.Product.med(func(x backupRun) float64 { return float64(x.Polls) }))
	fmt.Fprintf(&b, "What the product does beyond the floor's pg_dump: it records the operation and its backup in the catalog before it starts "+
		"(one transaction, audited), under the tenant's lifecycle lock; pg_dump writes a `.partial` file (the size of which is recorded as "+
		"the progress every second); then the product reads the file back to hash it (SHA-256), renames it, syncs the folder and records the end "+
		"(size, SHA-256); the client learns of it at its next poll, up to %s plus a request later. "+
		"The archives' sizes (median) were %d bytes (product) and %d bytes (floor).\n",
		backupPoll, int64(r.Product.med(func(x backupRun) float64 { return float64(x.Bytes) })), int64(r.Floor.med(func(x backupRun) float64 { return float64(x.Bytes) })))
	if ratio < 0.9 {
		// What this run measured, not a diagnosis: none has been made (the
		// target was met when the benchmark was written).
		fmt.Fprintf(&b, "\n**Why the rate misses ≥ 0.90×.** The product's backup took %s more than the floor's (median times). Of that, the polling "+
			"accounts for %s (the client's time beyond the operation's own); pg_dump's CPU was %s in the product against %s in the floor, and serve "+
			"spent %s of its own CPU per backup, on a machine of %d CPUs shared by PostgreSQL, pg_dump, serve and the harness.\n",
			ms(tp-tf), ms(tp-op), cpu(&r.Product, func(x backupRun) time.Duration { return x.DumpCPU }), cpu(&r.Floor, func(x backupRun) time.Duration { return x.DumpCPU }),
			cpu(&r.Product, func(x backupRun) time.Duration { return x.ServeCPU }), runtime.NumCPU())
	}
	s.Rows = append(s.Rows,
		Row{Bench: "8. Tenant backup", Metric: fmt.Sprintf("backup rate, %d CDRs, vs raw pg_dump -Fc", r.CDRs), Ours: rate(mp, "MB/s"), Base: rate(mf, "MB/s"),
			Ratio: ratio, Target: "≥ 0.90×", Met: yesNo(ratio >= 0.9)},
		Row{Bench: "8. Tenant backup", Metric: fmt.Sprintf("time per backup, %d CDRs", r.CDRs), Ours: ms(tp), Base: "pg_dump " + ms(tf), Ratio: float64(tp) / float64(tf)},
	)
	s.Body = b.String()
	return s
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mb prints a size in MB (10⁶ bytes), or kB below one MB.
func mb(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// portOf is a URL's port, PostgreSQL's default when it has none.
func portOf(p string) string {
	if p == "" {
		return "5432"
	}
	return p
}

// ptrText prints *p, or "null".
func ptrText(p *int64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}
