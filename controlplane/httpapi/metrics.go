package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/laracopilot/controlplane/controlplane"
)

// Gauges reports the state the /metrics endpoint shows besides request
// counts: tenants by state (from the in-memory catalog) and the router's
// pools. Labels never carry a tenant: per-tenant series would grow with the
// fleet.
type Gauges interface {
	TenantCounts() map[[2]string]int // (status, provisioning) → count
	PoolStats() map[string]PoolStats // by tenant server
	// SchemaStates counts the ready tenants of each server by where their
	// schema is against the binary's latest: at_latest, behind, ahead
	// (migrated by a newer binary), dirty (a migration failed part-way) or
	// failed (its last migration failed, the schema clean).
	SchemaStates() map[[2]string]int // (server, state) → count
}

// PoolStats is what the tenant database router holds.
type PoolStats struct {
	DatabasePools, SchemaHandles, OpenConns, InUse, ServerMaxConns, Waiting int
	Opened, Taken                                                           int64
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	refused  *prometheus.CounterVec
	registry *prometheus.Registry
}

func newMetrics(g Gauges, health func() map[string]error, ready func(context.Context) error, b controlplane.Build, extra []prometheus.Collector) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_http_requests_total",
			Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "controlplane_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "controlplane_tenant_requests_refused_total",
			Help: "Tenant requests answered 429 or 503, by the tenant's server and error code: rate_limited (the tenant's burst), unavailable (the server down, refusing, or its connection budget spent), tenant_unavailable (the tenant not ready on it).",
		}, []string{"server", "code"}),
		registry: prometheus.NewRegistry(),
	}
	m.registry.MustRegister(m.requests, m.latency, m.refused, &stateCollector{g: g, health: health, ready: ready},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registry.MustRegister(extra...)
	// Which binary runs where: join it to other series on instance, and
	// alert when replicas disagree after a rollout.
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "controlplane_build_info",
		Help: "The control plane binary: version, commit, Go version and the latest catalog and tenant migrations it carries (always 1).",
	}, []string{"version", "commit", "go_version", "catalog_schema", "tenant_schema"})
	info.WithLabelValues(b.Version, b.Commit, b.GoVersion, strconv.FormatUint(uint64(b.CatalogSchema), 10), strconv.FormatUint(uint64(b.TenantSchema), 10)).Set(1)
	m.registry.MustRegister(info)
	return m
}

// observe is the middleware that counts and times every request.
func (m *metrics) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
	m.latency.WithLabelValues(route, c.Request.Method).Observe(time.Since(start).Seconds())
}

// handler renders the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

var (
	tenantsDesc = prometheus.NewDesc("controlplane_tenants", "Tenants in the catalog by status and provisioning state.", []string{"status", "provisioning"}, nil)
	poolsDesc   = prometheus.NewDesc("controlplane_tenant_pools_open", "Tenant database connection pools open (database mode).", []string{"server"}, nil)
	handlesDesc = prometheus.NewDesc("controlplane_tenant_schema_handles", "Cached schema-mode tenant handles (they hold no connection).", []string{"server"}, nil)
	connsDesc   = prometheus.NewDesc("controlplane_tenant_connections_open", "Connections open to the tenant server by the router.", []string{"server"}, nil)
	inUseDesc   = prometheus.NewDesc("controlplane_tenant_connections_in_use", "Router connections serving a query now.", []string{"server"}, nil)
	budgetDesc  = prometheus.NewDesc("controlplane_tenant_connections_max", "The router's connection budget on the tenant server.", []string{"server"}, nil)
	waitDesc    = prometheus.NewDesc("controlplane_tenant_connections_waiting", "Requests waiting for a connection because every connection of the budget is busy.", []string{"server"}, nil)
	openedDesc  = prometheus.NewDesc("controlplane_tenant_connections_opened_total", "Connections the router opened to the tenant server.", []string{"server"}, nil)
	schemaDesc  = prometheus.NewDesc("controlplane_tenant_schemas", "Ready tenants by tenant server and where their schema is against this binary's latest migration: at_latest, behind, ahead, dirty or failed (as migrate tenants status counts them).", []string{"server", "state"}, nil)
	serverUp    = prometheus.NewDesc("controlplane_tenant_server_up", "Whether the tenant server answered its last health check (every 5 seconds): 1 or 0.", []string{"server"}, nil)
	catalogUp   = prometheus.NewDesc("controlplane_catalog_up", "Whether the catalog answered and is at this binary's migration when scraped (what /readyz checks): 1 or 0.", nil, nil)
	takenDesc   = prometheus.NewDesc("controlplane_tenant_connections_taken_total", "Idle connections the router closed to give their budget slot to another tenant's request.", []string{"server"}, nil)
)

// stateCollector reads tenants and pools at scrape time.
type stateCollector struct {
	g      Gauges
	health func() map[string]error         // each tenant server's last check
	ready  func(ctx context.Context) error // the catalog, as /readyz asks
}

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{tenantsDesc, poolsDesc, handlesDesc, connsDesc, inUseDesc, budgetDesc, waitDesc, openedDesc, takenDesc, schemaDesc, serverUp, catalogUp} {
		ch <- d
	}
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	counts := s.g.TenantCounts()
	for _, st := range []controlplane.Status{controlplane.StatusActive, controlplane.StatusSuspended, controlplane.StatusDeleted} {
		for _, pr := range []controlplane.ProvisionState{controlplane.ProvisionPending, controlplane.ProvisionReady, controlplane.ProvisionFailed, controlplane.ProvisionDeleting} {
			n := counts[[2]string{string(st), string(pr)}]
			ch <- prometheus.MustNewConstMetric(tenantsDesc, prometheus.GaugeValue, float64(n), string(st), string(pr))
		}
	}
	// By server (its registry name, never a tenant's): each has a router
	// and a budget of its own.
	for server, p := range s.g.PoolStats() {
		ch <- prometheus.MustNewConstMetric(poolsDesc, prometheus.GaugeValue, float64(p.DatabasePools), server)
		ch <- prometheus.MustNewConstMetric(handlesDesc, prometheus.GaugeValue, float64(p.SchemaHandles), server)
		ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(p.OpenConns), server)
		ch <- prometheus.MustNewConstMetric(inUseDesc, prometheus.GaugeValue, float64(p.InUse), server)
		ch <- prometheus.MustNewConstMetric(budgetDesc, prometheus.GaugeValue, float64(p.ServerMaxConns), server)
		ch <- prometheus.MustNewConstMetric(waitDesc, prometheus.GaugeValue, float64(p.Waiting), server)
		ch <- prometheus.MustNewConstMetric(openedDesc, prometheus.CounterValue, float64(p.Opened), server)
		ch <- prometheus.MustNewConstMetric(takenDesc, prometheus.CounterValue, float64(p.Taken), server)
	}
	for k, n := range s.g.SchemaStates() {
		ch <- prometheus.MustNewConstMetric(schemaDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	if s.health != nil {
		for server, err := range s.health() {
			ch <- prometheus.MustNewConstMetric(serverUp, prometheus.GaugeValue, map[bool]float64{true: 1}[err == nil], server)
		}
	}
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ch <- prometheus.MustNewConstMetric(catalogUp, prometheus.GaugeValue, map[bool]float64{true: 1}[s.ready(ctx) == nil])
	}
}
