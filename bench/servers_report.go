package bench

import (
	"fmt"
	"math"
	"net/http"
	"runtime"
	"strings"
	"time"
)

// serversBench names benchmark 7's rows in the summary.
const serversBench = "7. Tenant servers"

// failures counts a contender's failed requests, warm-up included: the
// outage begins in the during round's warm-up.
func failures(c *connContender) int {
	n := 0
	for _, r := range c.Rounds {
		n += r.Errors + r.WarmErrors
	}
	return n
}

// serversSection reports benchmark 7: the contenders' table, the outages'
// table, and what they say against the targets.
func (e *env) serversSection(r *serversResult) *Section {
	s := &Section{Title: "7. Tenant servers"}
	var b strings.Builder
	fmt.Fprintf(&b, "Routed reads with %d database-mode tenants spread over three tenant servers against the same tenants all on one, then one of the three "+
		"stopped under load. serve runs with its defaults (no sizing variable set; `LOG_LEVEL=error`, development mode, no spare databases). The load is "+
		"benchmark 1's: `GET /api/extensions/{id}` with a uniformly random tenant's `Host` and a random id (1–%d), %d closed-loop keep-alive clients, %s "+
		"warm-up then %s measured; %d rounds per contender, one serve at a time, started afresh each round and primed with one request per tenant, in "+
		"alternating order (1 server, 3 servers, 3 servers, 1 server, …); medians of the rounds. Every answer is checked to name its own tenant.\n\n",
		r.Tenants, e.sz.Extensions, e.sz.Clients, e.sz.Warmup, e.sz.ServerDuration, e.sz.ServerRounds)
	where := "in `BENCH_CLUSTER_DIR`"
	if !r.Own {
		where = "in a temporary folder of the benchmark's own (the run was given no `BENCH_CLUSTER_DIR`)"
	}
	fmt.Fprintf(&b, "- **Servers**: three PostgreSQL clusters of the run's own, A, B and C, each with `max_connections=%d` (serve derives a budget of about "+
		"160 connections from each, so that all %d tenants' pools stay open on one server as on three), made like the run's server (`scripts/pg.sh`; "+
		"fsync off; `postgres` trusted, every other role with SCRAM-SHA-256), %s, and removed after. Both catalogs are on the run's server: stopping a "+
		"tenant server leaves them alone.\n", r.MaxConns, r.Tenants, where)
	fmt.Fprintf(&b, "- **All four PostgreSQL servers, serve and the load generator share this machine's %d CPUs**: the ratio of 3 servers to 1 measures "+
		"what routing over several servers costs serve, not scale-out (servers on machines of their own would add capacity; here they divide the "+
		"same cores).\n", runtime.NumCPU())
	fmt.Fprintf(&b, "- **1 server**: serve with `TENANT_DATABASE_URL` on A, its catalog's only server (`default`); the %d tenants created through "+
		"`POST /api/tenants`, all on A.\n", r.Tenants)
	fmt.Fprintf(&b, "- **3 servers**: a catalog of its own, serve with `TENANT_DATABASE_URL` on A (`default`), B and C registered through "+
		"`POST /api/servers` as `pg-b` and `pg-c` (URLs without password: `postgres` is trusted, so no `SERVER_SECRET_KEY` is needed), every server's "+
		"capacity %d (the default's set with `PATCH /api/servers/default`: it is 1,000,000 until set, which would keep it the least loaded), and the same "+
		"%d tenants (slugs, domains) created one at a time through `POST /api/tenants` without `server`: placement put %s (the responses' `server`). "+
		"In both, each tenant's %d extensions are written with SQL on the server it lives on.\n",
		serverCapacity, r.Tenants, splitText(r.Split), e.sz.Extensions)
	fmt.Fprintf(&b, "- **Outage**, with each round's 3-server serve after its read round: *all up*, the load across the %d tenants of B and C, every "+
		"server up (before the outage in odd-numbered rounds, after A's recovery in even-numbered ones, so that a machine growing busier or quieter "+
		"weighs on both sides); *during*, the same load with A stopped (`scripts/pg.sh stop`: a fast shutdown, every backend ended at once) as its warm-up starts, "+
		"so that the warm-up holds the outage's first moments (errors count warm-up included, in both). From the moment A is down to the end of the "+
		"round %d more clients read from A's %d tenants, each waiting after a 503 as docs/API.md asks (its `Retry-After` plus a random part of as much "+
		"again), as benchmark 6's burst clients do; every answer counts. Then A is started again on the same port (`scripts/pg.sh start`) and, from the "+
		"moment it accepts connections, the harness probes each of A's tenants (`GET /api/extensions/1`) every %s without waiting `Retry-After` (it is "+
		"the instrument, not a client) until one pass finds all of them answering 200, and checks that serve is the same process (no restart).\n",
		r.Before.Tenants, outageClients, r.OnA, probeEvery)
	b.WriteString("- CPU per request: serve's user+system time (`/proc/PID/stat`) ÷ the requests it served (the outage's clients' too); PostgreSQL's is " +
		"the whole clusters' (the postmaster's tree in `/proc`): A, B and C for the read rounds, B and C for all up and during (A is idle, then " +
		"stopped). New connections per second: `pg_stat_database.sessions` of the tenant databases on those clusters. Budget: " +
		"`controlplane_tenant_connections_max`, every server's router summed.\n\n")

	var rows [][]string
	for _, c := range []*connContender{&r.One, &r.Three, &r.Before, &r.During} {
		if len(c.Rounds) == 0 {
			continue
		}
		m := c.med()
		var each []string
		for _, x := range c.Rounds {
			each = append(each, fmt.Sprintf("%.0f", x.RPS))
		}
		rows = append(rows, []string{c.Label, fmt.Sprintf("%d", c.Tenants), c.Server, rate(m.rps, "req/s"), ms(m.p50), ms(m.p99),
			fmt.Sprintf("%d", failures(c)), us(m.cpu), us(m.pgCPU), fmtConns(c.field(func(x connRound) float64 { return x.NewConns })),
			itoa(int(c.field(func(x connRound) float64 { return float64(x.Budget) }))), strings.Join(each, ", ")})
	}
	b.WriteString(table([]string{"contender", "tenants", "servers", "req/s", "p50", "p99", "errors (warm-up included)", "serve CPU / req",
		"PostgreSQL CPU / req", "new connections / s", "budget", "req/s per round"}, rows))
	b.WriteString("\n")

	rows = nil
	for k, o := range r.Outages {
		bf, du := r.Before.Rounds[k], r.During.Rounds[k]
		rows = append(rows, []string{fmt.Sprintf("%d", k+1), rate(bf.RPS, "req/s"), rate(du.RPS, "req/s"), fmtRatio(du.RPS / bf.RPS),
			fmt.Sprintf("%d / %d", bf.Errors+bf.WarmErrors, du.Errors+du.WarmErrors), ms(o.Stop), statusCounts(o.A.Status),
			fmt.Sprintf("%d", o.NoRetryAfter), rate(float64(o.A.Total)/o.Window.Seconds(), "req/s"), ms(o.Start), ms(o.FirstOK), ms(o.AllOK),
			fmt.Sprintf("%d", o.Pid)})
	}
	b.WriteString(table([]string{"outage", "B+C all up", "B+C during", "during ÷ all up", "B+C errors all up / during", "A stopped in",
		"A's tenants' answers", "without Retry-After", "A's clients' requests", "A accepting connections in", "first 200 after", "all 200 after",
		"serve pid"}, rows))
	b.WriteString("\n(\"first 200 after\" is the probe's first answer 200, \"all 200 after\" the end of its first pass where all of A's tenants answered 200, both from the moment A accepted connections again; \"A accepting connections in\" is " +
		"how long `scripts/pg.sh start` took. The serve pid is the same before and after each outage.)\n\n")

	s.Rows = append(s.Rows, e.serversSpread(r, &b), e.serversOutage(r, &b))
	s.Rows = append(s.Rows, e.serversStopped(r, &b)...)
	s.Body = b.String()
	return s
}

// splitText says how many tenants placement put on each server.
func splitText(split []serverSplit) string {
	var out []string
	for _, x := range split {
		out = append(out, fmt.Sprintf("%d on %s (`%s`)", x.Tenants, x.Label, x.Name))
	}
	return strings.Join(out, ", ")
}

func (e *env) serversSpread(r *serversResult, b *strings.Builder) Row {
	one, three := r.One.med(), r.Three.med()
	ratio := three.rps / one.rps
	fmt.Fprintf(b, "**3 servers vs 1, %d database-mode tenants**: spread over three servers serve ran at %s, %.2f× the %s of all on one, p99 %s against "+
		"%s, with %d and %d errors. Numbers: per request, 3 servers: %s; 1 server: %s. The three-server serve holds a router per server, budgets "+
		"summing to %s connections against %s, and opened %s new connections per second against %s.",
		r.Tenants, rate(three.rps, "req/s"), ratio, rate(one.rps, "req/s"), ms(three.p99), ms(one.p99), failures(&r.Three), failures(&r.One),
		cpuSplit(&r.Three, "serve"), cpuSplit(&r.One, "serve"),
		itoa(int(r.Three.field(func(x connRound) float64 { return float64(x.Budget) }))), itoa(int(r.One.field(func(x connRound) float64 { return float64(x.Budget) }))),
		fmtConns(r.Three.field(func(x connRound) float64 { return x.NewConns })), fmtConns(r.One.field(func(x connRound) float64 { return x.NewConns })))
	var pairs []string
	for k := range min(len(r.One.Rounds), len(r.Three.Rounds)) {
		pairs = append(pairs, fmtRatio(r.Three.Rounds[k].RPS/r.One.Rounds[k].RPS))
	}
	fmt.Fprintf(b, " Round by round (each pair run back to back, so that a machine busier at one time weighs on both): %s.", strings.Join(pairs, ", "))
	fmt.Fprintf(b, " The four PostgreSQL servers share the machine's %d CPUs with serve and the harness: three clusters here only divide them, so this "+
		"ratio is the routing's overhead, not what more servers would add.", runtime.NumCPU())
	if n := failures(&r.Three) + failures(&r.One); n > 0 {
		fmt.Fprintf(b, " First error: `%s`.", r.Three.firstErr()+r.One.firstErr())
	}
	b.WriteString("\n\n")
	return Row{Bench: serversBench, Metric: fmt.Sprintf("req/s, %d database tenants spread over 3 servers vs all on 1 (one machine's %d CPUs)", r.Tenants, runtime.NumCPU()),
		Ours: rate(three.rps, "req/s") + errNote(failures(&r.Three)), Base: rate(one.rps, "req/s") + errNote(failures(&r.One)), Ratio: ratio}
}

func (e *env) serversOutage(r *serversResult, b *strings.Builder) Row {
	bf, du := r.Before.med(), r.During.med()
	ratio := du.rps / bf.rps
	ok := ratio >= 0.9 && failures(&r.During) == 0
	fmt.Fprintf(b, "**B's and C's %d tenants while A is stopped**: %s, %.2f× their %s with every server up, the same serve (target ≥ 0.90×: %s); p99 %s "+
		"against %s; %d errors over the %d outages, warm-up included (target 0: %s; all up: %d).",
		r.During.Tenants, rate(du.rps, "req/s"), ratio, rate(bf.rps, "req/s"), yesNo(ratio >= 0.9), ms(du.p99), ms(bf.p99), failures(&r.During),
		len(r.Outages), yesNo(failures(&r.During) == 0), failures(&r.Before))
	fmt.Fprintf(b, " %s per request during: %s; all up: %s. A's cluster was idle in both rounds but for the stop (none of its tenants is in this "+
		"load), so stopping it frees little of the CPU the others use.", lead(ok), cpuSplit(&r.During, "serve"), cpuSplit(&r.Before, "serve"))
	var stops []time.Duration
	late := 0
	for _, o := range r.Outages {
		stops = append(stops, o.Stop)
		if o.Stop > e.sz.Warmup {
			late++
		}
	}
	if late > 0 {
		fmt.Fprintf(b, " In %d of the %d outages stopping A took longer than the %s warm-up (median %s): the measured window held part of the "+
			"shutdown, whose CPU (pg_ctl's, PostgreSQL's checkpoint and exit) the others share.", late, len(r.Outages), e.sz.Warmup, ms(medianDur(stops)))
	} else {
		fmt.Fprintf(b, " Stopping A took %s (median), within the %s warm-up: the measured window is all outage.", ms(medianDur(stops)), e.sz.Warmup)
	}
	if failures(&r.During) > 0 {
		fmt.Fprintf(b, " First error: `%s`.", r.During.firstErr())
	}
	b.WriteString("\n\n")
	return Row{Bench: serversBench, Metric: fmt.Sprintf("req/s of B's and C's %d tenants while A is stopped vs all up", r.During.Tenants),
		Ours: rate(du.rps, "req/s") + errNote(failures(&r.During)), Base: rate(bf.rps, "req/s"), Ratio: ratio, Target: "≥ 0.90×, 0 errors", Met: yesNo(ok)}
}

func (e *env) serversStopped(r *serversResult, b *strings.Builder) []Row {
	st := map[int]int{}
	total, noRetry := 0, 0
	var window, start time.Duration
	var firsts, alls []time.Duration
	slowest := time.Duration(0)
	for _, o := range r.Outages {
		for code, k := range o.A.Status {
			st[code] += k
			total += k
		}
		noRetry += o.NoRetryAfter
		window += o.Window
		start = max(start, o.Start)
		firsts, alls = append(firsts, o.FirstOK), append(alls, o.AllOK)
		slowest = max(slowest, o.AllOK)
	}
	answers := statusCounts(st)
	ok := total > 0 && st[http.StatusServiceUnavailable] == total && noRetry == 0
	fmt.Fprintf(b, "**A's %d tenants while A is stopped**: over %s of outage in all, their %d clients got %s, %d of them without a usable "+
		"`Retry-After` (target: every answer 503 with `Retry-After`: %s); waiting as asked, they sent %s.",
		r.OnA, window.Round(100*time.Millisecond), outageClients, answers, noRetry, yesNo(ok), rate(float64(total)/window.Seconds(), "req/s"))
	fmt.Fprintf(b, " **When A returns**: its tenants were all served again %s (median of %d outages; the slowest %s) after it accepted connections, "+
		"the first of them %s after, by the same serve process, never restarted; starting A took at most %s.\n",
		ms(medianDur(alls)), len(r.Outages), ms(slowest), ms(medianDur(firsts)), ms(start))
	return []Row{
		{Bench: serversBench, Metric: "A's tenants while A is stopped (HTTP status: count)", Ours: answers + fmt.Sprintf(", %d without Retry-After", noRetry),
			Base: "–", Ratio: math.NaN(), Target: "all 503 with Retry-After", Met: yesNo(ok)},
		{Bench: serversBench, Metric: "A's tenants all served again after A returns, serve not restarted (median of outages)", Ours: ms(medianDur(alls)),
			Base: "–", Ratio: math.NaN(), Target: fmt.Sprintf("≤ %s, no restart", recoveryLimit), Met: yesNo(slowest <= recoveryLimit)},
	}
}
