package router

import (
	"container/list"
	"context"
	"database/sql/driver"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/sync/semaphore"

	"github.com/laracopilot/controlplane/controlplane"
)

// budget is the router's share of the tenant server's connections: every
// connection of every pool and lane holds one slot of it from before it
// connects until it is closed.
//
// When the budget is spent, a new connection takes the slot of the least
// recently used idle connection anywhere (any tenant's pool, any lane): idle
// connections hold budget without doing work, and the one idle longest is
// the least likely to be wanted next. Only when no connection is idle does
// it wait, for the first one to be released, never longer than timeout.
//
// Nothing is closed on the request path: a connection given up is closed
// by a goroutine of its own, its slot handed over at once. The server may
// so see, for the instant of a close, a connection more than the budget;
// the headroom the budget leaves below max_connections covers that.
type budget struct {
	max     int
	sem     *semaphore.Weighted
	timeout time.Duration

	open    atomic.Int64 // connections holding a slot (connecting or open)
	waiting atomic.Int64 // connects waiting for a slot
	opened  atomic.Int64 // connections made, ever (for metrics)
	taken   atomic.Int64 // idle connections given up for another's slot

	mu   sync.Mutex
	idle list.List // *conn, the least recently used at the front
}

func newBudget(max int, timeout time.Duration) *budget {
	return &budget{max: max, sem: semaphore.NewWeighted(int64(max)), timeout: timeout}
}

// reserve returns once the caller holds a slot for a new connection: a free
// one, else the one of the least recently used idle connection, else the
// first released within the timeout. Past the timeout it returns an
// Unavailable error (503): every connection of the budget is busy.
func (b *budget) reserve(ctx context.Context) error {
	if b.sem.TryAcquire(1) || b.takeIdle(false) {
		b.open.Add(1)
		return nil
	}
	// Counted as waiting under the lock idled takes: a connection going
	// idle from now on is handed over, and one that went idle before is
	// in the list for this last look.
	defer b.waiting.Add(-1)
	if b.takeIdle(true) {
		b.open.Add(1)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.sem.Acquire(wctx, 1); err != nil {
		return &controlplane.Error{
			Code:    controlplane.Unavailable,
			Message: fmt.Sprintf("the tenant database server is at its connection budget (%d), every connection busy; retry shortly", b.max),
			Err:     err,
		}
	}
	b.open.Add(1)
	return nil
}

// room says whether a slot is free now.
func (b *budget) room() bool { return b.open.Load() < int64(b.max) }

// release gives a slot back.
func (b *budget) release() {
	b.open.Add(-1)
	b.sem.Release(1)
}

// takeIdle gives up the least recently used idle connection, its slot
// passing to the caller; false if none is idle. wait counts the caller as
// waiting, in the same critical section.
func (b *budget) takeIdle(wait bool) bool {
	b.mu.Lock()
	if wait {
		b.waiting.Add(1)
	}
	for e := b.idle.Front(); e != nil; e = b.idle.Front() {
		c := b.idle.Remove(e).(*conn)
		c.elem = nil
		if c.state.CompareAndSwap(connIdle, connGone) {
			b.mu.Unlock()
			c.connector.live.Add(-1)
			b.open.Add(-1) // the caller adds its own
			b.taken.Add(1)
			c.closeDriver()
			return true
		}
	}
	b.mu.Unlock()
	return false
}

// idled records c, just released by its request, as idle; but if connects
// are waiting for a slot, c gives its slot to the first of them and goes:
// a busy pool must not keep a connection idle while another tenant's
// request waits for one. It says whether c may stay in its pool.
func (b *budget) idled(c *conn) bool {
	b.mu.Lock()
	if b.waiting.Load() > 0 {
		b.mu.Unlock()
		if c.state.CompareAndSwap(connBusy, connGone) {
			c.connector.live.Add(-1)
			b.taken.Add(1)
			b.release()
			c.closeDriver()
		}
		return false
	}
	defer b.mu.Unlock()
	if !c.state.CompareAndSwap(connBusy, connIdle) {
		// Idle already: handed to a request that gave up waiting for it
		// before using it. Still good.
		return c.state.Load() == connIdle
	}
	c.elem = b.idle.PushBack(c)
	return true
}

// used records c as taken from its pool by a request; false if the budget
// gave it up meanwhile (its pool then drops it and opens another).
func (b *budget) used(c *conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !c.state.CompareAndSwap(connIdle, connBusy) {
		return c.state.Load() == connBusy
	}
	if c.elem != nil {
		b.idle.Remove(c.elem)
		c.elem = nil
	}
	return true
}

// closed records that c's pool closed it, giving its slot back unless the
// budget took it already.
func (b *budget) closed(c *conn) {
	b.mu.Lock()
	if c.elem != nil {
		b.idle.Remove(c.elem)
		c.elem = nil
	}
	b.mu.Unlock()
	if c.state.Swap(connGone) != connGone {
		c.connector.live.Add(-1)
		b.release()
	}
}

// The states of a connection in the budget.
const (
	connBusy int32 = iota // a request uses it (or it is connecting)
	connIdle              // in its pool's idle list, and in the budget's
	connGone              // given up: its slot is someone else's
)

// connector makes the connections of one pool (a tenant database's or a
// lane's) within the budget.
type connector struct {
	budget *budget
	base   driver.Connector
	// live counts its connections the budget has not given up: those a
	// request of the pool may still use.
	live atomic.Int64
	// closing makes Close wait for the sockets: the pool is being closed
	// for good (a tenant database about to be dropped, shutdown), by no
	// request, and its caller needs the server to have let go.
	closing atomic.Bool
}

func newConnector(b *budget, cfg pgx.ConnConfig, opts ...stdlib.OptionOpenDB) *connector {
	return &connector{budget: b, base: stdlib.GetConnector(cfg, opts...)}
}

func (k *connector) Driver() driver.Driver { return k.base.Driver() }

// Connect reserves a slot, then connects. database/sql calls it outside any
// lock of its own, so a connect waits for nobody else's.
func (k *connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := k.budget.reserve(ctx); err != nil {
		return nil, err
	}
	dc, err := k.base.Connect(ctx)
	if err != nil {
		k.budget.release()
		return nil, err
	}
	k.budget.opened.Add(1)
	k.live.Add(1)
	return &conn{Conn: dc.(*stdlib.Conn), budget: k.budget, connector: k}, nil
}

// conn is a pool's connection as the budget sees it. database/sql tells it
// when it goes back to its pool (IsValid) and when it is taken again
// (ResetSession); every other method is pgx's own (embedded, so the
// optional interfaces database/sql looks for are kept).
type conn struct {
	*stdlib.Conn
	budget    *budget
	connector *connector
	state     atomic.Int32
	elem      *list.Element // in budget.idle while idle (guarded by budget.mu)
	closeOnce sync.Once
}

// IsValid is called by database/sql as the connection goes back to its pool.
func (c *conn) IsValid() bool {
	return !c.Conn.Conn().IsClosed() && c.budget.idled(c)
}

// ResetSession is called by database/sql before it hands the pooled
// connection to a request. A connection the budget gave up is refused as
// bad: database/sql then drops it and uses or opens another.
func (c *conn) ResetSession(ctx context.Context) error {
	if !c.budget.used(c) {
		return driver.ErrBadConn
	}
	return c.Conn.ResetSession(ctx)
}

// Close is database/sql closing the connection (idle too long, pool
// closed, broken): the slot is given back now, the socket closed in the
// background.
func (c *conn) Close() error {
	c.budget.closed(c)
	if c.connector.closing.Load() {
		var err error
		c.closeOnce.Do(func() { err = c.Conn.Close() })
		return err
	}
	c.closeDriver()
	return nil
}

// closeDriver closes the PostgreSQL connection once, in the background:
// the Terminate message and the socket's close are no request's business.
func (c *conn) closeDriver() {
	c.closeOnce.Do(func() { go c.Conn.Close() })
}
