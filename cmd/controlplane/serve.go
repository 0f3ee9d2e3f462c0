package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/catalog"
	"github.com/laracopilot/controlplane/controlplane/console"
	"github.com/laracopilot/controlplane/controlplane/httpapi"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/dids"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/servers"
)

func newServe() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the operator and tenant HTTP API",
		Long: `Serve migrates the catalog (unless MIGRATE_CATALOG=false), closes the catalog
and tenant server databases to other roles, sets the tenant roles' passwords if
the role secret changed since they were last set, finishes any tenant
provisioning a previous process left half-done, and serves the HTTP API on
LISTEN_ADDR (and /metrics alone on METRICS_ADDR, if set) until SIGINT/SIGTERM,
then drains in-flight requests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, log)
		},
	}
	config.BindFlags(cmd.Flags(), true)
	withSettings(cmd, true)
	return cmd
}

// App is the wired control plane: what serve runs, and what tests start.
type App struct {
	Catalog     *gorm.DB
	Store       *catalog.Store
	Provisioner *tenantdb.Provisioner
	Router      *router.Router
	Tenants     *controlplane.Tenants
	// Servers is the registry of tenant servers.
	Servers *controlplane.Servers
	// TenantServers reaches them: the default server's provisioner and
	// router (Provisioner, Router above), the others' opened on first use.
	TenantServers *servers.Set
	// LatestTenantSchema is the newest tenant migration this binary has.
	LatestTenantSchema uint
	// RoleSecret derives tenant database roles' passwords.
	RoleSecret tenantdb.RoleSecret
	// Reconciler repairs what crashes and outages leave (serve runs it).
	Reconciler *controlplane.Reconciler
	// Operations runs backups (and recovers the ones a crash left).
	Operations *controlplane.Operations
	// RolePasswords sets the roles' passwords from RoleSecret when they
	// were last set from another secret.
	RolePasswords *controlplane.RolePasswords
	// routing says whether this process routes tenant requests (serve):
	// then each tenant server opened later gets a router too.
	routing bool
	// background, set by serve, is the life of its background work: a
	// tenant server opened later starts its spare filler under it.
	background context.Context
	sparesMu   sync.Mutex
	spares     map[string]*controlplane.Spares // other servers' than the default
	Handler    http.Handler
	// MetricsHandler serves /metrics for METRICS_ADDR; nil when unset (then
	// Handler serves /metrics on admin hosts).
	MetricsHandler http.Handler
}

// Close releases the app's connections.
func (a *App) Close() {
	if a.TenantServers != nil {
		_ = a.TenantServers.Close() // the default server's included
	} else if a.Provisioner != nil {
		_ = a.Provisioner.Close()
	}
	if a.Catalog != nil {
		if db, err := a.Catalog.DB(); err == nil {
			_ = db.Close()
		}
	}
}

// openCore connects to the catalog (which must be migrated) and the tenant
// server, loads the tenant catalog and wires the tenant lifecycle: what
// every command needs. serve adds the router and the HTTP API.
func openCore(ctx context.Context, cfg config.Config, log *slog.Logger, tenantMigrations fs.FS) (*App, error) {
	app := &App{}
	var err error
	if app.Catalog, err = catalog.Open(ctx, cfg.DatabaseURL.Value()); err != nil {
		return nil, err
	}
	if err := catalog.CheckMigrated(ctx, app.Catalog); err != nil {
		app.Close()
		return nil, fmt.Errorf("%w (run: controlplane migrate catalog up)", err)
	}
	store := catalog.NewStore(app.Catalog)
	app.Store = store
	owner, err := store.Identity(ctx)
	if err != nil {
		app.Close()
		return nil, fmt.Errorf("read catalog identity: %w", err)
	}
	if err := store.LoadCache(ctx); err != nil {
		app.Close()
		return nil, fmt.Errorf("load the tenant catalog: %w", err)
	}
	app.RoleSecret = tenantdb.RoleSecret(cfg.TenantRoleSecret.Value())
	if len(app.RoleSecret) == 0 {
		// Random, made once and kept in the catalog, where no tenant role
		// reaches. Never derived from the catalog's identity: every tenant
		// database and role carries it in a COMMENT any login role reads.
		secret, err := store.GeneratedRoleSecret(ctx)
		if err != nil {
			app.Close()
			return nil, fmt.Errorf("read the tenant role secret: %w", err)
		}
		app.RoleSecret = secret
		log.Info("TENANT_ROLE_SECRET is not set: tenant role passwords derive from the random secret kept in the catalog database (docs/SECURITY.md)")
	}
	app.Provisioner, err = tenantdb.NewProvisioner(ctx, tenantdb.ProvisionerConfig{
		URL:        cfg.TenantDatabaseURL.Value(),
		Prefix:     cfg.TenantDBPrefix,
		Owner:      owner,
		Migrations: tenantMigrations,
		RoleSecret: app.RoleSecret,
		PgBinDir:   cfg.PgBinDir,
	})
	if err != nil {
		app.Close()
		return nil, err
	}
	app.Servers = newServers(cfg, store, log)
	app.TenantServers = servers.New(&servers.Conn{Name: controlplane.DefaultServer, Provisioner: app.Provisioner}, func(ctx context.Context, name string) (*servers.Conn, error) {
		return app.openServer(ctx, cfg, log, owner, tenantMigrations, name)
	})
	app.TenantServers.Log = log
	store.OnRelease = app.TenantServers.Reset
	app.RolePasswords = &controlplane.RolePasswords{Catalog: store, Roles: app.TenantServers, Tag: app.RoleSecret.Tag()}
	if app.LatestTenantSchema, err = migrations.Latest(tenantMigrations); err != nil {
		app.Close()
		return nil, err
	}
	app.Operations = &controlplane.Operations{Store: store, Locks: store, Dumper: app.TenantServers, Restorer: app.TenantServers, Migrator: app.TenantServers,
		BackupDir: cfg.BackupDir, Latest: app.LatestTenantSchema, Every: cfg.BackupSchedule, Keep: cfg.BackupKeep, Concurrency: 2, AsideGrace: cfg.TenantDeleteGrace, Log: log,
		Mover: app.TenantServers, Moves: store, CutoverTimeout: cfg.MoveCutoverTimeout, SlotTimeout: cfg.MoveSlotTimeout, MoveSourceGrace: cfg.MoveSourceGrace}
	app.Tenants = &controlplane.Tenants{
		Catalog:          store,
		Keys:             store,
		Idempotency:      store,
		Provisioner:      app.TenantServers,
		Placement:        &controlplane.Placement{Servers: store.ServerStates, Health: app.TenantServers.Health},
		DefaultIsolation: controlplane.Isolation(cfg.TenantIsolation),
		ProvisionTimeout: cfg.ProvisionTimeout,
		DeleteGrace:      cfg.TenantDeleteGrace,
		FinalBackup:      app.Operations.BackupLocked,
		PurgeElsewhere:   app.Operations.DropMoveAsides,
		Copies:           app.Operations,
		Log:              log,
	}
	// With 0 wanted, creates claim none and the reconciler drops any left.
	app.Tenants.Spares = app.newSpares(cfg, log, controlplane.DefaultServer, app.Provisioner)
	app.Tenants.SparesOn = func(name string) *controlplane.Spares {
		app.sparesMu.Lock()
		defer app.sparesMu.Unlock()
		return app.spares[name]
	}
	return app, nil
}

// newServers wires the registry of tenant servers on the catalog store.
func newServers(cfg config.Config, store *catalog.Store, log *slog.Logger) *controlplane.Servers {
	key, _ := cfg.ServerKey() // validated by Load
	return &controlplane.Servers{Store: store, Key: key, DefaultURL: cfg.TenantDatabaseURL.Value(), Log: log}
}

// newApp connects to the catalog and the tenant server and wires the domain
// and the HTTP API. It migrates the catalog first when cfg asks for it.
func newApp(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	return newAppWith(ctx, cfg, log, migrations.Tenant)
}

// newAppWith is newApp with another set of tenant migrations (tests inject
// broken ones).
func newAppWith(ctx context.Context, cfg config.Config, log *slog.Logger, tenantMigrations fs.FS) (*App, error) {
	if cfg.MigrateCatalog {
		v, err := catalog.Migrate(cfg.DatabaseURL.Value())
		if err != nil {
			return nil, err
		}
		log.Info("catalog migrated", "version", v)
	}
	if err := closeDatabases(ctx, cfg, log); err != nil {
		return nil, err
	}
	app, err := openCore(ctx, cfg, log, tenantMigrations)
	if err != nil {
		return nil, err
	}
	// This process routes: a tenant server opened from now on (by the role
	// password sync below, say) gets its router with it.
	app.routing = true
	// Every tenant made so far is on TENANT_DATABASE_URL's server: the
	// registry names it default, with the URL of this start.
	if err := app.Servers.RegisterDefault(ctx); err != nil {
		app.Close()
		return nil, err
	}
	// Before the router opens a pool: with a new secret (or the first start
	// after an upgrade), the roles must have its passwords first.
	if err := app.syncRolePasswords(ctx, log); err != nil {
		app.Close()
		return nil, err
	}
	if err := checkPooler(ctx, cfg, log); err != nil {
		app.Close()
		return nil, err
	}
	// With a pooler, only the router goes through it: everything else on
	// the tenant server (provisioning, migrations, version reads, the
	// reconciler, the sizing above) needs session state and goes direct.
	app.Router, err = app.newRouter(ctx, cfg, log, controlplane.DefaultServer, cfg.TenantDatabaseURL.Value(), cfg.TenantPoolerURL.Value())
	if err != nil {
		app.Close()
		return nil, err
	}
	app.TenantServers.Default().Router = app.Router
	app.Provisioner.BeforeDrop = app.Router.Forget
	store := app.Store
	proxies, err := cfg.TrustedProxyPrefixes()
	if err != nil {
		app.Close()
		return nil, err
	}
	operations := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "controlplane_operations_total",
		Help: "Operations (backups, restores, moves) that ended, by kind and state (succeeded, failed, cancelled), in this process.",
	}, []string{"kind", "state"})
	app.Operations.Observe = func(kind controlplane.OperationKind, state controlplane.OperationState) {
		operations.WithLabelValues(string(kind), string(state)).Inc()
	}
	provisioning := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "controlplane_provisioning_duration_seconds",
		Help:    "How long creating a tenant's database or schema took, by isolation and outcome (ready, failed, unavailable), in this process.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"isolation", "outcome"})
	app.Tenants.ObserveProvisioning = func(iso controlplane.Isolation, outcome string, took time.Duration) {
		provisioning.WithLabelValues(string(iso), outcome).Observe(took.Seconds())
	}
	reconciled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "controlplane_reconciled_total",
		Help: "Repairs by the reconciler, by kind (tenant, did, template, operation, backup, purge, restore-aside) and outcome.",
	}, []string{"kind", "outcome"})
	app.Reconciler = &controlplane.Reconciler{
		Tenants: app.Tenants,
		Lock:    app.Store.TryLockReconciler,
		Steps: []controlplane.ReconcileStep{
			{Kind: "did", Run: func(ctx context.Context) (int, error) { return app.ReconcileDIDs(ctx, didGrace) }},
			{Kind: "template", Run: app.TenantServers.DropHalfBuiltTemplates},
			{Kind: "operation", Run: app.Operations.Recover},
			{Kind: "backup", Run: app.Operations.Schedule},
			{Kind: "purge", Run: app.Tenants.Purge},
			{Kind: "restore-aside", Run: app.Operations.DropAsides},
		},
		Period:  cfg.ReconcileInterval,
		Grace:   time.Minute,
		Observe: func(kind, outcome string, n int) { reconciled.WithLabelValues(kind, outcome).Add(float64(n)) },
		Log:     log,
	}
	g := gauges{cache: store.Cache(), servers: app.TenantServers, latest: app.LatestTenantSchema}
	srv := &httpapi.Server{
		Tenants:            app.Tenants,
		Servers:            app.Servers,
		Operations:         app.Operations,
		Directory:          store.Cache(),
		DIDIndex:           store,
		Router:             app.TenantServers,
		Gauges:             g,
		AdminHosts:         cfg.AdminHosts,
		Auth:               httpapi.Auth{AdminToken: cfg.AdminToken.Value(), Keys: store.Keys(), TrustedProxies: proxies},
		Fleet:              store,
		LatestTenantSchema: app.LatestTenantSchema,
		SeparateMetrics:    cfg.MetricsAddr != "",
		Ready:              func(ctx context.Context) error { return catalog.CheckMigrated(ctx, app.Catalog) },
		ServerHealth:       app.TenantServers.Healths,
		Log:                log,
		Collectors:         []prometheus.Collector{reconciled, operations, provisioning, backupCollector{app.Operations}},
		Build:              buildInfo(),
	}
	history, err := migrations.ReadHistory(tenantMigrations)
	if err != nil {
		app.Close()
		return nil, err
	}
	// The fleet console, on the same services as the API; httpapi mounts
	// it under /console on admin hosts only.
	srv.Console = (&console.Console{
		Tenants:    app.Tenants,
		Servers:    app.Servers,
		Operations: app.Operations,
		Sessions:   store,
		Fleet:      store.Cache(),
		Pools:      g.poolUse,
		Latest:     app.LatestTenantSchema,
		Versions:   history.Versions(),
		AdminToken: cfg.AdminToken.Value(),
		Build:      srv.Build,
		Log:        log,
	}).Handler()
	app.Handler = srv.Handler()
	if srv.SeparateMetrics {
		app.MetricsHandler = srv.MetricsHandler()
	}
	return app, nil
}

// newRouter is the router of one tenant server (url), through poolerURL
// if set, sized from that server.
func (a *App) newRouter(ctx context.Context, cfg config.Config, log *slog.Logger, name, url, poolerURL string) (*router.Router, error) {
	budget, poolsMax := routerSizes(ctx, cfg, log.With("server", name), url, poolerURL != "")
	return router.New(router.Config{
		URL:             url,
		PoolerURL:       poolerURL,
		PoolsMax:        poolsMax,
		PoolMaxConns:    cfg.TenantPoolMaxConns,
		PoolIdleTimeout: cfg.TenantPoolIdleTimeout,
		SchemaPoolConns: cfg.TenantSchemaPoolConns,
		ServerMaxConns:  budget,
		AcquireTimeout:  cfg.TenantAcquireTimeout,
		QueueMax:        cfg.TenantQueueMax,
		SchemaTenants:   func() int { return a.schemaTenants(name) },
		RoleSecret:      a.RoleSecret,
		Latest:          a.LatestTenantSchema,
	})
}

// openServer opens a registered tenant server other than the default one:
// its provisioner, and its router when this process routes (serve). Its
// URL, password included, comes from the registry (Servers.ConnURL) and
// goes nowhere else. Traffic to it goes direct: TENANT_POOLER_URL is the
// default server's pooler.
func (a *App) openServer(ctx context.Context, cfg config.Config, log *slog.Logger, owner string, migs fs.FS, name string) (*servers.Conn, error) {
	url, err := a.Servers.ConnURL(ctx, name)
	if err != nil {
		return nil, err
	}
	p, err := tenantdb.NewProvisioner(ctx, tenantdb.ProvisionerConfig{URL: url, Prefix: cfg.TenantDBPrefix, Owner: owner, Migrations: migs, RoleSecret: a.RoleSecret, PgBinDir: cfg.PgBinDir})
	if err != nil {
		return nil, err
	}
	c := &servers.Conn{Name: name, Provisioner: p}
	spares := a.newSpares(cfg, log.With("server", name), name, p)
	a.sparesMu.Lock()
	if a.spares == nil {
		a.spares = map[string]*controlplane.Spares{}
	}
	a.spares[name] = spares
	a.sparesMu.Unlock()
	stop := func() {}
	if a.background != nil {
		fctx, cancel := context.WithCancel(a.background)
		done := make(chan struct{})
		go func() {
			defer close(done)
			spares.Run(fctx)
		}()
		stop = func() { cancel(); <-done }
	}
	c.OnClose = func() { // the server was removed: its filler goes first
		stop()
		a.sparesMu.Lock()
		if a.spares[name] == spares {
			delete(a.spares, name)
		}
		a.sparesMu.Unlock()
	}
	if a.routing {
		if c.Router, err = a.newRouter(ctx, cfg, log, name, url, ""); err != nil {
			_ = c.Close() // its filler too
			return nil, err
		}
		p.BeforeDrop = c.Router.Forget
	}
	log.Info("tenant server opened", "server", name)
	return c, nil
}

// newSpares is the spare filler of tenant server name: TENANT_SPARE_DATABASES
// spares while the server is active, none while it is draining or disabled.
func (a *App) newSpares(cfg config.Config, log *slog.Logger, name string, p *tenantdb.Provisioner) *controlplane.Spares {
	sp := controlplane.NewSpares(a.Store.SparesOn(name), p, cfg.TenantSpareDatabases, log)
	sp.Active = func(ctx context.Context) bool {
		s, err := a.Store.Server(ctx, name)
		// The catalog unreachable: keep what is there, decide later.
		return err != nil || s.Status == controlplane.ServerActive
	}
	return sp
}

// routerSizes is the router's connection budget and pool count: as set,
// or (0, the default) derived from the tenant server, logged once with the
// numbers it came from; a setting that cannot fit the server is warned
// about, once, with the numbers. Through a pooler (TENANT_POOLER_URL) the
// budget is still the server's: it then bounds the router's client
// connections to the pooler, each holding at most one server connection at
// a time, so it still bounds the server connections this replica keeps
// busy (docs/OPERATIONS.md, "Behind PgBouncer").
func routerSizes(ctx context.Context, cfg config.Config, log *slog.Logger, url string, pooled bool) (budget, poolsMax int) {
	budget, poolsMax = cfg.TenantServerMaxConns, cfg.TenantPoolsMax
	catalogHere := sameServer(cfg.DatabaseURL.Value(), url)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sz, err := router.SizeFromServer(sctx, url, catalogHere, catalog.MaxOpenConns)
	switch {
	case err != nil && budget == 0:
		budget = 60
		log.Warn("tenant connection budget: cannot read the tenant server's limits; using 60 (set TENANT_SERVER_MAX_CONNS)", "err", err)
	case err != nil:
	case budget == 0:
		budget = sz.Budget
	case budget > sz.Budget:
		log.Warn("TENANT_SERVER_MAX_CONNS is more than the tenant server leaves: requests may fail to connect (too many clients) before the router's budget stops them",
			"tenant_server_max_conns", budget, "max_connections", sz.MaxConnections, "reserved", sz.Reserved, "in_use", sz.InUse, "headroom", sz.Headroom, "own_pools", sz.Own, "fits", sz.Budget)
	}
	budget = max(budget, cfg.TenantPoolMaxConns, cfg.TenantSchemaPoolConns)
	if poolsMax == 0 {
		// A pool without connections costs a few KB: keep more of them
		// than the budget could keep connections for, so that a tenant
		// whose connection the budget took back keeps its pool.
		poolsMax = 4 * budget
	}
	log.Info("tenant connection budget", "budget", budget, "pools_max", poolsMax, "schema_conns", cfg.TenantSchemaPoolConns,
		"derived", cfg.TenantServerMaxConns == 0, "max_connections", sz.MaxConnections, "reserved", sz.Reserved, "in_use", sz.InUse,
		"headroom", sz.Headroom, "own_pools", sz.Own, "through_pooler", pooled)
	return budget, poolsMax
}

// checkPooler makes sure TENANT_POOLER_URL, when set, leads to the same
// server, database and role as TENANT_DATABASE_URL: otherwise serve refuses
// to start, naming what differs. A pooler that cannot be reached now is a
// warning: tenant requests get 503 until it answers.
func checkPooler(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if cfg.TenantPoolerURL == "" {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := router.CheckPooler(pctx, cfg.TenantDatabaseURL.Value(), cfg.TenantPoolerURL.Value())
	var mismatch *router.PoolerMismatchError
	switch {
	case errors.As(err, &mismatch):
		return configError{fmt.Errorf("config: TENANT_POOLER_URL: %w", err)}
	case err != nil:
		log.Warn("tenant pooler: cannot check it at start; tenant requests fail (503) until it answers", "err", err)
	default:
		log.Info("tenant traffic goes through the pooler (TENANT_POOLER_URL)")
	}
	return nil
}

// sameServer reports whether two connection strings name the same server
// (host and port).
func sameServer(a, b string) bool {
	ca, errA := pgx.ParseConfig(a)
	cb, errB := pgx.ParseConfig(b)
	return errA == nil && errB == nil && ca.Host == cb.Host && ca.Port == cb.Port
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	b := buildInfo()
	log.Info("controlplane starting", "version", b.Version, "commit", b.Commit, "built", b.Date, "go", b.GoVersion,
		"catalog_schema", b.CatalogSchema, "tenant_schema", b.TenantSchema)
	if cfg.AdminToken == "" && !cfg.LoopbackListener() {
		return configError{fmt.Errorf("config: ADMIN_TOKEN: required when LISTEN_ADDR (%s) is not a loopback address: set ADMIN_TOKEN, or listen on 127.0.0.1", cfg.ListenAddr)}
	}
	// serve's live heap is mostly long-lived (the catalog cache, tenant
	// handles, the pools' statement caches), and with Go's default GOGC=100
	// the collector marks it all again after every allocation of its size:
	// 7.5 µs of CPU per routed read against 4.4 µs for the baseline
	// (profiles, docs/BENCHMARKS.md). Twice the headroom halves that, for a
	// heap of about 3 times the live data instead of 2. GOGC, if set, wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if cfg.AdminToken == "" {
		log.Warn("development mode: no ADMIN_TOKEN, so the operator API and tenant routes accept requests without credentials on this loopback listener")
	}
	app, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()

	// Keep the routing cache coherent with other replicas' changes.
	go app.Store.Listen(ctx, cfg.DatabaseURL.Value(), log)
	go app.flushKeyUse(ctx)

	// Finish what a previous process, or an outage, left half-done: at
	// start and then every half minute, in one replica at a time. It runs
	// beside the listener: tenants it works on are locked, and a request
	// for one of them gets a clear conflict rather than a long wait.
	go app.Reconciler.Run(ctx)

	// Keep spare tenant databases ready for creates to claim, and drop the
	// ones the catalog no longer wants.
	go app.Tenants.Spares.Run(ctx)
	app.background = ctx
	// Running operations end with the process (recorded as interrupted);
	// the shutdown waits for them to be recorded.
	defer app.Operations.Start(ctx)()

	// Check every tenant server that may take tenants: placement skips
	// one that does not answer, /readyz reports it.
	go app.TenantServers.Run(ctx, app.checkedServers, serverCheckPeriod)

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	servers := []listener{{ln: ln, srv: &http.Server{
		Handler:           app.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		// Creating a tenant waits for its database: leave room for it.
		WriteTimeout:   cfg.ProvisionTimeout + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}}}
	metricsAddr := ""
	if app.MetricsHandler != nil {
		// Bound before anything is served, so a taken METRICS_ADDR stops
		// the start instead of leaving a server that is never scraped.
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s (METRICS_ADDR): %w", cfg.MetricsAddr, err)
		}
		metricsAddr = mln.Addr().String()
		// A scrape has no body and a short answer: tight limits.
		servers = append(servers, listener{ln: mln, srv: &http.Server{
			Handler:           app.MetricsHandler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
		}})
	}
	log.Info("serving", "addr", ln.Addr().String(), "metrics_addr", metricsAddr, "default_isolation", cfg.TenantIsolation, "admin_token_set", cfg.AdminToken != "")
	errc := make(chan error, len(servers))
	for _, l := range servers {
		go func() { errc <- l.srv.Serve(l.ln) }()
	}
	var serveErr error
	select {
	case serveErr = <-errc:
		// One listener failed: stop the other too rather than run half.
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	for _, l := range servers {
		if err := l.srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) && serveErr == nil {
			serveErr = err
		}
	}
	return serveErr
}

// listener is one HTTP server of serve and the socket it serves.
type listener struct {
	ln  net.Listener
	srv *http.Server
}

// flushKeyUse writes API keys' last use to the catalog every half minute
// (and at shutdown), instead of one write per request.
func (a *App) flushKeyUse(ctx context.Context) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			a.Store.FlushKeyUse(flushCtx)
			cancel()
			return
		case <-tick.C:
			a.Store.FlushKeyUse(ctx)
		}
	}
}

// didGrace is how old an index row in flight must be before the reconciler
// touches it: younger ones belong to requests still running.
const didGrace = time.Minute

// serverCheckPeriod is how often serve checks its tenant servers.
const serverCheckPeriod = 5 * time.Second

// checkedServers names the registered servers that are not disabled (to
// check) and every registered server (servers.Lister).
func (a *App) checkedServers(ctx context.Context) (check, registered []string, err error) {
	list, err := a.Store.ServerStates(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range list {
		registered = append(registered, s.Name)
		if s.Status != controlplane.ServerDisabled {
			check = append(check, s.Name)
		}
	}
	return check, registered, nil
}

// schemaTenants counts the schema-mode tenants in the catalog (a walk of
// the in-memory cache: microseconds for 10,000, and called only when the
// router makes a schema connection).
func (a *App) schemaTenants(server string) int {
	n := 0
	a.Store.Cache().Each(func(t *controlplane.Tenant) {
		if t.Isolation == controlplane.IsolationSchema && t.ServerName() == server {
			n++
		}
	})
	return n
}

// ReconcileDIDs settles the DID index rows in flight for longer than
// grace, and says how many.
func (a *App) ReconcileDIDs(ctx context.Context, grace time.Duration) (int, error) {
	return dids.Reconcile(ctx, a.Store, grace, func(tenantID int64) (*dids.Store, func(), error) {
		t, ok := a.Store.Cache().ByID(tenantID)
		if !ok || t.Provisioning != controlplane.ProvisionReady {
			return nil, nil, nil
		}
		db, release, err := a.TenantServers.Acquire(ctx, t)
		if err != nil {
			return nil, nil, err
		}
		return &dids.Store{DB: db, Tenant: t}, release, nil
	})
}

// gauges adapts the catalog cache and the router to what /metrics shows.
type gauges struct {
	cache   *catalog.Cache
	servers *servers.Set
	latest  uint // the binary's latest tenant migration
}

func (g gauges) TenantCounts() map[[2]string]int {
	counts := map[[2]string]int{}
	g.cache.Each(func(t *controlplane.Tenant) { counts[[2]string{string(t.Status), string(t.Provisioning)}]++ })
	return counts
}

// SchemaStates classifies the ready tenants of each server as `migrate
// tenants status` does (controlplane.Summarize).
func (g gauges) SchemaStates() map[[2]string]int {
	var all []*controlplane.Tenant
	g.cache.Each(func(t *controlplane.Tenant) { all = append(all, t) })
	out := map[[2]string]int{}
	for server, s := range controlplane.SummarizeByServer(all, g.latest) {
		for state, n := range map[string]int{"at_latest": s.AtLatest, "behind": s.Behind, "ahead": s.Ahead, "dirty": s.Dirty, "failed": s.Failed} {
			if n > 0 {
				out[[2]string{server, state}] = n
			}
		}
	}
	return out
}

func (g gauges) PoolStats() map[string]httpapi.PoolStats {
	out := map[string]httpapi.PoolStats{}
	g.servers.Each(func(c *servers.Conn) {
		if c.Router == nil {
			return
		}
		s := c.Router.Stats()
		out[c.Name] = httpapi.PoolStats{DatabasePools: s.DatabasePools, SchemaHandles: s.SchemaHandles, OpenConns: s.OpenConns, InUse: s.InUse,
			ServerMaxConns: s.ServerMaxConns, Waiting: s.Waiting, Opened: s.Opened, Taken: s.Taken}
	})
	return out
}

// poolUse is PoolStats as the console's connection bars show them.
func (g gauges) poolUse() map[string]console.PoolUse {
	out := map[string]console.PoolUse{}
	for name, s := range g.PoolStats() {
		out[name] = console.PoolUse{Open: s.OpenConns, InUse: s.InUse, Waiting: s.Waiting, Budget: s.ServerMaxConns}
	}
	return out
}
