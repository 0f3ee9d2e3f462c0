package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured: the summary rows and, per benchmark, a
// section of docs/BENCHMARKS.md.
type Report struct {
	Date   time.Time
	Size   string
	Commit string // the checkout measured
	// LoadBefore is the 1-minute load average as the run started: other
	// work on the machine makes every number noisier.
	LoadBefore string
	GoMaxProcs int
	Machine    machineInfo
	Server     serverInfo
	Sections   []*Section
	Took       time.Duration
}

type machineInfo struct {
	CPUs     int
	CPU      string
	MemoryGB float64
	Kernel   string
	OS, Go   string
}

// Section is one benchmark's part of the report.
type Section struct {
	Title string
	Rows  []Row
	Body  string // markdown, after the title
}

// Row is one line of the summary table: a number of ours against its
// baseline and the target on their ratio (or on ours alone).
type Row struct {
	Bench, Metric string
	Ours, Base    string
	Ratio         float64 // NaN when there is no ratio
	Target        string
	// Met is "yes", "no" or "" (no target: the number is reported only).
	Met string
}

// add keeps the sections in the issues' order ("1. ..." to "9. ..."),
// whatever order they ran in.
func (r *Report) add(s *Section) {
	if s != nil {
		r.Sections = append(r.Sections, s)
		sort.SliceStable(r.Sections, func(i, j int) bool { return r.Sections[i].Title < r.Sections[j].Title })
	}
}

// Rows returns every summary row, in the order of benchmarks (a
// section may report a row of another benchmark: the connections during
// benchmark 1 belong to benchmark 4).
func (r *Report) Rows() []Row {
	var out []Row
	for _, s := range r.Sections {
		out = append(out, s.Rows...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Bench[:2] < out[j].Bench[:2] })
	return out
}

// Summary prints the summary table for a terminal.
func (r *Report) Summary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tmetric\tours\tbaseline\tratio\ttarget\tmet?")
	for _, row := range r.Rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Bench, row.Metric, row.Ours, row.Base, fmtRatio(row.Ratio), row.Target, dash(row.Met))
	}
	tw.Flush()
	fmt.Fprintf(w, "(%s run in %s)\n", r.Size, r.Took.Round(time.Second))
}

// Markdown writes docs/BENCHMARKS.md.
func (r *Report) Markdown(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("# Benchmarks")
	p("")
	p("Written by `make bench` (the harness is in `bench/`). Every number below was")
	p("measured in one run, on one PostgreSQL, each against its baseline measured in the same run;")
	p("run it again on your machine to get yours (see [Reproduce](#reproduce)).")
	p("")
	p("- **Date**: %s (%s sizes; the run took %s), commit %s", r.Date.Format("2006-01-02 15:04 MST"), r.Size, r.Took.Round(time.Second), r.Commit)
	p("- **Machine**: %d CPUs (%s), %.1f GB memory, Linux %s, %s; load average %s as the run started",
		r.Machine.CPUs, r.Machine.CPU, r.Machine.MemoryGB, r.Machine.Kernel, r.Machine.OS, r.LoadBefore)
	p("- **Go**: %s; every server (product and baseline) runs with GOMAXPROCS=%d; the load generator runs in the harness process on the same machine", r.Machine.Go, r.GoMaxProcs)
	p("- **PostgreSQL**: %s", r.Server.Version)
	var set []string
	for _, s := range r.Server.Settings {
		set = append(set, fmt.Sprintf("`%s=%s`", s[0], s[1]))
	}
	p("- **PostgreSQL settings**: %s. A throwaway cluster made like `make test`'s", strings.Join(set, ", "))
	p("  (`scripts/pg.sh`: trust for `postgres`, fsync off), except that tenant roles authenticate with")
	p("  SCRAM-SHA-256 as in production, and `pg_stat_statements` is loaded for the evidence below.")
	p("")
	p("## Summary")
	p("")
	p("| benchmark | metric | ours | baseline | ratio | target | met? |")
	p("|---|---|---|---|---|---|---|")
	for _, row := range r.Rows() {
		p("| %s | %s | %s | %s | %s | %s | %s |", row.Bench, row.Metric, row.Ours, row.Base, fmtRatio(row.Ratio), row.Target, dash(row.Met))
	}
	p("")
	p("The ratio is ours ÷ baseline: above 1 is better for throughputs, below 1 for times. Throughputs and")
	p("latencies are medians of alternating rounds where there are rounds (the machine is noisy).")
	p("Connections are the most pg_stat_activity showed during the load (database mode: the router's own).")
	for _, s := range r.Sections {
		p("")
		p("## %s", s.Title)
		p("")
		p("%s", strings.TrimSpace(s.Body))
	}
	p("")
	p("## Reproduce")
	p("")
	p("```sh")
	p("make bench           # all nine at full size, about 30 minutes on 2 CPUs; writes this file")
	p("make bench-smoke     # every benchmark at tiny size (also part of make test)")
	p("bash bench/run.sh -only reads -profile /tmp/prof   # one benchmark, with CPU/heap profiles of serve")
	p("```")
	p("")
	p("`make bench` starts a throwaway PostgreSQL (as `make test` does; `DATABASE_URL` set means use that")
	p("server instead: the run creates and drops its own `bn*` databases and roles there), builds the")
	p("product, its variants (extra tenant migrations via `go build -overlay`, the checkout is not")
	p("touched) and the baseline, runs `bench/cmd/bench -size full -out docs/BENCHMARKS.md`, and removes")
	p("the cluster; benchmark 6 starts more clusters of its own (max_connections 300 and 100) in a")
	p("folder `bench/run.sh` makes and removes (`BENCH_CLUSTER_DIR`), and with `DATABASE_URL` set runs")
	p("those rows on the given server and says so; benchmark 7 starts its three tenant servers there")
	p("too, or in a temporary folder of its own, and benchmark 9 its two. Flags of `bench/cmd/bench` (and of `bench/run.sh`):")
	p("`-size smoke|full`, `-only NAME[,NAME]` (ingest, provision, reads, fleet, scale, connections,")
	p("servers, backup, move; fleet runs on the tenants of reads, connections partly on the fleet of scale), `-out FILE`,")
	p("`-profile DIR` (CPU, heap and allocation profiles of serve and the baseline from extra rounds),")
	p("`-gomaxprocs N`. The golang-migrate CLI of benchmark 3 is `go install`ed, so the module proxy must")
	p("be reachable (or the module cache hold it).")
}

// fmtRatio prints a ratio with two decimals, or a dash.
func fmtRatio(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x)
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// ms prints a duration in milliseconds, with precision that suits it.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 1:
		return fmt.Sprintf("%.3f ms", f)
	case f < 10:
		return fmt.Sprintf("%.2f ms", f)
	case f < 1000:
		return fmt.Sprintf("%.1f ms", f)
	}
	return fmt.Sprintf("%.2f s", f/1000)
}

// us prints a duration in microseconds.
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// rate prints a throughput.
func rate(x float64, unit string) string {
	if x >= 100 {
		return fmt.Sprintf("%.0f %s", x, unit)
	}
	return fmt.Sprintf("%.1f %s", x, unit)
}

// table renders a markdown table.
func table(head []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for range head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// stmtTable renders what pg_stat_statements saw, per operation.
func stmtTable(st stmtStats, ops int, op string) string {
	if ops == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "PostgreSQL executed %.1f statements per %s, %s of execution time inside the server per %s (pg_stat_statements). The costliest:\n\n",
		float64(st.Calls)/float64(ops), op, ms(time.Duration(st.TotalMS/float64(ops)*float64(time.Millisecond))), op)
	var rows [][]string
	for _, s := range st.Top[:min(5, len(st.Top))] {
		q := s.Query
		if len(q) > 110 {
			q = q[:110] + "…"
		}
		q = strings.ReplaceAll(q, "|", "\\|")
		rows = append(rows, []string{"`" + strings.ReplaceAll(q, "`", "'") + "`", fmt.Sprintf("%.1f", float64(s.Calls)/float64(ops)), ms(time.Duration(s.TotalMS / float64(ops) * float64(time.Millisecond)))})
	}
	b.WriteString(table([]string{"statement", "calls per " + op, "time per " + op}, rows))
	return b.String()
}
