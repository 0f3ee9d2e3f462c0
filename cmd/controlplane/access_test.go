package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// A tenant role cannot connect to the catalog database (where the secret
// and every tenant live), nor to a template database.
func TestTenantRoleCannotConnectToCatalogOrTemplate(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.create(seed())
	acme := b.app.Provisioner.DBName(1)
	password := b.app.RoleSecret.Password(acme)

	_, err := b.connectAs(acme, password, b.db.Name)
	require.Error(t, err)
	require.Contains(t, err.Error(), "permission denied for database")

	admin := pgtest.Open(t, b.db.URL)
	var tpl string
	require.NoError(t, admin.QueryRow(`SELECT datname FROM pg_database WHERE datistemplate AND starts_with(datname, $1)`, b.db.Prefix).Scan(&tpl))
	_, err = b.connectAs(acme, password, tpl)
	require.Error(t, err)
	var connect bool
	for _, db := range []string{b.db.Name, tpl} {
		for _, role := range []string{"public", acme} {
			require.NoError(t, admin.QueryRow(`SELECT has_database_privilege($1, $2, 'CONNECT') OR has_database_privilege($1, $2, 'TEMPORARY')`, role, db).Scan(&connect))
			require.False(t, connect, "%s on %s", role, db)
		}
	}

	// A template an older version built (PUBLIC keeps its default rights)
	// is closed by the first provisioner that uses it.
	_, err = admin.Exec(`GRANT CONNECT, TEMPORARY ON DATABASE ` + pgx.Identifier{tpl}.Sanitize() + ` TO PUBLIC`)
	require.NoError(t, err)
	again, _ := b.restartLogged(b.cfg)
	again.create(tenantBody("second", controlplane.IsolationDatabase))
	require.NoError(t, admin.QueryRow(`SELECT has_database_privilege('public', $1, 'CONNECT')`, tpl).Scan(&connect))
	require.False(t, connect)
}

// Closing the catalog database to PUBLIC keeps every role the
// configuration names; a role that may not close it logs one warning with
// the SQL that does, and the start goes on.
func TestCloseDatabases(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	admin := pgtest.Open(t, db.URL)
	other := db.Prefix + "other"
	_, err := admin.Exec(`CREATE ROLE ` + other + ` LOGIN PASSWORD 'other-password-0123456789'`)
	require.NoError(t, err)
	asOther := func() string {
		u, err := pgx.ParseConfig(db.URL)
		require.NoError(t, err)
		return "postgres://" + other + ":other-password-0123456789@" + u.Host + ":" + itoa(int64(u.Port)) + "/" + db.Name + "?sslmode=disable"
	}()
	closeWith := func(catalogURL, tenantURL string) string {
		cfg, err := config.Load([]string{"DATABASE_URL=" + catalogURL, "TENANT_DATABASE_URL=" + tenantURL}, nil)
		require.NoError(t, err)
		logs := &logBuffer{}
		require.NoError(t, closeDatabases(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil))))
		return logs.String()
	}
	open := func(role string) bool {
		var ok bool
		require.NoError(t, admin.QueryRow(`SELECT has_database_privilege($1, $2, 'CONNECT')`, role, db.Name).Scan(&ok))
		return ok
	}

	// The other role is no owner: it can only say what to run.
	logs := closeWith(asOther, asOther)
	require.Equal(t, 1, bytes.Count([]byte(logs), []byte("\n")), "one warning: %s", logs)
	require.Contains(t, logs, `"level":"WARN"`)
	require.Contains(t, logs, `"database":"`+db.Name+`"`)
	fix := `GRANT CONNECT, TEMPORARY ON DATABASE \"` + db.Name + `\" TO \"` + other + `\"; REVOKE CONNECT, TEMPORARY ON DATABASE \"` + db.Name + `\" FROM PUBLIC;`
	require.Contains(t, logs, `"fix":"`+fix+`"`)
	require.NotContains(t, logs, "other-password")
	require.True(t, open("public"))

	// The owner closes it, keeping the tenant server's role (the other one).
	require.Empty(t, closeWith(db.URL, asOther))
	require.False(t, open("public"))
	require.True(t, open(other))
	require.Empty(t, closeWith(asOther, asOther), "closed already: nothing to do, nothing to say")
}

// `controlplane migrate catalog up` closes the catalog database, as serve
// does.
func TestMigrateCatalogUpClosesTheCatalog(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"migrate", "catalog", "up", "--database-url", db.URL, "--log-level", "error"})
	require.NoError(t, root.ExecuteContext(context.Background()))
	latest, err := migrations.Latest(migrations.Catalog)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("catalog at version %d\n", latest), out.String())
	var open bool
	require.NoError(t, pgtest.Open(t, db.URL).QueryRow(`SELECT has_database_privilege('public', $1, 'CONNECT') OR has_database_privilege('public', $1, 'TEMPORARY')`, db.Name).Scan(&open))
	require.False(t, open)
}
