// Package router routes a tenant's requests to its data: for each request
// a *gorm.DB bound to the tenant's own database (a pool per tenant, in an
// LRU) or its own schema (shared connections in lanes), within a
// connection budget per tenant server (budget.go, sizing.go), and through
// a PgBouncer when one is configured (pooler.go). Finding the tenant of a
// request (Host header or slug) is controlplane/httpapi/tenancy.go's.
package router

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
	"golang.org/x/sync/singleflight"
	"gorm.io/gorm"
)

// Config bounds what the router may hold open on the tenant server.
type Config struct {
	URL string // the tenant server, as for the Provisioner
	// PoolerURL, when set, is a transaction pooler (PgBouncer) in front of
	// the tenant server, with the same database names and roles: every
	// routed connection (database pools and schema lanes) dials it instead
	// of URL, and runs its statements unprepared (pooler.go). The budget
	// (ServerMaxConns) then bounds the router's client connections to the
	// pooler, each of which holds at most one server connection at a time.
	PoolerURL string
	// PoolsMax is how many tenant databases keep a pool open at once
	// (database mode); the least recently used one is closed beyond it.
	PoolsMax int
	// PoolMaxConns is the size of one tenant database's pool.
	PoolMaxConns int
	// PoolIdleTimeout closes the pool of a tenant database unused that long.
	PoolIdleTimeout time.Duration
	// SchemaPoolConns is how many connections all schema-mode tenants
	// share (in lanes of schemaLaneConns, a tenant always on the same).
	SchemaPoolConns int
	// ServerMaxConns caps the connections all routed pools together hold to
	// the server, whatever the number of tenants. A request that finds the
	// budget spent waits up to AcquireTimeout for a connection to free up.
	ServerMaxConns int
	AcquireTimeout time.Duration
	// GrowAfter is how long a database-mode request waits for one of its
	// tenant's busy connections before the tenant's pool opens another
	// (see limiter); 0 is 5 ms.
	GrowAfter time.Duration
	// SchemaTenants, if set, counts the schema-mode tenants: a lane serving
	// more than its statement cache holds runs statements unprepared (see
	// laneMode).
	SchemaTenants func() int
	// QueueMax is how many more requests of one tenant may wait for a
	// connection when as many as it may use at once (PoolMaxConns in
	// database mode, half a lane in schema mode) are running; beyond it a
	// request is refused at once (429 rate_limited), so that one tenant's
	// burst takes its share of the server and no more.
	QueueMax int
	// RoleSecret gives the passwords of tenant database roles: a tenant
	// database's pool connects as that tenant's role only.
	RoleSecret tenantdb.RoleSecret
	// Latest is the newest tenant migration this binary carries. When a
	// tenant's pool (or schema handle) is opened, the router reads the
	// tenant's real migrations table and refuses (503) a tenant that is
	// dirty, newer than Latest, or older than the catalog records (a
	// migration taken away out of band, by the stock CLI or a restore):
	// code that expects a table must not run against a tenant lacking it.
	Latest uint
}

// Router hands each tenant request a *gorm.DB bound to that tenant's
// database or schema.
//
// Database mode: one small pool per tenant database, in an LRU of at most
// PoolsMax, closed when evicted or idle. Schema mode: the connections shared
// by all schema tenants; each tenant's *gorm.DB writes schema-qualified
// table names ("tenant_42"."extensions"), so a connection carries no tenant
// state at all (no SET search_path that could leak to the next request) and
// a read is one statement.
//
// The shared schema connections are split in lanes of schemaLaneConns, and
// a tenant always uses the same lane (by a hash of its schema). A backend
// then meets only its lane's share of the schemas, so it keeps their
// catalog entries warm and its memory grows with that share, not with the
// fleet; and a lane can cache prepared statements, which a backend meeting
// every schema could not (a tenant's statements name its schema, so each
// tenant has its own). Measured (docs/BENCHMARKS.md): with every connection
// serving every one of 1,000 schemas in exec mode, PostgreSQL spent 4 times
// the baseline's CPU per read. A lane also bounds how much of the shared
// pool one busy tenant can take from the others. Within its lane a tenant
// has a home connection, used whenever it is free (schema.go): a schema's
// catalog entries are then cached in about one backend, not in each of the
// lane's.
//
// One round trip per routed read: gorm's default transaction around writes
// is off (a single statement is atomic anyway), and pools cache prepared
// statements, so a warm connection runs a query in one round trip. Through a
// transaction pooler (Config.PoolerURL), which cannot keep a prepared
// statement, statements run unprepared, still in one round trip (pooler.go).
type Router struct {
	cfg    Config
	server *pgx.ConnConfig
	budget *budget
	limits *limits

	lanes      []*lane                           // schema mode: the shared connections
	schemas    *lru.Cache[string, *schemaHandle] // schema mode handles, by schema name
	schemaBase *gorm.DB                          // schema mode: the handle every slot's is a session of

	base  *gorm.DB   // database mode: the handle every pool's is a session of
	mu    sync.Mutex // guards pools' refs and eviction
	pools *lru.Cache[string, *pool]

	verified *expirable.LRU[verdict, struct{}] // schemas checked lately
	checks   singleflight.Group                // schema checks under way, by database or schema name

	stop chan struct{}
	done chan struct{}
}

// New starts a router on the tenant server. Close it when done.
func New(c Config) (*Router, error) {
	cfg, err := pgx.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("tenant server: invalid connection string")
	}
	if c.PoolerURL != "" {
		if cfg, err = pgx.ParseConfig(c.PoolerURL); err != nil {
			return nil, fmt.Errorf("tenant pooler: invalid connection string")
		}
		if err := throughPooler(cfg, c.PoolerURL); err != nil {
			return nil, err
		}
	}
	cfg.DialFunc = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 5 * time.Minute}).DialContext
	r := &Router{
		cfg:      c,
		server:   cfg,
		budget:   newBudget(c.ServerMaxConns, c.AcquireTimeout),
		limits:   &limits{database: c.PoolMaxConns, schema: schemaLaneConns / 2, queued: c.QueueMax, growAfter: cmp.Or(c.GrowAfter, growAfter), timeout: c.AcquireTimeout},
		verified: expirable.NewLRU[verdict, struct{}](verdictsKept, nil, verdictTTL),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	r.limits.room = r.budget.room
	if r.pools, err = lru.NewWithEvict(c.PoolsMax, r.evicted); err != nil {
		return nil, err
	}
	// A schema handle is a gorm session naming its schema (a few hundred
	// bytes): cheap to rebuild, kept so that a request does not allocate one.
	if r.schemas, err = lru.New[string, *schemaHandle](10 * c.PoolsMax); err != nil {
		return nil, err
	}
	// Its own connections are none: a statement that ran on it, rather
	// than on a tenant pool's session, would fail instead of reaching a
	// database no tenant chose.
	if r.base, err = openGorm(noPool{}); err != nil {
		return nil, err
	}

	// One handle for every slot of every lane, with the callback that
	// names each table's schema: models are parsed once.
	if r.schemaBase, err = openGorm(noPool{}); err == nil {
		err = qualifyTables(r.schemaBase)
	}
	if err != nil {
		return nil, err
	}
	for _, n := range laneSizes(c.SchemaPoolConns) {
		var slots []*slot
		for range n {
			k := newConnector(r.budget, *r.server, stdlib.OptionBeforeConnect(r.laneMode))
			conns := sql.OpenDB(k)
			conns.SetMaxOpenConns(1)
			conns.SetMaxIdleConns(1)
			// A backend caches the metadata of every relation it touches
			// and the plans of the statements it prepared; recycle them now
			// and then so that tenants gone or moved do not stay in its
			// memory.
			conns.SetConnMaxLifetime(10 * time.Minute)
			conns.SetConnMaxIdleTime(c.PoolIdleTimeout)
			g := r.schemaBase.Session(&gorm.Session{Context: context.Background()})
			g.Statement.ConnPool = conns
			slots = append(slots, &slot{sql: conns, conns: k, gorm: g})
		}
		r.lanes = append(r.lanes, newLane(slots))
	}

	go r.janitor()
	return r, nil
}

// Acquire returns the *gorm.DB of tenant t and a release func, to be called
// once the request no longer uses it: a pool is never closed under a
// request that holds it. It waits (within ctx and AcquireTimeout) while
// the tenant runs as many requests as it may at once, and refuses one past
// its queue (429 rate_limited).
func (r *Router) Acquire(ctx context.Context, t *controlplane.Tenant) (*gorm.DB, func(), error) {
	switch t.Isolation {
	case controlplane.IsolationSchema:
		done, err := r.limits.enter(ctx, t, nil)
		if err != nil {
			return nil, nil, err
		}
		h, err := r.schemaDB(t)
		if err != nil {
			done()
			return nil, nil, err
		}
		db, leave, err := h.take(ctx, r.cfg.AcquireTimeout)
		if err != nil {
			done()
			return nil, nil, err
		}
		return db, func() { leave(); done() }, nil
	case controlplane.IsolationDatabase:
		return r.databaseDB(ctx, t)
	}
	return nil, nil, fmt.Errorf("tenant %d: unknown isolation %q", t.ID, t.Isolation)
}

// Forget closes the pool of a tenant database that is about to be dropped
// (or was), waiting for the server to have let go of its idle connections,
// and forgets the tenant's schema handle and its schema check: the next
// request checks the schema again.
func (r *Router) Forget(t *controlplane.Tenant) {
	r.limits.forget(t.ID)
	if p := r.detach(t); p != nil {
		p.closeNow()
	}
}

// Reset is Forget without waiting: the tenant's pool leaves the router at
// once (the next request opens a new one) and is closed in the
// background, once the requests using it end.
func (r *Router) Reset(t *controlplane.Tenant) {
	if p := r.detach(t); p != nil {
		go p.closeNow()
	}
}

// detach takes t's schema handle, schema check and pool out of the router
// and returns the pool (nil if none), marked closing, for the caller to
// close.
func (r *Router) detach(t *controlplane.Tenant) *pool {
	r.schemas.Remove(t.DBName)
	r.verified.Remove(verdict{t.ID, t.DBName, t.SchemaVersion})
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.pools.Peek(t.DBName)
	if !ok {
		return nil
	}
	p.conns.closing.Store(true)
	r.pools.Remove(t.DBName)
	return p
}

// janitor closes tenant database pools left unused for PoolIdleTimeout.
func (r *Router) janitor() {
	defer close(r.done)
	every := max(r.cfg.PoolIdleTimeout/4, 100*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		cutoff := time.Now().Add(-r.cfg.PoolIdleTimeout).UnixNano()
		r.mu.Lock()
		for _, name := range r.pools.Keys() { // oldest first
			if p, ok := r.pools.Peek(name); ok && p.refs == 0 && p.lastUsed.Load() < cutoff {
				r.pools.Remove(name)
			}
		}
		r.mu.Unlock()
	}
}

// Stats describes what the router holds, for metrics.
type Stats struct {
	DatabasePools  int   // open tenant database pools
	SchemaHandles  int   // cached schema-mode handles
	OpenConns      int   // connections open to the server (or connecting)
	InUse          int   // of which serving a query now
	ServerMaxConns int   // the budget
	Waiting        int   // connects waiting for the budget
	Opened         int64 // connections made since start
	Taken          int64 // idle connections closed for another's slot, since start
}

// Stats returns a snapshot of the router's pools.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	pools := r.pools.Values()
	r.mu.Unlock()
	b := r.budget
	s := Stats{DatabasePools: len(pools), SchemaHandles: r.schemas.Len(), OpenConns: int(b.open.Load()), ServerMaxConns: b.max,
		Waiting: int(b.waiting.Load()), Opened: b.opened.Load(), Taken: b.taken.Load()}
	for _, l := range r.lanes {
		for _, sl := range l.slots {
			s.InUse += sl.sql.Stats().InUse
		}
	}
	for _, p := range pools {
		s.InUse += p.sql.Stats().InUse
	}
	return s
}

// Close closes every pool, waiting for the server to have let go of the
// idle connections; those of requests still running close as they end.
func (r *Router) Close() error {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	pools := r.pools.Values()
	for _, p := range pools {
		p.conns.closing.Store(true)
	}
	r.pools.Purge() // evicts: closes pools not in use
	r.mu.Unlock()
	r.schemas.Purge()
	var errs []error
	for _, p := range pools {
		p.closeNow()
	}
	for _, l := range r.lanes {
		for _, sl := range l.slots {
			sl.conns.closing.Store(true)
			errs = append(errs, sl.sql.Close())
		}
	}
	return errors.Join(errs...)
}

// noPool is the connections of the handle tenant pools' sessions derive
// from: none. gorm needs a pool to open a handle; every statement runs on a
// session's own.
type noPool struct{}

var errNoPool = errors.New("router: a statement ran on the base handle, not on a tenant's")

func (noPool) PrepareContext(context.Context, string) (*sql.Stmt, error) { return nil, errNoPool }
func (noPool) ExecContext(context.Context, string, ...any) (sql.Result, error) {
	return nil, errNoPool
}
func (noPool) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, errNoPool
}
func (noPool) QueryRowContext(context.Context, string, ...any) *sql.Row { return nil }
