package catalog

import (
	"sync"

	"github.com/laracopilot/controlplane/controlplane"
)

// Cache is the catalog held in memory for routing: tenants by id, domain
// and slug, so resolving a request costs a map lookup and no query. The
// Store keeps it current: every write it makes is put here once committed
// (write-through), so the next request sees it.
//
// Entries are immutable snapshots: a change replaces the pointer, readers
// never see a tenant half-updated.
type Cache struct {
	mu       sync.RWMutex
	byID     map[int64]*controlplane.Tenant
	byDomain map[string]*controlplane.Tenant
	bySlug   map[string]*controlplane.Tenant
	// deleted holds ids removed from the catalog. Ids are never reused, so
	// a late put of a deleted tenant (a write that committed before the
	// delete but reached the cache after it) is recognised and dropped.
	deleted map[int64]struct{}
	// changed is closed, and replaced, at every change: a request held by
	// an online move's cutover waits on it (Changed).
	changed chan struct{}
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		byID:     map[int64]*controlplane.Tenant{},
		byDomain: map[string]*controlplane.Tenant{},
		bySlug:   map[string]*controlplane.Tenant{},
		deleted:  map[int64]struct{}{},
		changed:  make(chan struct{}),
	}
}

// Changed returns a channel closed at the cache's next change. Take it
// before reading what it guards, so that no change falls between the two.
func (c *Cache) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// signal wakes the waiters of Changed (under the write lock).
func (c *Cache) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// ByDomain returns the tenant whose domain is host (already normalised).
func (c *Cache) ByDomain(host string) (*controlplane.Tenant, bool) {
	c.mu.RLock()
	t, ok := c.byDomain[host]
	c.mu.RUnlock()
	return t, ok
}

// BySlug returns the tenant with that slug.
func (c *Cache) BySlug(slug string) (*controlplane.Tenant, bool) {
	c.mu.RLock()
	t, ok := c.bySlug[slug]
	c.mu.RUnlock()
	return t, ok
}

// ByID returns the tenant with that id.
func (c *Cache) ByID(id int64) (*controlplane.Tenant, bool) {
	c.mu.RLock()
	t, ok := c.byID[id]
	c.mu.RUnlock()
	return t, ok
}

// Len returns the number of tenants cached.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byID)
}

// Each calls fn for every cached tenant, under the read lock.
func (c *Cache) Each(fn func(*controlplane.Tenant)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, t := range c.byID {
		fn(t)
	}
}

// put stores a copy of t unless the cache already holds a newer version.
//
// Versions come from one catalog-wide sequence, so they also order writes
// of different tenants that touch the same key: a domain can only be taken
// by tenant B after tenant A's rename away from it committed, so B's version
// is the higher one, and a late, stale put of A cannot take the key back.
func (c *Cache) put(t controlplane.Tenant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(&t)
	c.signal()
}

func (c *Cache) putLocked(t *controlplane.Tenant) {
	if _, gone := c.deleted[t.ID]; gone {
		return
	}
	if old, ok := c.byID[t.ID]; ok {
		if old.Version > t.Version {
			return
		}
		c.unindex(old)
	}
	c.byID[t.ID] = t
	if cur, ok := c.byDomain[t.Domain]; !ok || cur.ID == t.ID || cur.Version < t.Version {
		c.byDomain[t.Domain] = t
	}
	if cur, ok := c.bySlug[t.Slug]; !ok || cur.ID == t.ID || cur.Version < t.Version {
		c.bySlug[t.Slug] = t
	}
}

// unindex drops the domain and slug keys that still point at old.
func (c *Cache) unindex(old *controlplane.Tenant) {
	if c.byDomain[old.Domain] == old {
		delete(c.byDomain, old.Domain)
	}
	if c.bySlug[old.Slug] == old {
		delete(c.bySlug, old.Slug)
	}
}

// remove forgets tenant id for good.
func (c *Cache) remove(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.byID[id]; ok {
		c.unindex(old)
		delete(c.byID, id)
	}
	c.deleted[id] = struct{}{}
	c.signal()
}

// load merges a full snapshot of the catalog: tenants missing from it are
// dropped, and for the others the newer of snapshot and cache wins (a write
// may have reached the cache after the snapshot was read).
func (c *Cache) load(ts []controlplane.Tenant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[int64]bool, len(ts))
	for i := range ts {
		t := ts[i]
		seen[t.ID] = true
		c.putLocked(&t)
	}
	for id, old := range c.byID {
		if !seen[id] {
			c.unindex(old)
			delete(c.byID, id)
		}
	}
	c.signal()
}
