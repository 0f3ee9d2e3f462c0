package tenantdb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// shape describes a tenant's database objects, names and definitions, so
// two tenants made differently can be compared.
func shape(t *testing.T, db *sql.DB, schema string) []string {
	t.Helper()
	rows, err := db.Query(`
		SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
		  FROM information_schema.columns WHERE table_schema = $1
		UNION ALL
		SELECT 'constraint ' || conname || ' ' || replace(pg_get_constraintdef(c.oid), $1 || '.', '')
		  FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1
		UNION ALL
		SELECT 'index ' || indexname || ' ' || replace(indexdef, $1 || '.', '')
		  FROM pg_indexes WHERE schemaname = $1

		ORDER BY 1`, schema)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	return out
}

func migrationRow(t *testing.T, db *sql.DB, schema string) string {
	var v int64
	var dirty bool
	require.NoError(t, db.QueryRow(fmt.Sprintf(`SELECT version, dirty FROM %q.schema_migrations`, schema)).Scan(&v, &dirty))
	return fmt.Sprintf("%d %t", v, dirty)
}

func newTestProvisioner(t *testing.T, db pgtest.DB, src fs.FS) *Provisioner {
	p, err := NewProvisioner(context.Background(), ProvisionerConfig{URL: db.URL, Prefix: db.Prefix, Owner: "fresh-test", Migrations: src, RoleSecret: RoleSecret("fresh-test-secret")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// The fast paths (a clone of the template, the one-transaction schema)
// leave exactly what golang-migrate leaves, file by file.
func TestFreshTenantsEqualMigratedOnes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	p := newTestProvisioner(t, db, migrations.Tenant)
	for _, isolation := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		fresh := &controlplane.Tenant{ID: 1, Isolation: isolation}
		slow := &controlplane.Tenant{ID: 2, Isolation: isolation}
		if isolation == controlplane.IsolationSchema {
			fresh.ID, slow.ID = 3, 4
		}
		fresh.DBName, slow.DBName = p.DBName(fresh.ID), p.DBName(slow.ID)

		// The slow path: the database or schema exists already (as after
		// an interrupted attempt), so golang-migrate runs every file.
		if isolation == controlplane.IsolationDatabase {
			// Empty (no template), as a history that cannot be cloned.
			_, err := p.createTenantDatabase(ctx, slow, p.mark(slow), "")
			require.NoError(t, err)
		} else {
			require.NoError(t, p.createSchema(ctx, slow))
		}
		for _, tn := range []*controlplane.Tenant{fresh, slow} {
			v, err := p.Provision(ctx, tn)
			require.NoError(t, err)
			require.Equal(t, uint(1), v)
		}

		open := func(tn *controlplane.Tenant) (*sql.DB, string) {
			if isolation == controlplane.IsolationSchema {
				return pgtest.Open(t, db.URL), tn.DBName
			}
			return pgtest.Open(t, pgtest.WithDatabase(t, db.URL, tn.DBName)), "public"
		}
		fdb, fschema := open(fresh)
		sdb, sschema := open(slow)
		require.Equal(t, shape(t, sdb, sschema), shape(t, fdb, fschema), string(isolation))
		require.NotEmpty(t, shape(t, fdb, fschema))
		require.Equal(t, migrationRow(t, sdb, sschema), migrationRow(t, fdb, fschema))
		if isolation == controlplane.IsolationDatabase {
			var owners []string
			rows, err := fdb.Query(`SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'`)
			require.NoError(t, err)
			for rows.Next() {
				var o string
				require.NoError(t, rows.Scan(&o))
				owners = append(owners, o)
			}
			rows.Close()
			// pg_database_owner is whoever owns the database: the tenant's
			// role (the template's objects are given to it once, when the
			// template is built, instead of REASSIGNed in every clone).
			require.Equal(t, []string{"pg_database_owner"}, owners, "the clone's tables belong to the database's owner")
			var tenantOwns bool
			require.NoError(t, fdb.QueryRow(`SELECT pg_has_role($1, 'pg_database_owner', 'USAGE')`, fresh.DBName).Scan(&tenantOwns))
			require.True(t, tenantOwns, "the tenant's role is the database's owner")
		}
	}
}

// A long history provisions as well as a short one (the template and the
// one-transaction script do not grow in round trips with it).
func TestFreshTenantsWithALongHistory(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	steps := map[string]string{}
	for v := 2; v <= 30; v++ {
		steps[fmt.Sprintf("%06d_step.up.sql", v)] = fmt.Sprintf("ALTER TABLE extensions ADD COLUMN c%d int;\n", v)
		steps[fmt.Sprintf("%06d_step.down.sql", v)] = fmt.Sprintf("ALTER TABLE extensions DROP COLUMN c%d;\n", v)
	}
	src, err := migrations.TenantPlus(steps)
	require.NoError(t, err)
	p := newTestProvisioner(t, db, src)
	for i, isolation := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		tn := &controlplane.Tenant{ID: int64(i + 1), Isolation: isolation, DBName: p.DBName(int64(i + 1))}
		v, err := p.Provision(context.Background(), tn)
		require.NoError(t, err)
		require.Equal(t, uint(30), v)
		out := p.Migrate(context.Background(), tn, controlplane.MigrationOp{Kind: controlplane.MigrateVersion})
		require.NoError(t, out.Err)
		require.Equal(t, uint(30), out.To)
		require.False(t, out.Dirty)
	}
}

// The fleet's fast "up" leaves what golang-migrate leaves, and fails as it
// does: dirty at the failed version, the schema at the previous one.
func TestFastUpEqualsGolangMigrate(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	base := newTestProvisioner(t, db, migrations.Tenant)
	var tenants []*controlplane.Tenant
	for i, isolation := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationDatabase, controlplane.IsolationSchema, controlplane.IsolationSchema} {
		tn := &controlplane.Tenant{ID: int64(i + 1), Isolation: isolation, DBName: base.DBName(int64(i + 1))}
		v, err := base.Provision(ctx, tn)
		require.NoError(t, err)
		tn.SchemaVersion = v // as the catalog records it: the one-trip path
		tenants = append(tenants, tn)
	}
	src, err := migrations.TenantPlus(map[string]string{
		"000002_more.up.sql":   "ALTER TABLE extensions ADD COLUMN department text NOT NULL DEFAULT '';\nCREATE TABLE notes (id bigint PRIMARY KEY, body text);\n",
		"000002_more.down.sql": "DROP TABLE notes;\nALTER TABLE extensions DROP COLUMN department;\n",
		"000003_idx.up.sql":    "CREATE INDEX notes_body_idx ON notes (body);\n",
		"000003_idx.down.sql":  "DROP INDEX notes_body_idx;\n",
	})
	require.NoError(t, err)
	p := newTestProvisioner(t, db, src)
	up := controlplane.MigrationOp{Kind: controlplane.MigrateUp}

	for _, pair := range [][2]*controlplane.Tenant{{tenants[0], tenants[1]}, {tenants[2], tenants[3]}} {
		fast, slow := pair[0], pair[1]
		out := p.Migrate(ctx, fast, up)
		require.NoError(t, out.Err)
		require.Equal(t, controlplane.MigrationOutcome{From: 1, To: 3}, out)
		out = p.migrateWithLibrary(ctx, slow, up)
		require.NoError(t, out.Err)
		require.Equal(t, uint(3), out.To)

		open := func(tn *controlplane.Tenant) (*sql.DB, string) {
			if tn.Isolation == controlplane.IsolationSchema {
				return pgtest.Open(t, db.URL), tn.DBName
			}
			return pgtest.Open(t, pgtest.WithDatabase(t, db.URL, tn.DBName)), "public"
		}
		fdb, fs := open(fast)
		sdb, ss := open(slow)
		require.Equal(t, shape(t, sdb, ss), shape(t, fdb, fs))
		require.Equal(t, migrationRow(t, sdb, ss), migrationRow(t, fdb, fs))
		if fast.Isolation == controlplane.IsolationDatabase {
			var owner string
			require.NoError(t, fdb.QueryRow(`SELECT tableowner FROM pg_tables WHERE tablename = 'notes'`).Scan(&owner))
			require.Equal(t, fast.DBName, owner, "a new table belongs to the tenant's role")
		}
		// Nothing to do the second time.
		out = p.Migrate(ctx, fast, up)
		require.Equal(t, controlplane.MigrationOutcome{From: 3, To: 3}, out)
		fast.SchemaVersion = 3
	}

	// A failing file: dirty at its version, the schema untouched.
	src["000004_bad.up.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE half (id int);\nSELECT no_such_function();\n")}
	src["000004_bad.down.sql"] = &fstest.MapFile{Data: []byte("DROP TABLE IF EXISTS half;\n")}
	bad := newTestProvisioner(t, db, src)
	for _, tn := range []*controlplane.Tenant{tenants[0], tenants[2]} {
		out := bad.Migrate(ctx, tn, up)
		require.Error(t, out.Err)
		require.Equal(t, uint(3), out.From)
		require.Equal(t, uint(4), out.To)
		require.True(t, out.Dirty)
		tn.SchemaVersion, tn.SchemaDirty = out.To, out.Dirty
		again := bad.Migrate(ctx, tn, up)
		require.Contains(t, again.Err.Error(), "Dirty database version 4")
		forced := bad.Migrate(ctx, tn, controlplane.MigrationOp{Kind: controlplane.MigrateForce, Version: 3})
		require.NoError(t, forced.Err)
		require.Equal(t, controlplane.MigrationOutcome{From: 4, To: 3, Dirty: false}, forced)
		tn.SchemaVersion, tn.SchemaDirty = 3, false
	}
}

// A clone reuses the role an interrupted attempt left (once it is checked
// to be the tenant's), and one that finds a role of the tenant's name that
// this catalog did not make fails without leaving the cloned database.
func TestCloneWithARoleLeftBehind(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	p := newTestProvisioner(t, db, migrations.Tenant)

	left := &controlplane.Tenant{ID: 1, Isolation: controlplane.IsolationDatabase, DBName: p.DBName(1)}
	require.NoError(t, p.ensureRole(ctx, left))
	v, err := p.Provision(ctx, left)
	require.NoError(t, err)
	require.Equal(t, uint(1), v)
	tdb := pgtest.Open(t, pgtest.WithDatabase(t, db.URL, left.DBName))
	var owner, dbOwner string
	require.NoError(t, tdb.QueryRow(`SELECT tableowner FROM pg_tables WHERE tablename = 'extensions'`).Scan(&owner))
	require.NoError(t, tdb.QueryRow(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()`).Scan(&dbOwner))
	require.Equal(t, "pg_database_owner", owner, "the template's objects belong to the database's owner")
	require.Equal(t, left.DBName, dbOwner)

	foreign := &controlplane.Tenant{ID: 2, Isolation: controlplane.IsolationDatabase, DBName: p.DBName(2)}
	_, err = pgtest.Open(t, db.URL).Exec(`CREATE ROLE ` + foreign.DBName)
	require.NoError(t, err)
	_, err = p.Provision(ctx, foreign)
	require.Error(t, err)
	require.Contains(t, err.Error(), "refusing to adopt or drop it")
	exists, err := p.Exists(ctx, foreign)
	require.NoError(t, err)
	require.False(t, exists, "the database cloned before the role step is dropped")
}
