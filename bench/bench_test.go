package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// TestSmoke runs every benchmark at a tiny size (make test, make
// bench-smoke), so that the harness cannot rot: it builds the product,
// its variants and the baseline, creates tenants through the API and in
// bulk, runs each benchmark and its baseline, and renders the report. It
// asserts that everything ran, never how fast: benchmarks are not timed
// tests. It does not write docs/BENCHMARKS.md.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts servers")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	rep, err := Run(context.Background(), Config{
		Sizes:     Smoke,
		ServerURL: pgtest.ServerURL(t),
		// Set by bench/run.sh smoke: benchmark 6 then starts its own
		// clusters (a few seconds); without it, it runs on the test server.
		ClusterDir: os.Getenv("BENCH_CLUSTER_DIR"),
		Root:       root,
		Log:        &log,
	})
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	titles := map[string]bool{}
	for _, s := range rep.Sections {
		titles[s.Title] = true
	}
	for _, want := range []string{"1. Routed reads", "2. Provisioning", "3. Fleet migrations", "4. Scale", "5. Ingest", "6. Connection physics", "7. Tenant servers", "8. Tenant backup", "9. Tenant moves"} {
		if !titles[want] {
			t.Errorf("no section %q in the report", want)
		}
	}
	if len(rep.Rows()) < 10 {
		t.Errorf("only %d summary rows", len(rep.Rows()))
	}
	var md bytes.Buffer
	rep.Markdown(&md)
	for _, want := range []string{"## Summary", "## Reproduce", "PostgreSQL"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if testing.Verbose() {
		rep.Summary(os.Stdout)
	}
}
