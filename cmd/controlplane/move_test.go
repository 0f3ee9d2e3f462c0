package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// Moving a tenant between servers (docs/OPERATIONS.md, "Moving a tenant").

// try sends c from any goroutine (trySend) and returns the status and the
// body, or the transport's error (status 0), as text for a failure's
// message.
func (b *bundle) try(c hit) (int, string) {
	status, _, raw, err := b.trySend(c)
	if err != nil {
		return 0, err.Error()
	}
	return status, string(raw)
}

// startMove posts a move and returns its operation (202 required).
func (b *bundle) startMove(id any, body map[string]any) map[string]any {
	b.t.Helper()
	status, op := b.do("POST", fmt.Sprintf("/api/tenants/%v/move", id), body)
	require.Equal(b.t, http.StatusAccepted, status, "%v", op)
	return op
}

// serverObjects lists what a move may leave on the cluster at url: the
// tenant's databases (or schemas) by name, publications, subscriptions and
// replication slots of moves.
func serverObjects(t *testing.T, url string, tn map[string]any) map[string][]string {
	t.Helper()
	db := pgtest.Open(t, url)
	defer db.Close()
	out := map[string][]string{}
	q := map[string]string{
		"databases":     `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1`,
		"schemas":       `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1`,
		"slots":         `SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, $1 || '_move_') ORDER BY 1`,
		"subscriptions": `SELECT subname FROM pg_subscription WHERE starts_with(subname, $1 || '_move_') ORDER BY 1`,
	}
	for k, query := range q {
		rows, err := db.Query(query, tn["db_name"])
		require.NoError(t, err)
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			out[k] = append(out[k], s)
		}
		require.NoError(t, rows.Err())
		rows.Close()
	}
	return out
}

// An online move under a steady mixed load, sent through two serve
// replicas: no request fails (those that come during the cutover are
// held, then served by the new server), no acknowledged write is lost or
// doubled, ids continue, both replicas route to the new server, and the
// source is kept closed under its move's name.
func TestOnlineMoveUnderLoadWithTwoReplicas(t *testing.T) {
	t.Parallel()
	clusters := sharedClusters(t)
	for _, iso := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(iso), func(t *testing.T) {
			t.Parallel()
			ts := setupServersOn(t, clusters, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10})
			replica := start(t, ts.db, []string{"DATABASE_URL=" + ts.db.URL, "TENANT_DB_PREFIX=" + ts.db.Prefix, "TENANT_SPARE_DATABASES=0"})
			body := placed(1, string(iso), "pg-b")
			body["max_extensions"] = 100000
			tn := ts.create(body)
			host := tn["domain"].(string)
			ts.addExtensions(host, "100", "101", "102")
			var before map[string]any
			_, _, before = ts.req("POST", host, "/api/extensions", map[string]any{"number": "103", "name": "Desk"})

			var stop atomic.Bool
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failures []string
			acked := map[string]bool{}
			cdrsAcked := 0
			fail := func(what string, status int, body string) {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %d %v", what, status, body))
				mu.Unlock()
			}
			replicas := []*bundle{ts.bundle, replica}
			for w := range 2 {
				wg.Add(1)
				go func() { // extensions, one at a time, alternating replicas
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						num := fmt.Sprintf("%d%04d", 2+w, i)
						status, body := replicas[i%2].try(hit{"POST", host, "/api/extensions", map[string]any{"number": num, "name": "Load"}})
						if status != http.StatusCreated {
							fail("extension "+num, status, body)
							continue
						}
						mu.Lock()
						acked[num] = true
						mu.Unlock()
					}
				}()
			}
			wg.Add(1)
			go func() { // CDR batches of 20
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					batch := make([]any, 20)
					for k := range batch {
						batch[k] = call(i*20+k+1, "+15551234567", "2025-03-01")
					}
					status, body := replicas[i%2].try(hit{"POST", host, "/api/cdrs", map[string]any{"cdrs": batch}})
					if status != http.StatusCreated {
						fail(fmt.Sprintf("cdr batch %d", i), status, body)
						continue
					}
					mu.Lock()
					cdrsAcked += 20
					mu.Unlock()
				}
			}()
			wg.Add(1)
			go func() { // reads
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					if status, body := replicas[i%2].try(hit{"GET", host, "/api/extensions?limit=5", nil}); status != http.StatusOK {
						fail("read", status, body)
					}
				}
			}()
			time.Sleep(500 * time.Millisecond)
			op := ts.startMove(tn["id"], map[string]any{"server": "pg-c"})
			op = ts.waitOperation(op["id"])
			time.Sleep(500 * time.Millisecond) // load on the new server, through both replicas
			stop.Store(true)
			wg.Wait()
			require.Equal(t, "succeeded", op["state"], "%v", op)
			require.Empty(t, failures, "every request is answered, none failed (%d failed)", len(failures))

			// Both replicas route to pg-c (the other replica hears of the
			// flip by NOTIFY, on its own time).
			for _, b := range []*bundle{ts.bundle, replica} {
				require.EventuallyWithT(t, func(c *assert.CollectT) {
					got, ok := b.app.Store.Cache().ByID(int64(tn["id"].(float64)))
					if assert.True(c, ok) {
						assert.Equal(c, "pg-c", got.Server)
						assert.Nil(c, got.HeldUntil)
					}
				}, 10*time.Second, 20*time.Millisecond)
			}
			// Every acknowledged write is there once; ids continue.
			seen := ts.allExtensions(host)
			for num := range acked {
				require.Equal(t, 1, seen[num], "acknowledged extension %s", num)
			}
			for num, n := range seen {
				require.Equal(t, 1, n, "extension %s", num)
			}
			status, _, after := ts.req("POST", host, "/api/extensions", map[string]any{"number": "199", "name": "After"})
			require.Equal(t, http.StatusCreated, status, "%v", after)
			require.Greater(t, after["id"].(float64), before["id"].(float64))
			require.Equal(t, cdrsAcked, countRows(t, ts.clusters["pg-c"].URL, tn, "cdrs"), "every acknowledged CDR, once")

			// The source is kept closed under the move's name; nothing of
			// the replication is left on either side.
			progress := op["progress"].(map[string]any)
			aside := fmt.Sprintf("%s_m%v", tn["db_name"], op["id"])
			require.Equal(t, aside, progress["aside"])
			kind := "databases"
			if iso == controlplane.IsolationSchema {
				kind = "schemas"
			}
			src, dst := serverObjects(t, ts.clusters["pg-b"].URL, tn), serverObjects(t, ts.clusters["pg-c"].URL, tn)
			assert.Equal(t, []string{aside}, src[kind])
			assert.Equal(t, []string{tn["db_name"].(string)}, dst[kind])
			for _, k := range []string{"slots", "subscriptions"} {
				assert.Empty(t, src[k], k)
				assert.Empty(t, dst[k], k)
			}
			if iso == controlplane.IsolationDatabase {
				require.NoError(t, ts.tenantLoginOn(ts.clusters["pg-c"].URL, tn), "the tenant's role logs in on its new server")
				require.Error(t, ts.tenantLoginOn(ts.clusters["pg-b"].URL, tn), "and no longer on the old one")
			}
		})
	}
}

// tenantLoginOn logs in as tn's role on the cluster at url.
func (b *bundle) tenantLoginOn(url string, tn map[string]any) error {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := b.roleConn(ctx, url, tn)
	if err == nil {
		c.Close(ctx)
	}
	return err
}

// roleConn connects as tn's role, with the credentials a tenant holds, to
// the postgres database of the cluster at url (it says whether the role
// may log in there at all).
func (b *bundle) roleConn(ctx context.Context, url string, tn map[string]any) (*pgx.Conn, error) {
	role := tn["db_name"].(string)
	cfg, err := pgx.ParseConfig(url)
	require.NoError(b.t, err)
	cfg.Database, cfg.User, cfg.Password = "postgres", role, b.app.RoleSecret.Password(role)
	return pgx.ConnectConfig(ctx, cfg)
}

// countRows counts the rows of table in tn's database or schema on the
// cluster at url.
func countRows(t *testing.T, url string, tn map[string]any, table string) int {
	t.Helper()
	name := tn["db_name"].(string)
	q := `SELECT count(*) FROM ` + pgx.Identifier{name, table}.Sanitize()
	if tn["isolation"] == "database" {
		url = pgtest.WithDatabase(t, url, name)
		q = `SELECT count(*) FROM ` + pgx.Identifier{"public", table}.Sanitize()
	}
	db := pgtest.Open(t, url)
	defer db.Close()
	var n int
	require.NoError(t, db.QueryRow(q).Scan(&n))
	return n
}

// leftovers requires that nothing of a move's replication is left on the
// three servers, and returns the tenant's databases (or schemas) on each.
func (ts *threeServers) leftovers(tn map[string]any) map[string][]string {
	ts.t.Helper()
	kind := "databases"
	if tn["isolation"] == "schema" {
		kind = "schemas"
	}
	out := map[string][]string{}
	for _, name := range []string{"pg-b", "pg-c"} {
		objs := serverObjects(ts.t, ts.clusters[name].URL, tn)
		require.Empty(ts.t, objs["slots"], "replication slots on %s", name)
		require.Empty(ts.t, objs["subscriptions"], "subscriptions on %s", name)
		out[name] = objs[kind]
		db := pgtest.Open(ts.t, pgtest.WithDatabase(ts.t, ts.clusters[name].URL, "postgres"))
		var pubs int
		for _, d := range objs["databases"] {
			if d == tn["db_name"] {
				tdb := pgtest.Open(ts.t, pgtest.WithDatabase(ts.t, ts.clusters[name].URL, d))
				require.NoError(ts.t, tdb.QueryRow(`SELECT count(*) FROM pg_publication WHERE starts_with(pubname, $1 || '_move_')`, tn["db_name"]).Scan(&pubs))
				tdb.Close()
			}
		}
		if tn["isolation"] == "schema" {
			sdb := pgtest.Open(ts.t, ts.clusters[name].URL)
			require.NoError(ts.t, sdb.QueryRow(`SELECT count(*) FROM pg_publication WHERE starts_with(pubname, $1 || '_move_')`, tn["db_name"]).Scan(&pubs))
			sdb.Close()
		}
		db.Close()
		require.Zero(ts.t, pubs, "publications on %s", name)
	}
	return out
}

// A move killed (SIGKILL) at each of its steps: the restart's reconcile
// undoes it when the catalog had not flipped, and finishes it when it had;
// either way the tenant is served, whole, from exactly one server, nothing
// of the replication is left, and the operation says what happened.
func TestMoveKilledAtEachStep(t *testing.T) {
	t.Parallel()
	cases := []struct {
		iso   controlplane.Isolation
		mode  string
		step  string
		moved bool
	}{
		{controlplane.IsolationDatabase, "online", "move:target", false},
		{controlplane.IsolationDatabase, "online", "move:published", false},
		{controlplane.IsolationDatabase, "online", "move:subscribed", false},
		{controlplane.IsolationDatabase, "online", "move:indexed", false},
		{controlplane.IsolationDatabase, "online", "move:held", false},
		{controlplane.IsolationDatabase, "online", "move:fenced", false},
		{controlplane.IsolationDatabase, "online", "move:caught-up", false},
		{controlplane.IsolationDatabase, "online", "move:flipped", true},
		{controlplane.IsolationDatabase, "online", "move:closed", true},
		{controlplane.IsolationSchema, "online", "move:subscribed", false},
		{controlplane.IsolationSchema, "online", "move:caught-up", false},
		{controlplane.IsolationSchema, "online", "move:flipped", true},
		{controlplane.IsolationDatabase, "offline", "move:offline", false},
		{controlplane.IsolationDatabase, "offline", "move:dumped", false},
		{controlplane.IsolationDatabase, "offline", "move:restored", false},
		{controlplane.IsolationDatabase, "offline", "move:flipped", true},
		{controlplane.IsolationSchema, "offline", "move:restored", false},
		{controlplane.IsolationSchema, "offline", "move:flipped", true},
	}
	// Every case has a catalog (and tenant names) of its own on the
	// shared clusters.
	clusters := sharedClusters(t)
	for _, c := range cases {
		t.Run(string(c.iso)+"/"+c.mode+"/"+c.step, func(t *testing.T) {
			t.Parallel()
			ts := setupServersOn(t, clusters, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10}, "LOG_LEVEL=error")
			tn := ts.create(placed(1, string(c.iso), "pg-b"))
			host := tn["domain"].(string)
			ts.addExtensions(host, "1001", "1002")

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			env := []string{"DATABASE_URL=" + ts.db.URL, "TENANT_DB_PREFIX=" + ts.db.Prefix, "TENANT_SPARE_DATABASES=0", "LOG_LEVEL=error",
				"BACKUP_DIR=" + ts.cfg.BackupDir, crashTenant + "=" + fmt.Sprint(tn["id"]), crashMove + "=pg-c " + c.mode}
			killedChild(t, ctx, env, c.step, "move")

			b := start(t, ts.db, env[:5])
			n, err := b.app.Operations.Recover(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			_, ops := b.do("GET", fmt.Sprintf("/api/operations?tenant=%v&kind=move", tn["id"]), nil)
			op := ops["data"].([]any)[0].(map[string]any)
			_, got := b.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
			require.Equal(t, "ready", got["provisioning"], "%v", got)
			require.Nil(t, got["held_until"])
			left := ts.leftovers(tn)
			name := tn["db_name"].(string)
			aside := fmt.Sprintf("%s_m%v", name, op["id"])
			if c.moved {
				require.Equal(t, "succeeded", op["state"], "%v", op)
				require.Equal(t, "pg-c", got["server"])
				require.Equal(t, []string{aside}, left["pg-b"])
				require.Equal(t, []string{name}, left["pg-c"])
			} else {
				require.Equal(t, "failed", op["state"], "%v", op)
				require.Contains(t, op["error"], "undone")
				require.Equal(t, "pg-b", got["server"])
				require.Equal(t, []string{name}, left["pg-b"])
				require.Empty(t, left["pg-c"])
			}
			require.Equal(t, []string{"1001", "1002"}, b.extensionNumbers(host))
			b.addExtensions(host, "1003")
			if c.iso == controlplane.IsolationDatabase && !c.moved {
				require.Error(t, b.tenantLoginOn(ts.clusters["pg-c"].URL, tn), "no role of the tenant is left on the target")
			}
		})
	}
}

// An online move refuses, naming them, what logical replication would not
// carry: objects a tenant made in its own database with its role's
// credentials (a table, a function, a trigger that fires even for
// replicated rows, a policy). The tenant stays where it was, served, and
// nothing of the attempt is left on either server. Offline, the same
// tenant moves whole, its objects with it, and its code runs as the tenant
// only: the planted trigger records who fired it.
func TestMoveOfATenantWithItsOwnObjects(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10})
	tn := ts.create(placed(1, "database", "pg-b"))
	host := tn["domain"].(string)
	role := tn["db_name"].(string)
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(pgtest.WithDatabase(t, ts.clusters["pg-b"].URL, role))
	require.NoError(t, err)
	cfg.User, cfg.Password = role, ts.app.RoleSecret.Password(role)
	c, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	_, err = c.Exec(ctx, `
		CREATE TABLE public.mine (who text, at timestamptz DEFAULT now());
		CREATE FUNCTION public.snoop() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.mine (who) VALUES (current_user);
			RETURN NEW;
		END $$;
		CREATE TRIGGER snoop BEFORE INSERT ON public.extensions FOR EACH ROW EXECUTE FUNCTION public.snoop();
		ALTER TABLE public.extensions ENABLE ALWAYS TRIGGER snoop;
		CREATE POLICY peek ON public.extensions USING (true)`)
	require.NoError(t, err)
	require.NoError(t, c.Close(ctx))
	ts.addExtensions(host, "1001")

	op := ts.waitOperation(ts.startMove(tn["id"], map[string]any{"server": "pg-c"})["id"])
	require.Equal(t, "failed", op["state"], "%v", op)
	for _, name := range []string{"relation public.mine", "function public.snoop()", "trigger public.extensions.snoop", "policy public.extensions.peek", `"mode": "offline"`} {
		require.Contains(t, op["error"], name)
	}
	_, got := ts.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.Equal(t, "pg-b", got["server"])
	left := ts.leftovers(tn)
	require.Equal(t, []string{role}, left["pg-b"])
	require.Empty(t, left["pg-c"])
	require.Error(t, ts.tenantLoginOn(ts.clusters["pg-c"].URL, tn), "no role of the tenant is left on the target")
	require.Equal(t, []string{"1001"}, ts.extensionNumbers(host))

	// Offline: 503 with Retry-After while it copies, then everything on
	// pg-c, the planted trigger having run as the tenant only.
	var during []int
	ts.app.TenantServers.Step = func(step string) {
		if step == "move:dumped" {
			// On the move's goroutine: no require here.
			req, _ := http.NewRequest("GET", ts.srv.URL+"/api/extensions", nil)
			req.Host = host
			if resp, err := http.DefaultClient.Do(req); assert.NoError(t, err) {
				during = append(during, resp.StatusCode)
				assert.NotEmpty(t, resp.Header.Get("Retry-After"))
				resp.Body.Close()
			}
		}
	}
	op = ts.waitOperation(ts.startMove(tn["id"], map[string]any{"server": "pg-c", "mode": "offline"})["id"])
	require.Equal(t, "succeeded", op["state"], "%v", op)
	require.Equal(t, []int{http.StatusServiceUnavailable}, during)
	_, got = ts.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.Equal(t, "pg-c", got["server"])
	ts.addExtensions(host, "1002")
	require.Equal(t, []string{"1001", "1002"}, ts.extensionNumbers(host))
	db := pgtest.Open(t, pgtest.WithDatabase(t, ts.clusters["pg-c"].URL, role))
	defer db.Close()
	rows, err := db.Query(`SELECT DISTINCT who FROM public.mine`)
	require.NoError(t, err)
	var who []string
	for rows.Next() {
		var w string
		require.NoError(t, rows.Scan(&w))
		who = append(who, w)
	}
	require.Equal(t, []string{role}, who, "the tenant's trigger ran as the tenant, and only as the tenant")
	var owner string
	require.NoError(t, db.QueryRow(`SELECT tableowner FROM pg_tables WHERE tablename = 'mine'`).Scan(&owner))
	require.Equal(t, role, owner)
}

// Bad moves are refused before anything starts, naming the field: an
// unknown server, the server the tenant is on, a mode that does not exist,
// a server whose role may not subscribe (online) — and one operation per
// tenant at a time. A cancelled move is undone.
func TestMoveRefusalsAndCancel(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10}, "SERVER_SECRET_KEY="+serverKey)
	tn := ts.create(placed(1, "database", "pg-b"))
	path := fmt.Sprintf("/api/tenants/%v/move", tn["id"])
	for _, c := range []struct {
		body  map[string]any
		code  int
		field string
	}{
		{map[string]any{"server": "pg-z"}, http.StatusUnprocessableEntity, "server"},
		{map[string]any{"server": "pg-b"}, http.StatusUnprocessableEntity, "server"},
		{map[string]any{}, http.StatusUnprocessableEntity, "server"},
		{map[string]any{"server": "pg-c", "mode": "teleport"}, http.StatusUnprocessableEntity, "mode"},
	} {
		status, got := ts.do("POST", path, c.body)
		require.Equal(t, c.code, status, "%v: %v", c.body, got)
		require.Contains(t, fmt.Sprint(got), c.field, "%v", got)
	}
	status, got := ts.do("POST", "/api/tenants/999/move", map[string]any{"server": "pg-c"})
	require.Equal(t, http.StatusNotFound, status, "%v", got)

	// A server registered with a role that is not a superuser: an online
	// move there is refused (PostgreSQL 15 lets only a superuser create a
	// subscription), naming the privilege.
	admin := pgtest.Open(t, ts.clusters["pg-c"].URL)
	_, err := admin.Exec(`CREATE ROLE plain LOGIN CREATEDB CREATEROLE PASSWORD 'plain-pw'`)
	require.NoError(t, err)
	admin.Close()
	plain := fmt.Sprintf("postgres://plain:plain-pw@127.0.0.1:%d/controlplane?sslmode=disable", ts.clusters["pg-c"].Port)
	status, got = ts.do("POST", "/api/servers", map[string]any{"name": "pg-d", "url": plain, "capacity": 10})
	require.Equal(t, http.StatusCreated, status, "%v", got)
	status, got = ts.do("POST", path, map[string]any{"server": "pg-d"})
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Contains(t, errMessage(got), "SUPERUSER")
	require.Contains(t, errMessage(got), `"mode": "offline"`)

	// One operation at a time; a cancel undoes the move.
	ts.app.TenantServers.Step = func(step string) {
		if step == "move:subscribed" {
			// On the move's goroutine: assert, not require.
			status, _ := ts.try(hit{"POST", "", path, map[string]any{"server": "pg-c"}})
			assert.Equal(t, http.StatusConflict, status)
		}
	}
	op := ts.startMove(tn["id"], map[string]any{"server": "pg-c"})
	status, got = ts.do("POST", fmt.Sprintf("/api/operations/%v/cancel", op["id"]), nil)
	require.Equal(t, http.StatusOK, status, "%v", got)
	op = ts.waitOperation(op["id"])
	require.Equal(t, "cancelled", op["state"], "%v", op)
	_, got = ts.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.Equal(t, "pg-b", got["server"])
	left := ts.leftovers(tn)
	require.Empty(t, left["pg-c"])
}

// A tenant moved away and purged leaves nothing on either server: the
// purge drops the copy its move kept on the server it left. Without a
// purge, the reconcile drops that copy once MOVE_SOURCE_GRACE has passed.
func TestMovedTenantPurgeAndSourceGrace(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10}, "MOVE_SOURCE_GRACE=0s")
	a := ts.create(placed(1, "database", "pg-b"))
	b := ts.create(placed(2, "schema", "pg-b"))
	for _, tn := range []map[string]any{a, b} {
		op := ts.waitOperation(ts.startMove(tn["id"], map[string]any{"server": "pg-c"})["id"])
		require.Equal(t, "succeeded", op["state"], "%v", op)
	}
	ts.setStatus(a["id"], "suspended")
	status, got := ts.do("DELETE", fmt.Sprintf("/api/tenants/%v?purge=now", a["id"]), nil)
	require.Equal(t, http.StatusNoContent, status, "%v", got)
	left := ts.leftovers(a)
	require.Empty(t, left["pg-b"], "the purge dropped the copy the move kept")
	require.Empty(t, left["pg-c"])
	require.Error(t, ts.tenantLoginOn(ts.clusters["pg-b"].URL, a))

	n, err := ts.app.Operations.DropAsides(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	left = ts.leftovers(b)
	require.Empty(t, left["pg-b"], "the grace passed: the reconcile dropped the copy")
	require.Equal(t, []string{b["db_name"].(string)}, left["pg-c"])
}

// controlplane servers drain NAME --move empties a server: every tenant
// moved (online) to where placement puts it, served there, one line each;
// the server can be removed once the copies the moves kept there are
// dropped (MOVE_SOURCE_GRACE), not before.
func TestDrainMoveEmptiesAServer(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10}, "MOVE_SOURCE_GRACE=0s")
	var tenants []map[string]any
	for i, iso := range []string{"database", "schema", "database"} {
		tn := ts.create(placed(i+1, iso, "pg-b"))
		ts.addExtensions(tn["domain"].(string), "1001")
		tenants = append(tenants, tn)
	}
	out, err := ts.cli("servers", "drain", "pg-b", "--move", "--concurrency", "2")
	require.NoError(t, err, out)
	for _, tn := range tenants {
		require.Contains(t, out, fmt.Sprintf("%s (tenant %v): moved to ", tn["slug"], tn["id"]))
		_, got := ts.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
		require.NotEqual(t, "pg-b", got["server"])
		require.Equal(t, []string{"1001"}, ts.extensionNumbers(tn["domain"].(string)))
	}
	_, srv := ts.do("GET", "/api/servers/pg-b", nil)
	require.Equal(t, "draining", srv["status"])
	status, got := ts.do("POST", "/api/tenants", placed(9, "database", ""))
	require.Equal(t, http.StatusCreated, status, "%v", got)
	require.NotEqual(t, "pg-b", got["server"], "a draining server takes no new tenant")
	_, err = ts.cli("servers", "remove", "pg-b")
	require.ErrorContains(t, err, "keeps 3 tenant copies that moves left there")
	n, err := ts.app.Operations.DropAsides(context.Background())
	require.NoError(t, err)
	require.Equal(t, 3, n)
	out, err = ts.cli("servers", "remove", "pg-b")
	require.NoError(t, err, out)
}

// A database-mode tenant is restored while it is served: the backup is
// restored beside its database and checked, then swapped in with the
// tenant's requests held, through two replicas under load: no request
// fails, the data is exactly the backup's afterwards (and what the load
// wrote after the swap), the previous database is kept aside. A backup at
// an older schema version, or a schema-mode tenant, still asks for a
// suspension.
func TestOnlineRestoreUnderLoad(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "TENANT_SPARE_DATABASES=0")
	replica := start(t, b.db, []string{"DATABASE_URL=" + b.db.URL, "TENANT_DB_PREFIX=" + b.db.Prefix, "TENANT_SPARE_DATABASES=0", "BACKUP_DIR=" + b.cfg.BackupDir})
	body := tenantBody("live", controlplane.IsolationDatabase)
	body["max_extensions"] = 100000
	tn := b.create(body)
	host := "live.example.com"
	b.addExtensions(host, "1001", "1002")
	backup := b.backupNow(tn["id"])
	b.addExtensions(host, "1003") // lost by the restore, as restores do

	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	var after []string // acknowledged once the restore had swapped
	var swapped atomic.Bool
	replicas := []*bundle{b, replica}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				num := fmt.Sprintf("%d%04d", 5+w, i)
				wasSwapped := swapped.Load()
				status, got := replicas[i%2].try(hit{"POST", host, "/api/extensions", map[string]any{"number": num, "name": "Load"}})
				mu.Lock()
				switch {
				case status != http.StatusCreated:
					failures = append(failures, fmt.Sprintf("%s: %d %v", num, status, got))
				case wasSwapped:
					after = append(after, num)
				}
				mu.Unlock()
				if st, got := replicas[(i+1)%2].try(hit{"GET", host, "/api/extensions?limit=5", nil}); st != http.StatusOK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("read: %d %v", st, got))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	status, op := b.do("POST", fmt.Sprintf("/api/tenants/%v/restore", tn["id"]), map[string]any{"backup_id": backup})
	require.Equal(t, http.StatusAccepted, status, "%v", op)
	op = b.waitOperation(op["id"])
	swapped.Store(true)
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	require.Equal(t, "succeeded", op["state"], "%v", op)
	require.Empty(t, failures, "no request failed (%d)", len(failures))
	require.Equal(t, true, op["progress"].(map[string]any)["online"])

	seen := b.allExtensions(host)
	require.True(t, seen["1001"] == 1 && seen["1002"] == 1, "the backup's data")
	require.Zero(t, seen["1003"], "nothing written after the backup")
	for _, n := range after {
		require.Equal(t, 1, seen[n], "%s, written after the swap, is there", n)
	}
	previous := op["progress"].(map[string]any)["previous"].(string)
	require.Contains(t, pgtest.TenantDatabases(t, b.db.Prefix), previous)

	// Still offline-only: schema mode (a backup older than the binary is
	// restored online too: TestOnlineRestoreOfAnOlderBackup).
	s := setup(t, controlplane.IsolationSchema)
	sn := s.create(tenantBody("sch", controlplane.IsolationSchema))
	sb := s.backupNow(sn["id"])
	status, got := s.do("POST", fmt.Sprintf("/api/tenants/%v/restore", sn["id"]), map[string]any{"backup_id": sb})
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Contains(t, errMessage(got), "suspend it first")
}

// allExtensions counts a tenant's extensions by number, every page.
func (b *bundle) allExtensions(host string) map[string]int {
	b.t.Helper()
	seen := map[string]int{}
	for offset := 0; ; offset += 500 {
		status, _, list := b.req("GET", host, fmt.Sprintf("/api/extensions?limit=500&offset=%d", offset), nil)
		require.Equal(b.t, http.StatusOK, status, "%v", list)
		page := list["data"].([]any)
		for _, e := range page {
			seen[e.(map[string]any)["number"].(string)]++
		}
		if len(page) < 500 {
			return seen
		}
	}
}

// Moves back and forth under a steady load, each source dropped before the
// next move (MOVE_SOURCE_GRACE=0): every acknowledged write is on the
// tenant's last server, once.
func TestRepeatedOnlineMovesLoseNothing(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10}, "MOVE_SOURCE_GRACE=0s")
	body := placed(1, "database", "pg-b")
	body["max_extensions"] = 100000
	tn := ts.create(body)
	host := tn["domain"].(string)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]bool{}
	var failures []string
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				num := fmt.Sprintf("%d%05d", 2+w, i)
				status, got := ts.try(hit{"POST", host, "/api/extensions", map[string]any{"number": num, "name": "Load"}})
				mu.Lock()
				if status == http.StatusCreated {
					acked[num] = true
				} else {
					failures = append(failures, fmt.Sprintf("%s: %d %v", num, status, got))
				}
				mu.Unlock()
			}
		}()
	}
	to := []string{"pg-c", "pg-b"}
	for k := range 6 {
		time.Sleep(200 * time.Millisecond)
		op := ts.waitOperation(ts.startMove(tn["id"], map[string]any{"server": to[k%2]})["id"])
		require.Equal(t, "succeeded", op["state"], "%v", op)
		_, err := ts.app.Operations.DropAsides(context.Background())
		require.NoError(t, err)
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	require.Empty(t, failures)
	seen := ts.allExtensions(host)
	var missing []string
	for num := range acked {
		if seen[num] != 1 {
			missing = append(missing, num)
		}
	}
	require.Empty(t, missing, "acknowledged but not on the last server (of %d)", len(acked))
}

// A server without logical replication cannot be the source of an online
// move, nor one where the control plane's role has neither SUPERUSER nor
// REPLICATION: both are refused before anything is made, naming what is
// missing and the way out, an offline move, which then works.
func TestOnlineMoveRefusedWithoutLogicalReplication(t *testing.T) {
	t.Parallel()
	// pg-b, of the test's own, without logical replication; pg-c shared.
	clusters := map[string]*pgtest.Cluster{"pg-b": pgtest.NewCluster(t, pgtest.WalLevel("replica")), "pg-c": sharedClusters(t)["pg-c"]}
	ts := setupServersOn(t, clusters, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10}, "SERVER_SECRET_KEY="+serverKey)
	tn := ts.create(placed(1, "database", "pg-b"))
	path := fmt.Sprintf("/api/tenants/%v/move", tn["id"])
	status, got := ts.do("POST", path, map[string]any{"server": "pg-c"})
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Contains(t, errMessage(got), "wal_level is replica, not logical")
	require.Contains(t, errMessage(got), `"mode": "offline"`)
	require.Empty(t, ts.leftovers(tn)["pg-c"], "nothing made on the target")
	host := tn["domain"].(string)
	ts.addExtensions(host, "1001")

	op := ts.waitOperation(ts.startMove(tn["id"], map[string]any{"server": "pg-c", "mode": "offline"})["id"])
	require.Equal(t, "succeeded", op["state"], "%v", op)
	_, got = ts.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
	require.Equal(t, "pg-c", got["server"])
	require.Equal(t, []string{"1001"}, ts.extensionNumbers(host), "the offline move carried the tenant's data")

	// The control plane's role on pg-c without REPLICATION (nor
	// SUPERUSER), registered as pg-d: a tenant there cannot move online.
	// The role carries the test's prefix, after its own name (the
	// prefix starts only the tenants' names): pg-c is shared.
	role := "plain_" + ts.db.Prefix
	admin := pgtest.Open(t, clusters["pg-c"].URL)
	_, err := admin.Exec(`CREATE ROLE ` + role + ` LOGIN CREATEDB CREATEROLE PASSWORD 'plain-pw'`)
	require.NoError(t, err)
	admin.Close()
	plain := fmt.Sprintf("postgres://%s:plain-pw@127.0.0.1:%d/controlplane?sslmode=disable", role, clusters["pg-c"].Port)
	status, got = ts.do("POST", "/api/servers", map[string]any{"name": "pg-d", "url": plain, "capacity": 10})
	require.Equal(t, http.StatusCreated, status, "%v", got)
	other := ts.create(placed(2, "database", "pg-d"))
	status, got = ts.do("POST", fmt.Sprintf("/api/tenants/%v/move", other["id"]), map[string]any{"server": "pg-b"})
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Contains(t, errMessage(got), "neither SUPERUSER nor REPLICATION")
	require.Empty(t, ts.leftovers(other)["pg-b"], "nothing made on the target")
}

// A cancel reaches an online move at any phase before its cutover (the
// target made, published, subscribed, indexes rebuilt): the operation ends
// cancelled, the tenant stays whole on its server and is served, and
// nothing of the move is left on the target. After the cutover begins the
// move is past cancelling: TestMoveKilledAtEachStep covers those steps.
func TestMoveCancelledAtEachPhase(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10})
	for i, step := range []string{"move:target", "move:published", "move:subscribed", "move:indexed"} {
		tn := ts.create(placed(i+1, "database", "pg-b"))
		host := tn["domain"].(string)
		ts.addExtensions(host, "1001")
		reached, proceed := make(chan struct{}), make(chan struct{})
		var once sync.Once
		ts.app.TenantServers.Step = func(s string) {
			if s == step {
				once.Do(func() { close(reached); <-proceed })
			}
		}
		op := ts.startMove(tn["id"], map[string]any{"server": "pg-c"})
		select {
		case <-reached:
		case <-time.After(time.Minute):
			t.Fatalf("%s: the move never reached it", step)
		}
		status, got := ts.do("POST", fmt.Sprintf("/api/operations/%v/cancel", op["id"]), nil)
		require.Equal(t, http.StatusOK, status, "%s: %v", step, got)
		close(proceed)
		op = ts.waitOperation(op["id"])
		require.Equal(t, "cancelled", op["state"], "%s: %v", step, op)
		_, got = ts.do("GET", fmt.Sprintf("/api/tenants/%v", tn["id"]), nil)
		require.Equal(t, "pg-b", got["server"], step)
		require.Equal(t, "ready", got["provisioning"], step)
		require.Equal(t, []string{"1001"}, ts.extensionNumbers(host), "%s: served whole from its server", step)
		require.Empty(t, ts.leftovers(tn)["pg-c"], "%s: nothing left on the target", step)
		ts.app.TenantServers.Step = nil
	}
}

// Two online moves crossing between the same two servers at once (a
// tenant of pg-b's to pg-c, one of pg-c's to pg-b: two drains into each
// other) both finish. A new logical slot waits for every transaction
// running on its server; when CREATE SUBSCRIPTION made the slots, each
// waited inside a transaction of its own on the other server, which the
// other's slot waited for: both moves hung, for good. The step hook holds
// both moves after their publications until both are there, so that
// their slots and subscriptions are made at the same moment.
func TestCrossingOnlineMovesBothFinish(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10})
	fromB := ts.create(placed(1, "database", "pg-b"))
	fromC := ts.create(placed(2, "schema", "pg-c"))
	ts.addExtensions(fromB["domain"].(string), "1001")
	ts.addExtensions(fromC["domain"].(string), "1002")

	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	ts.app.TenantServers.Step = func(step string) {
		if step == "move:published" {
			arrived.Done()
			select {
			case <-both:
			case <-time.After(30 * time.Second): // the test fails on its own
			}
		}
	}
	opB := ts.startMove(fromB["id"], map[string]any{"server": "pg-c"})
	opC := ts.startMove(fromC["id"], map[string]any{"server": "pg-b"})
	for _, c := range []struct {
		op     map[string]any
		tenant map[string]any
		to     string
		number string
	}{{opB, fromB, "pg-c", "1001"}, {opC, fromC, "pg-b", "1002"}} {
		op := ts.waitOperation(c.op["id"])
		require.Equal(t, "succeeded", op["state"], "%v", op)
		_, got := ts.do("GET", fmt.Sprintf("/api/tenants/%v", c.tenant["id"]), nil)
		require.Equal(t, c.to, got["server"])
		require.Equal(t, []string{c.number}, ts.extensionNumbers(c.tenant["domain"].(string)))
	}
}

// openTransactionBeside creates a tenant on pg-b with extension 1001 and
// returns it, its host and a transaction left open, with a transaction
// id (as a first write would take), in another tenant's database there:
// what keeps a move's replication slot on pg-b waiting. The transaction
// is rolled back when the test ends, if not before.
func (ts *threeServers) openTransactionBeside() (tn map[string]any, host string, tx pgx.Tx) {
	t := ts.t
	t.Helper()
	tn = ts.create(placed(1, "database", "pg-b"))
	host = tn["domain"].(string)
	ts.addExtensions(host, "1001")
	other := ts.create(placed(2, "database", "pg-b"))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.WithDatabase(t, ts.clusters["pg-b"].URL, other["db_name"].(string)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(ctx, `SELECT pg_current_xact_id()`)
	require.NoError(t, err)
	return tn, host, tx
}

// An online move's replication slot waits for every transaction running
// on the source server to end: here another tenant's, kept open after it
// took a transaction id. The move stays in preparing meanwhile; a cancel
// ends the wait (it did not: the cancel was looked for only after the
// slot was made), nothing of the move is left on either server, and once
// the transaction ends, the move goes through.
func TestMoveWaitingForAnOpenTransactionIsCancelled(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10})
	tn, host, tx := ts.openTransactionBeside()
	ctx := context.Background()

	op := ts.startMove(tn["id"], map[string]any{"server": "pg-c"})
	path := fmt.Sprintf("/api/operations/%v", op["id"])
	time.Sleep(3 * time.Second)
	_, got := ts.do("GET", path, nil)
	require.Equal(t, "running", got["state"], "%v", got)
	require.Equal(t, "preparing", got["phase"], "%v", got)
	status, got := ts.do("POST", path+"/cancel", nil)
	require.Equal(t, http.StatusOK, status, "%v", got)
	deadline := time.Now().Add(20 * time.Second)
	for got["state"] == "running" {
		require.True(t, time.Now().Before(deadline), "still running 20 s after its cancel: %v", got)
		time.Sleep(100 * time.Millisecond)
		_, got = ts.do("GET", path, nil)
	}
	require.Equal(t, "cancelled", got["state"], "%v", got)
	require.Empty(t, ts.leftovers(tn)["pg-c"], "nothing left on the target")
	require.Equal(t, []string{"1001"}, ts.extensionNumbers(host), "served whole from pg-b")

	require.NoError(t, tx.Rollback(ctx))
	op = ts.waitOperation(ts.startMove(tn["id"], map[string]any{"server": "pg-c"})["id"])
	require.Equal(t, "succeeded", op["state"], "%v", op)
	require.Equal(t, []string{"1001"}, ts.extensionNumbers(host))
}

// A move that waits for a transaction left open on its source does not
// wait forever: after MOVE_SLOT_TIMEOUT it fails, saying why and naming
// the setting, undone (nothing on either server, the tenant served whole
// from its source).
func TestMoveWaitingForAnOpenTransactionTimesOut(t *testing.T) {
	t.Parallel()
	ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10}, "MOVE_SLOT_TIMEOUT=2s")
	tn, host, _ := ts.openTransactionBeside() // rolled back when the test ends

	op := ts.waitOperation(ts.startMove(tn["id"], map[string]any{"server": "pg-c"})["id"])
	require.Equal(t, "failed", op["state"], "%v", op)
	t.Log(op["error"])
	require.Contains(t, op["error"], "MOVE_SLOT_TIMEOUT", "%v", op)
	require.Contains(t, op["error"], "the tenant stays on pg-b", "%v", op)
	require.Empty(t, ts.leftovers(tn)["pg-c"], "nothing left on the target")
	require.Equal(t, []string{"1001"}, ts.extensionNumbers(host), "served whole from pg-b")
}
