package router

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// limiter admits one tenant's requests to its connections.
//
// It keeps a tenant's burst to its share: at most active of its requests
// run at once, at most queued more wait, and any beyond are refused at once
// (429 rate_limited) instead of waiting in a queue that would hold
// connections, memory and the other tenants' CPU. Measured before it
// existed: 1,000 concurrent requests to one tenant took another tenant's
// p99 from ~13 ms to ~166 ms.
//
// And in database mode it decides when the tenant's pool grows. A request
// that finds a connection of its tenant idle, or the tenant with none,
// runs at once. One that would need another connection first waits up to
// growAfter for one of the tenant's running requests to end: a read takes
// about a millisecond and a new connection ten (TCP, SCRAM, a backend's
// start), so two requests that merely overlap share one connection, and
// only a tenant still queueing after that grows. And it grows only into a
// free slot of the budget: with the budget spent, taking another tenant's
// idle connection so that this one has two would cost that tenant a
// reconnect, and measured (docs/BENCHMARKS.md, benchmark 6) turned every
// overlap into two new connections.
type limiter struct {
	mu      sync.Mutex
	running int
	waiting int
	ended   chan struct{} // a running request ended (capacity 1: a wake-up, not a count)
}

// limits holds a limiter per tenant (by id), made on first use.
type limits struct {
	// database and schema are how many requests of a tenant may run at
	// once: its pool's size, or half a lane (the other half is its lane
	// neighbours'); queued how many more may wait.
	database, schema, queued int
	// growAfter is how long a database-mode request waits for one of its
	// tenant's connections before its pool grows.
	growAfter time.Duration
	// timeout bounds a request's wait (TENANT_ACQUIRE_TIMEOUT).
	timeout time.Duration
	// room says whether the budget has a free slot now.
	room func() bool
	m    sync.Map // tenant id -> *limiter
}

// growAfter's default: a few reads' worth.
const growAfter = 5 * time.Millisecond

func (l *limits) of(id int64) *limiter {
	if v, ok := l.m.Load(id); ok {
		return v.(*limiter)
	}
	v, _ := l.m.LoadOrStore(id, &limiter{ended: make(chan struct{}, 1)})
	return v.(*limiter)
}

// enter admits one request of tenant t, waiting (within ctx and the
// timeout) as above;
// conns, in database mode, says how many connections the tenant's pool
// holds now (nil in schema mode: a lane's connections are not the
// tenant's). done must be called when the request ends.
func (l *limits) enter(ctx context.Context, t *controlplane.Tenant, conns func() int) (done func(), err error) {
	lim, active := l.of(t.ID), l.database
	if conns == nil {
		active = l.schema
	}
	done = func() {
		lim.mu.Lock()
		lim.running--
		lim.mu.Unlock()
		select {
		case lim.ended <- struct{}{}:
		default:
		}
	}
	// runNow says (under lim.mu) whether a request may run: below the
	// tenant's share, and on a connection of its own or a free slot.
	runNow := func(grow bool) bool {
		if lim.running >= active {
			return false
		}
		if conns == nil || lim.running == 0 || lim.running < conns() {
			return true
		}
		return grow && l.room()
	}

	lim.mu.Lock()
	if runNow(false) && lim.waiting == 0 {
		lim.running++
		lim.mu.Unlock()
		return done, nil
	}
	if lim.running+lim.waiting >= active+l.queued {
		lim.mu.Unlock()
		return nil, l.refuse(t, active, nil)
	}
	lim.waiting++
	lim.mu.Unlock()
	// Only a request that waits needs a deadline: none is made on the
	// path that runs at once.
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()

	var grow <-chan time.Time
	if conns != nil {
		timer := time.NewTimer(l.growAfter)
		defer timer.Stop()
		grow = timer.C
	}
	var retry <-chan time.Time
	mayGrow := false
	for {
		select {
		case <-ctx.Done():
			lim.mu.Lock()
			lim.waiting--
			lim.mu.Unlock()
			return nil, l.refuse(t, active, ctx.Err())
		case <-grow:
			mayGrow, grow = true, nil
		case <-retry:
		case <-lim.ended:
		}
		lim.mu.Lock()
		if runNow(mayGrow) {
			lim.running++
			lim.waiting--
			lim.mu.Unlock()
			return done, nil
		}
		lim.mu.Unlock()
		if mayGrow {
			// No room in the budget: wait for the tenant's own
			// connections, looking again for room now and then.
			retry = time.After(l.growAfter)
		}
	}
}

func (l *limits) refuse(t *controlplane.Tenant, active int, cause error) error {
	return &controlplane.Error{
		Code:    controlplane.RateLimited,
		Message: fmt.Sprintf("tenant %s has %d requests in progress, its limit; retry shortly", t.Slug, active+l.queued),
		Err:     cause,
	}
}

// forget drops tenant id's limiter (the tenant is gone).
func (l *limits) forget(id int64) { l.m.Delete(id) }
