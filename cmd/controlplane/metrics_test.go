package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// get sends a GET with the given Host (empty: the server's own address, an
// admin host) and headers, and returns the status and the raw body:
// /metrics answers in Prometheus text, not JSON.
func get(t *testing.T, base, host, path string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(raw)
}

// metricNames are in every scrape (the request counter once a request was
// served); none may appear in an answer that was refused.
var metricNames = []string{"controlplane_http_requests_total", "controlplane_tenants", "controlplane_tenant_connections_max", "go_goroutines", "# TYPE",
	`controlplane_build_info{catalog_schema="`}

func requireMetrics(t *testing.T, body string, msg string) {
	t.Helper()
	for _, n := range metricNames {
		require.Contains(t, body, n, msg)
	}
}

func requireNoMetrics(t *testing.T, body string, msg string) {
	t.Helper()
	for _, n := range metricNames {
		require.NotContains(t, body, n, msg)
	}
}

// errCodeOf reads the error code of a JSON error body ("" if none).
func errCodeOf(body string) string {
	var out map[string]any
	_ = json.Unmarshal([]byte(body), &out)
	return errCode(out)
}

// refusals are the ways a tenant could ask for /metrics; each must get
// exactly what /api/tenants gets there.
var refusals = []struct {
	name, host, path string
	status           int
	code             string
}{
	{"tenant host", "acme.example.com", "/metrics", 404, "not_found"},
	{"tenant host, odd spelling", "ACME.Example.COM.:8080", "/metrics", 404, "not_found"},
	{"other tenant's host", "beta.example.org", "/metrics", 404, "not_found"},
	{"slug path on an admin host", "", "/t/acme-corp/metrics", 404, "not_found"},
	{"slug path on its tenant's host", "acme.example.com", "/t/acme-corp/metrics", 404, "not_found"},
	{"unknown slug", "", "/t/nobody/metrics", 404, "unknown_tenant"},
	{"unknown host, not an admin host", "nobody.example.com", "/metrics", 404, "unknown_tenant"},
}

// The operator API's own answers on the same hosts, which /metrics must
// match: same status, same code.
func TestMetricsOnlyOnOperatorHosts(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.twoTenants()
	for _, tc := range refusals {
		status, _, body := get(t, b.srv.URL, tc.host, tc.path)
		require.Equal(t, tc.status, status, "%s: %s", tc.name, body)
		require.Equal(t, tc.code, errCodeOf(body), tc.name)
		requireNoMetrics(t, body, tc.name)

		opPath := strings.Replace(tc.path, "/metrics", "/api/tenants", 1)
		opStatus, _, opBody := get(t, b.srv.URL, tc.host, opPath)
		require.Equal(t, opStatus, status, "%s: /metrics answers as %s does", tc.name, opPath)
		require.Equal(t, errCodeOf(opBody), errCodeOf(body), tc.name)
	}

	// The admin host, in development mode (no ADMIN_TOKEN): no credentials
	// needed, as for the operator API.
	status, _, body := get(t, b.srv.URL, "", "/metrics")
	require.Equal(t, http.StatusOK, status, body)
	requireMetrics(t, body, "admin host")
	require.NotContains(t, body, "acme", "no tenant in any label")
}

// Through a trusted proxy the forwarded host is the request's host: a
// tenant's domain there gets no metrics either.
func TestMetricsBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "TRUSTED_PROXIES=127.0.0.0/8,::1")
	b.create(seed())
	status, _, body := get(t, b.srv.URL, "", "/metrics", "X-Forwarded-Host", "acme.example.com")
	require.Equal(t, http.StatusNotFound, status, body)
	require.Equal(t, "not_found", errCodeOf(body))
	requireNoMetrics(t, body, "forwarded tenant host")

	status, _, body = get(t, b.srv.URL, "", "/metrics", "X-Forwarded-Host", "localhost")
	require.Equal(t, http.StatusOK, status, body)
	requireMetrics(t, body, "forwarded admin host")
}

func TestMetricsNeedOperatorToken(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "ADMIN_TOKEN="+adminToken)
	key := b.createAuthed(seed())
	b.createAuthed(map[string]any{"name": "Beta", "slug": "beta", "domain": "beta.example.org"})

	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong-token-0123456789"}, bearerOf(key)} {
		status, hdr, body := get(t, b.srv.URL, "", "/metrics", h...)
		require.Equal(t, http.StatusUnauthorized, status, "%v: %s", h, body)
		require.Equal(t, "unauthorized", errCodeOf(body))
		require.Equal(t, `Bearer realm="operator"`, hdr.Get("WWW-Authenticate"))
		requireNoMetrics(t, body, "without the operator token")
	}
	status, _, body := get(t, b.srv.URL, "", "/metrics", bearerAdmin...)
	require.Equal(t, http.StatusOK, status, body)
	requireMetrics(t, body, "with the operator token")

	// The operator token does not open /metrics on a tenant's host or
	// slug, with or without the tenant's key.
	for _, tc := range refusals {
		for _, h := range [][]string{bearerAdmin, bearerOf(key), nil} {
			status, _, body := get(t, b.srv.URL, tc.host, tc.path, h...)
			require.Equal(t, tc.status, status, "%s: %s", tc.name, body)
			require.Equal(t, tc.code, errCodeOf(body), tc.name)
			requireNoMetrics(t, body, tc.name)
		}
	}
}

// logLines collects serve's JSON log lines.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// find returns the first line whose msg is msg, or nil.
func (l *logLines) find(msg string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			return line
		}
	}
	return nil
}

// TestMetricsListener runs serve itself with METRICS_ADDR: /metrics is on
// that listener only, without a token even though ADMIN_TOKEN is set, and
// shows what the main listener counted; the main listener has no /metrics.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg, err := config.Load([]string{
		"DATABASE_URL=" + db.URL,
		"TENANT_DB_PREFIX=" + db.Prefix,
		"TENANT_ISOLATION=schema",
		"TENANT_SPARE_DATABASES=0",
		"ADMIN_TOKEN=" + adminToken,
		"LISTEN_ADDR=127.0.0.1:0",
		"METRICS_ADDR=127.0.0.1:0",
	}, nil)
	require.NoError(t, err)
	logs := &logLines{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil))) }()

	// Port 0: the addresses serve bound are in its "serving" line.
	var serving map[string]any
	deadline := time.After(30 * time.Second)
	for serving == nil {
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		case <-deadline:
			t.Fatal("serve did not start in 30s")
		case <-time.After(20 * time.Millisecond):
			serving = logs.find("serving")
		}
	}
	api, metrics := "http://"+serving["addr"].(string), "http://"+serving["metrics_addr"].(string)
	require.NotEqual(t, api, metrics)

	status, _, body := get(t, api, "", "/api/tenants", bearerAdmin...)
	require.Equal(t, http.StatusOK, status, body)

	// The main listener: no /metrics on any host, token or not.
	for _, h := range [][]string{nil, bearerAdmin} {
		for _, host := range []string{"", "localhost", "acme.example.com"} {
			status, _, body := get(t, api, host, "/metrics", h...)
			require.Equal(t, http.StatusNotFound, status, "host %q: %s", host, body)
			require.Equal(t, "not_found", errCodeOf(body), host)
			requireNoMetrics(t, body, "main listener, host "+host)
		}
		status, _, body := get(t, api, "", "/t/acme-corp/metrics", h...)
		require.Equal(t, http.StatusNotFound, status, body)
		requireNoMetrics(t, body, "main listener, slug path")
	}

	// The metrics listener: no token asked, whatever the Host, and the same
	// registry as the main listener's (its requests are counted there).
	for _, host := range []string{"", "acme.example.com"} {
		status, _, body = get(t, metrics, host, "/metrics")
		require.Equal(t, http.StatusOK, status, body)
		requireMetrics(t, body, "metrics listener")
		require.Contains(t, body, `controlplane_http_requests_total{method="GET",route="/api/tenants",status="200"} 1`)
		require.Contains(t, body, `controlplane_http_requests_total{method="GET",route="unmatched",status="404"}`)
	}
	// It serves /metrics and nothing else.
	for _, path := range []string{"/api/tenants", "/healthz", "/t/acme-corp/metrics", "/metrics/x"} {
		status, _, body = get(t, metrics, "", path, bearerAdmin...)
		require.Equal(t, http.StatusNotFound, status, "%s: %s", path, body)
		requireNoMetrics(t, body, path)
	}

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop in 30s")
	}
	require.NotContains(t, logs.String(), adminToken, "no secret in the log")
}
