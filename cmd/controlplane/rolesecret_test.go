package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// logBuffer collects an app's log lines; requests may log while a test
// reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// restartLogged starts another app on b's catalog with cfg, as serve
// would, and returns it with what it logged (as JSON lines).
func (b *bundle) restartLogged(cfg config.Config) (*bundle, *logBuffer) {
	b.t.Helper()
	logs := &logBuffer{}
	app, err := newApp(context.Background(), cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(b.t, err)
	b.t.Cleanup(app.Close)
	srv := serveChecked(b.t, app.Handler)
	listen(b.t, app, cfg)
	return &bundle{t: b.t, app: app, srv: srv, db: b.db, cfg: cfg}, logs
}

// connectAs opens one connection to database as role with password.
func (b *bundle) connectAs(role, password, database string) (*pgx.Conn, error) {
	b.t.Helper()
	cfg, err := pgx.ParseConfig(b.db.URL)
	require.NoError(b.t, err)
	cfg.User, cfg.Password, cfg.Database = role, password, database
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err == nil {
		b.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	}
	return conn, err
}

// canLogIn reports whether role logs in with password (into its own
// database), failing the test on any error but a rejected password.
func (b *bundle) canLogIn(role, password string) bool {
	b.t.Helper()
	conn, err := b.connectAs(role, password, role)
	if err != nil {
		require.Contains(b.t, err.Error(), "password authentication failed")
		return false
	}
	_ = conn.Close(context.Background())
	return true
}

// extension creates an extension through host, reporting the status: the
// router reaches a database-mode tenant only as its role.
func (b *bundle) extension(host, number string) int {
	b.t.Helper()
	status, _, _ := b.req("POST", host, "/api/extensions", map[string]any{"number": number, "name": "x"})
	return status
}

// requireNoSecrets fails if logs show the role secret or a tenant's
// password.
func requireNoSecrets(t *testing.T, logs string, secret tenantdb.RoleSecret, roles ...string) {
	t.Helper()
	require.NotContains(t, logs, hex.EncodeToString(secret))
	require.NotContains(t, logs, string(secret))
	for _, r := range roles {
		require.NotContains(t, logs, secret.Password(r))
	}
}

var uuidPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// A tenant role reads every COMMENT on the server's databases and roles,
// hence the catalog's identity, which marks them. Without TENANT_ROLE_SECRET
// the role passwords used to be derived from that identity; now nothing a
// tenant role can read gives another tenant's password.
func TestTenantRoleCannotDeriveAnotherTenantsPassword(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.twoTenants()
	ctx := context.Background()
	a, other := b.app.Provisioner.DBName(1), b.app.Provisioner.DBName(2)
	identity, err := b.app.Store.Identity(ctx)
	require.NoError(t, err)

	conn, err := b.connectAs(a, b.app.RoleSecret.Password(a), a)
	require.NoError(t, err)
	rows, err := conn.Query(ctx, `SELECT description FROM pg_shdescription`)
	require.NoError(t, err)
	comments, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	candidates := map[string]bool{}
	for _, c := range comments {
		candidates[c] = true
		for _, id := range uuidPattern.FindAllString(c, -1) {
			candidates[id] = true
		}
	}
	require.True(t, candidates[identity], "the catalog's identity is readable to a tenant role: %v", comments)

	require.True(t, b.canLogIn(other, b.app.RoleSecret.Password(other)), "the real password works")
	for c := range candidates {
		for _, secret := range []tenantdb.RoleSecret{tenantdb.RoleSecret("catalog-identity:" + c), tenantdb.RoleSecret(c)} {
			require.False(t, b.canLogIn(other, secret.Password(other)), "a password derived from %q", c)
		}
	}
}

// The generated secret is made once and kept: a restart uses the same one,
// sets no password again, and reaches the tenants.
func TestGeneratedRoleSecretSurvivesRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.create(seed())
	ctx := context.Background()
	first := b.app.RoleSecret
	require.Len(t, first, 32)
	tag, err := b.app.Store.RolePasswordsTag(ctx)
	require.NoError(t, err)
	require.Equal(t, first.Tag(), tag, "the first start recorded its secret's tag")

	again, logs := b.restartLogged(b.cfg)
	require.Equal(t, first, again.app.RoleSecret)
	require.Contains(t, logs.String(), "TENANT_ROLE_SECRET is not set")
	require.NotContains(t, logs.String(), `"msg":"tenant role passwords`, "nothing to rotate")
	require.Equal(t, http.StatusCreated, again.extension("acme.example.com", "1001"))
	requireNoSecrets(t, logs.String(), first, b.app.Provisioner.DBName(1))

	var n int
	require.NoError(t, pgtest.Open(t, b.db.URL).QueryRow(`SELECT count(*) FROM tenant_role_secret`).Scan(&n))
	require.Equal(t, 1, n)
}

// Replicas starting together make one secret between them.
func TestGeneratedRoleSecretRace(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	_, err := pgtest.Open(t, b.db.URL).Exec(`DELETE FROM tenant_role_secret`)
	require.NoError(t, err)
	secrets, errs := make([][]byte, 8), make([]error, 8)
	var wg sync.WaitGroup
	for i := range secrets {
		wg.Go(func() { secrets[i], errs[i] = b.app.Store.GeneratedRoleSecret(context.Background()) })
	}
	wg.Wait()
	for i, s := range secrets {
		require.NoError(t, errs[i])
		require.Len(t, s, 32)
		require.Equal(t, secrets[0], s)
	}
	require.NotEqual(t, []byte(b.app.RoleSecret), secrets[0], "a new one once the old is gone")
}

// An installation of an older version: catalog at version 5, every
// tenant role's password derived from the catalog's identity. The first
// start sets them from the generated secret; a tenant whose role cannot be
// set does not stop it, and the next start finishes the job.
func TestUpgradeRotatesPasswordsOfTheOldDerivation(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.twoTenants()
	ctx := context.Background()
	acme, beta := b.app.Provisioner.DBName(1), b.app.Provisioner.DBName(2)
	identity, err := b.app.Store.Identity(ctx)
	require.NoError(t, err)
	old := tenantdb.RoleSecret("catalog-identity:" + identity)

	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"migrate", "catalog", "down", catalogStepsTo(t, 5), "--database-url", b.db.URL, "--log-level", "error"})
	require.NoError(t, root.ExecuteContext(ctx))
	require.Equal(t, "catalog at version 5 (dirty: false)\n", out.String())
	admin := pgtest.Open(t, b.db.URL)
	for _, role := range []string{acme, beta} {
		_, err := admin.Exec(`ALTER ROLE ` + pgx.Identifier{role}.Sanitize() + ` PASSWORD '` + old.Password(role) + `'`)
		require.NoError(t, err)
		require.True(t, b.canLogIn(role, old.Password(role)))
	}
	// Beta's role is not recognisably this catalog's: it cannot be set.
	var mark string
	require.NoError(t, admin.QueryRow(`SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1`, beta).Scan(&mark))
	_, err = admin.Exec(`COMMENT ON ROLE ` + pgx.Identifier{beta}.Sanitize() + ` IS 'not ours'`)
	require.NoError(t, err)

	up, logs := b.restartLogged(b.cfg)
	require.Regexp(t, `"level":"ERROR","msg":"tenant role passwords: some could not be set[^\n]*"reason":"no rotation recorded yet","rotated":1,"failed":1`, logs.String())
	secret := up.app.RoleSecret
	require.NotEqual(t, old, secret)
	require.False(t, b.canLogIn(acme, old.Password(acme)))
	require.True(t, b.canLogIn(acme, secret.Password(acme)))
	require.Equal(t, http.StatusCreated, up.extension("acme.example.com", "1001"))
	require.NotEqual(t, http.StatusCreated, up.extension("beta.example.org", "1001"), "beta's role kept its old password")
	tag, err := up.app.Store.RolePasswordsTag(ctx)
	require.NoError(t, err)
	require.Empty(t, tag, "an incomplete rotation is not recorded")
	requireNoSecrets(t, logs.String(), secret, acme, beta)

	_, err = admin.Exec(`COMMENT ON ROLE ` + pgx.Identifier{beta}.Sanitize() + ` IS ` + "'" + mark + "'")
	require.NoError(t, err)
	next, logs := b.restartLogged(b.cfg)
	require.Contains(t, logs.String(), `"msg":"tenant role passwords set from the current secret","reason":"no rotation recorded yet","rotated":2,"failed":0`)
	require.Equal(t, secret, next.app.RoleSecret)
	require.Equal(t, http.StatusCreated, next.extension("beta.example.org", "1001"))
	require.Equal(t, http.StatusCreated, next.extension("acme.example.com", "1002"))
	tag, err = next.app.Store.RolePasswordsTag(ctx)
	require.NoError(t, err)
	require.Equal(t, secret.Tag(), tag)

	_, logs = b.restartLogged(b.cfg)
	require.NotContains(t, logs.String(), `"msg":"tenant role passwords`)
}

// An operator who sets (or changes) TENANT_ROLE_SECRET restarts serve: it
// sees the secret changed and sets every role's password from it.
func TestChangedRoleSecretRotatesAtStart(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.twoTenants()
	generated := b.app.RoleSecret
	acme := b.app.Provisioner.DBName(1)

	cfg := b.cfg
	cfg.TenantRoleSecret = config.Secret("an-operator-chosen-secret-0123456789")
	rotated, logs := b.restartLogged(cfg)
	require.Equal(t, tenantdb.RoleSecret(cfg.TenantRoleSecret.Value()), rotated.app.RoleSecret)
	require.Contains(t, logs.String(), `"msg":"tenant role passwords set from the current secret","reason":"secret changed","rotated":2,"failed":0`)
	require.NotContains(t, logs.String(), "TENANT_ROLE_SECRET is not set")
	require.False(t, b.canLogIn(acme, generated.Password(acme)))
	require.Equal(t, http.StatusCreated, rotated.extension("acme.example.com", "1001"))
	require.Equal(t, http.StatusCreated, rotated.extension("beta.example.org", "1001"))
	requireNoSecrets(t, logs.String(), rotated.app.RoleSecret, acme)
	require.NotContains(t, logs.String(), cfg.TenantRoleSecret.Value())
}

// The tables holding the secret and its tag are the control plane role's
// alone: another role that may connect to the catalog still reads nothing.
func TestRoleSecretTablesArePrivate(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	admin := pgtest.Open(t, b.db.URL)
	reader := b.db.Prefix + "reader"
	_, err := admin.Exec(`CREATE ROLE ` + reader + ` LOGIN PASSWORD 'reader-password-0123456789';
		GRANT CONNECT ON DATABASE ` + pgx.Identifier{b.db.Name}.Sanitize() + ` TO ` + reader)
	require.NoError(t, err)
	conn, err := b.connectAs(reader, "reader-password-0123456789", b.db.Name)
	require.NoError(t, err)
	for _, table := range []string{"tenant_role_secret", "tenant_role_passwords"} {
		_, err := conn.Exec(context.Background(), `SELECT * FROM `+table)
		require.Error(t, err)
		require.Contains(t, err.Error(), "permission denied for table "+table)
	}
}
