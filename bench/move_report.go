package bench

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// moveBench names benchmark 9's rows in the summary.
const moveBench = "9. Tenant moves"

// moveSection reports benchmark 9.
func (e *env) moveSection(r *moveResult) *Section {
	s := &Section{Title: moveBench}
	var b strings.Builder
	where := "in `BENCH_CLUSTER_DIR`"
	if !r.Own {
		where = "in a temporary folder of the benchmark's own (the run was given no `BENCH_CLUSTER_DIR`)"
	}
	fmt.Fprintf(&b, "Online tenant moves between two tenant servers: how fast a move copies a tenant against PostgreSQL's own tools, and how long "+
		"the cutover holds a tenant's requests under load. One serve (its defaults but `LOG_LEVEL=info`, the production default, for the cutover's log "+
		"line; `MOVE_SOURCE_GRACE=0` and `RECONCILE_INTERVAL=1s`, so that the reconciler drops the source a move sets aside before the next round; "+
		"`MOVE_CUTOVER_TIMEOUT` at its default), its catalog on the run's server.\n\n")
	fmt.Fprintf(&b, "- **Servers**: two PostgreSQL clusters of the run's own, A (`default`, `TENANT_DATABASE_URL`) and B (registered through "+
		"`POST /api/servers` as `pg-b`, a URL without password: `postgres` is trusted), each with `max_connections=%d`, made like the run's server "+
		"(`scripts/pg.sh`: `wal_level=logical`, fsync off; `postgres` trusted, every other role with SCRAM-SHA-256), %s, and removed after. "+
		"Both clusters, serve, the programs of the floor and the harness share this machine's %d CPUs and its disk.\n", moveMaxConns, where, runtime.NumCPU())
	fmt.Fprintf(&b, "- **Copy rate**: a database-mode tenant created on A through `POST /api/tenants`, with benchmark 5's rate deck posted through "+
		"the API and %s CDRs inserted with SQL alone (`INSERT … SELECT … FROM generate_series`, as the superuser, into the table the tenant's role owns: "+
		"benchmark 5's mix of calls, a fresh `uuid` each, %s of them rated with the cost the product computes, ids from the table's identity), in %s; "+
		"then `VACUUM (FREEZE, ANALYZE)` and a `CHECKPOINT` on both clusters, untimed. `cdrs` with its indexes is %s, the database %s.\n",
		itoa(r.CDRs), itoa(r.Rated), ms(r.SeedTook), mb(r.TableBytes), mb(r.DBBytes))
	fmt.Fprintf(&b, "  - **Product**: the tenant moved online to the other cluster (`POST /api/tenants/{id}/move {\"server\": …}`), then "+
		"`GET /api/operations/{id}` %s after each answer until its `state` is no longer `running`, timed from the POST to the answer that says "+
		"`succeeded` (which also requires `progress` to name the source, the target and the aside `<db>_m<op>`). The move: the target database "+
		"made from the server's template at the latest schema version, its indexes but the primary keys dropped, a publication on the source, a subscription on the target "+
		"(PostgreSQL's initial copy; the dropped indexes built again after it, two at a time; the stream), the cutover (hold, fence, catch-up, sequences, flip), the source closed and renamed aside. "+
		"The tenant goes back and forth, A→B, B→A, …. Then, untimed: the harness waits until the reconciler has dropped the aside (`progress.dropped`, "+
		"and the cluster lists no database of the tenant but the new one), counts the CDRs on the new server, and runs `VACUUM (FREEZE, ANALYZE)` "+
		"there and a `CHECKPOINT` on both, so that every round reads a database in the state the seeded one was.\n", movePoll)
	fmt.Fprintf(&b, "  - **Floor**: `CREATE DATABASE` on the other cluster, then `pg_dump --format=custom` of the tenant's database piped into "+
		"`pg_restore --no-owner --no-privileges --exit-on-error` of that database (single process each, the only way through a pipe), both as "+
		"`postgres` over TCP, `%s` and `%s` (%s, the programs on `PATH` that the product's offline move and backups run), timed from the "+
		"`CREATE DATABASE` to pg_restore's exit. Then, untimed, the CDRs counted, the copy dropped, a `CHECKPOINT` on both.\n", r.PgDump, r.PgRestore, r.Version)
	fmt.Fprintf(&b, "  - %d rounds, one copy of each per round, in alternating order (product first in odd-numbered rounds), one at a time; medians. "+
		"Rate: the source database's size (`pg_database_size`) ÷ the time (MB = 10⁶ bytes); the ratio is the floor's time ÷ the move's.\n",
		e.sz.MoveRounds)
	fmt.Fprintf(&b, "- **Cutover pause under load**: a second database-mode tenant on A (`max_extensions` %d), empty but for what the load writes: "+
		"%d goroutines posting extensions (`POST /api/extensions`, fresh numbers), %d listing them (`GET /api/extensions?limit=5`) and %d posting batches "+
		"of %d CDRs (`POST /api/cdrs`), each one request at a time over keep-alive connections to serve, as `TestOnlineMoveUnderLoadWithTwoReplicas` "+
		"does, but paced: each sends a request every %s (at once when the previous one took longer), %d requests per second in all at most. A "+
		"steady load rather than the most this machine can send, which would grow the tenant (every move copies it whole) as fast as the "+
		"machine allows and leave the clusters little of its %d CPUs. After %s of load, the tenant is moved online %d times, back and "+
		"forth, each move as above (polled, then its aside dropped by the reconciler) and %s of load between two. Every request of the load counts: "+
		"one that is not answered with its success status (201, 200) or gets no answer at all has failed.\n",
		moveMaxExtensions, moveLoadWriters, moveLoadReaders, moveLoadCDRs, moveCDRBatch, time.Second/moveLoadRate,
		moveLoadRate*(moveLoadWriters+moveLoadReaders+moveLoadCDRs), runtime.NumCPU(), moveSteady, e.sz.MovePauses, moveSteady)
	b.WriteString("  - **Pause**: what serve logs when the cutover flips the catalog (`" + moveFlipped + "`, its `pause`): from the moment " +
		"the cutover starts, just before it holds the tenant's new requests (`tenants.held_until`), to the flip committed, which releases them to " +
		"the new server. It is the product's own clock, read from its log line: the most direct measure of the hold, as sampling " +
		"`held_until` through the API would only bound it by the sampling period. The client's side of it is the **longest request**: the slowest " +
		"request of the load that overlapped the move (sent before the move's operation was seen to end, answered after its POST), which includes " +
		"the wait in the hold and the request's own work once released.\n\n")

	// The copy rate.
	mp, mf := r.Product.med(moveCopyRun.mbps), r.Floor.med(moveCopyRun.mbps)
	tp, tf := r.Product.medDur(func(x moveCopyRun) time.Duration { return x.Took }), r.Floor.medDur(func(x moveCopyRun) time.Duration { return x.Took })
	ratio := tf.Seconds() / tp.Seconds()
	each := func(c *moveCopyContender) string {
		var p []string
		for _, x := range c.Runs {
			p = append(p, fmt.Sprintf("%s→%s %.1f s", x.From, x.To, x.Took.Seconds()))
		}
		return strings.Join(p, ", ")
	}
	b.WriteString(table([]string{"contender", "MB/s", "time per copy", "serve CPU", "PostgreSQL CPU (both clusters)", "pg_dump / pg_restore CPU", "per round"}, [][]string{
		{r.Product.Label, rate(mp, "MB/s"), ms(tp), ms(r.Product.medDur(func(x moveCopyRun) time.Duration { return x.ServeCPU })),
			ms(r.Product.medDur(func(x moveCopyRun) time.Duration { return x.PGCPU })), "–", each(&r.Product)},
		{r.Floor.Label, rate(mf, "MB/s"), ms(tf), "–", ms(r.Floor.medDur(func(x moveCopyRun) time.Duration { return x.PGCPU })),
			ms(r.Floor.medDur(func(x moveCopyRun) time.Duration { return x.DumpCPU })) + " / " + ms(r.Floor.medDur(func(x moveCopyRun) time.Duration { return x.RestoreCPU })),
			each(&r.Floor)},
	}))
	op := r.Product.medDur(func(x moveCopyRun) time.Duration { return x.OpTook })
	copying := r.Product.medDur(func(x moveCopyRun) time.Duration { return x.Copying })
	cutover := r.Product.medDur(func(x moveCopyRun) time.Duration { return x.Cutover })
	fmt.Fprintf(&b, "\nThe move's phases, as the polls saw them (medians; each to within a poll, and the operation records its progress at most "+
		"once a second while copying): `copying` was first seen %s after the POST (preparing: the target database from the template, the "+
		"publication, the subscription), `cutover` %s after it (copying and catching up: %s), and the answer that said `succeeded` came %s after "+
		"that (the cutover, whose pause was %s, and closing the source). The operation's own time (`started_at` → `finished_at`) was %s. The "+
		"floor's `CREATE DATABASE` took %s. serve CPU is serve's own over the move (the polls answered included); PostgreSQL CPU is both "+
		"clusters' whole over the copy, every process (`/proc`: the backends; for the move, the walsender and the subscription's apply and "+
		"table-sync workers too); pg_dump's and pg_restore's is the programs' own user+system time.\n\n",
		ms(copying), ms(cutover), ms(cutover-copying), ms(tp-cutover), ms(r.Product.medDur(func(x moveCopyRun) time.Duration { return x.Pause })), ms(op),
		ms(r.Floor.medDur(func(x moveCopyRun) time.Duration { return x.Create })))
	if ratio < moveCopyTarget {
		// What this run measured, not a diagnosis.
		fmt.Fprintf(&b, "**Why the copy rate misses ≥ %.2f×.** The move took %s more than the floor (median times). Of the move, %s went to "+
			"copying, building the indexes and catching up (PostgreSQL's initial table copy into tables with only their primary keys, then the "+
			"other indexes built two at a time, as pg_restore -j 2 would; the floor builds them one at a time), %s before it, %s after it. The clusters' CPU "+
			"over the copy was %s for the move against %s for the floor (whose pg_dump and pg_restore used %s more, outside PostgreSQL); all of it on "+
			"a machine of %d CPUs shared by both clusters, serve and the harness.\n\n",
			moveCopyTarget, ms(tp-tf), ms(cutover-copying), ms(copying), ms(tp-cutover),
			ms(r.Product.medDur(func(x moveCopyRun) time.Duration { return x.PGCPU })), ms(r.Floor.medDur(func(x moveCopyRun) time.Duration { return x.PGCPU })),
			ms(r.Floor.medDur(func(x moveCopyRun) time.Duration { return x.DumpCPU + x.RestoreCPU })), runtime.NumCPU())
	}

	// The pauses.
	var pauses, longest []time.Duration
	var rows [][]string
	retried, failedIn := 0, 0
	for i, p := range r.Pauses {
		pauses, longest = append(pauses, p.Pause), append(longest, p.Longest)
		if p.Attempts > 1 {
			retried++
		}
		failedIn += p.Failed
		rows = append(rows, []string{fmt.Sprintf("%d", i+1), p.From + "→" + p.To, ms(p.Took), ms(p.Pause), fmt.Sprintf("%d", p.Attempts),
			fmt.Sprintf("%d", p.Requests), fmt.Sprintf("%d", p.Failed), ms(p.Longest) + " (" + p.LongestWhat + ")"})
	}
	slices.Sort(pauses)
	slices.Sort(longest)
	p50, p99 := percentile(pauses, 0.50), percentile(pauses, 0.99)
	l50, lmax := percentile(longest, 0.50), longest[len(longest)-1]
	b.WriteString(table([]string{"move", "servers", "time (POST → succeeded)", "pause (serve's log)", "cutovers", "requests during it", "failed",
		"longest request during it"}, rows))
	kinds := make([]string, 0, len(r.ByKind))
	for k := range r.ByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var byKind []string
	for _, k := range kinds {
		byKind = append(byKind, fmt.Sprintf("%s: %d", k, r.ByKind[k]))
	}
	fmt.Fprintf(&b, "\nOver the %d moves the pause was p50 %s, p99 %s (the nearest rank: of %d moves, the longest), target ≤ %s: %s. The longest "+
		"request during a move was %s (median of the moves), at most %s. %d of the %d moves needed more than one cutover (one abandoned for "+
		"`MOVE_CUTOVER_TIMEOUT` and tried again).\n\n",
		len(r.Pauses), ms(p50), ms(p99), len(r.Pauses), ms(movePauseTarget), yesNo(p99 <= movePauseTarget), ms(l50), ms(lmax), retried, len(r.Pauses))
	fmt.Fprintf(&b, "The load sent %s requests over %s (%s; %s), %d of them failed (target 0: %s), %d of those during a move. The writes it had "+
		"acknowledged were all on the tenant's last server, once: %s of %s extensions and %s of %s CDRs found (checked with SQL after the load); "+
		"its database was then %s (each move copies the tenant as it is then).",
		itoa(r.Requests), r.LoadTook.Round(100*time.Millisecond), rate(float64(r.Requests)/r.LoadTook.Seconds(), "req/s"), strings.Join(byKind, ", "),
		r.Failed, yesNo(r.Failed == 0), failedIn, itoa(r.Found), itoa(r.Acked), itoa(r.CDRsFound), itoa(r.CDRsAcked), mb(r.LoadBytes))
	if len(r.FirstFailures) > 0 {
		fmt.Fprintf(&b, " The first failures: `%s`.", strings.Join(r.FirstFailures, "`; `"))
	}
	b.WriteString("\n")
	if p99 > movePauseTarget {
		// What this run measured, not a diagnosis.
		quiet := r.Product.medDur(func(x moveCopyRun) time.Duration { return x.Pause })
		fmt.Fprintf(&b, "\n**Why the pause misses p99 ≤ %s.** Under this load the cutover's pause was %s (median), against %s (median) for the "+
			"copy rounds' moves above, with no load: the same steps (hold; wait, up to half of `MOVE_CUTOVER_TIMEOUT`, until the tenant's sessions on "+
			"the source are quiet; fence; wait until the subscription has confirmed the source's WAL position taken under the fence; sequences; drop "+
			"the subscription; flip), which serve does not time one by one: the log line gives their sum only. Every move needed %s; the longest "+
			"request during a move (median %s) is the pause plus the request's own work once released. The clusters, serve, the load and the "+
			"harness share the machine's %d CPUs.\n", ms(movePauseTarget), ms(p50), ms(quiet),
			map[bool]string{true: "one cutover (none was abandoned and tried again)", false: "more than one cutover at times (see the table)"}[retried == 0],
			ms(l50), runtime.NumCPU())
	}
	writesOK := r.Found == r.Acked && r.CDRsFound == r.CDRsAcked

	s.Rows = append(s.Rows,
		Row{Bench: moveBench, Metric: fmt.Sprintf("copy rate, online move of %s CDRs (%s) vs pg_dump -Fc piped into pg_restore", itoa(r.CDRs), mb(r.DBBytes)),
			Ours: rate(mp, "MB/s") + " (" + ms(tp) + ")", Base: rate(mf, "MB/s") + " (" + ms(tf) + ")", Ratio: ratio,
			Target: fmt.Sprintf("≥ %.2f×", moveCopyTarget), Met: yesNo(ratio >= moveCopyTarget)},
		Row{Bench: moveBench, Metric: fmt.Sprintf("cutover pause under load, p50 / p99 of %d online moves (serve's log)", len(r.Pauses)),
			Ours: ms(p50) + " / " + ms(p99), Base: "–", Ratio: math.NaN(), Target: "p99 ≤ " + ms(movePauseTarget), Met: yesNo(p99 <= movePauseTarget)},
		Row{Bench: moveBench, Metric: fmt.Sprintf("longest request during a move under load, median / max of %d", len(r.Pauses)),
			Ours: ms(l50) + " / " + ms(lmax), Base: "–", Ratio: math.NaN()},
		Row{Bench: moveBench, Metric: fmt.Sprintf("failed requests of the load over %d online moves; acknowledged writes found", len(r.Pauses)),
			Ours: fmt.Sprintf("%d of %s; %s", r.Failed, itoa(r.Requests), map[bool]string{true: "all", false: "NOT all"}[writesOK]), Base: "–", Ratio: math.NaN(),
			Target: "0, all", Met: yesNo(r.Failed == 0 && writesOK)},
	)
	s.Body = b.String()
	return s
}
