package tenantdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/sync/semaphore"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
)

// RouterConfig bounds what the router may hold open on the tenant server.
type RouterConfig struct {
	URL string // the tenant server, as for the Provisioner
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
	// RoleSecret gives the passwords of tenant database roles: a tenant
	// database's pool connects as that tenant's role only.
	RoleSecret RoleSecret
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
// pool one busy tenant can take from the others.
//
// One round trip per routed read: gorm's default transaction around writes
// is off (a single statement is atomic anyway), and pools cache prepared
// statements, so a warm connection runs a query in one round trip.
type Router struct {
	cfg    RouterConfig
	server *pgx.ConnConfig
	dialer net.Dialer
	budget *semaphore.Weighted
	open   atomic.Int64 // connections open to the server through the router

	lanes   []lane                       // schema mode: the shared connections
	schemas *lru.Cache[string, *gorm.DB] // schema mode handles, by schema name

	mu    sync.Mutex // guards pools' refs and eviction
	pools *lru.Cache[string, *pool]

	stop chan struct{}
	done chan struct{}
}

// lane is a share of the schema tenants' connections and the one gorm
// handle all its tenants' handles derive from.
type lane struct {
	sql  *sql.DB
	gorm *gorm.DB
}

// pool is one tenant database's connection pool.
type pool struct {
	sql      *sql.DB
	gorm     *gorm.DB
	refs     int  // requests using it (guarded by Router.mu)
	evicted  bool // out of the LRU: close when refs drops to 0
	lastUsed atomic.Int64

	checked  sync.Once // the schema check, by the pool's first request
	checkErr error
}

// NewRouter starts a router on the tenant server. Close it when done.
func NewRouter(c RouterConfig) (*Router, error) {
	cfg, err := pgx.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("tenant server: invalid connection string")
	}
	r := &Router{
		cfg:    c,
		server: cfg,
		dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 5 * time.Minute},
		budget: semaphore.NewWeighted(int64(c.ServerMaxConns)),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	r.server.DialFunc = r.dial
	if r.pools, err = lru.NewWithEvict(c.PoolsMax, r.evicted); err != nil {
		return nil, err
	}
	// A schema handle is a gorm session naming its schema (a few hundred
	// bytes): cheap to rebuild, kept so that a request does not allocate one.
	if r.schemas, err = lru.New[string, *gorm.DB](10 * c.PoolsMax); err != nil {
		return nil, err
	}

	for _, n := range laneSizes(c.SchemaPoolConns) {
		conns := stdlib.OpenDB(*r.server)
		conns.SetMaxOpenConns(n)
		conns.SetMaxIdleConns(n)
		// A backend caches the metadata of every relation it touches and
		// the plans of the statements it prepared; recycle them now and
		// then so that tenants gone or moved do not stay in its memory.
		conns.SetConnMaxLifetime(10 * time.Minute)
		conns.SetConnMaxIdleTime(c.PoolIdleTimeout)
		db, err := openGorm(conns)
		if err == nil {
			err = qualifyTables(db)
		}
		if err != nil {
			_ = conns.Close()
			for _, l := range r.lanes {
				_ = l.sql.Close()
			}
			return nil, err
		}
		r.lanes = append(r.lanes, lane{sql: conns, gorm: db})
	}

	go r.janitor()
	return r, nil
}

// Acquire returns the *gorm.DB of tenant t and a release func, to be called
// once the request no longer uses it: a pool is never closed under a
// request that holds it.
func (r *Router) Acquire(t *controlplane.Tenant) (*gorm.DB, func(), error) {
	switch t.Isolation {
	case controlplane.IsolationSchema:
		db, err := r.schemaDB(t)
		return db, func() {}, err
	case controlplane.IsolationDatabase:
		return r.databaseDB(t)
	}
	return nil, nil, fmt.Errorf("tenant %d: unknown isolation %q", t.ID, t.Isolation)
}

func (r *Router) schemaDB(t *controlplane.Tenant) (*gorm.DB, error) {
	name := t.DBName
	if db, ok := r.schemas.Get(name); ok {
		return db, nil
	}
	l := r.lane(name)
	if err := r.checkSchema(t, l.sql, quote(name)); err != nil {
		return nil, err
	}
	// A session (clone 2): every chain on it starts from a copy of this
	// statement, setting included, so requests may share it.
	db := l.gorm.Set(schemaSetting, name).Session(&gorm.Session{})
	r.schemas.Add(name, db)
	return db, nil
}

// checkSchema reads t's real migrations table (in schema, through conns)
// and says whether this binary may serve t; see RouterConfig.Latest.
func (r *Router) checkSchema(t *controlplane.Tenant, conns *sql.DB, schema string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n, v int64
	var dirty bool
	err := conns.QueryRowContext(ctx, `SELECT `+versionOf+` FROM `+schema+`.`+quote(migrations.Table)).Scan(&n, &v, &dirty)
	real := versionRead(n, v, dirty, err)
	unavailable := func(format string, args ...any) error {
		e := controlplane.Errorf(controlplane.TenantUnavailable, "tenant %s is not available: "+format, append([]any{t.Slug}, args...)...)
		e.Err = real.Err
		return e
	}
	switch {
	case real.Err != nil:
		return unavailable("its schema version cannot be read")
	case real.Dirty:
		return unavailable("its migrations are dirty at version %d (see controlplane migrate tenants status)", real.Version)
	case real.Version > r.cfg.Latest:
		return unavailable("it is at schema version %d, newer than this server knows (%d)", real.Version, r.cfg.Latest)
	case real.Version < t.SchemaVersion:
		return unavailable("its schema is at version %d, behind the %d the catalog records (migrated out of band; run controlplane migrate tenants up --tenant %s)", real.Version, t.SchemaVersion, t.Slug)
	}
	return nil
}

// schemaLaneConns is the size of a lane of the shared schema connections:
// enough for a tenant's concurrent requests to overlap, small enough that a
// backend meets a small share of the schemas.
const schemaLaneConns = 4

// laneSizes splits total connections in lanes of about schemaLaneConns
// (sizes differing by one at most), at least one lane.
func laneSizes(total int) []int {
	n := max(total/schemaLaneConns, 1)
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = max(total/n, 1)
		if i < total%n {
			sizes[i]++
		}
	}
	return sizes
}

// lane returns the shared connections the schema's tenant always uses.
func (r *Router) lane(schema string) lane {
	h := fnv.New32a()
	_, _ = h.Write([]byte(schema))
	return r.lanes[h.Sum32()%uint32(len(r.lanes))]
}

func (r *Router) databaseDB(t *controlplane.Tenant) (*gorm.DB, func(), error) {
	name := t.DBName
	r.mu.Lock()
	p, ok := r.pools.Get(name)
	if !ok {
		cfg := r.server.Copy()
		cfg.Database = name
		cfg.User, cfg.Password = name, r.cfg.RoleSecret.Password(name)
		sqlDB := stdlib.OpenDB(*cfg) // connects lazily
		sqlDB.SetMaxOpenConns(r.cfg.PoolMaxConns)
		// One warm connection per tenant database: with hundreds of pools,
		// more idle ones overrun the budget and turn into a churn of
		// reconnects (measured: 200 pools keeping 4 idle each against a
		// budget of 300 fell to 0.15× the baseline, keeping 1 gave 0.32×).
		sqlDB.SetMaxIdleConns(1)
		sqlDB.SetConnMaxIdleTime(r.cfg.PoolIdleTimeout)
		db, err := openGorm(sqlDB)
		if err != nil {
			r.mu.Unlock()
			_ = sqlDB.Close()
			return nil, nil, err
		}
		p = &pool{sql: sqlDB, gorm: db}
		r.pools.Add(name, p) // may evict (and close) the least recently used
	}
	p.refs++
	p.lastUsed.Store(time.Now().UnixNano())
	r.mu.Unlock()

	var once sync.Once
	release := func() {
		once.Do(func() {
			r.mu.Lock()
			p.refs--
			p.lastUsed.Store(time.Now().UnixNano())
			closeNow := p.evicted && p.refs == 0
			r.mu.Unlock()
			if closeNow {
				_ = p.sql.Close()
			}
		})
	}
	// The pool's first request checks the tenant's schema, the others
	// wait for its verdict. A refused tenant's pool is dropped, so the
	// next request checks again (after a repair, it passes).
	p.checked.Do(func() { p.checkErr = r.checkSchema(t, p.sql, "public") })
	if p.checkErr != nil {
		release()
		r.mu.Lock()
		if cur, ok := r.pools.Peek(name); ok && cur == p {
			r.pools.Remove(name)
		}
		r.mu.Unlock()
		return nil, nil, p.checkErr
	}
	return p.gorm, release, nil
}

// evicted runs (under r.mu) when the LRU drops a pool.
func (r *Router) evicted(_ string, p *pool) {
	p.evicted = true
	if p.refs == 0 {
		go p.sql.Close()
	}
}

// openGorm wraps conn in a gorm handle that retries a read whose cached
// statement went stale (retryStalePlan).
func openGorm(conn gorm.ConnPool) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: conn}), &gorm.Config{
		SkipDefaultTransaction: true,
		DisableAutomaticPing:   true,
		Logger:                 logger.Discard,
	})
	if err != nil {
		return nil, err
	}
	return db, db.Callback().Query().After("gorm:query").Register("tenantdb:retry_stale_plan", retryStalePlan)
}

// retryStalePlan runs a read once more when PostgreSQL refused its cached
// statement because a migration changed what it returns: pools cache
// prepared statements per connection, and gorm reads with SELECT *, so a
// migration that adds a column makes every connection's statement fail
// once ("cached plan must not change result type"). pgx has dropped the
// statement by then, so the retry prepares it again. Not inside a
// transaction, which PostgreSQL aborted: transactions go through Tx.
//
// Why not gorm's QueryFields (name the columns, so the result type does
// not change): it costs every read 21 allocations and 2.5 KB to build and
// scan the column list (measured), for an error a migration causes once
// per connection.
func retryStalePlan(db *gorm.DB) {
	var pgErr *pgconn.PgError
	if !errors.As(db.Error, &pgErr) || pgErr.Code != pgerrcode.FeatureNotSupported || !strings.Contains(pgErr.Message, "cached plan must not change result type") {
		return
	}
	if _, inTx := db.Statement.ConnPool.(*sql.Tx); inTx {
		return
	}
	db.Error, db.RowsAffected = nil, 0
	callbacks.Query(db) // the SQL is built already: this only runs it
}

// Tx runs fn in a transaction on db (a router handle). Its reads name their
// columns (gorm's QueryFields) instead of SELECT *: a cached statement gone
// stale after a migration (see retryStalePlan) cannot be retried inside a
// transaction PostgreSQL has aborted, but a statement that names its
// columns does not go stale when a column is added.
func Tx(ctx context.Context, db *gorm.DB, fn func(tx *gorm.DB) error) error {
	return db.WithContext(ctx).Session(&gorm.Session{QueryFields: true}).Transaction(fn)
}

// schemaSetting is the gorm setting that names a schema-mode handle's
// schema.
const schemaSetting = "tenantdb:schema"

// qualifyTables registers, on a lane's handle, the callback that writes the
// table of every gorm statement with its schema: "tenant_42"."extensions".
//
// Why not gorm's NamingStrategy with a table prefix, one handle per tenant:
// each handle then parses every model for itself (about 11 KB per tenant and
// model), and with thousands of tenants those parses were most of serve's
// live heap, and their rebuilds, on eviction, most of its CPU (measured,
// docs/BENCHMARKS.md). Here a model is parsed once per lane, and what is per
// tenant is one string.
func qualifyTables(db *gorm.DB) error {
	cb := db.Callback()
	return errors.Join(
		cb.Create().Before("gorm:create").Register("tenantdb:qualify", qualify),
		cb.Query().Before("gorm:query").Register("tenantdb:qualify", qualify),
		cb.Update().Before("gorm:update").Register("tenantdb:qualify", qualify),
		cb.Delete().Before("gorm:delete").Register("tenantdb:qualify", qualify),
		cb.Row().Before("gorm:row").Register("tenantdb:qualify", qualify),
	)
}

// qualify runs after gorm parsed the statement's model (Statement.Table is
// the bare table name) and before it builds the SQL: FROM, INSERT INTO,
// UPDATE and DELETE then name "schema"."table", while columns keep the bare
// table name as their qualifier, which PostgreSQL resolves to it. A
// statement without the setting (database mode) is left alone; raw SQL
// names its tables with Table.
func qualify(db *gorm.DB) {
	st := db.Statement
	s, ok := st.Settings.Load(schemaSetting)
	if !ok || st.Table == "" || st.TableExpr != nil {
		return
	}
	st.TableExpr = &clause.Expr{SQL: pgx.Identifier{s.(string), st.Table}.Sanitize()}
}

// Forget closes the pool of a tenant database that is about to be dropped
// (or was), and forgets a schema handle.
func (r *Router) Forget(t *controlplane.Tenant) {
	r.schemas.Remove(t.DBName)
	r.mu.Lock()
	r.pools.Remove(t.DBName)
	r.mu.Unlock()
}

// dial opens a connection to the server within the budget. When it is
// spent, idle connections of every pool are closed first (they hold budget
// without doing work), then the dial waits for a slot.
func (r *Router) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if !r.budget.TryAcquire(1) && !r.shedIdle() {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.AcquireTimeout)
		defer cancel()
		if err := r.budget.Acquire(wctx, 1); err != nil {
			return nil, &controlplane.Error{
				Code:    controlplane.Unavailable,
				Message: fmt.Sprintf("the tenant database server is at its connection budget (%d); retry shortly", r.cfg.ServerMaxConns),
				Err:     err,
			}
		}
	}
	c, err := r.dialer.DialContext(ctx, network, addr)
	if err != nil {
		r.budget.Release(1)
		return nil, err
	}
	r.open.Add(1)
	return &budgetConn{Conn: c, release: func() { r.open.Add(-1); r.budget.Release(1) }}, nil
}

// shedIdle closes idle connections, those of the least recently used
// tenant database pools first, until a slot of the budget is free (it then
// holds that slot for the caller) or every pool was shed; the shared schema
// pool goes last.
func (r *Router) shedIdle() bool {
	r.mu.Lock()
	pools := r.pools.Values() // oldest first
	r.mu.Unlock()
	for _, p := range pools {
		if p.sql.Stats().Idle == 0 {
			continue
		}
		p.sql.SetMaxIdleConns(0)
		p.sql.SetMaxIdleConns(1)
		if r.budget.TryAcquire(1) {
			return true
		}
	}
	for _, lane := range r.lanes {
		n := lane.sql.Stats().MaxOpenConnections
		lane.sql.SetMaxIdleConns(0)
		lane.sql.SetMaxIdleConns(n)
		if r.budget.TryAcquire(1) {
			return true
		}
	}
	return false
}

// budgetConn gives its budget slot back when closed.
type budgetConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *budgetConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
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
	DatabasePools  int // open tenant database pools
	SchemaHandles  int // cached schema-mode handles
	OpenConns      int // connections open to the server
	InUse          int // of which serving a query now
	ServerMaxConns int
}

// Stats returns a snapshot of the router's pools.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	pools := r.pools.Values()
	r.mu.Unlock()
	s := Stats{DatabasePools: len(pools), SchemaHandles: r.schemas.Len(), OpenConns: int(r.open.Load()), ServerMaxConns: r.cfg.ServerMaxConns}
	for _, lane := range r.lanes {
		s.InUse += lane.sql.Stats().InUse
	}
	for _, p := range pools {
		s.InUse += p.sql.Stats().InUse
	}
	return s
}

// Close closes every pool.
func (r *Router) Close() error {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	r.pools.Purge() // evicts: closes pools not in use
	r.mu.Unlock()
	r.schemas.Purge()
	var errs []error
	for _, lane := range r.lanes {
		errs = append(errs, lane.sql.Close())
	}
	return errors.Join(errs...)
}

// Table returns the quoted name of table as raw SQL on db must write it:
// "tenant_42"."rates" on a schema-mode handle, "rates" on a database-mode
// one. gorm's own queries qualify names by themselves; raw SQL must use
// this, or it would resolve through search_path to no tenant at all.
func Table(db *gorm.DB, table string) string {
	if s, ok := db.Get(schemaSetting); ok {
		return pgx.Identifier{s.(string), table}.Sanitize()
	}
	return pgx.Identifier{table}.Sanitize()
}

// numberSpaceLock keys the advisory lock of a tenant's dial-number space.
const numberSpaceLock = 0x4e53 // "NS"

// LockNumberSpace takes, inside transaction tx, the lock that serialises a
// tenant's writes to its dial numbers: extension numbers and queue dial
// numbers share one space (no clash between them) and creating an extension
// counts against the cap, both checks that a unique index cannot make.
// Schema tenants share a database, so the tenant id is part of the key; the
// lock is released when tx ends.
func LockNumberSpace(tx *gorm.DB, tenantID int64) error {
	return tx.Exec(`SELECT pg_advisory_xact_lock(?, ?)`, numberSpaceLock, int32(tenantID)).Error
}
