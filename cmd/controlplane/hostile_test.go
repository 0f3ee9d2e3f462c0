package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// The hostile-tenant suite's schema-mode check (docs/SECURITY.md; the rest is in
// tenantdb/hostile_test.go), through the app as serve wires it: schema
// tenants live in the tenant server's own database, by default the
// catalog's, where the control plane runs everything as itself. A
// database-mode tenant's role, whose password its tenant may hold, must not
// be able to connect there at all: PUBLIC may CONNECT to a database unless
// it was revoked.
func TestHostileTenantRoleCannotConnectToTheSchemaHost(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.create(tenantBody("in-a-schema", controlplane.IsolationSchema))
	attacker := b.create(tenantBody("hostile", controlplane.IsolationDatabase))
	role := attacker["db_name"].(string)

	cfg, err := pgx.ParseConfig(b.cfg.TenantDatabaseURL.Value())
	require.NoError(t, err)
	host := cfg.Database
	cfg.User, cfg.Password = role, b.app.RoleSecret.Password(role)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The role itself works: its own database lets it in.
	own := cfg.Copy()
	own.Database = role
	c, err := pgx.ConnectConfig(ctx, own)
	require.NoError(t, err, "the tenant's role logs in to its own database")
	_ = c.Close(ctx)

	c, err = pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		_ = c.Close(ctx)
		t.Fatalf("the database-mode tenant's role %s connects to %s, the database that hosts the schema tenants (and the catalog): CONNECT must be revoked from PUBLIC there", role, host)
	}
	require.Contains(t, err.Error(), "permission denied for database")
}
