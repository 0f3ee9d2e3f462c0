package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/catalog"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// crashEnv names, in a re-executed test binary, the step it kills itself
// at (SIGKILL, as the OOM killer or kill -9 would), and crashWhat what it
// does until then: "create" a tenant, or "fill" the spare databases.
const (
	crashEnv  = "CONTROLPLANE_TEST_CRASH_AT"
	crashWhat = "CONTROLPLANE_TEST_CRASH_DOING"
	// crashTenant is the tenant a "backup", "restore" or "move" child
	// works on, crashBackup the backup a "restore" child restores,
	// crashMove the server and mode ("pg-c offline") a "move" child moves
	// it to.
	crashTenant = "CONTROLPLANE_TEST_CRASH_TENANT"
	crashBackup = "CONTROLPLANE_TEST_CRASH_BACKUP"
	crashMove   = "CONTROLPLANE_TEST_CRASH_MOVE"
)

func TestMain(m *testing.M) {
	if step := os.Getenv(crashEnv); step != "" {
		os.Exit(crashChild(step, os.Getenv(crashWhat)))
	}
	rc := m.Run()
	pgtest.DropTemplates()
	pgtest.DestroyShared()
	os.Exit(rc)
}

// crashChild is the process the crash tests kill: a control plane wired as
// serve wires it, that dies by SIGKILL when provisioning reaches step. It
// returns (an exit status) only if the step never came.
func crashChild(step, doing string) int {
	ctx := context.Background()
	cfg, err := config.Load(os.Environ(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	app, err := newApp(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	kill := func(name string) {
		if name == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	if cfg.TenantSpareDatabases > 0 && doing == "create" {
		// The spare a create claims, made before the kill point is armed.
		if err := app.Tenants.Spares.Fill(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "fill:", err)
			return 2
		}
	}
	app.Provisioner.Step, app.Tenants.Step, app.Operations.Step = kill, kill, kill
	switch doing {
	case "move":
		var id int64
		var spec controlplane.MoveSpec
		_, _ = fmt.Sscan(os.Getenv(crashTenant), &id)
		_, _ = fmt.Sscan(os.Getenv(crashMove), &spec.Server, &spec.Mode)
		app.TenantServers.Step = kill
		if _, err = app.Operations.StartMove(ctx, id, spec); err == nil {
			time.Sleep(time.Minute) // the move runs into the kill
		}
	case "backup", "restore":
		var id, backup int64
		_, _ = fmt.Sscan(os.Getenv(crashTenant), &id)
		_, _ = fmt.Sscan(os.Getenv(crashBackup), &backup)
		app.Provisioner.Step = kill // the server-side steps of a restore
		if doing == "backup" {
			_, err = app.Operations.StartBackup(ctx, id)
		} else {
			_, err = app.Operations.StartRestore(ctx, id, backup)
		}
		if err == nil {
			time.Sleep(time.Minute) // the operation runs into the kill
		}
	case "create":
		_, _, err = app.Tenants.Create(ctx, controlplane.TenantSpec{Name: "Crash", Slug: "crash", Domain: "crash.example.com", Status: controlplane.StatusActive, Timezone: "UTC", MaxExtensions: 10, Settings: []byte("[]")})
	case "fill":
		err = app.Tenants.Spares.Fill(ctx)
	}
	fmt.Fprintf(os.Stderr, "step %q never came (%s: %v)\n", step, doing, err)
	return 3
}

// A process killed at any step of provisioning, on every path (database
// mode with and without a spare, schema mode, the template build, the
// making of a spare), leaves nothing that a restart's reconciler does not
// finish or remove: afterwards the tenant is ready, or failed and made
// ready by POST /api/tenants/{id}/provision, or was never recorded; and
// the tenant server holds nothing of this catalog's that is not a ready
// tenant's, a spare the catalog knows, or the complete template.
func TestKilledAtEveryProvisioningStep(t *testing.T) {
	t.Parallel()
	cases := []struct {
		isolation controlplane.Isolation
		spares    int
		doing     string
		step      string
	}{
		{controlplane.IsolationDatabase, 0, "create", "template:migrated"},
		{controlplane.IsolationDatabase, 0, "create", "template:closed"},
		{controlplane.IsolationDatabase, 0, "create", "create:pending"},
		{controlplane.IsolationDatabase, 0, "create", "database:role"},
		{controlplane.IsolationDatabase, 0, "create", "database:created"},
		{controlplane.IsolationDatabase, 0, "create", "create:provisioned"},
		{controlplane.IsolationSchema, 0, "create", "create:pending"},
		{controlplane.IsolationSchema, 0, "create", "create:provisioned"},
		{controlplane.IsolationDatabase, 1, "create", "create:pending"},
		{controlplane.IsolationDatabase, 1, "create", "create:provisioned"},
		{controlplane.IsolationDatabase, 1, "fill", "spare:role"},
		{controlplane.IsolationDatabase, 1, "fill", "spare:created"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/spares=%d/%s/%s", c.isolation, c.spares, c.doing, c.step), func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			env := []string{
				"DATABASE_URL=" + db.URL,
				"TENANT_ISOLATION=" + string(c.isolation),
				"TENANT_DB_PREFIX=" + db.Prefix,
				fmt.Sprintf("TENANT_SPARE_DATABASES=%d", c.spares),
				"LOG_LEVEL=error",
			}
			// Killed for real: a child process, SIGKILLed at the step.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			killedChild(t, ctx, env, c.step, c.doing)

			// The restart: a new process, its reconciler's first pass (as
			// serve makes at start) and the spares' reconcile and fill.
			b := start(t, db, env)
			require.True(t, b.app.Reconciler.Pass(ctx, 0))
			require.NoError(t, b.app.Tenants.Spares.Reconcile(ctx))
			require.NoError(t, b.app.Tenants.Spares.Fill(ctx))

			status, got := b.do("GET", "/api/tenants?slug=crash", nil)
			require.Equal(t, http.StatusOK, status, "%v", got)
			if n := len(got["data"].([]any)); n == 1 {
				tn := got["data"].([]any)[0].(map[string]any)
				id := int64(tn["id"].(float64))
				switch tn["provisioning"] {
				case "ready":
				case "failed":
					status, got = b.do("POST", fmt.Sprintf("/api/tenants/%d/provision", id), nil)
					require.Equal(t, http.StatusOK, status, "a failed tenant is retryable to ready: %v", got)
				default:
					t.Fatalf("after the reconciler's pass the tenant is %v", tn["provisioning"])
				}
				status, _, got = b.req("GET", "crash.example.com", "/api/extensions", nil)
				require.Equal(t, http.StatusOK, status, "the tenant serves: %v", got)
			}
			auditLeftovers(t, b)

			// And the next create works as if nothing had happened.
			created := b.create(tenantBody("after", c.isolation))
			require.Equal(t, "ready", created["provisioning"])
			auditLeftovers(t, b)
		})
	}
}

// killedChild runs this test binary as a crash child (crashChild) with
// env, doing what doing says until step, and requires that it died by
// SIGKILL there.
func killedChild(t *testing.T, ctx context.Context, env []string, step, doing string) {
	t.Helper()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	child.Env = append(append(os.Environ(), env...), crashEnv+"="+step, crashWhat+"="+doing)
	out, err := child.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the child must die: %s", out)
	ws, _ := exit.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "killed by SIGKILL at %s, got %v: %s", step, err, out)
	waitTenantLocksGone(t, env)
}

// waitTenantLocksGone waits until no session holds a tenant lock in the
// catalog of env's DATABASE_URL. A killed process's locks go with its
// sessions, which the server ends only once it notices their sockets
// closed; a process started at once (fast, on an idle machine) could
// otherwise find the tenant still locked, take its work for alive, and
// leave it, where the tests expect it recovered.
func waitTenantLocksGone(t *testing.T, env []string) {
	t.Helper()
	url := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			url = v
		}
	}
	require.NotEmpty(t, url, "DATABASE_URL in the child's environment")
	db := pgtest.Open(t, url)
	defer db.Close()
	require.Eventually(t, func() bool {
		var held int
		err := db.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = $1
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, catalog.TenantLockClass).Scan(&held)
		return err == nil && held == 0
	}, 30*time.Second, 10*time.Millisecond, "the killed process's tenant locks outlived it")
}

// auditLeftovers fails on anything of this catalog's on the tenant server
// that is not a ready tenant's database (and role) or schema, a ready spare
// the catalog knows, or the complete template (and its builder role).
func auditLeftovers(t *testing.T, b *bundle) {
	t.Helper()
	admin := pgtest.Open(t, b.db.URL)
	catalog := pgtest.Open(t, b.db.URL)
	known := map[string]string{}
	rows, err := catalog.Query(`SELECT db_name, isolation FROM tenants WHERE provisioning = 'ready'
		UNION ALL SELECT db_name, 'spare' FROM tenant_spares WHERE state = 'ready'`)
	require.NoError(t, err)
	for rows.Next() {
		var name, kind string
		require.NoError(t, rows.Scan(&name, &kind))
		known[name] = kind
	}
	require.NoError(t, rows.Close())
	var problems []string
	check := func(kind, q string, ok func(name string) bool) {
		rows, err := admin.Query(q, b.db.Prefix)
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var name string
			require.NoError(t, rows.Scan(&name))
			if !ok(name) {
				problems = append(problems, kind+" "+name)
			}
		}
		require.NoError(t, rows.Err())
	}
	template := func(name string) bool {
		return strings.HasPrefix(name, b.db.Prefix+"tpl2_") && !strings.HasSuffix(name, "_building")
	}
	check("database", `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, func(n string) bool {
		return template(n) || known[n] == "database" || known[n] == "spare"
	})
	check("role", `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, func(n string) bool {
		return n == b.db.Prefix+"template_owner" || known[n] == "database" || known[n] == "spare"
	})
	check("schema", `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, func(n string) bool {
		return known[n] == "schema"
	})
	// Every database of ours is open only to its owner and complete.
	var half []string
	r, err := admin.Query(`SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND NOT datistemplate
		AND (NOT datallowconn OR has_database_privilege('public', oid, 'CONNECT') OR shobj_description(oid, 'pg_database') IS NULL)`, b.db.Prefix)
	require.NoError(t, err)
	for r.Next() {
		var n string
		require.NoError(t, r.Scan(&n))
		half = append(half, n)
	}
	require.NoError(t, r.Close())
	require.Empty(t, problems, "left behind on the tenant server")
	require.Empty(t, half, "databases not finished (closed, open to PUBLIC or unmarked)")
}
