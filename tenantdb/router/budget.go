package router

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/laracopilot/controlplane/controlplane"
)

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
