package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
)

// Directory resolves tenants in memory (catalog.Cache): no query per request.
type Directory interface {
	ByDomain(host string) (*controlplane.Tenant, bool)
	BySlug(slug string) (*controlplane.Tenant, bool)
	ByID(id int64) (*controlplane.Tenant, bool)
	// Changed is closed at the directory's next change (a held request
	// waits on it).
	Changed() <-chan struct{}
}

// DBRouter hands out a tenant's database handle (router.Router). The
// handle is opaque here: only the resource stores query it.
type DBRouter interface {
	Acquire(ctx context.Context, t *controlplane.Tenant) (*gorm.DB, func(), error)
}

type ctxKey int

const slugKey ctxKey = iota

const tenantKey = "tenant"

// slugPrefix routes by slug: /t/{slug}/api/... is the same request as
// /api/... on the tenant's own domain.
const slugPrefix = "/t/"

// stripSlug is the outermost handler: it moves a /t/{slug} prefix out of
// the path into the request context before gin routes the rest, so one set
// of tenant routes serves both forms.
func stripSlug(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, slugPrefix); ok {
			slug, tail, _ := strings.Cut(rest, "/")
			r = r.WithContext(context.WithValue(r.Context(), slugKey, slug))
			r.URL.Path = "/" + tail
			r.URL.RawPath = ""
		}
		next.ServeHTTP(w, r)
	})
}

// resolveTenant finds the request's tenant, if any: by Host first, then by
// the /t/{slug} prefix. When both name a tenant and they differ the request
// is refused (400), so a request is never served with one tenant's host and
// another's data. X-Forwarded-Host counts only from a trusted proxy. A host
// that is not a host name (checkHost), or a slug holding NUL or invalid
// UTF-8, is refused (400) before anything is looked up.
func (s *Server) resolveTenant(c *gin.Context) {
	if err := s.checkHost(c); err != nil {
		_ = c.Error(err)
		c.Abort()
		return
	}
	slug, slugGiven := c.Request.Context().Value(slugKey).(string)
	if reason := controlplane.TextProblem(slug); reason != "" {
		// As for any path parameter (checkParams); the slug has left the
		// path before gin routes it.
		_ = c.Error(&controlplane.Error{Code: controlplane.BadRequest, Message: "slug in the path " + reason, Fields: map[string]string{"slug": reason}})
		c.Abort()
		return
	}
	host := s.requestHost(c)
	byHost, hostOK := s.Directory.ByDomain(host)
	switch {
	case hostOK && slugGiven && slug != byHost.Slug:
		_ = c.Error(controlplane.Errorf(controlplane.BadRequest,
			"the Host header names tenant %q but the path names tenant %q; send one or make them agree", byHost.Slug, slug))
		c.Abort()
		return
	case hostOK && byHost.Status == controlplane.StatusDeleted:
		// Deleted within its grace period: served to nobody, as if gone.
		_ = c.Error(controlplane.Errorf(controlplane.UnknownTenant, "no tenant has the domain %q", host))
		c.Abort()
		return
	case hostOK:
		c.Set(tenantKey, byHost)
	case slugGiven:
		t, ok := s.Directory.BySlug(slug)
		if !ok || t.Status == controlplane.StatusDeleted {
			_ = c.Error(controlplane.Errorf(controlplane.UnknownTenant, "no tenant has the slug %q", slug))
			c.Abort()
			return
		}
		c.Set(tenantKey, t)
	}
	c.Next()
}

// requestTenant returns the tenant resolved for c, or nil.
func requestTenant(c *gin.Context) *controlplane.Tenant {
	t, _ := c.Get(tenantKey)
	tn, _ := t.(*controlplane.Tenant)
	return tn
}

// operatorOnly guards the operator API: it is reachable only on an admin
// host, never through a tenant's domain or slug path.
func (s *Server) operatorOnly(c *gin.Context) {
	if err := s.operatorAllowed(c); err != nil {
		_ = c.Error(err)
		c.Abort()
		return
	}
	c.Next()
}

func (s *Server) operatorAllowed(c *gin.Context) error {
	if err := s.adminHost(c); err != nil {
		return err
	}
	return s.authOperator(c)
}

// adminHost refuses a request that names a tenant (its domain or its
// /t/{slug} path: 404 as for any route tenants do not have) or that came
// to a host that is not an admin host.
func (s *Server) adminHost(c *gin.Context) error {
	if requestTenant(c) != nil {
		return controlplane.Errorf(controlplane.NotFound, "no route for %s %s", c.Request.Method, c.Request.URL.Path)
	}
	if host := s.requestHost(c); !s.isAdminHost(host) {
		return controlplane.Errorf(controlplane.UnknownTenant, "no tenant has the domain %q", host)
	}
	return nil
}

// adminHostOnly gates the console: the host rule of the operator API
// without its bearer token. The console gets the host the request was
// addressed to as this router decided it (RequestHost), so its origin
// check honours X-Forwarded-Host from TRUSTED_PROXIES only, as the host
// rule does.
func (s *Server) adminHostOnly(c *gin.Context) {
	if err := s.adminHost(c); err != nil {
		_ = c.Error(err)
		c.Abort()
		return
	}
	_, host := s.hostHeader(c)
	c.Request = WithRequestHost(c.Request, host)
	c.Next()
}

type requestHostKey struct{}

// WithRequestHost records on r the host it was addressed to (with its
// port, as sent): the Host header, or the first X-Forwarded-Host of a
// trusted proxy.
func WithRequestHost(r *http.Request, host string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), requestHostKey{}, host))
}

// RequestHost is the host r was addressed to as the router decided it
// (WithRequestHost); r.Host for a request that did not pass the router.
func RequestHost(r *http.Request) string {
	if h, ok := r.Context().Value(requestHostKey{}).(string); ok {
		return h
	}
	return r.Host
}

func (s *Server) isAdminHost(host string) bool {
	for _, h := range s.AdminHosts {
		if h == "*" || h == host {
			return true
		}
	}
	return false
}

// tenantScope is what a tenant route works on: the request's tenant as the
// gates admitted it, and the handle the router acquired on its database or
// schema, valid until the handler returns.
type tenantScope struct {
	Tenant *controlplane.Tenant
	DB     *gorm.DB
}

// tenantHandler is a tenant route's handler. It gets its scope as an
// argument, typed, rather than out of gin's context store: a handler
// cannot be registered where no tenant was entered, nor read a handle
// that was not acquired for its request.
type tenantHandler func(c *gin.Context, in tenantScope) error

// tenantAPI registers tenant routes under /api: each handler runs inside
// inTenant.
type tenantAPI struct {
	group *gin.RouterGroup
	s     *Server
}

func (a tenantAPI) GET(path string, h tenantHandler)    { a.group.GET(path, a.s.inTenant(h)) }
func (a tenantAPI) POST(path string, h tenantHandler)   { a.group.POST(path, a.s.inTenant(h)) }
func (a tenantAPI) PUT(path string, h tenantHandler)    { a.group.PUT(path, a.s.inTenant(h)) }
func (a tenantAPI) PATCH(path string, h tenantHandler)  { a.group.PATCH(path, a.s.inTenant(h)) }
func (a tenantAPI) DELETE(path string, h tenantHandler) { a.group.DELETE(path, a.s.inTenant(h)) }

// inTenant gates a tenant route: the tenant must exist, be active and be
// provisioned; then its database handle is acquired for the request, given
// to h, and released after it.
func (s *Server) inTenant(h tenantHandler) gin.HandlerFunc {
	return handle(func(c *gin.Context) error { return s.serveTenant(c, h) })
}

// serveTenant runs h inside the request's tenant: the gates, the handle
// acquired, released after h even if it panics, and a 429 or 503 counted
// against the tenant's server.
func (s *Server) serveTenant(c *gin.Context, h tenantHandler) (err error) {
	defer func() { s.countRefused(c, err) }()
	in, release, err := s.enterTenant(c)
	if err != nil {
		return err
	}
	defer release()
	return h(c, in)
}

// countRefused counts a tenant request answered 429 or 503 against its
// tenant server: a budget spent or a server down shows on that server's
// own series, which the per-route counts cannot tell apart.
func (s *Server) countRefused(c *gin.Context, err error) {
	if err == nil {
		return
	}
	t := requestTenant(c)
	if t == nil {
		return
	}
	if de, status, _ := PublicError(err); status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		s.metrics().refused.WithLabelValues(t.ServerName(), string(de.Code)).Inc()
	}
}

// enterTenant applies the tenant gates and acquires the tenant's database
// handle; the caller must call release when the request is done.
func (s *Server) enterTenant(c *gin.Context) (in tenantScope, release func(), err error) {
	t := requestTenant(c)
	if t == nil {
		return in, nil, controlplane.Errorf(controlplane.UnknownTenant, "no tenant has the domain %q; use the tenant's domain as Host or the path /t/{slug}%s", s.requestHost(c), c.Request.URL.Path)
	}
	if err := s.authTenant(c, t); err != nil {
		return in, nil, err
	}
	if t.HeldUntil != nil {
		if t, err = s.waitHeld(c, t); err != nil {
			return in, nil, err
		}
	}
	switch {
	case t.Status == controlplane.StatusSuspended:
		return in, nil, controlplane.Errorf(controlplane.TenantSuspended, "tenant %s is suspended", t.Slug)
	case t.Provisioning != controlplane.ProvisionReady:
		return in, nil, controlplane.Errorf(controlplane.TenantUnavailable, "tenant %s is not available (provisioning: %s)", t.Slug, t.Provisioning)
	case t.SchemaVersion > s.LatestTenantSchema:
		// Its database was migrated by a newer release: this binary's code
		// could misread it, so it refuses rather than serve it wrongly.
		return in, nil, controlplane.Errorf(controlplane.TenantUnavailable, "tenant %s is at schema version %d, newer than this server knows (%d)", t.Slug, t.SchemaVersion, s.LatestTenantSchema)
	}
	db, release, err := s.Router.Acquire(c.Request.Context(), t)
	if err != nil {
		return in, nil, err
	}
	return tenantScope{Tenant: t, DB: db}, release, nil
}

// waitHeld waits while t's requests are held by an online move's
// cutover (docs/OPERATIONS.md, "Moving a tenant"): until the move flips
// the tenant to its new server or gives up (either clears the hold and
// reaches this replica by the catalog's NOTIFY), or until the hold's own
// deadline, after which the request goes on as if none had been set. It
// returns the tenant as it is then.
func (s *Server) waitHeld(c *gin.Context, t *controlplane.Tenant) (*controlplane.Tenant, error) {
	for {
		changed := s.Directory.Changed() // before the read: no change is missed
		now, ok := s.Directory.ByID(t.ID)
		if !ok {
			return nil, controlplane.Errorf(controlplane.UnknownTenant, "tenant %s is gone", t.Slug)
		}
		t = now
		if t.HeldUntil == nil || !time.Now().Before(*t.HeldUntil) {
			c.Set(tenantKey, t)
			return t, nil
		}
		timer := time.NewTimer(time.Until(*t.HeldUntil))
		select {
		case <-changed:
		case <-timer.C:
		case <-c.Request.Context().Done():
			timer.Stop()
			return nil, controlplane.Errorf(controlplane.Unavailable, "tenant %s is being moved; the request ended while it was held", t.Slug)
		}
		timer.Stop()
	}
}

// operatorOrTenant serves one path that both APIs use with different
// meanings (GET /api/dids/{x}: an operator's lookup by number, a tenant's
// read by id). gin allows one handler per method and path, so the audience
// is decided here, with the same gates as the two groups.
func (s *Server) operatorOrTenant(operator func(*gin.Context) error, tenant tenantHandler) gin.HandlerFunc {
	return handle(func(c *gin.Context) error {
		if requestTenant(c) == nil {
			if err := s.operatorAllowed(c); err != nil {
				return err
			}
			return operator(c)
		}
		return s.serveTenant(c, tenant)
	})
}
