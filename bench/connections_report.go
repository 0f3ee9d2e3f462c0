package bench

import (
	"fmt"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"
)

// connBench names benchmark 6's rows in the summary.
const connBench = "6. Connections"

// connectionsSection reports benchmark 6: a table of every contender, the
// summary rows, and for each row what the run measured and, for a missed
// target, the numbers that explain it.
func (e *env) connectionsSection(r *connResult) *Section {
	s := &Section{Title: "6. Connection physics"}
	var b strings.Builder
	fmt.Fprintf(&b, "Issue #13: routed reads where connections are scarce or many tenants share them, with **serve's defaults**: none of `TENANT_POOLS_MAX`, "+
		"`TENANT_POOL_MAX_CONNS`, `TENANT_SERVER_MAX_CONNS`, `TENANT_SCHEMA_POOL_CONNS`, `TENANT_POOL_IDLE_TIMEOUT` set (serve derives its budget from the "+
		"server at start: `controlplane_tenant_connections_max` below); `LOG_LEVEL=error`, development mode, no spare databases. The load is benchmark 1's: "+
		"`GET /api/extensions/{id}` with a uniformly random tenant's `Host` and a random id (1–%d), %d closed-loop keep-alive clients, %s warm-up then %s "+
		"measured, %d rounds per contender in alternating order, medians of the rounds. Each row's contender runs in the same run on the same server.\n\n",
		e.sz.Extensions, e.sz.Clients, e.sz.Warmup, e.sz.ConnDuration, e.sz.ConnRounds)
	fmt.Fprintf(&b, "- **Servers**: %s\n", e.connServers(r))
	fmt.Fprintf(&b, "- **Row 1** (%s): %d database-mode tenants created through the API. Each round starts a serve afresh, one at a time (two would not fit the server), "+
		"and primes every tenant's pool with one request: the tuned serve has benchmark 1's warm settings (`TENANT_POOLS_MAX=%d`, `TENANT_POOL_MAX_CONNS=1`, "+
		"`TENANT_SERVER_MAX_CONNS=%d`), the other its defaults.\n", r.S300, r.Tuned.Tenants, r.Tuned.Tenants+50, e.budget)
	fmt.Fprintf(&b, "- **Row 2** (%s): %d database-mode tenants. serve with its defaults (not primed), against the **connection-setup floor**: %d workers in the "+
		"harness, each request a new pgx connection to a random tenant database as that tenant's role (SCRAM-SHA-256, the password serve derives from "+
		"`TENANT_ROLE_SECRET`), the statement serve runs for the read (`%s`, prepared and executed as pgx does on a new connection), and close: "+
		"pgbench -C's shape. serve is stopped during the floor's rounds.\n", r.S100, r.Floor.Tenants, e.sz.Clients, floorQuery)
	fmt.Fprintf(&b, "- **Row 3** (the run's server): benchmark 4's %d schema-mode tenants; one serve with its defaults, primed with one request to each "+
		"tenant, the load across the first %d of them and across all %d in alternating rounds (the catalog holds all of them in both).\n", r.All.Tenants, r.Few.Tenants, r.All.Tenants)
	fmt.Fprintf(&b, "- **Row 5** (%s, with a PgBouncer 1.18 of the run's own in front of it: transaction pooling, `default_pool_size=20`, "+
		"`server_idle_timeout=10`, started like `make test`'s by `scripts/pg.sh pooler-start`): %d database-mode and %d schema-mode tenants, each "+
		"served by serve with its defaults, direct and with `TENANT_POOLER_URL`, primed like row 1, in alternating order. Every extension's name ends "+
		"with its tenant's database or schema name, and the load checks every answer (in every row): one naming another tenant counts as a cross-tenant "+
		"read.\n", r.S5, r.DirectDB.Tenants, r.DirectSchema.Tenants)
	fmt.Fprintf(&b, "- **Row 4** (row 1's server and tenants): during each defaults round's serve, one more round where the %d clients read from the other %d "+
		"tenants while %d more clients send requests back to back to the remaining one (a client answered 429 waits as docs/API.md asks: its Retry-After plus a random part of as much again), all in the harness; the other tenants' p99 is compared "+
		"with the defaults round of row 1 (the same load across all %d, no burst).\n", e.sz.Clients, r.Noisy.Tenants, e.sz.ConnBurst, r.Defaults.Tenants)
	b.WriteString("- CPU per request: serve's user+system time (`/proc/PID/stat`) ÷ the requests it served (the floor: the harness's own, which is all the " +
		"floor's client work); PostgreSQL's " + e.pgCPUNote(r) + ". New connections per second: `pg_stat_database.sessions` of the tenant databases over the " +
		"round. The load generator's CPU is the harness process's, per request of the round's own load.\n\n")

	type line struct {
		row string
		c   *connContender
	}
	lines := []line{{"1", &r.Tuned}, {"1", &r.Defaults}, {"2", &r.Floor}, {"2", &r.Many}, {"3", &r.Few}, {"3", &r.All}, {"4", &r.Noisy}}
	if r.Pooler {
		lines = append(lines, line{"5", &r.DirectDB}, line{"5", &r.PooledDB}, line{"5", &r.DirectSchema}, line{"5", &r.PooledSchema})
	}
	var rows [][]string
	for _, l := range lines {
		if len(l.c.Rounds) == 0 {
			continue // a contender that failed before its first round (row 5)
		}
		m := l.c.med()
		var each []string
		for _, x := range l.c.Rounds {
			each = append(each, fmt.Sprintf("%.0f", x.RPS))
		}
		budget, gen := "–", "–"
		if l.c != &r.Floor {
			budget = itoa(int(l.c.field(func(x connRound) float64 { return float64(x.Budget) })))
			gen = us(time.Duration(l.c.field(func(x connRound) float64 { return float64(x.HarnessPerReq) })))
		}
		rows = append(rows, []string{l.row, l.c.Server, fmt.Sprintf("%d", l.c.Tenants), l.c.Label, rate(m.rps, "req/s"), ms(m.p50), ms(m.p99),
			fmt.Sprintf("%d", l.c.errors()), us(m.cpu), us(m.pgCPU), gen,
			fmtConns(l.c.field(func(x connRound) float64 { return x.NewConns })), budget, strings.Join(each, ", ")})
	}
	b.WriteString(table([]string{"row", "server", "tenants", "contender", "req/s", "p50", "p99", "errors", "serve CPU / req", "PostgreSQL CPU / req",
		"load generator CPU / req", "new connections / s", "budget", "req/s per round"}, rows))
	b.WriteString("\n(The floor's \"serve CPU\" is the harness's: the client side of each connection, SCRAM included. Row 4's CPU per request counts the burst's requests too.)\n\n")

	if len(e.cfg.Rows) > 0 {
		fmt.Fprintf(&b, "Only rows %s ran (`-rows`).\n", strings.Join(e.cfg.Rows, ", "))
	}
	if e.wantsRow("1") || e.wantsRow("4") {
		s.Rows = append(s.Rows, e.connRow1(r, &b))
	}
	if e.wantsRow("2") {
		s.Rows = append(s.Rows, e.connRow2(r, &b)...)
	}
	if e.wantsRow("3") {
		s.Rows = append(s.Rows, e.connRow3(r, &b))
	}
	if e.wantsRow("1") || e.wantsRow("4") {
		s.Rows = append(s.Rows, e.connRow4(r, &b)...)
	}
	if e.wantsRow("5") {
		s.Rows = append(s.Rows, e.connRow5(r, &b)...)
	}
	s.Body = b.String()
	return s
}

// connServers says which servers rows 1, 2 and 4 ran on.
func (e *env) connServers(r *connResult) string {
	if r.S300.Own && r.S100.Own {
		return "rows 1 and 4 on a PostgreSQL cluster of the run's own with `max_connections=300`, row 2 on one with `max_connections=100` (Debian's default), " +
			"each started for these rows and removed after them, made like the run's server (`scripts/pg.sh`; fsync off; `postgres` trusted, every other role " +
			"with SCRAM-SHA-256; `pg_stat_statements` when the run's server has it), catalog and tenant databases on it; row 3 on the run's server" +
			row5Server(r) + "."
	}
	return fmt.Sprintf("**the rows ran on the run's server (max_connections %d), not on servers of max_connections 300 and 100**: the harness was given "+
		"a server (`DATABASE_URL` set) and no folder for clusters of its own (`bench/run.sh` makes both only when it starts its own server). "+
		"Rows 1, 2 and 4 measure that server instead, and their targets are not judged.", r.S300.MaxConns)
}

// row5Server says where row 5 ran, when it did.
func row5Server(r *connResult) string {
	if !r.Pooler {
		return ""
	}
	return fmt.Sprintf("; row 5 on a third one with `max_connections=%d`, sized as docs/OPERATIONS.md sizes a server behind PgBouncer 1.18 "+
		"(two connections per database tenant active within `server_idle_timeout`: its pool's and the one 1.18 opens in each tenant database for its "+
		"`auth_query`; row 1's 300 cannot hold %d such tenants, and the first run of this row failed there)", r.S5.MaxConns, r.PooledDB.Tenants)
}

// pgCPUNote says how PostgreSQL's CPU was measured.
func (e *env) pgCPUNote(r *connResult) string {
	if r.S300.Own {
		return "is, on the clusters of the run's own, the whole cluster's (the postmaster's tree in `/proc`, the backends that ended during the round " +
			"included: a connection opened and closed within a round counts), and on the run's server (row 3) that of serve's live backends"
	}
	return "is that of the live backends of the contender's connections (`pg_stat_activity`): a backend that connects and leaves within a round is " +
		"missing, so it is low wherever connections are opened per request"
}

// judged returns the target's verdict, or "" when the row did not run on
// the server its target is for.
func judged(ok bool, want, got connServer) string {
	if !got.Own || got.MaxConns != want.MaxConns {
		return ""
	}
	return yesNo(ok)
}

// target names a row's target, and the server it is for when the run
// could not judge it.
func target(t string, want, got connServer) string {
	if !got.Own || got.MaxConns != want.MaxConns {
		return t + fmt.Sprintf(" (for max_connections %d; not judged)", want.MaxConns)
	}
	return t
}

// cpuSplit describes a contender's CPU per request across the processes
// (the floor has no load generator besides its client).
func cpuSplit(c *connContender, server string) string {
	m := c.med()
	h := time.Duration(c.field(func(x connRound) float64 { return float64(x.HarnessPerReq) }))
	if h == 0 {
		return fmt.Sprintf("%s in %s, %s in PostgreSQL (%s in all)", us(m.cpu), server, us(m.pgCPU), us(m.cpu+m.pgCPU))
	}
	return fmt.Sprintf("%s in %s, %s in PostgreSQL, %s in the load generator (%s in all)", us(m.cpu), server, us(m.pgCPU), us(h), us(m.cpu+m.pgCPU+h))
}

// cpuTotal is a contender's CPU per request across the processes measured.
func cpuTotal(c *connContender) time.Duration {
	m := c.med()
	return m.cpu + m.pgCPU + time.Duration(c.field(func(x connRound) float64 { return float64(x.HarnessPerReq) }))
}

// connsPerReq says how many connections a contender opened per request.
func connsPerReq(c *connContender) string {
	nc := c.field(func(x connRound) float64 { return x.NewConns })
	if nc < 0 || math.IsNaN(nc) {
		return "an unknown number of new connections per second"
	}
	return fmt.Sprintf("%s new connections per second, %.2f per request", fmtConns(nc), nc/c.med().rps)
}

func (e *env) connRow1(r *connResult, b *strings.Builder) Row {
	t, d := r.Tuned.med(), r.Defaults.med()
	ratio := d.rps / t.rps
	ok := ratio >= 0.9 && r.Defaults.errors() == 0
	fmt.Fprintf(b, "**Row 1, %d database-mode tenants, %s**: with its defaults serve ran at %s, %.2f× the tuned warm serve's %s, with %d errors "+
		"(target ≥ 0.90× and no error: %s).", r.Defaults.Tenants, r.S300, rate(d.rps, "req/s"), ratio, rate(t.rps, "req/s"), r.Defaults.errors(), dash(judged(ok, r.Want300, r.S300)))
	{
		fmt.Fprintf(b, " %s the defaults' serve derived a budget of %s connections and opened %s, against %s for the tuned serve "+
			"(pools of one connection, primed). Per request, defaults: %s; tuned: %s.",
			lead(ok), itoa(int(r.Defaults.field(func(x connRound) float64 { return float64(x.Budget) }))), connsPerReq(&r.Defaults), connsPerReq(&r.Tuned),
			cpuSplit(&r.Defaults, "serve"), cpuSplit(&r.Tuned, "serve"))
		fmt.Fprintf(b, " From the CPU measured alone (the machine's %d CPUs shared by all three), the defaults would run at %.2f× the tuned serve's rate.",
			runtime.NumCPU(), float64(cpuTotal(&r.Tuned))/float64(cpuTotal(&r.Defaults)))
		if fm := r.Floor.med(); len(r.Floor.Rounds) > 0 {
			fmt.Fprintf(b, " A new connection with its one query costs %s in PostgreSQL and %s in the client (row 2's floor)", us(fm.pgCPU), us(fm.cpu))
			if nc := r.Defaults.field(func(x connRound) float64 { return x.NewConns }); nc > 0 {
				fmt.Fprintf(b, ": at %s per second, about %.2f CPUs", fmtConns(nc), nc*float64(fm.pgCPU+fm.cpu)/float64(time.Second))
			}
			b.WriteString(".")
		}
		b.WriteString(idleNote(r.S300, &r.Defaults))
		if r.Defaults.errors() > 0 {
			fmt.Fprintf(b, " First error: `%s`.", r.Defaults.firstErr())
		}
	}
	b.WriteString("\n\n")
	return Row{Bench: connBench, Metric: fmt.Sprintf("req/s, %d database tenants, %s: defaults vs tuned warm", r.Defaults.Tenants, r.S300),
		Ours: rate(d.rps, "req/s") + errNote(r.Defaults.errors()), Base: rate(t.rps, "req/s"), Ratio: ratio,
		Target: target("≥ 0.90×, 0 errors", r.Want300, r.S300), Met: judged(ok, r.Want300, r.S300)}
}

func (e *env) connRow2(r *connResult, b *strings.Builder) []Row {
	f, m := r.Floor.med(), r.Many.med()
	ratio, p99 := m.rps/f.rps, float64(m.p99)/float64(f.p99)
	okRate, okP99 := ratio >= 0.8 && r.Many.errors() == 0, p99 <= 1.5
	fmt.Fprintf(b, "**Row 2, %d database-mode tenants, %s**: with its defaults serve ran at %s, %.2f× the connection-setup floor's %s (target ≥ 0.80×: %s), "+
		"p99 %s against the floor's %s, %.2f× (target ≤ 1.50×: %s), with %d errors (the floor: %d).",
		r.Many.Tenants, r.S100, rate(m.rps, "req/s"), ratio, rate(f.rps, "req/s"), dash(judged(okRate, r.Want100, r.S100)), ms(m.p99), ms(f.p99), p99,
		dash(judged(okP99, r.Want100, r.S100)), r.Many.errors(), r.Floor.errors())
	{
		fmt.Fprintf(b, " %s serve derived a budget of %s connections and opened %s; the floor opened %s. Per request, serve: %s; the floor: %s. "+
			"From the CPU measured alone serve would run at %.2f× the floor's rate.",
			lead(okRate && okP99), itoa(int(r.Many.field(func(x connRound) float64 { return float64(x.Budget) }))), connsPerReq(&r.Many), connsPerReq(&r.Floor),
			cpuSplit(&r.Many, "serve"), cpuSplit(&r.Floor, "the client"), float64(cpuTotal(&r.Floor))/float64(cpuTotal(&r.Many)))
		b.WriteString(idleNote(r.S100, &r.Many))
		if r.Many.errors() > 0 {
			fmt.Fprintf(b, " First error: `%s`.", r.Many.firstErr())
		}
	}
	b.WriteString("\n\n")
	metric := fmt.Sprintf("%d database tenants, %s: defaults vs connection-setup floor", r.Many.Tenants, r.S100)
	return []Row{
		{Bench: connBench, Metric: "req/s, " + metric, Ours: rate(m.rps, "req/s") + errNote(r.Many.errors()), Base: rate(f.rps, "req/s"), Ratio: ratio,
			Target: target("≥ 0.80×, 0 errors", r.Want100, r.S100), Met: judged(okRate, r.Want100, r.S100)},
		{Bench: connBench, Metric: "p99, " + metric, Ours: ms(m.p99), Base: ms(f.p99), Ratio: p99,
			Target: target("≤ 1.50×", r.Want100, r.S100), Met: judged(okP99, r.Want100, r.S100)},
	}
}

func (e *env) connRow3(r *connResult, b *strings.Builder) Row {
	f, a := r.Few.med(), r.All.med()
	ratio := a.rps / f.rps
	ok := ratio >= 0.7 && r.All.errors() == 0
	fmt.Fprintf(b, "**Row 3, schema mode, the load across %d tenants vs across %d**: %s against %s, %.2f× (target ≥ 0.70×: %s), %d errors.",
		r.All.Tenants, r.Few.Tenants, rate(a.rps, "req/s"), rate(f.rps, "req/s"), ratio, yesNo(ok), r.All.errors())
	{
		handles := 0
		for _, c := range []*connContender{&r.Few, &r.All} {
			for _, x := range c.Rounds {
				handles = max(handles, x.Handles)
			}
		}
		fmt.Fprintf(b, " %s per request, across %d: %s; across %d: %s. From the CPU measured alone the ratio would be %.2f×. "+
			"The same serve ran both loads, its shared schema pool within a budget of %s (it opened %s across %d, %s across %d); "+
			"its cache of schema-mode handles held at most %s (`controlplane_tenant_schema_handles`) for the %d tenants.",
			lead(ok), r.All.Tenants, cpuSplit(&r.All, "serve"), r.Few.Tenants, cpuSplit(&r.Few, "serve"), float64(cpuTotal(&r.Few))/float64(cpuTotal(&r.All)),
			itoa(int(r.All.field(func(x connRound) float64 { return float64(x.Budget) }))), connsPerReq(&r.All), r.All.Tenants, connsPerReq(&r.Few), r.Few.Tenants,
			itoa(handles), r.All.Tenants)
	}
	if r.PrimeAll > 0 {
		fmt.Fprintf(b, " Before the rounds serve was primed with one request to each of the %d tenants (as rows 1 and 5 are): that took %s, %s, "+
			"the cold cost, as each schema's first request on a lane connection makes its backend read that schema's catalog entries "+
			"(a tenant runs on its home connection of its lane whenever it is free, so mostly once per schema; lane connections are "+
			"replaced every 10 minutes).", r.All.Tenants, r.PrimeAll.Round(time.Millisecond), rate(float64(r.All.Tenants)/r.PrimeAll.Seconds(), "req/s"))
	}
	b.WriteString("\n\n")
	return Row{Bench: connBench, Metric: fmt.Sprintf("req/s, schema mode, %d vs %d tenants, defaults", r.All.Tenants, r.Few.Tenants),
		Ours: rate(a.rps, "req/s") + errNote(r.All.errors()), Base: rate(f.rps, "req/s"), Ratio: ratio, Target: "≥ 0.70×", Met: yesNo(ok)}
}

func (e *env) connRow4(r *connResult, b *strings.Builder) []Row {
	q, n := r.Defaults.med(), r.Noisy.med()
	ratio := float64(n.p99) / float64(q.p99)
	ok := ratio <= 2
	status := map[int]int{}
	var burstRPS []float64
	for _, x := range r.Noisy.Burst {
		for code, k := range x.Status {
			status[code] += k
		}
		burstRPS = append(burstRPS, x.RPS)
	}
	answers := statusCounts(status)
	fmt.Fprintf(b, "**Row 4, a burst of %d concurrent requests on one tenant**: the other %d tenants' p99 was %s with the burst against %s without, %.2f× "+
		"(target ≤ 2.00×: %s); their p50 %s against %s, their throughput %s against %s, %d errors. The burst tenant's requests, over the measured "+
		"windows of %d rounds: %s; %s answered with 200.",
		e.sz.ConnBurst, r.Noisy.Tenants, ms(n.p99), ms(q.p99), ratio, dash(judged(ok, r.Want300, r.S300)), ms(n.p50), ms(q.p50), rate(n.rps, "req/s"),
		rate(q.rps, "req/s"), r.Noisy.errors(), len(r.Noisy.Burst), answers, rate(median(burstRPS), "req/s"))
	{
		share := median(burstRPS) / (median(burstRPS) + n.rps)
		all := 0
		for _, k := range status {
			all += k
		}
		if status[http.StatusTooManyRequests] == 0 {
			fmt.Fprintf(b, " %s no request of the burst was answered 429: no per-tenant cap stopped it, and", lead(ok))
		} else {
			fmt.Fprintf(b, " %s %.0f%% of the burst's requests were answered 429 (the per-tenant cap), and", lead(ok),
				100*float64(status[http.StatusTooManyRequests])/float64(all))
		}
		fmt.Fprintf(b, " the one tenant took %.0f%% of the requests serve answered with 200. "+
			"serve used %s of CPU per request (burst included) against %s without the burst, and opened %s new connections per second (without: %s). "+
			"The load generator itself, %d more clients in the same process, used %.2f CPUs against %.2f without the burst, on a machine of %d.",
			100*share, us(n.cpu), us(q.cpu), fmtConns(r.Noisy.field(func(x connRound) float64 { return x.NewConns })),
			fmtConns(r.Defaults.field(func(x connRound) float64 { return x.NewConns })), e.sz.ConnBurst,
			r.Noisy.field(func(x connRound) float64 { return x.Harness }), r.Defaults.field(func(x connRound) float64 { return x.Harness }), runtime.NumCPU())
		if r.Noisy.errors() > 0 {
			fmt.Fprintf(b, " First error of the other tenants: `%s`.", r.Noisy.firstErr())
		}
	}
	b.WriteString("\n")
	return []Row{
		{Bench: connBench, Metric: fmt.Sprintf("other tenants' p99 with a burst of %d on one tenant vs without, %s", e.sz.ConnBurst, r.S300),
			Ours: ms(n.p99) + errNote(r.Noisy.errors()), Base: ms(q.p99), Ratio: ratio, Target: target("≤ 2.00×", r.Want300, r.S300), Met: judged(ok, r.Want300, r.S300)},
		{Bench: connBench, Metric: "the burst tenant's answers (HTTP status: count)", Ours: answers, Base: "–", Ratio: math.NaN()},
	}
}

// foreign counts a contender's cross-tenant reads over its rounds.
func (c *connContender) foreign() int {
	n := 0
	for _, x := range c.Rounds {
		n += x.Status[statusForeign]
	}
	return n
}

func (e *env) connRow5(r *connResult, b *strings.Builder) []Row {
	if !r.Pooler {
		b.WriteString("\n**Row 5, through PgBouncer**: not run: the run has no cluster of its own to put a pooler in front of.\n")
		return nil
	}
	var rows []Row
	for _, p := range []struct {
		mode           string
		direct, pooled *connContender
	}{{"database mode", &r.DirectDB, &r.PooledDB}, {"schema mode", &r.DirectSchema, &r.PooledSchema}} {
		if c := p.pooled; c.Failed != "" || p.direct.Failed != "" {
			why := c.Failed + p.direct.Failed
			fmt.Fprintf(b, "\n**Row 5, %s through PgBouncer**: failed after %d rounds: `%s`.\n", p.mode, len(c.Rounds), why)
			rows = append(rows, Row{Bench: connBench, Metric: fmt.Sprintf("req/s, %s, through PgBouncer vs direct (defaults)", p.mode),
				Ours: "failed", Base: "–", Ratio: math.NaN(), Target: "0 errors, 0 cross-tenant reads", Met: "no"})
			continue
		}
		d, q := p.direct.med(), p.pooled.med()
		ratio := q.rps / d.rps
		foreign := p.direct.foreign() + p.pooled.foreign()
		ok := foreign == 0 && p.pooled.errors() == 0
		fmt.Fprintf(b, "\n**Row 5, %s through PgBouncer, %d tenants**: %s against %s direct, %.2f×; p99 %s against %s; %d errors, %d cross-tenant reads "+
			"(target: 0 and 0: %s). Per request through the pooler: %s; direct: %s. Through a transaction pooler serve runs its statements unprepared "+
			"(pgx's exec mode: PostgreSQL parses and plans each one), and every query crosses one more process.",
			p.mode, p.pooled.Tenants, rate(q.rps, "req/s"), rate(d.rps, "req/s"), ratio, ms(q.p99), ms(d.p99), p.pooled.errors(), foreign, yesNo(ok),
			cpuSplit(p.pooled, "serve"), cpuSplit(p.direct, "serve"))
		if p.pooled.errors() > 0 {
			fmt.Fprintf(b, " First error: `%s`.", p.pooled.firstErr())
		}
		b.WriteString("\n")
		rows = append(rows, Row{Bench: connBench, Metric: fmt.Sprintf("req/s, %s, %d tenants, through PgBouncer vs direct (defaults)", p.mode, p.pooled.Tenants),
			Ours: rate(q.rps, "req/s") + errNote(p.pooled.errors()), Base: rate(d.rps, "req/s"), Ratio: ratio,
			Target: "0 errors, 0 cross-tenant reads", Met: yesNo(ok)})
	}
	return rows
}

// statusCounts prints HTTP status counts, "0" being transport errors.
func statusCounts(st map[int]int) string {
	var codes []int
	for c := range st {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var out []string
	for _, c := range codes {
		name := fmt.Sprint(c)
		switch c {
		case 0:
			name = "no answer"
		case statusForeign:
			name = "another tenant's row"
		}
		out = append(out, fmt.Sprintf("%s: %d", name, st[c]))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func errNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d errors", n)
}

// fmtConns prints connections per second (a dash when unknown).
func fmtConns(x float64) string {
	if x < 0 || math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.1f", x)
}

// lead opens the numbers behind a row: the why of a missed target, or
// just the numbers of a met one.
func lead(ok bool) string {
	if ok {
		return "Numbers:"
	}
	return "**Why**:"
}

// idleNote says how much of a contender's PostgreSQL CPU per request the
// cluster spent idle ("" when not measured).
func idleNote(s connServer, c *connContender) string {
	if s.IdleCPU < 0 {
		return ""
	}
	return fmt.Sprintf(" With no load, just before the rounds, the cluster used %.2f CPUs (its background processes, autovacuum visiting its databases among them): "+
		"%s of the PostgreSQL CPU per request at the %s rate.", s.IdleCPU, us(time.Duration(s.IdleCPU/c.med().rps*float64(time.Second))), c.Label)
}
