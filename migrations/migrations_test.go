package migrations_test

import (
	"database/sql"
	"io/fs"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// Every migration has a working down: up, all the way down, and up again
// leaves the same tables, for the catalog and for a tenant.
func TestUpDownUp(t *testing.T) {
	t.Parallel()
	for name, fsys := range map[string]fs.FS{"catalog": migrations.Catalog, "tenant": migrations.Tenant} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			fresh := func() *sql.DB {
				d, err := sql.Open("pgx", db.URL)
				require.NoError(t, err)
				return d
			}
			latest, err := migrations.Latest(fsys)
			require.NoError(t, err)

			v, err := migrations.Up(fresh(), fsys, migrations.Target{})
			require.NoError(t, err)
			require.Equal(t, latest, v)
			before := tables(t, db.URL)
			require.NotEmpty(t, before)

			m, err := migrations.Open(fresh(), fsys, migrations.Target{})
			require.NoError(t, err)
			require.NoError(t, m.Down())
			_, _ = m.Close()
			require.Equal(t, []string{migrations.Table}, tables(t, db.URL), "down removes everything up made")

			v, err = migrations.Up(fresh(), fsys, migrations.Target{})
			require.NoError(t, err)
			require.Equal(t, latest, v)
			require.Equal(t, before, tables(t, db.URL))
		})
	}
}

func tables(t *testing.T, url string) []string {
	t.Helper()
	db := pgtest.Open(t, url)
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	return out
}
