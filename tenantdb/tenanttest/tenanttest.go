// Package tenanttest provisions real tenants (database or schema mode) on a
// throwaway database and routes to them, for the tests of the packages that
// live inside a tenant (extensions, DIDs, queues, rates, CDRs, contacts).
package tenanttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/router"
)

// Secret derives the test tenants' role passwords.
var Secret = tenantdb.RoleSecret("tenanttest-role-secret")

// Fixture is n provisioned tenants and a router to them.
type Fixture struct {
	Server  pgtest.DB // the throwaway database (and tenant name prefix)
	Tenants []*controlplane.Tenant
	Router  *router.Router
}

// New provisions n tenants with the given isolation (ids 1..n, slugs t1..,
// domains t1.example.com.., timezone UTC, max_extensions 100) and a router
// with the given config (URL filled in; zero sizes get small defaults).
func New(t testing.TB, isolation controlplane.Isolation, n int, rc router.Config) *Fixture {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	prov, err := tenantdb.NewProvisioner(ctx, tenantdb.ProvisionerConfig{URL: db.URL, Prefix: db.Prefix, Owner: "tenanttest", Migrations: migrations.Tenant, RoleSecret: Secret})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prov.Close() })
	f := &Fixture{Server: db}
	for i := 1; i <= n; i++ {
		tn := &controlplane.Tenant{
			ID: int64(i), Name: fmt.Sprintf("Tenant %d", i), Slug: fmt.Sprintf("t%d", i), Domain: fmt.Sprintf("t%d.example.com", i),
			Timezone: "UTC", Isolation: isolation, DBName: prov.DBName(int64(i)), MaxExtensions: 100,
			Status: controlplane.StatusActive, Provisioning: controlplane.ProvisionReady,
		}
		_, err := prov.Provision(ctx, tn)
		require.NoError(t, err)
		f.Tenants = append(f.Tenants, tn)
	}
	rc.URL = db.URL
	rc.RoleSecret = Secret
	if rc.Latest == 0 {
		rc.Latest = Latest(t)
	}
	rc.PoolsMax = or(rc.PoolsMax, 10)
	rc.PoolMaxConns = or(rc.PoolMaxConns, 4)
	rc.SchemaPoolConns = or(rc.SchemaPoolConns, 4)
	rc.ServerMaxConns = or(rc.ServerMaxConns, 40)
	rc.QueueMax = or(rc.QueueMax, 28)
	if rc.PoolIdleTimeout == 0 {
		rc.PoolIdleTimeout = time.Minute
	}
	if rc.AcquireTimeout == 0 {
		rc.AcquireTimeout = 5 * time.Second
	}
	f.Router, err = router.New(rc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Router.Close() })
	return f
}

// Latest is the newest tenant migration (the router's router.Config.Latest).
func Latest(t testing.TB) uint {
	t.Helper()
	v, err := migrations.Latest(migrations.Tenant)
	require.NoError(t, err)
	return v
}

// Tenant returns tenant i's (0-based) handle, released when the test ends.
func (f *Fixture) Tenant(t testing.TB, i int) (*gorm.DB, *controlplane.Tenant) {
	t.Helper()
	db, release, err := f.Router.Acquire(context.Background(), f.Tenants[i])
	require.NoError(t, err)
	t.Cleanup(release)
	return db, f.Tenants[i]
}

// Backends counts the server connections open to the tenants' databases.
func (f *Fixture) Backends(t testing.TB) int {
	t.Helper()
	admin := pgtest.Open(t, f.Server.URL)
	defer admin.Close()
	var n int
	require.NoError(t, admin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE starts_with(datname, $1)`, f.Server.Prefix).Scan(&n))
	return n
}

func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
