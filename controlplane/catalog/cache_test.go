package catalog

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

func tenant(id, version int64, slug, domain string) controlplane.Tenant {
	return controlplane.Tenant{ID: id, Version: version, Slug: slug, Domain: domain}
}

func slugOf(c *Cache, domain string) string {
	t, ok := c.ByDomain(domain)
	if !ok {
		return ""
	}
	return t.Slug
}

func TestCacheKeepsTheNewestWrite(t *testing.T) {
	c := NewCache()
	c.put(tenant(1, 5, "acme", "acme.example.com"))
	c.put(tenant(1, 3, "acme-old", "old.example.com")) // a late, older write
	require.Equal(t, "acme", slugOf(c, "acme.example.com"))
	_, ok := c.BySlug("acme-old")
	require.False(t, ok)
	_, ok = c.ByDomain("old.example.com")
	require.False(t, ok)

	c.put(tenant(1, 6, "acme", "new.example.com"))
	require.Equal(t, "", slugOf(c, "acme.example.com"), "the old domain stops routing")
	require.Equal(t, "acme", slugOf(c, "new.example.com"))
}

// A domain moves from tenant 1 to tenant 2; tenant 1's stale write arriving
// last must not take it back, and tenant 1's newer write must not drop
// tenant 2's key.
func TestCacheDomainHandOver(t *testing.T) {
	c := NewCache()
	c.put(tenant(1, 1, "a", "shared.example.com"))
	c.put(tenant(2, 2, "b", "b.example.com"))
	c.put(tenant(2, 4, "b", "shared.example.com")) // tenant 2 took it (after 1 left it at version 3)
	c.put(tenant(1, 3, "a", "a.example.com"))      // tenant 1's rename reaches the cache late
	require.Equal(t, "b", slugOf(c, "shared.example.com"))
	require.Equal(t, "a", slugOf(c, "a.example.com"))
	require.Equal(t, 2, c.Len())
}

func TestCacheDeleteIsFinal(t *testing.T) {
	c := NewCache()
	c.put(tenant(1, 1, "a", "a.example.com"))
	c.remove(1)
	c.put(tenant(1, 2, "a", "a.example.com")) // a write that committed before the delete
	_, ok := c.ByID(1)
	require.False(t, ok)
	require.Equal(t, "", slugOf(c, "a.example.com"))
}

func TestCacheLoadDropsTenantsGoneElsewhere(t *testing.T) {
	c := NewCache()
	c.put(tenant(1, 1, "a", "a.example.com"))
	c.put(tenant(2, 7, "b", "b.example.com"))
	c.load([]controlplane.Tenant{tenant(2, 5, "b-old", "b-old.example.com"), tenant(3, 1, "c", "c.example.com")})
	_, ok := c.ByID(1)
	require.False(t, ok, "deleted while we were not listening")
	require.Equal(t, "b", slugOf(c, "b.example.com"), "the cache's newer version of 2 stays")
	require.Equal(t, "c", slugOf(c, "c.example.com"))
}

// BenchmarkResolve is the per-request cost of finding a tenant by Host
// among 10,000: a normalisation and a map lookup, independent of the count.
func BenchmarkResolve(b *testing.B) {
	for _, n := range []int{100, 10000} {
		c := NewCache()
		for i := 1; i <= n; i++ {
			c.put(tenant(int64(i), int64(i), "t", "tenant"+strconv.Itoa(i)+".example.com"))
		}
		host := "Tenant" + strconv.Itoa(n/2) + ".example.com:443"
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := c.ByDomain(controlplane.NormalizeHost(host)); !ok {
					b.Fatal("miss")
				}
			}
		})
	}
}
