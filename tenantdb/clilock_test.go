package tenantdb

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	mpostgres "github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// stockCLIDriver opens golang-migrate's postgres driver from a URL, exactly
// as the stock `migrate -database postgres://…` CLI does: database mode as
// the tenant's role on its database, schema mode on the server's database
// with the schema as search_path.
func stockCLIDriver(t *testing.T, db pgtest.DB, p *Provisioner, tn *controlplane.Tenant) database.Driver {
	t.Helper()
	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	if tn.Isolation == controlplane.IsolationDatabase {
		u.User = url.UserPassword(tn.DBName, p.roles.Password(tn.DBName))
		u.Path = "/" + tn.DBName
	} else {
		q := u.Query()
		q.Set("search_path", tn.DBName)
		u.RawQuery = q.Encode()
	}
	d, err := (&mpostgres.Postgres{}).Open(u.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// The stock golang-migrate CLI and the control plane take the same lock on
// a tenant, whichever path the control plane takes (the one-trip up, the
// file-by-file library for down), in both isolation modes: each waits for
// the other, and the version they agree on is the real one.
func TestStockCLIAndControlPlaneWaitForEachOther(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	base := newTestProvisioner(t, db, migrations.Tenant)
	src, err := migrations.TenantPlus(map[string]string{
		// Slow enough for the other side to try its lock while it runs.
		"000002_slow.up.sql":   "SELECT pg_sleep(0.8);\nCREATE TABLE notes (id bigint PRIMARY KEY);\n",
		"000002_slow.down.sql": "DROP TABLE notes;\n",
	})
	require.NoError(t, err)
	p := newTestProvisioner(t, db, src)

	for i, isolation := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(isolation), func(t *testing.T) {
			tn := &controlplane.Tenant{ID: int64(i + 1), Isolation: isolation, DBName: base.DBName(int64(i + 1))}
			v, err := base.Provision(ctx, tn)
			require.NoError(t, err)
			tn.SchemaVersion = v
			cli := stockCLIDriver(t, db, p, tn)
			admin := pgtest.Open(t, db.URL)
			// sleeping counts the sessions running the slow file now.
			sleeping := func() int {
				var n int
				require.NoError(t, admin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname IN ($1, $2)`, db.Name, tn.DBName).Scan(&n))
				return n
			}

			// 1. The CLI holds its lock: the one-trip up waits for it.
			require.NoError(t, cli.Lock())
			done := make(chan controlplane.MigrationOutcome, 1)
			go func() { done <- p.Migrate(ctx, tn, controlplane.MigrationOp{Kind: controlplane.MigrateUp}) }()
			time.Sleep(500 * time.Millisecond)
			require.Equal(t, 0, sleeping(), "up ran while the stock CLI held the lock")
			require.NoError(t, cli.Unlock())
			out := <-done
			require.NoError(t, out.Err)
			require.Equal(t, uint(2), out.To)
			tn.SchemaVersion = 2

			// 2. The control plane is mid-run (the slow file, through the
			// library: goto 1 then up 2 file by file): the CLI waits.
			require.NoError(t, p.Migrate(ctx, tn, controlplane.MigrationOp{Kind: controlplane.MigrateGoto, Version: 1}).Err)
			running := make(chan controlplane.MigrationOutcome, 1)
			go func() {
				running <- p.Migrate(ctx, tn, controlplane.MigrationOp{Kind: controlplane.MigrateGoto, Version: 2})
			}()
			require.Eventually(t, func() bool { return sleeping() > 0 }, 10*time.Second, 10*time.Millisecond, "the run reaches its slow file")
			// golang-migrate marks the version dirty before it runs a file:
			// a CLI that got the lock now would see 2, dirty.
			require.NoError(t, cli.Lock())
			v2, dirty, err := cli.Version()
			require.NoError(t, err)
			require.Equal(t, 2, v2)
			require.False(t, dirty, "the CLI got the lock while the run held it")
			require.NoError(t, cli.Unlock())
			require.NoError(t, (<-running).Err)
		})
	}
}
