// Package servers is the tenant servers one control plane process talks
// to: for each registered server (controlplane.Servers) a provisioner and a
// router of its own, opened when first needed, and each server's health.
//
// Everything that acts on a tenant's database goes through a Set, which
// hands the work to the tenant's server (Tenant.Server): the tenant
// lifecycle (controlplane.Provisioner), routed requests (Acquire), fleet
// migrations (Migrate, ReadVersions) and role rotation. Each server has its
// own connection budget, sized from that server, so one server's outage or
// saturation costs only its own tenants: their requests fail (503) within
// the acquire timeout while the other servers' pools and budgets are
// untouched.
package servers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/router"
)

// Conn is one tenant server as this process reaches it.
type Conn struct {
	Name        string
	Provisioner *tenantdb.Provisioner
	Router      *router.Router // nil in a process that does not route (the CLI)
	// OnClose, if set, stops what works on the server beside requests
	// (its spare filler) before its connections close.
	OnClose func()
	opened  time.Time // when the Set opened it
}

// Close releases the server's connections.
func (c *Conn) Close() error {
	if c.OnClose != nil {
		c.OnClose()
	}
	var err error
	if c.Router != nil {
		err = c.Router.Close()
	}
	return errors.Join(err, c.Provisioner.Close())
}

// Opener opens a server's Conn: its URL from the registry, its budget
// sized from the server itself (cmd/controlplane wires it).
type Opener func(ctx context.Context, name string) (*Conn, error)

// Set is the tenant servers of one process.
type Set struct {
	// Log, if set, hears when a server stops or starts answering its
	// health check.
	Log *slog.Logger
	// Step, if set, is called at each named step of a move (tests kill
	// the process there).
	Step func(name string)
	def  *Conn
	open Opener
	// retryAfter is how long a server that could not be opened is not
	// tried again: a request to its tenants fails at once meanwhile,
	// instead of each waiting for a connect to a server that is down.
	retryAfter time.Duration

	// conns is the servers open now, read without a lock on every
	// request (Acquire); written, as a new map, under mu.
	conns  atomic.Pointer[map[string]*Conn]
	mu     sync.Mutex
	failed map[string]failure
	health map[string]error
	closed bool
	// opening makes concurrent first uses of one server open it once.
	opening map[string]chan struct{}
}

type failure struct {
	at  time.Time
	err error
}

// New returns a Set with the default server's Conn (opened at start, as
// one-server installs always did) and the way to open the others.
func New(def *Conn, open Opener) *Set {
	s := &Set{def: def, open: open, retryAfter: 2 * time.Second,
		failed:  map[string]failure{},
		health:  map[string]error{},
		opening: map[string]chan struct{}{},
	}
	s.conns.Store(&map[string]*Conn{controlplane.DefaultServer: def})
	return s
}

// Default returns the default server's Conn.
func (s *Set) Default() *Conn { return s.def }

// Get returns server name's Conn, opening it on first use. A server that
// cannot be opened is an Unavailable error (503, Retry-After), and is not
// tried again for a moment.
func (s *Set) Get(ctx context.Context, name string) (*Conn, error) {
	name = cmp.Or(name, controlplane.DefaultServer)
	if c, ok := (*s.conns.Load())[name]; ok {
		return c, nil
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errors.New("servers: closed")
		}
		if c, ok := (*s.conns.Load())[name]; ok {
			s.mu.Unlock()
			return c, nil
		}
		if f, ok := s.failed[name]; ok && time.Since(f.at) < s.retryAfter {
			s.mu.Unlock()
			return nil, unavailable(name, f.err)
		}
		if wait, ok := s.opening[name]; ok {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, unavailable(name, ctx.Err())
			}
		}
		done := make(chan struct{})
		s.opening[name] = done
		s.mu.Unlock()

		// Detached from the request: a server opened once serves every
		// later request, whoever hung up first.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		c, err := s.open(octx, name)
		cancel()
		s.mu.Lock()
		delete(s.opening, name)
		close(done)
		switch {
		case err != nil:
			s.failed[name] = failure{at: time.Now(), err: err}
		case s.closed:
			s.mu.Unlock()
			_ = c.Close()
			return nil, errors.New("servers: closed")
		default:
			c.opened = time.Now()
			delete(s.failed, name)
			conns := maps.Clone(*s.conns.Load())
			conns[name] = c
			s.conns.Store(&conns)
		}
		s.mu.Unlock()
		if err != nil {
			return nil, unavailable(name, err)
		}
		return c, nil
	}
}

// unavailable is the error of a tenant server that cannot be reached: a
// 503 naming the server, never its address or credentials (those stay in
// err, which is logged only).
func unavailable(name string, err error) error {
	var ce *controlplane.Error
	if errors.As(err, &ce) && ce.Code == controlplane.NotFound {
		return &controlplane.Error{Code: controlplane.Internal, Message: "internal error", Err: fmt.Errorf("tenant server %s: %w", name, err)}
	}
	return &controlplane.Error{Code: controlplane.Unavailable, Message: "tenant server " + name + " cannot be reached now; try again later", Err: err}
}

// Acquire routes a request of t to its server's router.
func (s *Set) Acquire(ctx context.Context, t *controlplane.Tenant) (*gorm.DB, func(), error) {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return nil, nil, err
	}
	if c.Router == nil {
		return nil, nil, fmt.Errorf("tenant server %s: this process does not route", c.Name)
	}
	return c.Router.Acquire(ctx, t)
}

// DBName and DBPrefix name tenants' databases alike on every server.
func (s *Set) DBName(id int64) string { return s.def.Provisioner.DBName(id) }
func (s *Set) DBPrefix() string       { return s.def.Provisioner.DBPrefix() }

// Provision provisions t on its server.
func (s *Set) Provision(ctx context.Context, t *controlplane.Tenant) (uint, error) {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return 0, err
	}
	return c.Provisioner.Provision(ctx, t)
}

// Deprovision drops t's database or schema on its server.
func (s *Set) Deprovision(ctx context.Context, t *controlplane.Tenant) error {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return err
	}
	return c.Provisioner.Deprovision(ctx, t)
}

// Migrate runs a migration of t on its server (controlplane.Migrator).
func (s *Set) Migrate(ctx context.Context, t *controlplane.Tenant, op controlplane.MigrationOp) controlplane.MigrationOutcome {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return controlplane.MigrationOutcome{Err: err}
	}
	return c.Provisioner.Migrate(ctx, t, op)
}

// ReadVersions reads the tenants' real schema versions, each on its
// server, the servers at once (controlplane.VersionReader).
func (s *Set) ReadVersions(ctx context.Context, tenants []*controlplane.Tenant, concurrency int) []controlplane.VersionRead {
	out := make([]controlplane.VersionRead, len(tenants))
	_, byServer := controlplane.GroupByServer(tenants)
	var wg sync.WaitGroup
	for name, idx := range byServer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Get(ctx, name)
			if err != nil {
				for _, i := range idx {
					out[i] = controlplane.VersionRead{Err: err}
				}
				return
			}
			batch := make([]*controlplane.Tenant, len(idx))
			for k, i := range idx {
				batch[k] = tenants[i]
			}
			for k, r := range c.Provisioner.ReadVersions(ctx, batch, concurrency) {
				out[idx[k]] = r
			}
		}()
	}
	wg.Wait()
	return out
}

// DumpFile writes t's pg_dump archive to path, from its server
// (controlplane.Dumper).
func (s *Set) DumpFile(ctx context.Context, t *controlplane.Tenant, path string) error {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return err
	}
	return c.Provisioner.DumpFile(ctx, t, path)
}

// Seal closes deleted tenant t's database to its role, on its server.
func (s *Set) Seal(ctx context.Context, t *controlplane.Tenant) error {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return err
	}
	return c.Provisioner.Seal(ctx, t)
}

// Unseal opens t's database to its role again.
func (s *Set) Unseal(ctx context.Context, t *controlplane.Tenant) error {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return err
	}
	return c.Provisioner.Unseal(ctx, t)
}

// Restore restores t in place from an archive, on its server
// (controlplane.Restorer).
func (s *Set) Restore(ctx context.Context, t *controlplane.Tenant, file string, op int64, opts controlplane.RestoreOptions) (string, error) {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return "", err
	}
	return c.Provisioner.Restore(ctx, t, file, op, opts)
}

// RecoverRestore finishes or undoes an interrupted restore of t.
func (s *Set) RecoverRestore(ctx context.Context, t *controlplane.Tenant, op int64) (bool, error) {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return false, err
	}
	return c.Provisioner.RecoverRestore(ctx, t, op)
}

// DropAside drops a restore's copy of t, on its server.
func (s *Set) DropAside(ctx context.Context, t *controlplane.Tenant, name string) error {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return err
	}
	return c.Provisioner.DropAside(ctx, t, name)
}

// RotateRolePassword sets t's role password on its server
// (controlplane.RoleRotator).
func (s *Set) RotateRolePassword(ctx context.Context, t *controlplane.Tenant) error {
	c, err := s.Get(ctx, t.Server)
	if err != nil {
		return err
	}
	return c.Provisioner.RotateRolePassword(ctx, t)
}

// DropHalfBuiltTemplates drops, on every server open now, the template
// databases a crash left half-built (the reconciler's step).
func (s *Set) DropHalfBuiltTemplates(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	s.Each(func(c *Conn) {
		n, err := c.Provisioner.DropHalfBuiltTemplates(ctx)
		total += n
		if err != nil {
			errs = append(errs, fmt.Errorf("tenant server %s: %w", c.Name, err))
		}
	})
	return total, errors.Join(errs...)
}

// Each calls fn for every server open now, the default first.
func (s *Set) Each(fn func(*Conn)) {
	open := *s.conns.Load()
	if c, ok := open[controlplane.DefaultServer]; ok {
		fn(c)
	}
	for name, c := range open {
		if name != controlplane.DefaultServer {
			fn(c)
		}
	}
}

// Health returns server name's last health check: nil if it answered (or
// was not checked yet), else why not.
func (s *Set) Health(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health[name]
}

// Healths returns every checked server's last check.
func (s *Set) Healths() map[string]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]error, len(s.health))
	for name, err := range s.health {
		out[name] = err
	}
	return out
}

// Check opens (if need be) and pings each of names, recording their
// health; placement skips a server whose last check failed.
func (s *Set) Check(ctx context.Context, names []string) {
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			c, err := s.Get(cctx, name)
			if err == nil {
				err = c.Provisioner.Ping(cctx)
			}
			s.mu.Lock()
			before, seen := s.health[name]
			s.health[name] = err
			s.mu.Unlock()
			switch {
			case s.Log == nil:
			case err != nil && (before == nil || !seen):
				s.Log.Warn("tenant server not answering: placement skips it, its tenants get 503 until it answers", "server", name, "err", err)
			case err == nil && before != nil:
				s.Log.Info("tenant server answering again", "server", name)
			}
		}()
	}
	wg.Wait()
}

// Lister names the servers to check and every registered server.
type Lister func(context.Context) (check, registered []string, err error)

// Refresh is one pass of Run: it checks the servers list names to check
// and closes the open servers that are no longer registered, so that a
// server removed and registered again under its name (at another address)
// is opened afresh, not reached through the old one's connections.
func (s *Set) Refresh(ctx context.Context, list Lister) error {
	listed := time.Now()
	check, registered, err := list(ctx)
	if err != nil {
		return err
	}
	s.Check(ctx, check)
	s.retain(registered, listed)
	return nil
}

// retain closes every server opened before listed but the default and
// those of names (the servers registered at listed): one opened since may
// have been registered since. Nothing routes to a removed server (the
// registry refuses to remove one that still has tenants or spares), so
// closing it interrupts nothing.
func (s *Set) retain(names []string, listed time.Time) {
	keep := map[string]bool{controlplane.DefaultServer: true}
	for _, n := range names {
		keep[n] = true
	}
	s.mu.Lock()
	var gone []*Conn
	conns := maps.Clone(*s.conns.Load())
	for name, c := range conns {
		if !keep[name] && c.opened.Before(listed) {
			gone = append(gone, c)
			delete(conns, name)
		}
	}
	for name := range s.health {
		if _, open := conns[name]; !keep[name] && !open {
			delete(s.health, name)
			delete(s.failed, name)
		}
	}
	if len(gone) > 0 {
		s.conns.Store(&conns)
	}
	s.mu.Unlock()
	for _, c := range gone {
		if s.Log != nil {
			s.Log.Info("tenant server closed: no longer registered", "server", c.Name)
		}
		_ = c.Close()
	}
}

// Run refreshes the servers every period until ctx ends.
func (s *Set) Run(ctx context.Context, list Lister, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		_ = s.Refresh(ctx, list)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Close closes every server's connections.
func (s *Set) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := *s.conns.Swap(&map[string]*Conn{})
	s.mu.Unlock()
	var errs []error
	for _, c := range conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
