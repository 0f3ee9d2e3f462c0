package router

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
)

// pool is one tenant database's connections: none while the tenant is
// quiet, at most one per request it runs at once, up to PoolMaxConns. When
// it grows is the limiter's decision (limit.go: only when its tenant
// queues, only into a free slot of the budget); it keeps what it grew while
// the tenant stays busy (an idle connection is the budget's to take back,
// the least recently used first), and shrinks by itself: database/sql
// closes a connection idle for PoolIdleTimeout.
type pool struct {
	sql      *sql.DB
	conns    *connector
	gorm     *gorm.DB
	refs     int  // requests using it (guarded by Router.mu)
	evicted  bool // out of the LRU: close when refs drops to 0
	lastUsed atomic.Int64
}

func (r *Router) newPool(name string) *pool {
	cfg := r.server.Copy()
	cfg.Database = name
	cfg.User, cfg.Password = name, r.cfg.RoleSecret.Password(name)
	k := newConnector(r.budget, *cfg)
	db := sql.OpenDB(k) // connects lazily
	db.SetMaxOpenConns(r.cfg.PoolMaxConns)
	db.SetMaxIdleConns(r.cfg.PoolMaxConns)
	db.SetConnMaxIdleTime(r.cfg.PoolIdleTimeout)
	// A session of the one database-mode handle, on this pool's
	// connections: models are parsed once for every tenant, not per pool.
	g := r.base.Session(&gorm.Session{Context: context.Background()})
	g.Statement.ConnPool = db
	return &pool{sql: db, conns: k, gorm: g}
}

// databaseDB admits a request of t to its pool (limits) and returns the
// pool's handle.
func (r *Router) databaseDB(ctx context.Context, t *controlplane.Tenant) (*gorm.DB, func(), error) {
	name := t.DBName
	r.mu.Lock()
	p, ok := r.pools.Get(name)
	if !ok {
		p = r.newPool(name)
		r.pools.Add(name, p) // may evict (and close) the least recently used
	}
	p.refs++
	p.lastUsed.Store(time.Now().UnixNano())
	r.mu.Unlock()

	var once sync.Once
	unref := func() {
		once.Do(func() {
			r.mu.Lock()
			p.refs--
			p.lastUsed.Store(time.Now().UnixNano())
			closeNow := p.evicted && p.refs == 0
			r.mu.Unlock()
			if closeNow {
				go p.sql.Close()
			}
		})
	}
	done, err := r.limits.enter(ctx, t, func() int { return int(p.conns.live.Load()) })
	if err != nil {
		unref()
		return nil, nil, err
	}
	release := func() { done(); unref() }
	if err := r.verify(t, p.sql, "public"); err != nil {
		release()
		return nil, nil, err
	}
	return p.gorm, release, nil
}

// evicted runs (under r.mu) when the LRU drops a pool: it is closed, in
// the background, once no request uses it.
func (r *Router) evicted(_ string, p *pool) {
	p.evicted = true
	// A pool being closed for good (Forget, Close) is closed by the
	// caller, which waits for it: a second, background Close would win
	// the race and leave the caller's to return at once.
	if p.refs == 0 && !p.conns.closing.Load() {
		go p.sql.Close()
	}
}

// closeNow closes p and waits for the server to have let go of its
// connections; requests using it keep theirs until they end.
func (p *pool) closeNow() {
	p.conns.closing.Store(true)
	_ = p.sql.Close()
}
