package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// The monitoring that ships in deploy/: the alert rules pass `promtool
// check rules` (make test installs Debian's prometheus package for it, as
// it installs PostgreSQL), the dashboard is valid JSON, and every series
// either names is one serve exports: in a real scrape after a tenant is
// created and backed up, or, for a counter no event has touched yet,
// declared by the code that exports it.
func TestDeployMonitoring(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	rules := filepath.Join(root, "deploy", "prometheus", "alerts.yml")
	dashboard := filepath.Join(root, "deploy", "grafana", "controlplane.json")

	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool, _ = exec.LookPath("promtool")
	}
	if promtool == "" {
		if testing.Short() {
			t.Skip("promtool is not installed (make test installs it)")
		}
		t.Fatal("promtool is not installed: run make test (it installs Debian's prometheus package), or apt-get install prometheus")
	}
	out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	require.Contains(t, string(out), "SUCCESS")

	raw, err := os.ReadFile(dashboard)
	require.NoError(t, err)
	var dash struct {
		UID    string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(raw, &dash), "the dashboard is JSON")
	require.NotEmpty(t, dash.Panels)

	b := setup(t, controlplane.IsolationSchema, "BACKUP_DIR="+t.TempDir())
	tn := b.create(tenantBody("watched", controlplane.IsolationSchema))
	b.backupNow(tn["id"])
	_, _, scrape := get(t, b.srv.URL, "", "/metrics")
	for _, want := range []string{`controlplane_tenant_schemas{server="default",state="at_latest"} 1`, "controlplane_catalog_up 1",
		`controlplane_provisioning_duration_seconds_count{isolation="schema",outcome="ready"} 1`, `controlplane_operations_total{kind="backup",state="succeeded"} 1`,
		"controlplane_build_info{"} {
		require.Contains(t, scrape, want)
	}
	require.NotContains(t, scrape, "watched", "no label names a tenant")

	var code strings.Builder
	for _, f := range []string{"cmd/controlplane/serve.go", "controlplane/httpapi/metrics.go"} {
		src, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		code.Write(src)
	}
	name := regexp.MustCompile(`\bcontrolplane_[a-z_]+`)
	rulesText, err := os.ReadFile(rules)
	require.NoError(t, err)
	used := name.FindAllString(string(rulesText), -1)
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			used = append(used, name.FindAllString(tg.Expr, -1)...)
		}
	}
	slices.Sort(used)
	for _, n := range slices.Compact(used) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
		inScrape := strings.Contains(scrape, "\n"+n) || strings.Contains(scrape, "# TYPE "+base+" ")
		declared := strings.Contains(code.String(), `"`+base+`"`)
		require.True(t, inScrape || declared, "%s, used by deploy/, is neither in serve's scrape nor declared by its code", n)
	}
}
