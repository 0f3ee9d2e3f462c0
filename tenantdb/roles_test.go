package tenantdb_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/router"
	"github.com/laracopilot/controlplane/tenantdb/tenanttest"
)

// connectAs opens one connection to database as role, with the role's
// derived password.
func connectAs(t *testing.T, serverURL, role, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(serverURL)
	require.NoError(t, err)
	cfg.User, cfg.Password, cfg.Database = role, tenanttest.Secret.Password(role), database
	return pgx.ConnectConfig(context.Background(), cfg)
}

// A tenant's database role reaches its own database and no other.
func TestTenantRoleIsConfinedToItsDatabase(t *testing.T) {
	t.Parallel()
	f := tenanttest.New(t, controlplane.IsolationDatabase, 2, router.Config{})
	a, b := f.Tenants[0], f.Tenants[1]
	ctx := context.Background()

	own, err := connectAs(t, f.Server.URL, a.DBName, a.DBName)
	require.NoError(t, err)
	defer own.Close(ctx)
	var owner string
	require.NoError(t, own.QueryRow(ctx, `SELECT tableowner FROM pg_tables WHERE tablename = 'extensions'`).Scan(&owner))
	require.Equal(t, "pg_database_owner", owner, "the tables belong to the database's owner")
	var owns bool
	require.NoError(t, own.QueryRow(ctx, `SELECT pg_has_role(current_user, 'pg_database_owner', 'USAGE')`).Scan(&owns))
	require.True(t, owns, "which is the tenant's role")

	_, err = connectAs(t, f.Server.URL, a.DBName, b.DBName)
	require.Error(t, err)
	require.Contains(t, err.Error(), "permission denied for database")

	// PUBLIC lost CONNECT on tenant databases: an unrelated login role
	// cannot get in either.
	admin := pgtest.Open(t, f.Server.URL)
	_, err = admin.Exec(`CREATE ROLE ` + f.Server.Prefix + `stranger LOGIN PASSWORD '` + tenanttest.Secret.Password(f.Server.Prefix+"stranger") + `'`)
	require.NoError(t, err)
	_, err = connectAs(t, f.Server.URL, f.Server.Prefix+"stranger", a.DBName)
	require.Error(t, err)
	require.Contains(t, err.Error(), "permission denied for database")
}

// Deleting a tenant drops its role with its database.
func TestDeprovisionDropsTheRole(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	prov, err := tenantdb.NewProvisioner(ctx, tenantdb.ProvisionerConfig{URL: db.URL, Prefix: db.Prefix, Owner: "roles-test", Migrations: migrations.Tenant, RoleSecret: tenanttest.Secret})
	require.NoError(t, err)
	defer prov.Close()
	tn := &controlplane.Tenant{ID: 7, DBName: prov.DBName(7), Isolation: controlplane.IsolationDatabase}
	_, err = prov.Provision(ctx, tn)
	require.NoError(t, err)
	// Provisioning again (a retry, a reconcile) is idempotent.
	_, err = prov.Provision(ctx, tn)
	require.NoError(t, err)

	admin := pgtest.Open(t, db.URL)
	roleExists := func() bool {
		var n int
		require.NoError(t, admin.QueryRow(`SELECT count(*) FROM pg_roles WHERE rolname = $1`, tn.DBName).Scan(&n))
		return n == 1
	}
	require.True(t, roleExists())
	require.NoError(t, prov.Deprovision(ctx, tn))
	require.False(t, roleExists())
	require.Empty(t, pgtest.TenantDatabases(t, db.Prefix))
	require.NoError(t, prov.Deprovision(ctx, tn), "idempotent")
}

// Rotation sets a role's password from the provisioner's secret, and never
// makes a role that is gone (its tenant deleted meanwhile): nothing would
// ever drop it.
func TestRotateRolePasswordNeverCreatesTheRole(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	open := func(secret tenantdb.RoleSecret) *tenantdb.Provisioner {
		p, err := tenantdb.NewProvisioner(ctx, tenantdb.ProvisionerConfig{URL: db.URL, Prefix: db.Prefix, Owner: "roles-test", Migrations: migrations.Tenant, RoleSecret: secret})
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		return p
	}
	prov := open(tenanttest.Secret)
	tn := &controlplane.Tenant{ID: 3, DBName: prov.DBName(3), Isolation: controlplane.IsolationDatabase}
	_, err := prov.Provision(ctx, tn)
	require.NoError(t, err)

	rotated := tenantdb.RoleSecret("another-role-secret-0123456789")
	require.NoError(t, open(rotated).RotateRolePassword(ctx, tn))
	cfg, err := pgx.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.User, cfg.Database = tn.DBName, tn.DBName
	for secret, works := range map[string]bool{string(tenanttest.Secret): false, string(rotated): true} {
		cfg.Password = tenantdb.RoleSecret(secret).Password(tn.DBName)
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if works {
			require.NoError(t, err)
			require.NoError(t, conn.Close(ctx))
		} else {
			require.ErrorContains(t, err, "password authentication failed")
		}
	}

	require.NoError(t, prov.Deprovision(ctx, tn))
	require.NoError(t, open(rotated).RotateRolePassword(ctx, tn))
	var n int
	require.NoError(t, pgtest.Open(t, db.URL).QueryRow(`SELECT count(*) FROM pg_roles WHERE rolname = $1`, tn.DBName).Scan(&n))
	require.Zero(t, n)
}

// The tag the catalog keeps of a secret is none of its passwords.
func TestRoleSecretTagIsNoPassword(t *testing.T) {
	t.Parallel()
	s := tenantdb.RoleSecret("a-role-secret-0123456789")
	require.Len(t, s.Tag(), 64)
	require.NotEqual(t, s.Tag(), tenantdb.RoleSecret("another-secret-0123456789").Tag())
	for _, role := range []string{"", " secret tag", "secret tag", "tenant_1"} {
		require.NotEqual(t, s.Tag(), s.Password(role))
	}
}
