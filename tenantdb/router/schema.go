package router

import (
	"context"
	"database/sql"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
	"gorm.io/gorm"
)

// lane is a share of the schema tenants' connections: slots of one
// connection each. A tenant has a home slot in its lane and runs there
// whenever the slot is free, on another slot of its lane only when its home
// is busy. A backend caches the catalog entries of every relation it
// touches, and meeting a schema for the first time costs it a few catalog
// reads per relation: with a tenant on any of its lane's connections, each
// of them paid that for every schema of the lane (measured across 10,000
// schemas, docs/BENCHMARKS.md benchmark 6: PostgreSQL spent 2.5 times the
// CPU per read it spent across 1,000, the backends still warming after
// three rounds), and held its own copy. With a home, a schema is mostly in
// one backend's cache, while a tenant's overlapping requests and a slow
// statement still have the lane's other connections.
//
// A request holds a slot for its whole life and waits, when every slot of
// the lane is held, for whichever is freed first: one queue per lane, as a
// lane's pool had, not one per slot (a request committed to one busy
// slot would wait behind it while another frees).
type lane struct {
	slots []*slot
	free  chan struct{} // a token per slot held: sending takes one, receiving gives it back
	mu    sync.Mutex
	held  []bool
}

func newLane(slots []*slot) *lane {
	return &lane{slots: slots, free: make(chan struct{}, len(slots)), held: make([]bool, len(slots))}
}

// slot is one connection of a lane: its own database/sql pool of one, so
// that a request chooses the connection it runs on.
type slot struct {
	sql   *sql.DB
	conns *connector
	gorm  *gorm.DB // a session of Router.schemaBase on this connection
}

// schemaHandle is a schema tenant's handles, one per slot of its lane,
// each made when first used.
type schemaHandle struct {
	name string
	lane *lane
	home int
	dbs  []atomic.Pointer[gorm.DB]
}

func (r *Router) schemaDB(t *controlplane.Tenant) (*schemaHandle, error) {
	name := t.DBName
	if h, ok := r.schemas.Get(name); ok {
		return h, nil
	}
	l, home := r.lane(name)
	if err := r.verify(t, l.slots[home].sql, name); err != nil {
		return nil, err
	}
	h := &schemaHandle{name: name, lane: l, home: home, dbs: make([]atomic.Pointer[gorm.DB], len(l.slots))}
	r.schemas.Add(name, h)
	return h, nil
}

// take gives a request of the tenant a slot of its lane, waiting (up to
// timeout, within ctx) while all are held: its home if free, else the
// first free one. leave must be called when the request ends.
func (h *schemaHandle) take(ctx context.Context, timeout time.Duration) (db *gorm.DB, leave func(), err error) {
	l := h.lane
	select {
	case l.free <- struct{}{}:
	default:
		// Only a request that waits needs a deadline.
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		select {
		case l.free <- struct{}{}:
		case <-wctx.Done():
			return nil, nil, &controlplane.Error{Code: controlplane.Unavailable,
				Message: "the shared schema connections of this tenant are all busy; retry shortly", Err: wctx.Err()}
		}
	}
	l.mu.Lock()
	i := h.home
	if l.held[i] {
		for j, held := range l.held {
			if !held {
				i = j
				break
			}
		}
	}
	l.held[i] = true
	l.mu.Unlock()
	if db = h.dbs[i].Load(); db == nil {
		// A session (clone 2): every chain on it starts from a copy of
		// this statement, setting and connection included, so requests
		// may share it.
		db = l.slots[i].gorm.Set(query.SchemaSetting, h.name).Session(&gorm.Session{})
		h.dbs[i].Store(db)
	}
	return db, func() {
		l.mu.Lock()
		l.held[i] = false
		l.mu.Unlock()
		<-l.free
	}, nil
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

// lane returns the shared connections the schema's tenant always uses,
// and its home slot there.
func (r *Router) lane(schema string) (*lane, int) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(schema))
	sum := h.Sum32()
	l := r.lanes[sum%uint32(len(r.lanes))]
	return l, int(sum / uint32(len(r.lanes)) % uint32(len(l.slots)))
}

// laneCachedSchemas is the most schemas a lane serves with cached
// prepared statements. pgx caches 512 statements per connection, and a
// tenant's statements name its schema, so each tenant has its own: past a
// few hundred schemas per lane the cache turns over (a statement is
// prepared, used once and deallocated: three round trips where one would
// do), and the backends hold plans for thousands of schemas.
const laneCachedSchemas = 200

// laneMode chooses, as a lane's connection is made, how it runs
// statements: prepared and cached while the lane's share of the schema
// tenants fits the cache, else in one round trip without preparing
// (pgx's exec mode: PostgreSQL parses and plans each statement, a few tens
// of microseconds). Lane connections are recycled every 10 minutes, so the
// mode follows the fleet's size.
func (r *Router) laneMode(_ context.Context, cfg *pgx.ConnConfig) error {
	if r.cfg.SchemaTenants != nil && r.cfg.SchemaTenants()/len(r.lanes) > laneCachedSchemas {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	return nil
}
