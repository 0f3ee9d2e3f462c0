package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// waitOperation polls operation id until it is no longer running and
// returns it. Its tenant is free by then: the runner lets go of it as the
// end is committed (TestAnEndedOperationLeavesItsTenantFree).
func (b *bundle) waitOperation(id any) map[string]any {
	b.t.Helper()
	path := fmt.Sprintf("/api/operations/%v", id)
	deadline := time.Now().Add(time.Minute)
	for {
		status, op := b.do("GET", path, nil)
		require.Equal(b.t, http.StatusOK, status, "%v", op)
		if op["state"] != "running" {
			return op
		}
		require.True(b.t, time.Now().Before(deadline), "operation still running after a minute: %v", op)
		time.Sleep(20 * time.Millisecond)
	}
}

// An operation read as ended has let go of its tenant: the next lifecycle
// request, sent at once, is not refused as contended (409). Before, the
// end was committed a moment before the lock was released, and a request
// in between got "being provisioned or deleted by another request" (CI
// saw it after a restore). Many short backups, each polled without pause,
// make that moment likely to be hit if it is there.
func TestAnEndedOperationLeavesItsTenantFree(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "BACKUP_DIR="+t.TempDir(), "TENANT_SPARE_DATABASES=0")
	tn := b.create(tenantBody("free", controlplane.IsolationSchema))
	backups := fmt.Sprintf("/api/tenants/%v/backups", tn["id"])
	status, op := b.do("POST", backups, nil)
	require.Equal(t, http.StatusAccepted, status, "%v", op)
	for i := range 10 { // without the fix, a 409 came by the 6th
		path := fmt.Sprintf("/api/operations/%v", op["id"])
		for op["state"] == "running" {
			status, op = b.do("GET", path, nil)
			require.Equal(t, http.StatusOK, status, "%v", op)
		}
		require.Equal(t, "succeeded", op["state"], "%v", op)
		status, op = b.do("POST", backups, nil)
		require.Equal(t, http.StatusAccepted, status, "backup %d, sent as the one before read ended: %v", i+2, op)
	}
	b.waitOperation(op["id"])
}

// download fetches backup id's archive and returns its bytes and the
// checksum header.
func (b *bundle) download(id any) ([]byte, string) {
	b.t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/api/backups/%v/download", b.srv.URL, id))
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	require.Equal(b.t, http.StatusOK, resp.StatusCode, "%s", raw)
	return raw, resp.Header.Get("X-Content-SHA256")
}

// restoreInto restores archive into a new database of the test server
// (pg_restore, as an operator would) and returns the database's URL.
func restoreInto(t *testing.T, b *bundle, archive []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "a.dump")
	require.NoError(t, os.WriteFile(file, archive, 0o600))
	name := b.db.Prefix + "restored"
	admin := pgtest.Open(t, b.db.URL)
	_, err := admin.Exec(`CREATE DATABASE ` + name)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`) })
	url := pgtest.WithDatabase(t, b.db.URL, name)
	out, err := exec.Command("pg_restore", "--no-owner", "--no-acl", "--dbname="+url, file).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return url
}

// A backup of one tenant, in each mode: 202 with an operation that ends
// succeeded; the backup records its tenant, version, size and SHA-256;
// the download is those bytes; restored by pg_restore it holds exactly
// the tenant's data, and nothing of another tenant's (schema mode: the
// other tenant's schema in the same database is not in it). Deleting the
// backup removes its file.
func TestBackupOfOneTenant(t *testing.T) {
	t.Parallel()
	for _, iso := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(iso), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			b := setup(t, iso, "BACKUP_DIR="+dir, "TENANT_SPARE_DATABASES=0")
			mine := b.create(tenantBody("mine", iso))
			other := b.create(tenantBody("other", iso))
			for i, host := range []string{"mine.example.com", "other.example.com"} {
				for n := range 3 + i*2 { // 3 extensions for mine, 5 for the other
					status, _, body := b.req("POST", host, "/api/extensions", map[string]any{"number": fmt.Sprint(1001 + n), "name": "Desk"})
					require.Equal(t, http.StatusCreated, status, "%v", body)
				}
			}

			status, op := b.do("POST", fmt.Sprintf("/api/tenants/%v/backups", mine["id"]), nil)
			require.Equal(t, http.StatusAccepted, status, "%v", op)
			require.Equal(t, "backup", op["kind"])
			op = b.waitOperation(op["id"])
			require.Equal(t, "succeeded", op["state"], "%v", op)
			backupID := op["backup_id"]
			status, bk := b.do("GET", fmt.Sprintf("/api/backups/%v", backupID), nil)
			require.Equal(t, http.StatusOK, status, "%v", bk)
			require.Equal(t, "ready", bk["state"])
			_, _, metrics := get(t, b.srv.URL, "", "/metrics")
			require.Contains(t, metrics, `controlplane_operations_total{kind="backup",state="succeeded"} 1`)
			require.Equal(t, mine["id"], bk["tenant_id"])
			require.Equal(t, "mine", bk["tenant_slug"])
			require.EqualValues(t, mine["schema_version"], bk["schema_version"])
			require.NotContains(t, bk, "path", "the file's path is not shown")

			archive, header := b.download(backupID)
			sum := sha256.Sum256(archive)
			require.Equal(t, hex.EncodeToString(sum[:]), bk["sha256"])
			require.Equal(t, bk["sha256"], header)
			require.EqualValues(t, len(archive), bk["size_bytes"])
			require.True(t, strings.HasPrefix(string(archive), "PGDMP"), "a pg_dump custom archive")

			restored := pgtest.Open(t, restoreInto(t, b, archive))
			table := "extensions"
			if iso == controlplane.IsolationSchema {
				table = mine["db_name"].(string) + ".extensions"
				var n int
				require.NoError(t, restored.QueryRow(`SELECT count(*) FROM pg_namespace WHERE nspname = $1`, other["db_name"]).Scan(&n))
				require.Zero(t, n, "the other tenant's schema is not in the backup")
			}
			var n int
			require.NoError(t, restored.QueryRow(`SELECT count(*) FROM `+table).Scan(&n))
			require.Equal(t, 3, n, "exactly the tenant's extensions")

			status, list := b.do("GET", fmt.Sprintf("/api/tenants/%v/backups", mine["id"]), nil)
			require.Equal(t, http.StatusOK, status)
			require.Len(t, list["data"], 1)
			files, _ := filepath.Glob(filepath.Join(dir, "*", "*.dump"))
			require.Len(t, files, 1)
			fi, err := os.Stat(files[0])
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "an archive is readable by the control plane's user only")

			// A file that is not here (another replica's folder, or removed
			// by hand) is a clear 409, never a 500.
			require.NoError(t, os.Rename(files[0], files[0]+".away"))
			status, body := b.do("GET", fmt.Sprintf("/api/backups/%v/download", backupID), nil)
			require.Equal(t, http.StatusConflict, status, "%v", body)
			require.Contains(t, fmt.Sprint(body), "BACKUP_DIR")
			require.NoError(t, os.Rename(files[0]+".away", files[0]))
			status, body = b.do("DELETE", fmt.Sprintf("/api/backups/%v", backupID), nil)
			require.Equal(t, http.StatusNoContent, status, "%v", body)
			files, _ = filepath.Glob(filepath.Join(dir, "*", "*"))
			require.Empty(t, files, "the archive is removed with its backup")
			status, _ = b.do("GET", fmt.Sprintf("/api/backups/%v", backupID), nil)
			require.Equal(t, http.StatusNotFound, status)
		})
	}
}

// waitingDumper dumps once ctx has ended (30 s at most): a backup that
// is cancelled while it dumps.
type waitingDumper struct{ controlplane.Dumper }

func (d waitingDumper) DumpFile(ctx context.Context, t *controlplane.Tenant, path string) error {
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
	return d.Dumper.DumpFile(ctx, t, path)
}

// One operation per tenant at a time, and a cancel stops a running backup:
// it ends cancelled, its backup failed, with no file left.
func TestBackupOneAtATimeAndCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, controlplane.IsolationDatabase, "BACKUP_DIR="+dir, "TENANT_SPARE_DATABASES=0")
	b.app.Operations.ProgressEvery = 20 * time.Millisecond
	held := make(chan struct{})
	release := make(chan struct{})
	b.app.Operations.Step = func(name string) {
		if name == "backup:started" {
			close(held)
			<-release
		}
	}
	// The dump waits for the backup's context to end, which only the
	// cancel's progress tick does, then runs (and fails at once): the
	// cancel stops the dump whatever the machine's speed. (A fixed pause
	// before the dump raced pg_dump against the tick.)
	b.app.Operations.Dumper = waitingDumper{b.app.Operations.Dumper}
	tn := b.create(tenantBody("busy", controlplane.IsolationDatabase))
	status, op := b.do("POST", fmt.Sprintf("/api/tenants/%v/backups", tn["id"]), nil)
	require.Equal(t, http.StatusAccepted, status, "%v", op)
	<-held

	status, body := b.do("POST", fmt.Sprintf("/api/tenants/%v/backups", tn["id"]), nil)
	require.Equal(t, http.StatusConflict, status, "a second operation on the tenant: %v", body)
	status, body = b.do("GET", fmt.Sprintf("/api/operations?tenant=%v&state=running", tn["id"]), nil)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, body["data"], 1)

	status, body = b.do("POST", fmt.Sprintf("/api/operations/%v/cancel", op["id"]), nil)
	require.Equal(t, http.StatusOK, status, "%v", body)
	require.Equal(t, true, body["cancel_requested"])
	// The dump starts once released and is stopped by the cancel.
	require.Eventually(t, func() bool {
		_, cur := b.do("GET", fmt.Sprintf("/api/operations/%v", op["id"]), nil)
		return cur["cancel_requested"] == true
	}, 5*time.Second, 10*time.Millisecond)
	close(release)
	op = b.waitOperation(op["id"])
	require.Equal(t, "cancelled", op["state"], "%v", op)
	_, bk := b.do("GET", fmt.Sprintf("/api/backups/%v", op["backup_id"]), nil)
	require.Equal(t, "failed", bk["state"])
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	require.Empty(t, files, "nothing left of a cancelled backup")

	status, body = b.do("POST", fmt.Sprintf("/api/operations/%v/cancel", op["id"]), nil)
	require.Equal(t, http.StatusConflict, status, "only a running operation is cancelled: %v", body)
	status, body = b.do("GET", "/api/operations?state=done", nil)
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", body)
	require.Contains(t, fmt.Sprint(body), "state")
	status, body = b.do("POST", "/api/tenants/999999/backups", nil)
	require.Equal(t, http.StatusNotFound, status, "%v", body)
}

// A serve killed (SIGKILL) in the middle of a backup leaves a running
// operation and a partial file; the restarted control plane's reconcile
// ends the operation failed ("interrupted"), removes the file, and the
// next backup succeeds.
func TestBackupKilledMidway(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"backup:started", "backup:dumped"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			dir := t.TempDir()
			env := []string{"DATABASE_URL=" + db.URL, "TENANT_DB_PREFIX=" + db.Prefix, "TENANT_SPARE_DATABASES=0", "BACKUP_DIR=" + dir, "LOG_LEVEL=error"}
			b := start(t, db, env)
			tn := b.create(tenantBody("kill", controlplane.IsolationDatabase))

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			killedChild(t, ctx, append(env, crashTenant+"="+fmt.Sprint(tn["id"])), step, "backup")
			left, _ := filepath.Glob(filepath.Join(dir, "*", "*.partial"))
			require.Len(t, left, 1, "the kill left a partial archive")

			b = start(t, db, env)
			_, running := b.do("GET", "/api/operations?state=running", nil)
			require.Len(t, running["data"], 1)
			n, err := b.app.Operations.Recover(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			op := running["data"].([]any)[0].(map[string]any)
			_, op = b.do("GET", fmt.Sprintf("/api/operations/%v", op["id"]), nil)
			require.Equal(t, "failed", op["state"])
			require.Contains(t, op["error"], "interrupted")
			files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
			require.Empty(t, files, "the partial archive is removed")

			status, next := b.do("POST", fmt.Sprintf("/api/tenants/%v/backups", tn["id"]), nil)
			require.Equal(t, http.StatusAccepted, status, "%v", next)
			require.Equal(t, "succeeded", b.waitOperation(next["id"])["state"])
		})
	}
}

// A backup reads a tenant database with the tenant's own rights, never the
// control plane's: a tenant holding its role's credentials that takes its
// own read right away from a table (or plants anything that would need
// more) gets a failed backup naming the table, not a dump made by a
// superuser that would also run whatever the tenant planted.
func TestBackupRunsAsTheTenantRole(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "BACKUP_DIR="+t.TempDir(), "TENANT_SPARE_DATABASES=0")
	tn := b.create(tenantBody("hostile", controlplane.IsolationDatabase))
	role := tn["db_name"].(string)
	ctx := context.Background()
	c, err := b.tenantConn(tn)
	require.NoError(t, err)
	_, err = c.Exec(ctx, `CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('x'); REVOKE ALL ON secrets FROM CURRENT_USER`)
	require.NoError(t, err)
	require.NoError(t, c.Close(ctx))

	status, op := b.do("POST", fmt.Sprintf("/api/tenants/%v/backups", tn["id"]), nil)
	require.Equal(t, http.StatusAccepted, status, "%v", op)
	op = b.waitOperation(op["id"])
	require.Equal(t, "failed", op["state"], "%v", op)
	require.Contains(t, op["error"], "permission denied", "%v", op)
	require.Contains(t, op["error"], "secrets", "%v", op)
	require.NotContains(t, op["error"], b.app.RoleSecret.Password(role), "no password in the error")
}

// controlplane tenants backup SLUG runs a backup in its own process, as
// serve would, waits for it, and prints the backup (JSON lines with
// --json); the API then lists it and serves its file.
func TestBackupFromTheCLI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, controlplane.IsolationSchema, "BACKUP_DIR="+dir)
	tn := b.create(tenantBody("cli", controlplane.IsolationSchema))
	out, err := b.cli("tenants", "backup", "cli", "--json", "--backup-dir", dir)
	require.NoError(t, err, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last struct {
		Operation map[string]any
		Backup    map[string]any
	}
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last), out)
	require.Equal(t, "succeeded", last.Operation["state"], out)
	require.Equal(t, "ready", last.Backup["state"], out)
	_, list := b.do("GET", fmt.Sprintf("/api/tenants/%v/backups", tn["id"]), nil)
	require.Len(t, list["data"], 1)
	archive, sum := b.download(last.Backup["id"])
	require.Equal(t, last.Backup["sha256"], sum)
	require.True(t, strings.HasPrefix(string(archive), "PGDMP"))

	_, err = b.cli("tenants", "backup", "nobody", "--backup-dir", dir)
	require.ErrorContains(t, err, `no tenant has the slug "nobody"`)

	// The rest of the lifecycle from the CLI: restore, delete, undelete,
	// purge.
	_, err = b.cli("tenants", "restore", "cli", "--backup", fmt.Sprint(last.Backup["id"]), "--backup-dir", dir)
	require.ErrorContains(t, err, "suspend it first", "an active tenant is not restored")
	b.setStatus(tn["id"], "suspended")
	out, err = b.cli("tenants", "restore", "cli", "--backup", fmt.Sprint(last.Backup["id"]), "--backup-dir", dir)
	require.NoError(t, err, out)
	require.Contains(t, out, `"kind":"restore","tenant_id":`, "not a terminal: JSON lines")
	require.Contains(t, out, `"state":"succeeded"`)
	out, err = b.cli("tenants", "delete", "cli", "--backup-dir", dir)
	require.NoError(t, err, out)
	require.Contains(t, out, "tenant cli deleted at")
	_, got := b.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.Equal(t, "deleted", got["status"])
	out, err = b.cli("tenants", "undelete", "cli")
	require.NoError(t, err, out)
	out, err = b.cli("tenants", "delete", "cli", "--purge-now")
	require.NoError(t, err, out)
	status, _ := b.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.Equal(t, http.StatusNotFound, status)
	var actor string
	require.NoError(t, pgtest.Open(t, b.db.URL).QueryRow(`SELECT actor FROM audit_log WHERE action = 'tenant.delete' ORDER BY id DESC LIMIT 1`).Scan(&actor))
	require.True(t, strings.HasPrefix(actor, "cli:"), "audited as the CLI's user: %s", actor)
}

// extensionNumbers lists a tenant's extension numbers through its API.
func (b *bundle) extensionNumbers(host string) []string {
	b.t.Helper()
	status, _, body := b.req("GET", host, "/api/extensions", nil)
	require.Equal(b.t, http.StatusOK, status, "%v", body)
	var out []string
	for _, e := range body["data"].([]any) {
		out = append(out, e.(map[string]any)["number"].(string))
	}
	return out
}

func (b *bundle) addExtensions(host string, numbers ...string) {
	b.t.Helper()
	for _, n := range numbers {
		status, _, body := b.req("POST", host, "/api/extensions", map[string]any{"number": n, "name": "Desk"})
		require.Equal(b.t, http.StatusCreated, status, "%v", body)
	}
}

// backupNow takes a backup of tenant id and returns the backup's id.
func (b *bundle) backupNow(id any) any {
	b.t.Helper()
	status, op := b.do("POST", fmt.Sprintf("/api/tenants/%v/backups", id), nil)
	require.Equal(b.t, http.StatusAccepted, status, "%v", op)
	op = b.waitOperation(op["id"])
	require.Equal(b.t, "succeeded", op["state"], "%v", op)
	return op["backup_id"]
}

func (b *bundle) setStatus(id any, status string) {
	b.t.Helper()
	code, body := b.do("PATCH", fmt.Sprintf("/api/tenants/%v", id), map[string]any{"status": status})
	require.Equal(b.t, http.StatusOK, code, "%v", body)
}

// A restore brings back exactly the backup's data, in place, and nothing
// of another tenant's: only a suspended tenant, from its own backups; the
// other tenant is untouched; after it the tenant takes writes, its ids
// continuing past the restored ones; the previous data is kept aside.
func TestRestoreOneTenant(t *testing.T) {
	t.Parallel()
	for _, iso := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(iso), func(t *testing.T) {
			t.Parallel()
			b := setup(t, iso, "BACKUP_DIR="+t.TempDir(), "TENANT_SPARE_DATABASES=0")
			mine := b.create(tenantBody("mine", iso))
			other := b.create(tenantBody("other", iso))
			b.addExtensions("mine.example.com", "1001", "1002", "1003")
			b.addExtensions("other.example.com", "2001")
			backup := b.backupNow(mine["id"])
			otherBackup := b.backupNow(other["id"])

			// Life goes on after the backup.
			b.addExtensions("mine.example.com", "1004", "1005")
			b.addExtensions("other.example.com", "2002")

			path := fmt.Sprintf("/api/tenants/%v/restore", mine["id"])
			if iso == controlplane.IsolationSchema {
				// In place: only a suspended tenant (a database-mode one is
				// restored while served: TestOnlineRestoreUnderLoad).
				status, body := b.do("POST", path, map[string]any{"backup_id": backup})
				require.Equal(t, http.StatusConflict, status, "an active tenant is not restored: %v", body)
			}
			b.setStatus(mine["id"], "suspended")
			status, body := b.do("POST", path, map[string]any{"backup_id": otherBackup})
			require.Equal(t, http.StatusUnprocessableEntity, status, "another tenant's backup: %v", body)
			require.Contains(t, fmt.Sprint(body), "backup_id")
			status, body = b.do("POST", path, map[string]any{})
			require.Equal(t, http.StatusUnprocessableEntity, status, "%v", body)

			status, op := b.do("POST", path, map[string]any{"backup_id": backup})
			require.Equal(t, http.StatusAccepted, status, "%v", op)
			require.Equal(t, "restore", op["kind"])
			op = b.waitOperation(op["id"])
			require.Equal(t, "succeeded", op["state"], "%v", op)
			previous := op["progress"].(map[string]any)["previous"].(string)
			require.NotEmpty(t, previous)

			b.setStatus(mine["id"], "active")
			require.Equal(t, []string{"1001", "1002", "1003"}, b.extensionNumbers("mine.example.com"), "exactly the backup's data")
			require.Equal(t, []string{"2001", "2002"}, b.extensionNumbers("other.example.com"), "the other tenant untouched")
			status, _, created := b.req("POST", "mine.example.com", "/api/extensions", map[string]any{"number": "1009", "name": "New"})
			require.Equal(t, http.StatusCreated, status, "%v", created)
			require.Greater(t, created["id"], float64(3), "ids continue past the restored ones")
			_, got := b.do("GET", fmt.Sprintf("/api/tenants/%v", mine["id"]), nil)
			require.EqualValues(t, b.app.LatestTenantSchema, got["schema_version"])

			// The previous data is kept aside, closed (database mode).
			admin := pgtest.Open(t, b.db.URL)
			var n int
			q := `SELECT count(*) FROM pg_database WHERE datname = $1 AND NOT datallowconn`
			if iso == controlplane.IsolationSchema {
				q = `SELECT count(*) FROM pg_namespace WHERE nspname = $1`
			}
			require.NoError(t, admin.QueryRow(q, previous).Scan(&n))
			require.Equal(t, 1, n, "previous kept as %s", previous)

			// Kept for the grace period, then dropped by the reconciler.
			dropped, err := b.app.Operations.DropAsides(context.Background())
			require.NoError(t, err)
			require.Zero(t, dropped, "not within the grace period")
			_, err = pgtest.Open(t, b.db.URL).Exec(`UPDATE operations SET finished_at = now() - interval '73 hours' WHERE id = $1`, op["id"])
			require.NoError(t, err)
			dropped, err = b.app.Operations.DropAsides(context.Background())
			require.NoError(t, err)
			require.Equal(t, 1, dropped)
			require.NoError(t, admin.QueryRow(q, previous).Scan(&n))
			require.Zero(t, n, "%s dropped after the grace period", previous)

			// Restored again, then purged: what the restore kept goes too.
			b.setStatus(mine["id"], "suspended")
			_, op = b.do("POST", path, map[string]any{"backup_id": backup})
			op = b.waitOperation(op["id"])
			require.Equal(t, "succeeded", op["state"], "%v", op)
			previous = op["progress"].(map[string]any)["previous"].(string)
			status, body = b.do("DELETE", fmt.Sprintf("/api/tenants/%v?purge=now", mine["id"]), nil)
			require.Equal(t, http.StatusNoContent, status, "%v", body)
			require.NoError(t, admin.QueryRow(q, previous).Scan(&n))
			require.Zero(t, n, "nothing of a purged tenant is left")
			require.Nil(t, b.tenantTables(mine))
		})
	}
}

// A serve killed in the middle of a restore: the restart's reconcile
// finishes it when the tenant's data was already set aside, and undoes it
// before; either way the tenant is served whole, with the backup's data or
// its own, and the operation says which.
func TestRestoreKilledMidway(t *testing.T) {
	t.Parallel()
	cases := []struct {
		iso      controlplane.Isolation
		step     string
		restored bool
	}{
		{controlplane.IsolationDatabase, "restore:created", false},
		{controlplane.IsolationDatabase, "restore:restored", false},
		{controlplane.IsolationDatabase, "restore:set-aside", true},
		{controlplane.IsolationDatabase, "restore:swapped", true},
		{controlplane.IsolationSchema, "restore:set-aside", false},
	}
	for _, c := range cases {
		t.Run(string(c.iso)+"/"+c.step, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			dir := t.TempDir()
			env := []string{"DATABASE_URL=" + db.URL, "TENANT_DB_PREFIX=" + db.Prefix, "TENANT_ISOLATION=" + string(c.iso), "TENANT_SPARE_DATABASES=0", "BACKUP_DIR=" + dir, "LOG_LEVEL=error"}
			b := start(t, db, env)
			tn := b.create(tenantBody("kill", c.iso))
			b.addExtensions("kill.example.com", "1001")
			backup := b.backupNow(tn["id"])
			b.addExtensions("kill.example.com", "1002")
			b.setStatus(tn["id"], "suspended")

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			killedChild(t, ctx, append(env, crashTenant+"="+fmt.Sprint(tn["id"]), crashBackup+"="+fmt.Sprint(backup)), c.step, "restore")

			b = start(t, db, env)
			n, err := b.app.Operations.Recover(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			_, ops := b.do("GET", fmt.Sprintf("/api/operations?tenant=%v&kind=restore", tn["id"]), nil)
			op := ops["data"].([]any)[0].(map[string]any)
			require.NotEqual(t, "running", op["state"], "%v", op)

			b.setStatus(tn["id"], "active")
			want := []string{"1001", "1002"}
			if c.restored {
				want = []string{"1001"}
				require.Equal(t, "succeeded", op["state"], "%v", op)
			} else {
				require.Equal(t, "failed", op["state"], "%v", op)
				require.Contains(t, op["error"], "undone")
			}
			require.Equal(t, want, b.extensionNumbers("kill.example.com"))
			b.addExtensions("kill.example.com", "1009")
		})
	}
}

// A restore runs what a tenant planted in its database (here a function
// in an index expression, which CREATE INDEX calls for every row) with the
// tenant's rights only: the function fails the restore if it runs as any
// other role, and the restore succeeds.
func TestRestoreRunsTenantCodeAsTheTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "BACKUP_DIR="+t.TempDir(), "TENANT_SPARE_DATABASES=0")
	tn := b.create(tenantBody("planter", controlplane.IsolationDatabase))
	role := tn["db_name"].(string)
	ctx := context.Background()
	c, err := b.tenantConn(tn)
	require.NoError(t, err)
	_, err = c.Exec(ctx, `
		CREATE FUNCTION public.trap(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
		BEGIN
			IF current_user <> `+"'"+role+"'"+` THEN
				RAISE EXCEPTION 'tenant code ran as %', current_user;
			END IF;
			RETURN v;
		END $$;
		CREATE TABLE public.planted (v int);
		INSERT INTO public.planted VALUES (1), (2);
		CREATE INDEX planted_trap ON public.planted ((public.trap(v)))`)
	require.NoError(t, err)
	require.NoError(t, c.Close(ctx))

	backup := b.backupNow(tn["id"])
	b.setStatus(tn["id"], "suspended")
	status, op := b.do("POST", fmt.Sprintf("/api/tenants/%v/restore", tn["id"]), map[string]any{"backup_id": backup})
	require.Equal(t, http.StatusAccepted, status, "%v", op)
	op = b.waitOperation(op["id"])
	require.Equal(t, "succeeded", op["state"], "the planted function ran as another role than the tenant's: %v", op)
}

// Scheduled backups: each pass of the schedule (a reconcile step) starts
// the due tenants' backups, two at a time fleet-wide, the longest without
// first; a tenant backed up within BACKUP_SCHEDULE is not due; each
// tenant keeps its BACKUP_KEEP newest scheduled backups (older ones go
// with their files), and backups asked for are never pruned.
func TestScheduledBackups(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, controlplane.IsolationSchema, "BACKUP_DIR="+dir, "BACKUP_SCHEDULE=1h", "BACKUP_KEEP=2")
	ctx := context.Background()
	var ids []any
	for _, slug := range []string{"s-1", "s-2", "s-3"} {
		ids = append(ids, b.create(tenantBody(slug, controlplane.IsolationSchema))["id"])
	}
	manual := b.backupNow(ids[0])
	settle := func() { // the started backups finish
		require.Eventually(t, func() bool {
			_, running := b.do("GET", "/api/operations?state=running", nil)
			return len(running["data"].([]any)) == 0
		}, time.Minute, 20*time.Millisecond)
	}
	pass := func() int {
		n, err := b.app.Operations.Schedule(ctx)
		require.NoError(t, err)
		settle()
		return n
	}
	require.Equal(t, 2, pass(), "two at a time")
	require.Equal(t, 1, pass(), "then the third")
	require.Equal(t, 0, pass(), "none due within the schedule")

	catalogDB := pgtest.Open(t, b.db.URL)
	for range 3 { // three more schedule periods go by
		_, err := catalogDB.Exec(`UPDATE backups SET created_at = created_at - interval '2 hours' WHERE scheduled`)
		require.NoError(t, err)
		pass()
		pass()
	}
	pass() // pruning sees a backup once it is ready: one pass later
	for _, id := range ids {
		_, list := b.do("GET", fmt.Sprintf("/api/tenants/%v/backups", id), nil)
		scheduled, kept := 0, 0
		for _, x := range list["data"].([]any) {
			bk := x.(map[string]any)
			require.Equal(t, "ready", bk["state"], "%v", bk)
			if bk["scheduled"] == true {
				scheduled++
			} else {
				kept++
			}
		}
		require.Equal(t, 2, scheduled, "tenant %v keeps its 2 newest scheduled backups", id)
		if id == ids[0] {
			require.Equal(t, 1, kept, "the backup asked for stays")
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.dump"))
	require.Len(t, files, 3*2+1, "pruned backups' files are gone")
	status, _ := b.do("GET", fmt.Sprintf("/api/backups/%v", manual), nil)
	require.Equal(t, http.StatusOK, status)
}

// An older backup restored while the tenant is served (database mode): it
// is restored and migrated up beside the tenant's database, as the
// tenant's role, then swapped in with the requests held; the tenant ends
// at the binary's version with exactly the backup's data. A backup whose
// data a later migration refuses fails before the swap: the tenant keeps
// its data and is served throughout, and nothing of the attempt is left.
func TestOnlineRestoreOfAnOlderBackup(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "TENANT_SPARE_DATABASES=0")
	tn := b.create(tenantBody("old", controlplane.IsolationDatabase))
	host := "old.example.com"
	b.addExtensions(host, "1001")
	good := b.backupNow(tn["id"]) // version 1: 1001
	b.addExtensions(host, "666")
	bad := b.backupNow(tn["id"]) // version 1: 1001, 666 (which v3 forbids)
	_, _, list := b.req("GET", host, "/api/extensions", nil)
	for _, e := range list["data"].([]any) {
		if e := e.(map[string]any); e["number"] == "666" {
			status, _, _ := b.req("DELETE", host, fmt.Sprintf("/api/extensions/%v", e["id"]), nil)
			require.Equal(t, http.StatusNoContent, status)
		}
	}
	require.Equal(t, []string{"1001"}, b.extensionNumbers(host))
	b.addExtensions(host, "1002")

	// A newer binary (v2, v3), to which the tenant is migrated.
	src := withMigrations(t, merge(v2, v3))
	newer := startWith(t, b.db, []string{"DATABASE_URL=" + b.db.URL, "TENANT_DB_PREFIX=" + b.db.Prefix, "TENANT_SPARE_DATABASES=0", "BACKUP_DIR=" + b.cfg.BackupDir}, src)
	app, fleet := b.fleet(src)
	for _, r := range fleet.Run(context.Background(), tenantsOf(app), controlplane.MigrationOp{Kind: controlplane.MigrateUp}, func(controlplane.MigrationResult) {}) {
		require.NoError(t, r.Err, "%+v", r)
	}
	require.Eventually(t, func() bool {
		_, got := newer.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
		return got["schema_version"] == float64(3)
	}, 10*time.Second, 50*time.Millisecond)

	restore := func(backup any) map[string]any {
		t.Helper()
		status, op := newer.do("POST", fmt.Sprintf("/api/tenants/%v/restore", tn["id"]), map[string]any{"backup_id": backup})
		require.Equal(t, http.StatusAccepted, status, "an active database-mode tenant is restored online, whatever its backup's version: %v", op)
		return newer.waitOperation(op["id"])
	}
	op := restore(good)
	require.Equal(t, "succeeded", op["state"], "%v", op)
	require.Equal(t, true, op["progress"].(map[string]any)["online"])
	require.Equal(t, []string{"1001"}, newer.extensionNumbers(host), "exactly the backup's data")
	_, got := newer.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.EqualValues(t, 3, got["schema_version"])
	require.Equal(t, false, got["schema_dirty"])
	tenantDB := pgtest.Open(t, pgtest.WithDatabase(t, b.db.URL, tn["db_name"].(string)))
	var columns, version int
	require.NoError(t, tenantDB.QueryRow(`SELECT count(*) FROM information_schema.columns WHERE table_name = 'extensions' AND column_name = 'department'`).Scan(&columns))
	require.Equal(t, 1, columns, "v2 ran on the restored database")
	require.NoError(t, tenantDB.QueryRow(`SELECT version FROM schema_migrations`).Scan(&version))
	require.Equal(t, 3, version)
	tenantDB.Close()
	newer.addExtensions(host, "1003")

	op = restore(bad)
	require.Equal(t, "failed", op["state"], "%v", op)
	require.Contains(t, op["error"], "could not be migrated to 3 before the swap")
	require.Contains(t, op["error"], "the tenant's data is untouched")
	require.Equal(t, []string{"1001", "1003"}, newer.extensionNumbers(host), "the tenant kept its data")
	var left int
	require.NoError(t, pgtest.Open(t, b.db.URL).QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, fmt.Sprintf("%s_r%v", tn["db_name"], op["id"])).Scan(&left))
	require.Zero(t, left, "the restored database is dropped")
	_, got = newer.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.EqualValues(t, 3, got["schema_version"])
}

// The end of an operation and the release of its tenant are one step for
// everyone else: the runner lets go of the lock inside the transaction
// that records the end. Between the release and the commit, a client
// still reads the operation running, and a reconciler that took the lock
// and asks whether it is running (OperationRunning) waits for the commit
// and hears "no", so it does not abandon an operation that has just
// ended (for a backup, that would remove the finished file).
func TestAnOperationsEndIsCommittedWithItsRelease(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "TENANT_SPARE_DATABASES=0")
	tn := b.create(tenantBody("ending", controlplane.IsolationSchema))
	ctx := context.Background()
	store := b.app.Store
	tenant, err := store.Tenant(ctx, int64(tn["id"].(float64)))
	require.NoError(t, err)
	unlock, err := store.LockTenant(ctx, tenant.ID) // as a runner holds it
	require.NoError(t, err)
	op, err := store.StartOperation(ctx, controlplane.OperationRestore, tenant, map[string]any{"backup_id": 1})
	require.NoError(t, err)

	released, commit := make(chan struct{}), make(chan struct{})
	finished := make(chan error, 1)
	now := time.Now()
	op.State, op.FinishedAt = controlplane.OperationSucceeded, &now
	go func() {
		finished <- store.FinishOperation(ctx, op, func() {
			unlock()
			close(released)
			<-commit
		})
	}()
	<-released

	// The tenant is free, the end not committed yet.
	again, err := store.LockTenant(ctx, tenant.ID)
	require.NoError(t, err, "the runner let go of the tenant")
	defer again()
	status, read := b.do("GET", fmt.Sprintf("/api/operations/%v", op.ID), nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "running", read["state"], "a client reads the end only once it is committed")
	answer := make(chan bool, 1)
	go func() {
		running, err := store.OperationRunning(ctx, op.ID)
		assert.NoError(t, err)
		answer <- running
	}()
	select {
	case running := <-answer:
		t.Fatalf("OperationRunning answered %t before the end was committed", running)
	case <-time.After(300 * time.Millisecond):
	}
	close(commit)
	require.NoError(t, <-finished)
	require.False(t, <-answer, "the reconciler finds the operation ended")
	status, read = b.do("GET", fmt.Sprintf("/api/operations/%v", op.ID), nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "succeeded", read["state"])
}
