package tenantdb

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// A provision right after the network to the tenant server broke and came
// back succeeds: every idle connection of the admin pool is broken, pgx
// does not check one used within the last second, and the retry after the
// first failure must not take the next broken one. (CI once answered 503
// to the first create after such a cut: the retry took the pool's second
// idle connection.)
func TestProvisionAfterTheConnectionsBroke(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	proxy := pgtest.NewProxy(t, db.URL)
	proxied := db
	proxied.URL = proxy.URL(db.URL)
	p := newTestProvisioner(t, proxied, migrations.Tenant)
	ctx := context.Background()

	for _, isolation := range []controlplane.Isolation{controlplane.IsolationSchema, controlplane.IsolationDatabase} {
		t.Run(string(isolation), func(t *testing.T) {
			// As many idle connections as the pool keeps, each just taken
			// from the pool again (pgx pings one it has not handed out for
			// a second, and one never handed out before).
			for range 2 {
				conns := make([]*sql.Conn, adminIdle)
				for k := range conns {
					c, err := p.admin.Conn(ctx)
					require.NoError(t, err)
					conns[k] = c
				}
				for _, c := range conns {
					require.NoError(t, c.Close())
				}
			}
			require.Equal(t, adminIdle, p.admin.Stats().Idle)

			proxy.Cut()
			proxy.Restore()
			id := int64(1)
			if isolation == controlplane.IsolationDatabase {
				id = 2
			}
			tenant := &controlplane.Tenant{ID: id, Isolation: isolation, DBName: p.DBName(id)}
			v, err := p.Provision(ctx, tenant)
			require.NoError(t, err, "the first provision after the cut")
			latest, err := migrations.Latest(migrations.Tenant)
			require.NoError(t, err)
			require.Equal(t, latest, v)
			exists, err := p.Exists(ctx, tenant)
			require.NoError(t, err)
			require.True(t, exists)
		})
	}
}
