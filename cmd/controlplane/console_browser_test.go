package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/console"
)

// chromiumPath finds Debian's chromium (scripts/test.sh installs it, as it
// installs PostgreSQL), or CHROMIUM if set.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestConsoleInBrowser drives the console in headless Chromium the way an
// operator would: the login form, the overview, the tenants table, a
// tenant's page, a suspend and a backup by their buttons, the operations
// and migrations pages. It checks the rendered DOM, that the session cookie
// Chromium kept is Secure, HttpOnly and SameSite=Strict (Chromium accepts a
// Secure cookie from http://127.0.0.1, a potentially trustworthy origin),
// that htmx loaded under the Content-Security-Policy, that the API sees
// the tenant suspended with the console's actor in the audit trail, and
// that the pages logged no script error, no CSP violation and no failed
// load but the wrong token's 401. With CONSOLE_SCREENSHOTS set (a directory; relative to the
// repository's root) it saves a PNG of each page, as docs/CONSOLE.md shows.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL and Chromium: the fast lane (-short) runs without them")
	}
	chromium := chromiumPath()
	if chromium == "" {
		t.Skip("chromium is not installed: make test installs it (scripts/test.sh), or run apt-get install chromium")
	}
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "ADMIN_TOKEN="+adminToken)
	key := b.createAuthed(seed())
	b.createAuthed(map[string]any{"name": "Beta Calls", "slug": "beta", "domain": "beta.example.org", "isolation": "schema"})
	b.createAuthed(map[string]any{"name": "Gamma Telecom", "slug": "gamma", "domain": "gamma.example.net", "isolation": "schema", "status": "suspended"})
	// A tenant request, so the overview has connections to show.
	status, _, _ := b.req("GET", "acme.example.com", "/api/extensions", nil, bearerOf(key)...)
	require.Equal(t, http.StatusOK, status)

	shots := os.Getenv("CONSOLE_SCREENSHOTS")
	if shots != "" && !filepath.IsAbs(shots) {
		shots = filepath.Join("..", "..", shots) // go test runs in cmd/controlplane
	}
	if shots != "" {
		require.NoError(t, os.MkdirAll(shots, 0o755))
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 900),
		// /dev/shm is small in containers; Chromium then crashes tabs.
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run its sandbox as root (CI containers).
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	began := time.Now()
	// Started without a timeout (a timeout on the first Run would bound the
	// browser's whole life); each step below has its own.
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	t.Logf("chromium started in %v", time.Since(began).Round(time.Millisecond))

	// Every message the pages write: exceptions, console.error, and the
	// browser's own log (CSP violations, failed loads) at level error.
	var mu sync.Mutex
	var problems, warnings []string
	refusals := 0
	messages := chromedp.Console(ctx)
	listening, stopListening := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil || listening.Err() != nil {
				return
			}
			mu.Lock()
			switch {
			case m.Source == "network" && strings.HasSuffix(m.URL, "/console/login") && strings.Contains(m.Text, "401"):
				// The wrong token's 401 page, which Chromium logs as a
				// failed load: expected once, and no script error.
				refusals++
			case m.IsException(), m.Type == chromedp.ConsoleError:
				problems = append(problems, m.String())
			case m.Type == chromedp.ConsoleWarning:
				warnings = append(warnings, m.String())
			}
			mu.Unlock()
		}
	}()

	// visit runs actions that load a page (a link, a button, a form) and
	// waits until that page has loaded, requiring its HTTP status: a query
	// made before would find the old page's nodes, or nodes the new page
	// has just thrown away.
	visit := func(name string, status int, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		start := time.Now()
		resp, err := chromedp.RunResponse(sctx, actions...)
		require.NoError(t, err, name)
		require.EqualValues(t, status, resp.Status, name)
		t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
	}
	// wait waits for what the loaded page shows (or, polled, comes to
	// show).
	wait := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		defer scancel()
		start := time.Now()
		require.NoError(t, chromedp.Do(sctx, actions...), name)
		t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond))
	}
	text := func(sel string) string {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, sel)
		return strings.TrimSpace(s)
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		require.NoError(t, err)
		return loc
	}
	n := 0
	shot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		n++
		require.NoError(t, os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", n, name)), png, 0o644))
	}
	base := b.srv.URL

	// Not logged in: the console sends the browser to the login form.
	visit("open the console", http.StatusOK, chromedp.Navigate(base+"/console/"))
	require.Equal(t, base+"/console/login", location())
	wait("the login form", chromedp.WaitVisible(chromedp.ID("token")))
	shot("login")

	// A wrong token first: the 401 page says so.
	visit("log in with a wrong token", http.StatusUnauthorized, chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), chromedp.Submit(chromedp.ID("token")))
	require.Contains(t, text("#login-error"), "That is not the operator token")

	visit("log in", http.StatusOK, chromedp.SendKeys(chromedp.ID("token"), adminToken), chromedp.Submit(chromedp.ID("token")))
	require.Equal(t, base+"/console/", location())
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/console/"}})
	require.NoError(t, err)
	var session *network.Cookie
	for _, ck := range cookies.Cookies {
		if ck.Name == console.CookieName {
			session = ck
		}
	}
	require.NotNil(t, session, "Chromium kept no session cookie from http://127.0.0.1")
	require.True(t, session.Secure, "Secure")
	require.True(t, session.HTTPOnly, "HttpOnly")
	require.Equal(t, network.CookieSameSiteStrict, session.SameSite)
	require.Equal(t, "/console", session.Path)
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.cookie"))
	require.NoError(t, err)
	require.NotContains(t, hidden, console.CookieName, "no script can read the session cookie")
	// htmx is a deferred script: its version once it has run, under the
	// Content-Security-Policy.
	version, err := chromedp.Run(ctx, chromedp.Poll[string]("typeof htmx === 'object' && htmx.version", chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(version, "2."), "htmx under the CSP: %s", version)

	require.Contains(t, text(`#servers tr[data-server="default"]`), "3 / ")
	require.Contains(t, text("#tenant-states"), "suspended")
	require.Contains(t, text("#schema-summary"), "3 at latest")
	shot("overview")

	visit("tenants table", http.StatusOK, chromedp.Click(chromedp.CSS(`nav a[href="/console/tenants"]`)))
	require.Contains(t, text("#tenant-count"), "of 3")
	visit("search", http.StatusOK, chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), "acme"), chromedp.Submit(chromedp.CSS(`input[name="q"]`)))
	require.Contains(t, text("#tenant-count"), "of 1")
	require.Contains(t, text("#tenants"), "acme-corp")
	shot("tenants")

	visit("tenant page", http.StatusOK, chromedp.Click(chromedp.CSS(`tr[data-tenant="acme-corp"] a`)))
	require.Equal(t, "active", text("#tenant-status"))
	require.Contains(t, text("#tenant-keys"), key[:len(controlplane.KeyPrefix)+8])
	require.NotContains(t, text("#tenant-keys"), key)
	shot("tenant")

	visit("suspend", http.StatusOK, chromedp.Click(chromedp.ID("suspend")))
	require.Contains(t, text("#done"), "The tenant is suspended")
	require.Equal(t, "suspended", text("#tenant-status"))
	require.Contains(t, text("#tenant-audit"), console.ActorOperator)
	_, _, got := b.req("GET", "", "/api/tenants/1", nil, bearerAdmin...)
	require.Equal(t, "suspended", got["status"], "the API sees what the console did")
	_, _, audit := b.req("GET", "", "/api/audit?tenant=1", nil, bearerAdmin...)
	require.Equal(t, console.ActorOperator, audit["data"].([]any)[0].(map[string]any)["actor"])

	// A backup from its button; its row in the operations table is
	// polled (htmx, every 2 s) until it has succeeded.
	visit("backup", http.StatusOK, chromedp.Click(chromedp.ID("backup")))
	require.Contains(t, text("#done"), "A backup has started")
	wait("the backup's row to succeed", chromedp.WaitVisible(chromedp.CSS(`#operation-rows tr[data-state="succeeded"]`)))
	shot("tenant-suspended")

	visit("operations", http.StatusOK, chromedp.Click(chromedp.CSS(`nav a[href="/console/operations"]`)))
	require.Equal(t, "Operations", text("main h1"))
	require.Contains(t, text("#operations"), "backup")
	require.Contains(t, text("#operations"), "acme-corp")
	shot("operations")

	visit("migrations", http.StatusOK, chromedp.Click(chromedp.CSS(`nav a[href="/console/migrations"]`)))
	require.Contains(t, text("#migration-summary"), "3 at latest")
	shot("migrations")

	visit("log out", http.StatusOK, chromedp.Click(chromedp.ID("logout")))
	require.Equal(t, "You are logged out.", text("#notice"))
	visit("the console after logout", http.StatusOK, chromedp.Navigate(base+"/console/tenants"))
	require.Equal(t, base+"/console/login", location())
	require.Contains(t, text("#login-form"), "Log in")

	stopListening()
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, w := range warnings {
		t.Logf("console warning: %s", w)
	}
	require.Empty(t, problems, "the console logged errors in the browser")
	require.Equal(t, 1, refusals, "the wrong token's 401, logged by Chromium as a failed load")
	t.Logf("browser session took %v", time.Since(began).Round(time.Millisecond))
}
