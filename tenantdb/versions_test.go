package tenantdb_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// ReadVersions reads many schema tenants per statement and several
// statements at once; one tenant whose table is gone or holds several rows
// is named, and the others of its batch are still read.
func TestReadVersionsOfManySchemas(t *testing.T) {
	t.Parallel()
	f := tenanttest.New(t, controlplane.IsolationSchema, 4, router.Config{})
	admin := pgtest.Open(t, f.Server.URL)
	_, err := admin.Exec(`DROP TABLE "` + f.Tenants[1].DBName + `".schema_migrations`)
	require.NoError(t, err)
	_, err = admin.Exec(`INSERT INTO "` + f.Tenants[2].DBName + `".schema_migrations VALUES (9, false)`)
	require.NoError(t, err)
	_, err = admin.Exec(`UPDATE "` + f.Tenants[3].DBName + `".schema_migrations SET dirty = true`)
	require.NoError(t, err)

	prov, err := tenantdb.NewProvisioner(context.Background(), tenantdb.ProvisionerConfig{URL: f.Server.URL, Prefix: f.Server.Prefix, Owner: "tenanttest", Migrations: nil, RoleSecret: tenanttest.Secret})
	require.NoError(t, err)
	defer prov.Close()
	got := prov.ReadVersions(context.Background(), f.Tenants, 4)
	latest := tenanttest.Latest(t)
	require.Equal(t, controlplane.VersionRead{Version: latest}, got[0])
	require.ErrorContains(t, got[1].Err, "read the migrations table")
	require.ErrorContains(t, got[2].Err, "holds 2 rows")
	require.Equal(t, controlplane.VersionRead{Version: latest, Dirty: true}, got[3])
}
