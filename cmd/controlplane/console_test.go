package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/console"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// The fleet console (docs/CONSOLE.md) over HTTP, on the real app and
// catalog: login, sessions across replicas, logout, expiry, ADMIN_TOKEN
// rotation, CSRF, development mode, the host rule, and an action audited
// with the operator as actor. console_browser_test.go drives the same
// pages in Chromium.

// consoleClient is a browser as far as the console can tell: it keeps the
// session cookie (by hand: Go's cookie jar sends no Secure cookie over
// http), sends the Origin a browser sends, and follows no redirect.
type consoleClient struct {
	t      *testing.T
	base   string
	cookie string // the session cookie's value
	origin string // sent as Origin on POSTs ("" for none)
}

func newConsoleClient(t *testing.T, b *bundle) *consoleClient {
	return &consoleClient{t: t, base: b.srv.URL, origin: b.srv.URL}
}

// consoleResponse is what came back.
type consoleResponse struct {
	status int
	header http.Header
	body   string
}

func (c *consoleClient) send(method, path string, form url.Values, host string) consoleResponse {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	require.NoError(c.t, err)
	if host != "" {
		req.Host = host
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost && c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: console.CookieName, Value: c.cookie})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return consoleResponse{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (c *consoleClient) get(path string) consoleResponse {
	return c.send(http.MethodGet, path, nil, "")
}

func (c *consoleClient) post(path string, form url.Values) consoleResponse {
	return c.send(http.MethodPost, path, form, "")
}

// sessionCookie is the console_session cookie a response set, or nil.
func sessionCookie(r consoleResponse) *http.Cookie {
	for _, ck := range (&http.Response{Header: r.header}).Cookies() {
		if ck.Name == console.CookieName {
			return ck
		}
	}
	return nil
}

// login logs in with token and keeps the session; it requires success.
func (c *consoleClient) login(token string) {
	c.t.Helper()
	r := c.post("/console/login", url.Values{"token": {token}})
	require.Equal(c.t, http.StatusSeeOther, r.status, "login: %s", r.body)
	require.Equal(c.t, "/console/", r.header.Get("Location"))
	ck := sessionCookie(r)
	require.NotNil(c.t, ck, "no session cookie")
	c.cookie = ck.Value
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the session's CSRF token from a page's forms.
func (c *consoleClient) csrf(page string) string {
	c.t.Helper()
	r := c.get(page)
	require.Equal(c.t, http.StatusOK, r.status, r.body)
	m := csrfInput.FindStringSubmatch(r.body)
	require.NotNil(c.t, m, "no CSRF field on %s", page)
	return m[1]
}

// requireLogin requires r to send the browser to the login form.
func requireLogin(t *testing.T, r consoleResponse, ended bool) {
	t.Helper()
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	want := "/console/login"
	if ended {
		want += "?ended=1"
	}
	require.Equal(t, want, r.header.Get("Location"))
}

func TestConsoleLoginSessionsAndLogout(t *testing.T) {
	t.Parallel()
	env := []string{"ADMIN_TOKEN=" + adminToken}
	b := setup(t, controlplane.IsolationSchema, env...)
	c := newConsoleClient(t, b)

	// No session: the pages send to the login form, which asks for the
	// token under the console's security headers.
	requireLogin(t, c.get("/console/"), false)
	requireLogin(t, c.get("/console/tenants/1"), false)
	page := c.get("/console/login")
	require.Equal(t, http.StatusOK, page.status)
	require.Contains(t, page.body, `name="token"`)
	require.NotContains(t, page.body, "Development mode")
	csp := page.header.Get("Content-Security-Policy")
	require.Contains(t, csp, "script-src 'self'")
	require.NotContains(t, csp, "unsafe-inline")
	require.Equal(t, "DENY", page.header.Get("X-Frame-Options"))
	require.Equal(t, "/console/", c.get("/console").header.Get("Location"))

	// A wrong token: 401 with a clear message, no cookie, and neither
	// token echoed anywhere.
	wrong := c.post("/console/login", url.Values{"token": {"wrong-token-0123456789"}})
	require.Equal(t, http.StatusUnauthorized, wrong.status)
	require.Contains(t, wrong.body, "That is not the operator token")
	require.Nil(t, sessionCookie(wrong))
	require.NotContains(t, wrong.body, "wrong-token-0123456789")
	require.NotContains(t, wrong.body, adminToken)
	empty := c.post("/console/login", url.Values{})
	require.Equal(t, http.StatusUnauthorized, empty.status)
	require.Contains(t, empty.body, "Enter the operator token")

	// The right token from another site's page (login CSRF): 403.
	c.origin = "https://evil.example"
	foreign := c.post("/console/login", url.Values{"token": {adminToken}})
	require.Equal(t, http.StatusForbidden, foreign.status)
	require.Contains(t, foreign.body, "another site")
	require.Nil(t, sessionCookie(foreign))
	c.origin = ""
	require.Equal(t, http.StatusForbidden, c.post("/console/login", url.Values{"token": {adminToken}}).status, "neither Origin nor Referer")
	c.origin = b.srv.URL

	// The right token: a session cookie with every flag, the catalog
	// keeping only the id's hash.
	ok := c.post("/console/login", url.Values{"token": {adminToken}})
	require.Equal(t, http.StatusSeeOther, ok.status, ok.body)
	ck := sessionCookie(ok)
	require.NotNil(t, ck)
	require.True(t, ck.Secure, "Secure")
	require.True(t, ck.HttpOnly, "HttpOnly")
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(t, "/console", ck.Path)
	require.Greater(t, ck.MaxAge, 11*3600)
	require.Len(t, ck.Value, 43, "256 bits, base64url")
	require.NotContains(t, ok.header.Get("Set-Cookie"), adminToken)
	c.cookie = ck.Value
	catalog := pgtest.Open(t, b.db.URL)
	var stored int
	hash := sha256.Sum256([]byte(ck.Value))
	require.NoError(t, catalog.QueryRow(`SELECT count(*) FROM console_sessions WHERE id_hash = $1 AND actor = $2 AND expires_at > now() + interval '11 hours'`,
		hash[:], console.ActorOperator).Scan(&stored))
	require.Equal(t, 1, stored)
	require.NoError(t, catalog.QueryRow(`SELECT count(*) FROM console_sessions WHERE position($1::bytea IN id_hash || token_mac) > 0`, []byte(ck.Value)).Scan(&stored))
	require.Zero(t, stored, "the cookie's value is stored nowhere")

	overview := c.get("/console/")
	require.Equal(t, http.StatusOK, overview.status, overview.body)
	require.Contains(t, overview.body, "Fleet overview")
	require.Contains(t, overview.body, `data-server="default"`)
	require.Equal(t, "no-store", overview.header.Get("Cache-Control"))
	require.NotContains(t, overview.body, adminToken)
	require.Equal(t, "/console/", c.get("/console/login").header.Get("Location"), "logged in: the login form sends to the overview")

	// Another replica on the same catalog knows the session: a load
	// balancer may send each request anywhere.
	replica := start(t, b.db, append([]string{"DATABASE_URL=" + b.db.URL, "TENANT_ISOLATION=schema", "TENANT_DB_PREFIX=" + b.db.Prefix}, env...))
	other := &consoleClient{t: t, base: replica.srv.URL, cookie: c.cookie, origin: replica.srv.URL}
	require.Equal(t, http.StatusOK, other.get("/console/tenants").status)

	// Logout is a POST with the CSRF token, from this site.
	token := c.csrf("/console/")
	require.Equal(t, http.StatusForbidden, c.post("/console/logout", url.Values{}).status, "no CSRF token")
	require.Equal(t, http.StatusForbidden, c.post("/console/logout", url.Values{"csrf": {token + "x"}}).status, "a wrong CSRF token")
	c.origin = "http://evil.example"
	require.Equal(t, http.StatusForbidden, c.post("/console/logout", url.Values{"csrf": {token}}).status, "another site's Origin")
	c.origin = b.srv.URL
	require.Equal(t, http.StatusOK, c.get("/console/").status, "refused logouts left the session alive")

	out := c.post("/console/logout", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusSeeOther, out.status, out.body)
	require.Equal(t, "/console/login?out=1", out.header.Get("Location"))
	cleared := sessionCookie(out)
	require.NotNil(t, cleared)
	require.Less(t, cleared.MaxAge, 0, "the cookie is deleted")
	// The old cookie is dead on every replica, not just forgotten by this
	// browser.
	requireLogin(t, c.get("/console/"), true)
	requireLogin(t, other.get("/console/"), true)
	require.NoError(t, catalog.QueryRow(`SELECT count(*) FROM console_sessions WHERE id_hash = $1`, hash[:]).Scan(&stored))
	require.Zero(t, stored)

	// An htmx poll without a session is told where to go, not given a
	// login form to swap into a table.
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/console/operations/rows", nil)
	require.NoError(t, err)
	req.Header.Set("HX-Request", "true")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, "/console/login", resp.Header.Get("HX-Redirect"))
}

// A session ends at its expiry, and when ADMIN_TOKEN changes: a replica
// started with a new token refuses the sessions made under the old one
// (and deletes them).
func TestConsoleSessionExpiryAndTokenRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "ADMIN_TOKEN="+adminToken)
	catalog := pgtest.Open(t, b.db.URL)

	c := newConsoleClient(t, b)
	c.login(adminToken)
	require.Equal(t, http.StatusOK, c.get("/console/").status)
	_, err := catalog.Exec(`UPDATE console_sessions SET expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	expired := c.get("/console/")
	requireLogin(t, expired, true)
	require.NotNil(t, sessionCookie(expired), "the dead cookie is cleared")
	require.Contains(t, c.get("/console/login?ended=1").body, "Your session has ended")

	// A new login sweeps the expired row away.
	c.login(adminToken)
	var n int
	require.NoError(t, catalog.QueryRow(`SELECT count(*) FROM console_sessions`).Scan(&n))
	require.Equal(t, 1, n, "the expired session was deleted by the next login")

	rotated := start(t, b.db, []string{"DATABASE_URL=" + b.db.URL, "TENANT_ISOLATION=schema", "TENANT_DB_PREFIX=" + b.db.Prefix, "ADMIN_TOKEN=rotated-admin-token-987654321"})
	other := &consoleClient{t: t, base: rotated.srv.URL, cookie: c.cookie, origin: rotated.srv.URL}
	requireLogin(t, other.get("/console/"), true)
	require.NoError(t, catalog.QueryRow(`SELECT count(*) FROM console_sessions`).Scan(&n))
	require.Zero(t, n, "the session of the old token is deleted")
	requireLogin(t, c.get("/console/"), true)
	other.login("rotated-admin-token-987654321")
	require.Equal(t, http.StatusOK, other.get("/console/").status)
}

// In development mode (no ADMIN_TOKEN, loopback only) the console lets the
// operator in without a token, as the API does, under a banner; a token
// that is sent is still checked (there is none to match).
func TestConsoleDevelopmentMode(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	c := newConsoleClient(t, b)
	page := c.get("/console/login")
	require.Equal(t, http.StatusOK, page.status)
	require.Contains(t, page.body, "Development mode")
	require.NotContains(t, page.body, `name="token"`)
	sent := c.post("/console/login", url.Values{"token": {"some-token"}})
	require.Equal(t, http.StatusUnauthorized, sent.status)
	require.Contains(t, sent.body, "leave the token empty")
	c.login("")
	overview := c.get("/console/")
	require.Equal(t, http.StatusOK, overview.status)
	require.Contains(t, overview.body, `id="dev-banner"`)
	require.Contains(t, overview.body, console.ActorDevelopment)

	// Actions still need the CSRF token: a loopback listener is reachable
	// from any page the operator's browser opens.
	b.create(seed())
	require.Equal(t, http.StatusForbidden, c.post("/console/tenants/1/suspend", url.Values{}).status)
	require.Equal(t, http.StatusSeeOther, c.post("/console/tenants/1/suspend", url.Values{"csrf": {c.csrf("/console/tenants/1")}}).status)
	_, entries := b.do("GET", "/api/audit?tenant=1", nil)
	require.Equal(t, console.ActorDevelopment, entries["data"].([]any)[0].(map[string]any)["actor"])
}

// The console is an operator page: a tenant's domain and the /t/{slug}
// path get the 404 they get for /api/tenants, and so does a host that is
// not an admin host.
func TestConsoleTenantHosts404(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "ADMIN_TOKEN="+adminToken)
	b.createAuthed(seed())
	c := newConsoleClient(t, b)
	for _, r := range []consoleResponse{
		c.send(http.MethodGet, "/console/", nil, "acme.example.com"),
		c.send(http.MethodGet, "/console/login", nil, "acme.example.com"),
		c.send(http.MethodPost, "/console/login", url.Values{"token": {adminToken}}, "acme.example.com"),
		c.get("/t/acme-corp/console/login"),
		c.send(http.MethodGet, "/console/login", nil, "unknown.example.net"),
	} {
		require.Equal(t, http.StatusNotFound, r.status, r.body)
		require.NotContains(t, r.body, "<form")
		require.Nil(t, sessionCookie(r))
	}
}

// The tenant pages and the actions: what the tenant page shows (keys by
// prefix only), suspend and resume through the service the API's PATCH
// calls, audited with the operator (through the console) as actor,
// backups started, a move refused with the field named, bad input
// answered with 4xx naming the field, never a 500.
func TestConsoleTenantActionsAudited(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "ADMIN_TOKEN="+adminToken)
	key := b.createAuthed(seed())
	b.createAuthed(map[string]any{"name": "Beta Calls", "slug": "beta", "domain": "beta.example.org"})
	c := newConsoleClient(t, b)
	c.login(adminToken)

	page := c.get("/console/tenants/1")
	require.Equal(t, http.StatusOK, page.status, page.body)
	for _, want := range []string{"acme-corp", "acme.example.com", "America/New_York", key[:len(controlplane.KeyPrefix)+8] + "…", `id="suspend"`, "operator"} {
		require.Contains(t, page.body, want)
	}
	require.NotContains(t, page.body, key, "never a full key")

	list := c.get("/console/tenants?q=beta")
	require.Equal(t, http.StatusOK, list.status)
	require.Contains(t, list.body, `data-tenant="beta"`)
	require.NotContains(t, list.body, `data-tenant="acme-corp"`)
	require.Contains(t, c.get("/console/tenants?q=example.com&status=active&server=default").body, `data-tenant="acme-corp"`)
	require.Contains(t, c.get("/console/tenants?status=suspended").body, "No tenant matches")
	for path, field := range map[string]string{
		"/console/tenants?status=bogus":     "status",
		"/console/tenants?page=x":           "page",
		"/console/tenants/abc":              "id",
		"/console/operations?tenant=-1":     "tenant",
		"/console/operations/rows?tenant=x": "tenant",
	} {
		r := c.get(path)
		require.True(t, r.status >= 400 && r.status < 500, "%s: %d", path, r.status)
		require.Contains(t, r.body, "<code>"+field+"</code>", path)
	}
	require.Equal(t, http.StatusNotFound, c.get("/console/tenants/99").status)
	require.Equal(t, http.StatusNotFound, c.get("/console/nowhere").status)

	token := c.csrf("/console/tenants/1")
	// Refused without the token: nothing changes.
	require.Equal(t, http.StatusForbidden, c.post("/console/tenants/1/suspend", url.Values{}).status)
	_, _, got := b.req("GET", "", "/api/tenants/1", nil, bearerAdmin...)
	require.Equal(t, "active", got["status"])

	r := c.post("/console/tenants/1/suspend", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/console/tenants/1?done=suspend", r.header.Get("Location"))
	_, _, got = b.req("GET", "", "/api/tenants/1", nil, bearerAdmin...)
	require.Equal(t, "suspended", got["status"])
	status, _, _ := b.req("GET", "acme.example.com", "/api/extensions", nil, bearerOf(key)...)
	require.Equal(t, http.StatusForbidden, status, "a suspended tenant's API is refused")
	_, _, audit := b.req("GET", "", "/api/audit?tenant=1", nil, bearerAdmin...)
	last := audit["data"].([]any)[0].(map[string]any)
	require.Equal(t, console.ActorOperator, last["actor"])
	require.Equal(t, "tenant.suspend", last["action"])
	require.Equal(t, map[string]any{"before": "active", "after": "suspended"}, last["diff"].(map[string]any)["status"])
	shown := c.get("/console/tenants/1?done=suspend").body
	require.Contains(t, shown, "The tenant is suspended")
	require.Contains(t, shown, `id="resume"`)
	require.Contains(t, shown, console.ActorOperator)

	require.Equal(t, http.StatusSeeOther, c.post("/console/tenants/1/resume", url.Values{"csrf": {token}}).status)
	_, _, got = b.req("GET", "", "/api/tenants/1", nil, bearerAdmin...)
	require.Equal(t, "active", got["status"])
	_, _, audit = b.req("GET", "", "/api/audit?tenant=1", nil, bearerAdmin...)
	last = audit["data"].([]any)[0].(map[string]any)
	require.Equal(t, []any{console.ActorOperator, "tenant.activate"}, []any{last["actor"], last["action"]})

	// A backup: the operation the API would start, listed with its tenant.
	r = c.post("/console/tenants/2/backup", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	_, _, ops := b.req("GET", "", "/api/operations?tenant=2", nil, bearerAdmin...)
	require.Len(t, ops["data"], 1)
	op := ops["data"].([]any)[0].(map[string]any)
	require.Equal(t, "backup", op["kind"])
	_, _, audit = b.req("GET", "", "/api/audit?tenant=2", nil, bearerAdmin...)
	last = audit["data"].([]any)[0].(map[string]any)
	require.Equal(t, []any{console.ActorOperator, "backup.start"}, []any{last["actor"], last["action"]})
	rows := c.get("/console/operations/rows?tenant=2")
	require.Equal(t, http.StatusOK, rows.status)
	require.Contains(t, rows.body, fmt.Sprintf(`data-operation="%v"`, op["id"]))
	require.Contains(t, c.get("/console/operations").body, `href="/console/tenants/2">beta</a>`)

	// A move to a server that is not registered, or to none: the
	// service's 422, naming the field, as the API answers it.
	r = c.post("/console/tenants/1/move", url.Values{"csrf": {token}, "server": {"pg-nowhere"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Contains(t, r.body, "<code>server</code> no tenant server is named pg-nowhere")
	r = c.post("/console/tenants/1/move", url.Values{"csrf": {token}, "server": {""}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Contains(t, r.body, "<code>server</code>")
	r = c.post("/console/tenants/1/move", url.Values{"csrf": {token}, "server": {"pg\x00b"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Contains(t, r.body, "<code>server</code>")
	r = c.post("/console/tenants/1/move", url.Values{"csrf": {token}, "server": {"default"}, "mode": {"sideways"}})
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Contains(t, r.body, "<code>mode</code>")
	r = c.get("/console/tenants?q=a%00b")
	// The API's query check (httpapi's checkParams) runs before the
	// console: its JSON 422 naming the parameter.
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Contains(t, r.body, `"q":"must not contain NUL characters"`)
	r = c.post("/console/tenants/1/explode", url.Values{"csrf": {token}})
	require.Equal(t, http.StatusNotFound, r.status)

	migrationsPage := c.get("/console/migrations")
	require.Equal(t, http.StatusOK, migrationsPage.status)
	require.Contains(t, migrationsPage.body, "controlplane migrate tenants status --verify")
	require.Contains(t, migrationsPage.body, `id="no-problems"`)

	// A tenant a failed migration left dirty (as the catalog records it):
	// the page names it with the CLI's own repair commands, once the
	// change has reached this replica's catalog cache (NOTIFY).
	catalog := pgtest.Open(t, b.db.URL)
	_, err := catalog.Exec(`UPDATE tenants SET schema_dirty = true, migration_error = 'boom' WHERE slug = 'beta'`)
	require.NoError(t, err)
	repair := "controlplane migrate tenants force -1 --tenant beta &amp;&amp; controlplane migrate tenants up --tenant beta"
	require.Eventually(t, func() bool { return strings.Contains(c.get("/console/migrations").body, repair) }, 10*time.Second, 50*time.Millisecond)
	migrationsPage = c.get("/console/migrations")
	require.Contains(t, migrationsPage.body, `<tr data-tenant="beta">`)
	require.NotContains(t, migrationsPage.body, `id="no-problems"`)
	require.Contains(t, c.get("/console/").body, `<li class="bad"><strong>1</strong> dirty</li>`)
}
