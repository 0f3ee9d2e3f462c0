package console

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/httpapi"
)

// These tests need no database: the origin check, the session's secrets,
// the pages as rendered with representative data (their markup must keep
// to the Content-Security-Policy), and the embedded files. The console's
// behaviour against a real catalog is tested in cmd/controlplane
// (console_test.go, and console_browser_test.go in Chromium).

func TestConsoleCheckOrigin(t *testing.T) {
	for _, tc := range []struct {
		name           string
		host           string
		headers        map[string]string
		refusedBecause string // "" when allowed
		// addressed is the host httpapi's router found the request
		// addressed to (a trusted proxy's X-Forwarded-Host); "" when the
		// request did not pass it.
		addressed string
	}{
		{"same origin", "cp.example.com", map[string]string{"Origin": "https://cp.example.com"}, "", ""},
		{"same origin, port", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:8080"}, "", ""},
		{"host case", "CP.example.com", map[string]string{"Origin": "https://cp.EXAMPLE.com"}, "", ""},
		{"another site", "cp.example.com", map[string]string{"Origin": "https://evil.example"}, "another site", ""},
		{"another port", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:9999"}, "another site", ""},
		{"Referer when no Origin", "cp.example.com", map[string]string{"Referer": "https://cp.example.com/console/tenants/1"}, "", ""},
		{"Referer of another site", "cp.example.com", map[string]string{"Referer": "https://evil.example/x"}, "another site", ""},
		{"Origin null falls back to Referer", "cp.example.com", map[string]string{"Origin": "null", "Referer": "https://cp.example.com/console/"}, "", ""},
		{"Origin null and no Referer", "cp.example.com", map[string]string{"Origin": "null"}, "neither", ""},
		{"neither header", "cp.example.com", nil, "neither", ""},
		{"not a URL", "cp.example.com", map[string]string{"Origin": "::"}, "not a URL", ""},
		{"behind a trusted proxy", "10.0.0.5:8080", map[string]string{"Origin": "https://cp.example.com", "X-Forwarded-Host": "cp.example.com, 10.0.0.5"}, "", "cp.example.com"},
		{"trusted proxy forwarding another host", "10.0.0.5:8080", map[string]string{"Origin": "https://evil.example", "X-Forwarded-Host": "cp.example.com"}, "another site", "cp.example.com"},
		{"X-Forwarded-Host from a peer the router does not trust", "10.0.0.5:8080", map[string]string{"Origin": "https://cp.example.com", "X-Forwarded-Host": "cp.example.com"}, "another site", "10.0.0.5:8080"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/console/logout", nil)
		r.Host = tc.host
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		if tc.addressed != "" {
			r = httpapi.WithRequestHost(r, tc.addressed)
		}
		got := checkOrigin(r)
		if tc.refusedBecause == "" {
			require.Empty(t, got, tc.name)
		} else {
			require.Contains(t, got, tc.refusedBecause, tc.name)
		}
	}
}

// The session's secrets: ids unguessable and distinct, the MAC bound to
// the token, the CSRF token bound to the session.
func TestConsoleSessionSecrets(t *testing.T) {
	a, b := newSessionID(), newSessionID()
	require.NotEqual(t, a, b)
	require.Len(t, a, 43)
	require.Equal(t, tokenMAC("token-1", a), tokenMAC("token-1", a))
	require.NotEqual(t, tokenMAC("token-1", a), tokenMAC("token-2", a), "another ADMIN_TOKEN, another MAC")
	require.NotEqual(t, tokenMAC("token-1", a), tokenMAC("token-1", b))
	require.NotEqual(t, tokenMAC("", a), tokenMAC("token-1", a), "a development session dies when a token is set")
	require.NotEqual(t, csrfToken(a), csrfToken(b))
	require.NotContains(t, csrfToken(a), a)
	h := idHash(a)
	require.NotContains(t, string(h[:]), a)
}

// A CSRF check on a form: the token must be the session's, from this site.
func TestConsoleCheckCSRF(t *testing.T) {
	s := &session{id: "id", csrf: csrfToken("id")}
	post := func(form, origin string) string {
		r := httptest.NewRequest(http.MethodPost, "/console/tenants/1/suspend", strings.NewReader(form))
		r.Host = "cp.example.com"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		return checkCSRF(r, s)
	}
	require.Empty(t, post("csrf="+s.csrf, "https://cp.example.com"))
	require.Contains(t, post("", "https://cp.example.com"), "no CSRF token")
	require.Contains(t, post("csrf="+csrfToken("another"), "https://cp.example.com"), "not this session's")
	require.Contains(t, post("csrf="+s.csrf, "https://evil.example"), "another site")
	require.Contains(t, post("csrf="+s.csrf, ""), "neither")
}

var (
	inlineScript  = regexp.MustCompile(`<script(?:\s[^>]*)?>`)
	inlineHandler = regexp.MustCompile(`\son[a-z]+\s*=`)
	inlineStyle   = regexp.MustCompile(`\sstyle\s*=|<style`)
)

// Every page renders with representative data, and keeps to the
// Content-Security-Policy: scripts only by src, no event-handler
// attributes, no inline styles (the browser would refuse them, and log an
// error TestConsoleInBrowser would catch on the pages it visits; this
// covers them all without a browser).
func TestConsoleTemplates(t *testing.T) {
	c := &Console{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Latest: 3, Versions: []uint{1, 2, 3}}
	s := &session{id: "id", actor: ActorOperator, csrf: csrfToken("id")}
	now := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	size := int64(1234)
	tenant := &controlplane.Tenant{ID: 7, Name: "Acme <Corp>", Slug: "acme", Domain: "acme.example.com", Status: controlplane.StatusSuspended,
		Timezone: "UTC", Settings: json.RawMessage(`[{"k":"v"}]`), Isolation: controlplane.IsolationSchema, Server: "default",
		Provisioning: controlplane.ProvisionReady, SchemaVersion: 2, SchemaDirty: true, CreatedAt: now, UpdatedAt: now}
	server := controlplane.Server{Name: "default", URL: "postgres://h/db", Capacity: 10, Status: controlplane.ServerActive, ServerLoad: controlplane.NewServerLoad()}
	server.Tenants[controlplane.ProvisionReady] = 4
	ops := opsView{Running: true, Tenant: 7, Rows: []opRow{{Slug: "acme", Operation: controlplane.Operation{ID: 1, Kind: controlplane.OperationBackup, TenantID: 7,
		State: controlplane.OperationRunning, Phase: "dumping", Progress: map[string]any{"bytes": 10}, StartedAt: now}}}}
	pool := PoolUse{Open: 3, InUse: 1, Budget: 20}
	views := map[string]any{
		"login": loginView{Token: true, Notice: "n", Error: "e"},
		"error": errorView{Status: 422, Message: "m", Fields: map[string]string{"server": "is required"}, Back: "/console/"},
		"overview": overviewView{Servers: []serverRow{{Server: server, Total: 4, Pool: &pool}}, Tenants: 4, Latest: 3,
			States:   []stateRow{{Status: controlplane.StatusActive, Provisioning: controlplane.ProvisionReady, Count: 4}},
			Versions: []versionRow{{Version: 3, Count: 4, Latest: true}}},
		"tenants": tenantsView{Tenants: []controlplane.Tenant{*tenant}, Total: 1, Page: 1, Pages: 1, First: 1, Last: 1, Servers: []string{"default"},
			Statuses: []controlplane.Status{controlplane.StatusActive}, NextURL: "/console/tenants?page=2"},
		"tenant": tenantView{Tenant: tenant, Server: &server, MoveTargets: []string{"pg-b"}, Ops: ops, Done: "done",
			Keys:    []controlplane.APIKey{{ID: 1, Name: "k", Prefix: "lc_12345678", CreatedAt: now}},
			Audit:   []controlplane.AuditEntry{{At: now, Actor: ActorOperator, Action: "tenant.suspend", Diff: map[string]controlplane.Change{"status": {Before: "active", After: "suspended"}}}},
			Backups: []controlplane.Backup{{ID: 1, State: controlplane.BackupReady, SizeBytes: &size, CreatedAt: now, FinishedAt: &now}}},
		"operations": ops,
		"migrations": migrationsView{Latest: 3, Versions: []versionRow{{Version: 2, Count: 1}},
			ByServer: []serverSummary{{Server: "default"}}, Problems: []problemRow{{Tenant: tenant, State: "dirty", Repair: controlplane.RepairAdvice(tenant, []uint{1, 2, 3})}}},
	}
	for name, view := range views {
		w := httptest.NewRecorder()
		c.render(w, http.StatusOK, name, c.page(s, "Title", name, view))
		require.Equal(t, http.StatusOK, w.Code, name)
		body := w.Body.String()
		require.Contains(t, body, "</html>", name)
		for _, tag := range inlineScript.FindAllString(body, -1) {
			require.Contains(t, tag, `src="/console/static/`, "%s: an inline script", name)
		}
		require.False(t, inlineHandler.MatchString(body), "%s: an event-handler attribute", name)
		require.False(t, inlineStyle.MatchString(body), "%s: an inline style", name)
		require.NotContains(t, body, "<Corp>", "%s: text is escaped", name)
		if name != "login" {
			require.Contains(t, body, `name="csrf" value="`+s.csrf+`"`, "%s: the logout form carries the CSRF token", name)
		}
	}
	// The tenant page: the repair of a dirty tenant, the diff, the key
	// prefix, a polling table while an operation runs.
	w := httptest.NewRecorder()
	c.render(w, http.StatusOK, "migrations", c.page(s, "M", "migrations", views["migrations"]))
	require.Contains(t, w.Body.String(), "controlplane migrate tenants force 1 --tenant acme &amp;&amp; controlplane migrate tenants up --tenant acme")
	w = httptest.NewRecorder()
	c.render(w, http.StatusOK, "tenant", c.page(s, "T", "tenants", views["tenant"]))
	require.Contains(t, w.Body.String(), `status: &#34;active&#34; → &#34;suspended&#34;`)
	require.Contains(t, w.Body.String(), `hx-get="/console/operations/rows?tenant=7" hx-trigger="every 2s"`)
	ops.Running = false
	w = httptest.NewRecorder()
	c.render(w, http.StatusOK, "operations_rows", ops)
	require.NotContains(t, w.Body.String(), "hx-trigger", "nothing runs: the poll stops")
}

// The embedded files are served under the console's headers: htmx as
// published, with its license beside it.
func TestConsoleStatic(t *testing.T) {
	h := (&Console{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Handler()
	for path, want := range map[string]string{
		"/console/static/htmx.min.js":  "var htmx=function()",
		"/console/static/htmx.LICENSE": "Zero-Clause BSD",
		"/console/static/console.css":  ":root",
		"/console/static/favicon.svg":  "<svg",
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, http.StatusOK, w.Code, path)
		require.Contains(t, w.Body.String(), want, path)
		require.Contains(t, w.Header().Get("Content-Security-Policy"), "script-src 'self'", path)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/console/static/htmx.min.js", nil))
	require.Contains(t, w.Header().Get("Content-Type"), "javascript")
}
