package main

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/catalog"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// brokenMigrations is the real tenant history plus a version whose second
// statement fails: the first statement's table must not survive anywhere.
func brokenMigrations(t *testing.T) fs.FS {
	t.Helper()
	out, err := migrations.TenantPlus(map[string]string{
		"000900_broken.up.sql":   "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n",
		"000900_broken.down.sql": "DROP TABLE IF EXISTS half_done;\n",
	})
	require.NoError(t, err)
	return out
}

// restart wires a second control plane on b's catalog, as a new process (or
// a fixed binary) would be, with the given tenant migrations.
func (b *bundle) restart(tenantMigrations fs.FS) *bundle {
	b.t.Helper()
	if tenantMigrations == nil {
		tenantMigrations = migrations.Tenant
	}
	app, err := newAppWith(context.Background(), b.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), tenantMigrations)
	require.NoError(b.t, err)
	b.t.Cleanup(app.Close)
	srv := serveChecked(b.t, app.Handler)
	listen(b.t, app, b.cfg)
	return &bundle{t: b.t, app: app, srv: srv, db: b.db, cfg: b.cfg}
}

func TestProvisioningFailureLeavesNothingAndRetryWorks(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, good *bundle) {
		broken := good.restart(brokenMigrations(t))

		status, got := broken.do("POST", "/api/tenants", seed())
		require.Equal(t, http.StatusInternalServerError, status, "%v", got)
		e := got["error"].(map[string]any)
		require.Equal(t, "provisioning_failed", e["code"])
		require.Contains(t, e["message"], "no_such_function")
		require.Contains(t, e["message"], "POST /api/tenants/1/provision")

		status, tenant := good.do("GET", "/api/tenants/1", nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "failed", tenant["provisioning"])
		require.Contains(t, tenant["last_error"], "no_such_function")
		require.Nil(t, good.tenantTables(tenant), "no database or schema is left behind")
		require.Empty(t, pgtest.TenantDatabases(t, good.db.Prefix))

		// The slug stays reserved by the failed tenant.
		status, _ = good.do("POST", "/api/tenants", seed())
		require.Equal(t, http.StatusConflict, status)

		// A fixed binary retries it.
		status, tenant = good.do("POST", "/api/tenants/1/provision", nil)
		require.Equal(t, http.StatusOK, status, "%v", tenant)
		require.Equal(t, "ready", tenant["provisioning"])
		require.Equal(t, "", tenant["last_error"])
		require.Equal(t, allTenantTables, good.tenantTables(tenant))

		status, got = good.do("POST", "/api/tenants/1/provision", nil)
		require.Equal(t, http.StatusConflict, status, "a ready tenant is not re-provisioned: %v", got)
	})
}

// TestReconcileAfterCrash simulates a process killed at each point of the
// tenant lifecycle and checks that the next start finishes or cleans up.
func TestReconcileAfterCrash(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		ctx := context.Background()
		store := catalog.NewStore(b.app.Catalog)
		isolation := controlplane.Isolation(b.cfg.TenantIsolation)
		// insert writes a catalog row as Create does before provisioning.
		insert := func(slug string, state controlplane.ProvisionState) *controlplane.Tenant {
			id, err := store.NextTenantID(ctx)
			require.NoError(t, err)
			spec := controlplane.NewTenantSpec()
			tn := &controlplane.Tenant{
				ID: id, Name: slug, Slug: slug, Domain: slug + ".example.com", Status: spec.Status,
				Timezone: spec.Timezone, MaxExtensions: spec.MaxExtensions, Settings: spec.Settings,
				Isolation: isolation, DBName: b.app.Provisioner.DBName(id), Provisioning: state,
			}
			require.NoError(t, store.CreateTenant(ctx, tn))
			return tn
		}

		// 1. Killed right after the row was written.
		bare := insert("bare", controlplane.ProvisionPending)
		// 2. Killed after the database was migrated, before it was marked ready.
		migrated := insert("migrated", controlplane.ProvisionPending)
		_, err := b.app.Provisioner.Provision(ctx, migrated)
		require.NoError(t, err)
		// 3. Killed in the middle of a delete.
		deleting := insert("deleting", controlplane.ProvisionReady)
		_, err = b.app.Provisioner.Provision(ctx, deleting)
		require.NoError(t, err)
		_, err = store.UpdateTenant(ctx, deleting.ID, func(t *controlplane.Tenant) error {
			t.Status, t.Provisioning = controlplane.StatusSuspended, controlplane.ProvisionDeleting
			return nil
		})
		require.NoError(t, err)
		// 4. Pending, but its name is taken by a database or schema this
		// catalog did not make: it must be neither adopted nor dropped.
		foreign := insert("foreign", controlplane.ProvisionPending)
		admin := pgtest.Open(t, b.db.URL)
		createForeign := `CREATE SCHEMA ` + pgx.Identifier{foreign.DBName}.Sanitize()
		if isolation == controlplane.IsolationDatabase {
			createForeign = `CREATE DATABASE ` + pgx.Identifier{foreign.DBName}.Sanitize()
		}
		_, err = admin.Exec(createForeign)
		require.NoError(t, err)

		next := b.restart(migrations.Tenant)
		err = next.app.Tenants.Reconcile(ctx)
		require.Error(t, err, "the foreign name is reported")
		require.Contains(t, err.Error(), "refusing to adopt or drop it")

		for _, tn := range []*controlplane.Tenant{bare, migrated} {
			status, got := next.do("GET", "/api/tenants/"+itoa(tn.ID), nil)
			require.Equal(t, http.StatusOK, status)
			require.Equal(t, "ready", got["provisioning"], tn.Slug)
			require.Equal(t, allTenantTables, next.tenantTables(got), tn.Slug)
		}
		status, _ := next.do("GET", "/api/tenants/"+itoa(deleting.ID), nil)
		require.Equal(t, http.StatusNotFound, status, "the interrupted delete is finished")
		require.Nil(t, next.tenantTables(map[string]any{"db_name": deleting.DBName, "isolation": string(isolation)}))

		status, got := next.do("GET", "/api/tenants/"+itoa(foreign.ID), nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "failed", got["provisioning"])
		require.Contains(t, got["last_error"], "refusing to adopt or drop it")
		exists, err := next.app.Provisioner.Exists(ctx, foreign)
		require.NoError(t, err)
		require.True(t, exists, "a database this catalog did not make is never dropped")

		// Nothing is left pending, and a second start has nothing to do.
		left, err := store.TenantsByProvisioning(ctx, controlplane.ProvisionPending, controlplane.ProvisionDeleting)
		require.NoError(t, err)
		require.Empty(t, left)
		require.NoError(t, next.app.Tenants.Reconcile(ctx))
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A create holds the tenant's lifecycle lock only while it runs: the
// winner releases it with its last catalog round trip, and the losers of a
// duplicate-slug race release the lock they took on their reserved id.
func TestCreateReleasesTheLifecycleLock(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		ctx := context.Background()
		const n = 5
		done := make(chan int, n)
		for range n {
			go func() {
				status, _ := b.do("POST", "/api/tenants", seed())
				done <- status
			}()
		}
		created := 0
		for range n {
			if <-done == http.StatusCreated {
				created++
			}
		}
		require.Equal(t, 1, created)
		// Every id the race reserved (n of them, from 1) is free to lock.
		for id := int64(1); id <= n; id++ {
			unlock, err := b.app.Store.LockTenant(ctx, id)
			require.NoError(t, err, "tenant id %d is still locked", id)
			unlock()
		}
		_, list := b.do("GET", "/api/tenants", nil)
		got := list["data"].([]any)[0].(map[string]any)
		require.Equal(t, "ready", got["provisioning"])
		status, _ := b.do("PATCH", "/api/tenants/"+itoa(int64(got["id"].(float64))), map[string]any{"status": "suspended"})
		require.Equal(t, http.StatusOK, status)
		status, _ = b.do("DELETE", "/api/tenants/"+itoa(int64(got["id"].(float64)))+"?purge=now", nil)
		require.Equal(t, http.StatusNoContent, status, "deleting right after the create finds the lock free")
	})
}

// A tenant provisioned whose ready mark with its initial API key fails
// (here the catalog refuses every new key) is marked ready on its own, as
// a retry would: the create answers 201 with no key instead of failing a
// tenant that exists and is served, and the operator issues a key later.
func TestCreateReadyWithoutInitialKey(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "TENANT_SPARE_DATABASES=0")
	catalogDB := pgtest.Open(t, b.db.URL)
	_, err := catalogDB.Exec(`CREATE FUNCTION refuse_keys() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'new keys are refused by the test'; END $$;
		CREATE TRIGGER refuse_keys BEFORE INSERT ON tenant_api_keys FOR EACH ROW EXECUTE FUNCTION refuse_keys()`)
	require.NoError(t, err)
	status, got := b.do("POST", "/api/tenants", tenantBody("nokey", controlplane.IsolationDatabase))
	require.Equal(t, http.StatusCreated, status, "%v", got)
	require.Equal(t, "ready", got["provisioning"])
	require.Nil(t, got["api_key"], "no key could be made")
	b.addExtensions("nokey.example.com", "1001") // served

	_, err = catalogDB.Exec(`DROP TRIGGER refuse_keys ON tenant_api_keys`)
	require.NoError(t, err)
	status, key := b.do("POST", "/api/tenants/"+strconv.Itoa(int(got["id"].(float64)))+"/keys", map[string]any{"name": "late"})
	require.Equal(t, http.StatusCreated, status, "%v", key)
	require.NotEmpty(t, key["key"])
}

// A failed provisioning whose cleanup fails too: the create answers 500
// naming both and saying what is left; the tenant is recorded failed with
// both causes; once the cause is gone, the retry finds what was left and
// makes the tenant. Here the tenant's database vanishes under the create
// (dropped by the test right after it was made) and its role cannot be
// dropped, since it owns a table in another database.
func TestProvisioningFailureWhoseCleanupFails(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "TENANT_SPARE_DATABASES=0")
	admin := pgtest.Open(t, b.db.URL)
	role := b.db.Prefix + "1" // tenant 1's database and role
	var planted atomic.Bool
	b.app.Provisioner.Step = func(step string) {
		if step != "database:created" || planted.Swap(true) {
			return
		}
		// On the create's goroutine: assert, not require.
		for _, q := range []string{`DROP DATABASE ` + pgx.Identifier{role}.Sanitize() + ` WITH (FORCE)`,
			`CREATE TABLE planted (id int)`, `ALTER TABLE planted OWNER TO ` + pgx.Identifier{role}.Sanitize()} {
			_, err := admin.Exec(q)
			assert.NoError(t, err, q)
		}
	}
	status, got := b.do("POST", "/api/tenants", seed())
	require.Equal(t, http.StatusInternalServerError, status, "%v", got)
	e := got["error"].(map[string]any)
	require.Equal(t, "provisioning_failed", e["code"])
	require.Contains(t, e["message"], "cleanup also failed")
	require.Contains(t, e["message"], "could not be removed yet (a retry or a delete finds and removes it)")
	require.True(t, planted.Load())

	_, tenant := b.do("GET", "/api/tenants/1", nil)
	require.Equal(t, "failed", tenant["provisioning"])
	require.Contains(t, tenant["last_error"], "cleanup also failed")

	b.app.Provisioner.Step = nil
	_, err := admin.Exec(`DROP TABLE planted`)
	require.NoError(t, err)
	status, tenant = b.do("POST", "/api/tenants/1/provision", nil)
	require.Equal(t, http.StatusOK, status, "the retry finds the role left behind and makes the tenant: %v", tenant)
	require.Equal(t, "ready", tenant["provisioning"])
	require.Equal(t, allTenantTables, b.tenantTables(tenant))
}
