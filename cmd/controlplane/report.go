package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/laracopilot/controlplane/controlplane"
)

// reporter prints a fleet run: on a terminal one live progress line (and
// the failures as they happen), otherwise a plain line per tenant, or with
// --json one JSON object per tenant; then a summary.
type reporter struct {
	out, errw io.Writer
	json, tty bool
	total     int
	latest    uint
	versions  []uint

	start        time.Time
	done, failed int
}

// newReporter reports on out (and errw, the terminal's progress line);
// versions are the tenant migrations this binary carries, in order.
func newReporter(out, errw io.Writer, asJSON bool, total int, versions []uint) *reporter {
	var latest uint
	if len(versions) > 0 {
		latest = versions[len(versions)-1]
	}
	tty := false
	if f, ok := errw.(*os.File); ok && !asJSON {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &reporter{out: out, errw: errw, json: asJSON, tty: tty, total: total, latest: latest, versions: versions}
}

// jsonResult is one tenant's line with --json.
type jsonResult struct {
	Tenant     string  `json:"tenant"`
	Isolation  string  `json:"isolation"`
	Server     string  `json:"server"`
	From       uint    `json:"from"`
	To         uint    `json:"to"`
	Dirty      bool    `json:"dirty"`
	Skipped    string  `json:"skipped,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	Error      *string `json:"error"`
	Repair     string  `json:"repair,omitempty"`
	Drift      string  `json:"drift,omitempty"`
}

func (r *reporter) result(res controlplane.MigrationResult) {
	r.done++
	if res.Err != nil {
		r.failed++
	}
	switch {
	case r.json:
		j := jsonResult{Tenant: res.Tenant.Slug, Isolation: string(res.Tenant.Isolation), Server: res.Tenant.Server, From: res.From, To: res.To, Dirty: res.Dirty,
			Skipped: res.Skipped, Drift: res.Drift, DurationMS: float64(res.Duration.Microseconds()) / 1000}
		if res.Err != nil {
			msg := res.Err.Error()
			j.Error = &msg
		}
		if res.Dirty {
			j.Repair = r.repair(res)
		}
		r.writeJSON(j)
	case r.tty:
		if res.Err != nil {
			fmt.Fprintf(r.errw, "\r\033[K%s\n", r.line(res))
		}
		r.progress()
	default:
		fmt.Fprintln(r.out, r.line(res))
	}
}

// line is the plain report of one tenant: slug, from → to, duration, outcome.
func (r *reporter) line(res controlplane.MigrationResult) string {
	outcome := "ok"
	switch {
	case res.Err != nil:
		outcome = "FAILED: " + oneLine(res.Err.Error())
		if res.Dirty {
			outcome += " (dirty; repair: " + r.repair(res) + ")"
		}
	case res.Skipped != "":
		outcome = "skipped: " + res.Skipped
	}
	if res.Drift != "" {
		outcome += " (drift: " + res.Drift + ")"
	}
	return fmt.Sprintf("%-32s %-8s %-12s %4d → %-4d %9s  %s", res.Tenant.Slug, res.Tenant.Isolation, res.Tenant.ServerName(), res.From, res.To, res.Duration.Round(time.Millisecond), outcome)
}

func (r *reporter) progress() {
	elapsed := time.Since(r.start).Seconds()
	rate := float64(r.done) / max(elapsed, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(r.total-r.done)/rate) * time.Second).Round(time.Second).String()
	}
	fmt.Fprintf(r.errw, "\r\033[Kmigrating: %d/%d done, %d failed, %.1f tenants/s, ETA %s", r.done, r.total, r.failed, rate, eta)
}

// runCounts are a run's outcomes, in all or on one server.
type runCounts struct {
	Tenants     int `json:"tenants"`
	Migrated    int `json:"migrated"`
	Skipped     int `json:"skipped"`
	Failed      int `json:"failed"`
	Interrupted int `json:"interrupted"`
}

func (c *runCounts) add(res controlplane.MigrationResult) {
	c.Tenants++
	switch {
	case res.Err != nil:
		c.Failed++
	case res.NotStarted():
		c.Interrupted++
	case res.Skipped != "":
		c.Skipped++
	default:
		c.Migrated++
	}
}

func (c runCounts) String() string {
	s := fmt.Sprintf("%d migrated, %d skipped, %d failed", c.Migrated, c.Skipped, c.Failed)
	if c.Interrupted > 0 {
		s += fmt.Sprintf(", %d not started (interrupted)", c.Interrupted)
	}
	return s
}

// run migrates and reports; the error is non-nil if any tenant failed, and
// names the servers of the failures. A run over several servers also
// reports each server's counts: a server that was down shows as one line
// of failures.
func (r *reporter) run(ctx context.Context, fleet *controlplane.Fleet, tenants []*controlplane.Tenant, op controlplane.MigrationOp) error {
	r.start = time.Now()
	// The fleet stops the run at --max-failures (Fleet.MaxFailures): it
	// counts failures as its workers finish, before their outcomes reach
	// this reporter a batch later.
	results := fleet.Run(ctx, tenants, op, r.result)
	stopped := fleet.MaxFailures > 0 && r.failed >= fleet.MaxFailures
	if r.tty {
		fmt.Fprintln(r.errw)
	}
	var all runCounts
	byServer := map[string]*runCounts{}
	for _, res := range results {
		all.add(res)
		name := res.Tenant.ServerName()
		if byServer[name] == nil {
			byServer[name] = &runCounts{}
		}
		byServer[name].add(res)
	}
	names := slices.Sorted(maps.Keys(byServer))
	summary := fmt.Sprintf("%d tenants in %s: %s", len(results), time.Since(r.start).Round(time.Millisecond), all)
	if stopped {
		summary += fmt.Sprintf("; stopped after %d failures (--max-failures %d): fix the migration, then run it again", r.failed, fleet.MaxFailures)
	}
	if r.json {
		out := map[string]any{"summary": summary, "tenants": len(results), "migrated": all.Migrated, "skipped": all.Skipped, "failed": all.Failed, "interrupted": all.Interrupted, "servers": byServer}
		r.writeJSON(out)
	} else {
		fmt.Fprintln(r.out, summary)
		if len(names) > 1 {
			for _, name := range names {
				c := byServer[name]
				fmt.Fprintf(r.out, "  on %s: %d tenants: %s\n", name, c.Tenants, c)
			}
		}
	}
	if all.Failed > 0 || all.Interrupted > 0 {
		e := failedError{failed: all.Failed + all.Interrupted, total: len(results)}
		for _, name := range names {
			if c := byServer[name]; c.Failed+c.Interrupted > 0 {
				e.servers = append(e.servers, fmt.Sprintf("%s (%d)", name, c.Failed+c.Interrupted))
			}
		}
		return e
	}
	return nil
}

// dryRun prints what a run would do for each tenant, from the catalog.
func (r *reporter) dryRun(fleet *controlplane.Fleet, tenants []*controlplane.Tenant, op controlplane.MigrationOp) error {
	for _, t := range tenants {
		what := ""
		switch reason := fleet.Skip(t, op); {
		case reason != "":
			what = "skip: " + reason
		case op.Kind == controlplane.MigrateUp:
			what = fmt.Sprintf("would migrate up %d → %d", t.SchemaVersion, r.latest)
		case op.Kind == controlplane.MigrateDown:
			what = fmt.Sprintf("would migrate down %d step(s) from %d", op.N, t.SchemaVersion)
		case op.Kind == controlplane.MigrateGoto:
			what = fmt.Sprintf("would migrate %d → %d", t.SchemaVersion, op.Version)
		case op.Kind == controlplane.MigrateForce:
			v := int64(op.Version)
			if op.NoVersion {
				v = -1
			}
			what = fmt.Sprintf("would force the version to %d (dirty flag cleared, no SQL run)", v)
		default:
			what = "would read the version"
		}
		if r.json {
			r.writeJSON(map[string]any{"tenant": t.Slug, "isolation": t.Isolation, "version": t.SchemaVersion, "dirty": t.SchemaDirty, "plan": what})
		} else {
			fmt.Fprintf(r.out, "%-32s %-8s %s\n", t.Slug, t.Isolation, what)
		}
	}
	return nil
}

// status reports the fleet from the catalog, with repair commands; with
// real (status --verify, real[i] for tenants[i]) it also reports each
// tenant whose migrations table differs from the catalog. Tenants are
// listed server by server, and a fleet on several servers gets a summary
// per server too.
func (r *reporter) status(tenants []*controlplane.Tenant, real []controlplane.VersionRead) error {
	order := make([]int, len(tenants))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(tenants[a].ServerName(), tenants[b].ServerName()) })
	tenants = permute(tenants, order)
	if real != nil {
		real = permute(real, order)
	}
	drifted := 0
	for i, t := range tenants {
		problem := oneLine(t.MigrationError)
		if t.Provisioning != controlplane.ProvisionReady {
			problem = "provisioning " + string(t.Provisioning) + " " + oneLine(t.LastError)
		}
		drift := ""
		if real != nil && t.Provisioning == controlplane.ProvisionReady {
			if real[i].Err != nil {
				drift = "cannot verify: " + oneLine(real[i].Err.Error())
			} else {
				drift = controlplane.Drift(t, real[i])
			}
			if drift != "" {
				drifted++
			}
		}
		if r.json {
			j := map[string]any{"tenant": t.Slug, "isolation": t.Isolation, "server": t.Server, "version": t.SchemaVersion, "dirty": t.SchemaDirty, "error": problem, "migrated_at": t.MigratedAt}
			if t.SchemaDirty {
				j["repair"] = controlplane.RepairAdvice(t, r.versions)
			}
			if real != nil {
				j["drift"] = drift
				if drift != "" && real[i].Err == nil {
					j["real_version"], j["real_dirty"] = real[i].Version, real[i].Dirty
					j["repair"] = controlplane.RetryCommand(t.Slug)
				}
			}
			r.writeJSON(j)
			continue
		}
		dirty := ""
		if t.SchemaDirty {
			dirty = "DIRTY"
		}
		if drift != "" {
			problem = strings.TrimSpace("DRIFT: " + drift + " " + problem)
		}
		fmt.Fprintf(r.out, "%-32s %-8s %-12s %4d %-5s %s\n", t.Slug, t.Isolation, t.ServerName(), t.SchemaVersion, dirty, problem)
	}
	s := controlplane.Summarize(tenants, r.latest)
	summary := fmt.Sprintf("%d tenants, latest version %d: %s", len(tenants), r.latest, statusCounts(s))
	if real != nil {
		summary += fmt.Sprintf("; verified: %d drifted from the catalog", drifted)
	}
	byServer := controlplane.SummarizeByServer(tenants, r.latest)
	names := slices.Sorted(maps.Keys(byServer))
	if r.json {
		servers := map[string]any{}
		for _, name := range names {
			s := byServer[name]
			servers[name] = map[string]int{"tenants": s.Total(), "at_latest": s.AtLatest, "behind": s.Behind, "dirty": s.Dirty, "failed": s.Failed, "not_ready": s.NotReady, "ahead": s.Ahead}
		}
		r.writeJSON(map[string]any{"summary": summary, "latest": r.latest, "at_latest": s.AtLatest, "behind": s.Behind, "dirty": s.Dirty, "failed": s.Failed, "not_ready": s.NotReady, "ahead": s.Ahead, "drifted": drifted, "servers": servers})
		return nil
	}
	fmt.Fprintln(r.out, summary)
	if len(names) > 1 {
		for _, name := range names {
			fmt.Fprintf(r.out, "  on %s: %d tenants: %s\n", name, byServer[name].Total(), statusCounts(byServer[name]))
		}
	}
	for i, t := range tenants {
		switch {
		case real != nil && t.Provisioning == controlplane.ProvisionReady && real[i].Err == nil && controlplane.Drift(t, real[i]) != "":
			fmt.Fprintf(r.out, "repair %s: %s\n", t.Slug, controlplane.RetryCommand(t.Slug))
		case t.SchemaDirty:
			fmt.Fprintf(r.out, "repair %s: %s\n", t.Slug, controlplane.RepairAdvice(t, r.versions))
		}
	}
	return nil
}

// repair is how to clear a tenant a run left dirty: exact when the run
// knows where its schema is, the advice naming both cases otherwise.
func (r *reporter) repair(res controlplane.MigrationResult) string {
	if res.Clean != nil {
		return controlplane.RepairCommand(res.Tenant.Slug, *res.Clean)
	}
	return controlplane.RepairAdvice(&controlplane.Tenant{Slug: res.Tenant.Slug, SchemaVersion: res.To}, r.versions)
}

// statusCounts is the catalog's view of some tenants, in words.
func statusCounts(s controlplane.FleetSummary) string {
	out := fmt.Sprintf("%d at latest, %d behind, %d dirty, %d failed, %d not provisioned", s.AtLatest, s.Behind, s.Dirty, s.Failed, s.NotReady)
	if s.Ahead > 0 {
		out += fmt.Sprintf(", %d AHEAD of this binary", s.Ahead)
	}
	return out
}

// permute returns xs in the order of the indexes in order.
func permute[T any](xs []T, order []int) []T {
	out := make([]T, len(order))
	for k, i := range order {
		out[k] = xs[i]
	}
	return out
}

func (r *reporter) writeJSON(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(r.out, string(b))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
