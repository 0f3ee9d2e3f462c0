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

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
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
	// The rules' own unit tests: given series, which alerts fire.
	out, err = exec.Command(promtool, "test", "rules", filepath.Join(root, "deploy", "prometheus", "alerts_test.yml")).CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
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
		"controlplane_build_info{", "controlplane_backup_schedule_seconds 0"} {
		require.Contains(t, scrape, want)
	}
	require.NotContains(t, scrape, "controlplane_backups_overdue_tenants ", "without a schedule no backup is overdue")
	require.NotContains(t, scrape, "watched", "no label names a tenant")

	var code strings.Builder
	for _, f := range []string{"cmd/controlplane/serve.go", "cmd/controlplane/backupmetrics.go", "controlplane/httpapi/metrics.go"} {
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

// TestBackupFreshnessMetrics: with a schedule, /metrics says how many
// ready tenants have no ready backup within twice BACKUP_SCHEDULE and how
// old the stalest one's newest backup is, counting a tenant without any
// from its creation; the clock is moved by ageing the catalog's rows.
func TestBackupFreshnessMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "BACKUP_DIR="+t.TempDir(), "BACKUP_SCHEDULE=1h")
	backed := b.create(tenantBody("fresh-a", controlplane.IsolationSchema))
	b.create(tenantBody("fresh-b", controlplane.IsolationSchema))
	b.backupNow(backed["id"])

	m := scrapeValues(t, b.srv.URL)
	require.Equal(t, 3600.0, m["controlplane_backup_schedule_seconds"])
	require.Equal(t, 0.0, m["controlplane_backups_overdue_tenants"], "both tenants were just created")
	require.Less(t, m["controlplane_backup_oldest_age_seconds"], 600.0)

	catalog := pgtest.Open(t, b.db.URL)
	_, err := catalog.Exec(`UPDATE tenants SET created_at = now() - interval '3 hours'`)
	require.NoError(t, err)
	_, err = catalog.Exec(`UPDATE backups SET finished_at = now() - interval '30 minutes' WHERE tenant_id = $1`, backed["id"])
	require.NoError(t, err)
	m = scrapeValues(t, b.srv.URL)
	require.Equal(t, 1.0, m["controlplane_backups_overdue_tenants"], "fresh-b has had no backup for 3 hours")
	require.InDelta(t, 3*3600, m["controlplane_backup_oldest_age_seconds"], 120)

	_, err = catalog.Exec(`UPDATE backups SET finished_at = now() - interval '5 hours' WHERE tenant_id = $1`, backed["id"])
	require.NoError(t, err)
	m = scrapeValues(t, b.srv.URL)
	require.Equal(t, 2.0, m["controlplane_backups_overdue_tenants"], "fresh-a's newest backup is 5 hours old")
	require.InDelta(t, 5*3600, m["controlplane_backup_oldest_age_seconds"], 120)
}

// scrapeValues scrapes /metrics and returns the value of every series
// without labels, by name.
func scrapeValues(t *testing.T, base string) map[string]float64 {
	t.Helper()
	_, _, body := get(t, base, "", "/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) == 0 && m.GetGauge() != nil {
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
