// Package console is the fleet console: server-rendered pages under
// /console on operator hosts (docs/CONSOLE.md). It is a second face of the
// operator API, not a second implementation: every page reads through the
// same domain services the API's handlers call (controlplane.Tenants,
// Servers, Operations) and every action goes through them too, so the
// rules, the locks and the audit trail are the API's. It holds no SQL:
// its sessions are kept by the catalog behind controlplane.ConsoleSessionStore.
//
// Templates and static files (htmx, the style sheet) are embedded in the
// binary: there is nothing to build and no Node toolchain to run.
package console

import (
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Prefix is where the console is mounted (httpapi serves it there on admin
// hosts only). The session cookie's Path is this prefix.
const Prefix = "/console"

// DefaultSessionTTL is a session's absolute lifetime: a working day, after
// which the operator logs in again.
const DefaultSessionTTL = 12 * time.Hour

// FleetView is the in-memory catalog of tenants (catalog.Cache), which
// the overview and the migrations page count without a query, as
// /metrics does, and where an operation's tenant slug is looked up.
type FleetView interface {
	Each(fn func(*controlplane.Tenant))
	ByID(id int64) (*controlplane.Tenant, bool)
}

// PoolUse is one tenant server's connections as this replica's router
// holds them.
type PoolUse struct {
	Open, InUse, Waiting int
	// Budget is the most connections this replica may hold on the server
	// (its share of the server's max_connections).
	Budget int
}

// Console serves the fleet console.
type Console struct {
	Tenants    *controlplane.Tenants
	Servers    *controlplane.Servers
	Operations *controlplane.Operations
	Sessions   controlplane.ConsoleSessionStore
	Fleet      FleetView
	// Pools reports this replica's connections per tenant server (nil:
	// no connection bars).
	Pools func() map[string]PoolUse
	// Latest is the newest tenant migration of this binary, Versions all
	// of them in order (for the repair commands of a dirty tenant).
	Latest   uint
	Versions []uint
	// AdminToken is the operator token the login form asks for; empty is
	// development mode (loopback only, enforced by serve): a login without
	// a token, under a banner saying so.
	AdminToken string
	// SessionTTL is a session's lifetime (DefaultSessionTTL if zero).
	SessionTTL time.Duration
	// FailDelay is how long a failed login waits before its 401 (1 s if
	// zero); failures wait one after another, so a replica answers at most
	// one wrong token per FailDelay.
	FailDelay time.Duration
	Build     controlplane.Build
	Log       *slog.Logger

	failMu sync.Mutex
}

// Handler returns the console's routes, all under Prefix.
func (c *Console) Handler() http.Handler {
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // unreachable: the directory is embedded above
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+Prefix+"/login", c.loginPage)
	mux.HandleFunc("POST "+Prefix+"/login", c.login)
	mux.Handle("POST "+Prefix+"/logout", c.session(c.logout))
	mux.Handle("GET "+Prefix+"/{$}", c.session(c.overview))
	mux.Handle("GET "+Prefix+"/tenants", c.session(c.tenantList))
	mux.Handle("GET "+Prefix+"/tenants/{id}", c.session(c.tenantPage))
	mux.Handle("POST "+Prefix+"/tenants/{id}/{action}", c.session(c.tenantAction))
	mux.Handle("GET "+Prefix+"/operations", c.session(c.operations(true)))
	mux.Handle("GET "+Prefix+"/operations/rows", c.session(c.operations(false)))
	mux.Handle("GET "+Prefix+"/migrations", c.session(c.migrations))
	mux.Handle(Prefix+"/", c.session(func(w http.ResponseWriter, r *http.Request, s *session) {
		c.fail(w, r, s, http.StatusNotFound, "There is no console page at "+r.URL.Path+".", nil)
	}))
	return secureHeaders(mux)
}

// secureHeaders sets what every console response carries. The policy
// allows scripts and styles from the console's own static files only: no
// inline script or style, no eval, so an injected attribute or tag cannot
// run. Frames are refused (no clickjacking of the action buttons), and
// the Referer stays on this origin (the CSRF check reads it when a browser
// sends no Origin).
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (c *Console) ttl() time.Duration {
	if c.SessionTTL > 0 {
		return c.SessionTTL
	}
	return DefaultSessionTTL
}

func (c *Console) failDelay() time.Duration {
	if c.FailDelay > 0 {
		return c.FailDelay
	}
	return time.Second
}

func (c *Console) devMode() bool { return c.AdminToken == "" }
