// Package httpapi is the control plane's HTTP surface (gin): the router,
// the middleware every request passes (request id, logging, body limit,
// panic recovery, error rendering) and thin handlers over the domain.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/docs"
)

const requestIDKey = "request_id"

// Server holds what the handlers need.
type Server struct {
	Tenants *controlplane.Tenants
	// Servers is the registry of tenant servers.
	Servers *controlplane.Servers
	// Operations runs and reports backups.
	Operations *controlplane.Operations
	Directory  Directory
	// DIDIndex is the global DID → tenant index (catalog).
	DIDIndex controlplane.DIDIndex
	Router   DBRouter
	// LatestTenantSchema is the newest tenant migration this binary knows;
	// tenants whose schema is newer are refused (503).
	LatestTenantSchema uint
	// Fleet reports the tenants' schema versions (catalog).
	Fleet FleetState
	// Gauges feed /metrics with tenant and pool state.
	Gauges Gauges
	// Auth is the operator token, the tenant key directory and the
	// trusted proxies.
	Auth Auth
	// AdminHosts are the hosts (normalised) that serve the operator API;
	// "*" means any host that is not a tenant's domain.
	AdminHosts []string
	// SeparateMetrics takes /metrics off the router: it is served by
	// MetricsHandler on a listener of its own (METRICS_ADDR), and the main
	// listener, the one tenants reach, then has no /metrics at all.
	SeparateMetrics bool
	// Ready reports whether the service can take traffic (catalog reachable
	// and migrated); it backs /readyz.
	Ready func(ctx context.Context) error
	// ServerHealth, if set, gives each tenant server's last health check
	// (nil: it answered), shown by /readyz.
	ServerHealth func() map[string]error
	Log          *slog.Logger
	// Collectors are more series for /metrics (the reconciler's counts).
	Collectors []prometheus.Collector
	// Build is the binary's identity, on /healthz and as
	// controlplane_build_info.
	Build controlplane.Build
	// Console, if set, is the fleet console (controlplane/console), served
	// under /console on admin hosts only. It checks its own sessions: a
	// browser logs in with a form, not with a bearer token.
	Console http.Handler

	metricsOnce sync.Once
	m           *metrics
}

// metrics returns the server's one registry, so that the router's counters
// and a separate metrics listener show the same series.
func (s *Server) metrics() *metrics {
	s.metricsOnce.Do(func() { s.m = newMetrics(s.Gauges, s.ServerHealth, s.Ready, s.Build, s.Collectors) })
	return s.m
}

func init() { gin.SetMode(gin.ReleaseMode) }

// Handler builds the router.
func (s *Server) Handler() http.Handler { return stripSlug(s.engine()) }

// engine is the router without the /t/{slug} handling that Handler wraps
// around it: what gin has routed (the tests hold it to docs/openapi.yaml).
func (s *Server) engine() *gin.Engine {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// Client IPs (in logs) come from X-Forwarded-For only via trusted proxies.
	proxies := make([]string, len(s.Auth.TrustedProxies))
	for i, p := range s.Auth.TrustedProxies {
		proxies[i] = p.String()
	}
	if err := r.SetTrustedProxies(proxies); err != nil {
		panic(err) // unreachable: the prefixes were parsed already
	}
	r.ContextWithFallback = true
	m := s.metrics()
	r.Use(requestID, s.logRequests, m.observe, gin.CustomRecovery(s.recovered), limitBody, writeErrors(s.Log), s.resolveTenant, checkParams)
	r.NoRoute(handle(func(c *gin.Context) error {
		return controlplane.Errorf(controlplane.NotFound, "no route for %s %s", c.Request.Method, c.Request.URL.Path)
	}))
	r.NoMethod(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, errorBody{Error: errorDetail{Code: "method_not_allowed", Message: c.Request.Method + " is not allowed on " + c.Request.URL.Path}})
	})

	// Liveness, and which binary answers (no secret in it: a version and
	// a commit are what the operator's deploy already published).
	r.GET("/healthz", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok", "version": s.Build.Version, "commit": s.Build.Commit})
	})
	r.GET("/readyz", s.readyz)
	if !s.SeparateMetrics {
		// Metrics describe the whole fleet (tenant counts, pools), so they
		// are operator data: the operator API's gate applies, host rule and
		// token alike, and a tenant's domain or /t/{slug} gets the same 404
		// as /api/tenants there.
		r.GET("/metrics", s.operatorOnly, gin.WrapH(m.handler()))
	}
	// The API's contract, the file the tests hold the routes to: operator
	// documentation, so behind the operator API's gate like /metrics.
	spec, err := docs.OpenAPIJSON()
	if err != nil {
		panic(err) // unreachable: the embedded file is parsed by TestOpenAPIValid
	}
	r.GET("/openapi.json", s.operatorOnly, func(c *gin.Context) { c.Data(http.StatusOK, "application/json", spec) })

	if s.Console != nil {
		// The operator API's host rule (a tenant's domain or /t/{slug}
		// gets a 404), but not its bearer token: the console's own
		// session cookie authenticates what is behind it.
		console := gin.WrapH(s.Console)
		r.Any("/console", s.adminHostOnly, console)
		r.Any("/console/*path", s.adminHostOnly, console)
	}

	operator := r.Group("/api", s.operatorOnly)
	s.tenantRoutes(operator)
	s.serverRoutes(operator)
	s.operationRoutes(operator)
	tenant := tenantAPI{group: r.Group("/api"), s: s}
	s.extensionRoutes(tenant)
	s.queueRoutes(tenant)
	s.contactRoutes(tenant)
	s.didRoutes(tenant)
	s.rateRoutes(tenant)
	s.cdrRoutes(tenant)
	s.reportRoutes(tenant)
	s.didLookupRoute(r)
	return r
}

// MetricsHandler serves GET /metrics alone, from the same registry as the
// router, for the METRICS_ADDR listener. It applies no host rule and asks
// no token: that listener is meant for an address only the scraper can
// reach. Its own scrapes are not counted in the request metrics.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics().handler())
	return mux
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		s.Log.Warn("not ready", "err", err)
		c.Header("Retry-After", retryAfter)
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": "catalog unreachable or not at the expected migration; see the server log"})
		return
	}
	body := gin.H{"status": "ready"}
	if s.ServerHealth != nil {
		// Each tenant server's last check, without its error (which may
		// name a host or user): a server down costs its own tenants, not
		// this replica's readiness.
		servers := map[string]string{}
		for name, err := range s.ServerHealth() {
			servers[name] = "ok"
			if err != nil {
				servers[name] = "unreachable"
			}
		}
		body["servers"] = servers
	}
	c.JSON(http.StatusOK, body)
}

// requestID tags each request with an id, taken from X-Request-ID when the
// client sends a sane one, so log lines and client reports can be matched.
// Generated ids are a random process prefix and a counter: unique, and
// cheaper than reading crypto/rand on every request.
func requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-ID")
	if len(id) == 0 || len(id) > 64 {
		id = requestIDPrefix + strconv.FormatUint(requestCounter.Add(1), 36)
	}
	c.Set(requestIDKey, id)
	c.Header("X-Request-ID", id)
	c.Next()
}

var (
	requestIDPrefix = func() string {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "-"
	}()
	requestCounter atomic.Uint64
)

// logRequests logs one line per request: no headers, no bodies, no query
// strings, since those are where tokens and passwords travel.
func (s *Server) logRequests(c *gin.Context) {
	if !s.Log.Enabled(c.Request.Context(), slog.LevelInfo) {
		c.Next()
		return
	}
	start := time.Now()
	c.Next()
	tenant := ""
	if t := requestTenant(c); t != nil {
		tenant = t.Slug
	}
	s.Log.Info("request",
		"request_id", c.GetString(requestIDKey),
		"method", c.Request.Method,
		"route", c.FullPath(),
		"path", c.Request.URL.Path,
		"tenant", tenant,
		"actor", actor(c),
		"status", c.Writer.Status(),
		"latency_ms", float64(time.Since(start).Microseconds())/1000,
	)
}

func (s *Server) recovered(c *gin.Context, v any) {
	s.Log.Error("panic serving request", "path", c.Request.URL.Path, "request_id", c.GetString(requestIDKey), "panic", v)
	c.AbortWithStatusJSON(http.StatusInternalServerError, errorBody{Error: errorDetail{Code: controlplane.Internal, Message: "internal error; the details are in the server log"}})
}

// bodyLimits raises MaxBodyBytes for the few routes that take bulk
// uploads, by route pattern (so /t/{slug}/... too); every other route keeps
// MaxBodyBytes.
var bodyLimits = map[string]int64{
	"/api/rates/import": MaxImportBytes,
}

// limitBody caps every request body at MaxBodyBytes, or its route's
// bodyLimits entry. gin has matched the route before any middleware runs,
// so FullPath is known here.
func limitBody(c *gin.Context) {
	if c.Request.Body != nil {
		limit := int64(MaxBodyBytes)
		if n, ok := bodyLimits[c.FullPath()]; ok {
			limit = n
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	}
	c.Next()
}
