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

// The one-trip "up" runs only on a tenant whose migrations table is at the
// version the catalog says, clean; otherwise it runs nothing and Migrate
// reads the real version first.
func TestFastUpChecksTheCatalogVersion(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	base := newTestProvisioner(t, db, migrations.Tenant)
	src, err := migrations.TenantPlus(map[string]string{
		"000002_dept.up.sql":    "ALTER TABLE extensions ADD COLUMN department text;\n",
		"000002_dept.down.sql":  "ALTER TABLE extensions DROP COLUMN department;\n",
		"000003_notes.up.sql":   "CREATE TABLE notes (id bigint PRIMARY KEY);\n",
		"000003_notes.down.sql": "DROP TABLE notes;\n",
	})
	require.NoError(t, err)
	p := newTestProvisioner(t, db, src)
	h, err := p.history()
	require.NoError(t, err)
	up := controlplane.MigrationOp{Kind: controlplane.MigrateUp}

	for i, isolation := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		tn := &controlplane.Tenant{ID: int64(i + 1), Isolation: isolation, DBName: base.DBName(int64(i + 1))}
		v, err := base.Provision(ctx, tn)
		require.NoError(t, err)
		require.Equal(t, uint(1), v)
		var conn *sql.DB
		schema := tn.DBName
		if isolation == controlplane.IsolationSchema {
			conn = pgtest.Open(t, db.URL)
		} else {
			conn, schema = pgtest.Open(t, pgtest.WithDatabase(t, db.URL, tn.DBName)), "public"
		}
		hasNotes := func() bool {
			var ok bool
			require.NoError(t, conn.QueryRow(`SELECT to_regclass($1) IS NOT NULL`, `"`+schema+`".notes`).Scan(&ok))
			return ok
		}

		// The catalog is wrong (0 or 2, the table says 1): nothing runs.
		for _, v := range []uint{0, 2} {
			stale := *tn
			stale.SchemaVersion = v
			script, first := pendingScript(h, v)
			_, done := p.upOneTrip(ctx, &stale, h, script, first)
			require.False(t, done, v)
			require.Equal(t, "1 false", migrationRow(t, conn, schema))
			require.False(t, hasNotes())
		}

		// The catalog is right: one trip from 1 to 3.
		tn.SchemaVersion = 1
		script, first := pendingScript(h, 1)
		out, done := p.upOneTrip(ctx, tn, h, script, first)
		require.True(t, done)
		require.Equal(t, controlplane.MigrationOutcome{From: 1, To: 3}, out)
		require.Equal(t, "3 false", migrationRow(t, conn, schema))
		require.True(t, hasNotes())

		// Migrate with a stale catalog (1, the table says 3): read, nothing to do.
		require.Equal(t, controlplane.MigrationOutcome{From: 3, To: 3}, p.Migrate(ctx, tn, up))

		// Dirty in the table but clean in the catalog: refused, not run.
		_, err = conn.Exec(`UPDATE "` + schema + `".schema_migrations SET version = 2, dirty = true`)
		require.NoError(t, err)
		tn.SchemaVersion = 2
		out = p.Migrate(ctx, tn, up)
		require.ErrorContains(t, out.Err, "Dirty database version 2")
		require.Equal(t, controlplane.MigrationOutcome{From: 2, To: 2, Dirty: true, Err: out.Err}, out)
		require.Equal(t, "2 true", migrationRow(t, conn, schema))
		_, err = conn.Exec(`UPDATE "` + schema + `".schema_migrations SET version = 3, dirty = false`)
		require.NoError(t, err)
	}
}
