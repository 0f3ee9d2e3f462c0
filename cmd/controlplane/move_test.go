package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// hit sends one tenant request to the server at base with host as Host,
// from any goroutine; it returns the status and body (status 0: the
// request itself failed).
func hitTenant(base, host, method, path string, body any) (int, map[string]any) {
	var r io.Reader
	if body != nil {
		buf, _ := json.Marshal(body)
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		return 0, nil
	}
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, map[string]any{"transport": err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
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
		"slots":         `SELECT slot_name FROM pg_replication_slots WHERE $1 <> '' AND starts_with(slot_name, 'laracopilot_move_') ORDER BY 1`,
		"subscriptions": `SELECT subname FROM pg_subscription WHERE $1 <> '' AND starts_with(subname, 'laracopilot_move_') ORDER BY 1`,
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
	for _, iso := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(iso), func(t *testing.T) {
			t.Parallel()
			ts := setupThreeServers(t, map[string]int{"default": 10, "pg-b": 10, "pg-c": 10})
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
			fail := func(what string, status int, body map[string]any) {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %d %v", what, status, body))
				mu.Unlock()
			}
			bases := []string{ts.srv.URL, replica.srv.URL}
			for w := range 2 {
				wg.Add(1)
				go func() { // extensions, one at a time, alternating replicas
					defer wg.Done()
					for i := 0; !stop.Load(); i++ {
						num := fmt.Sprintf("%d%04d", 2+w, i)
						status, body := hitTenant(bases[i%2], host, "POST", "/api/extensions", map[string]any{"number": num, "name": "Load"})
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
					status, body := hitTenant(bases[i%2], host, "POST", "/api/cdrs", map[string]any{"cdrs": batch})
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
					if status, body := hitTenant(bases[i%2], host, "GET", "/api/extensions?limit=5", nil); status != http.StatusOK {
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

			// Both replicas route to pg-c.
			for _, b := range []*bundle{ts.bundle, replica} {
				got, ok := b.app.Store.Cache().ByID(int64(tn["id"].(float64)))
				require.True(t, ok)
				require.Equal(t, "pg-c", got.Server)
				require.Nil(t, got.HeldUntil)
			}
			// Every acknowledged write is there once; ids continue.
			seen := map[string]int{}
			for offset := 0; ; offset += 500 {
				status, _, list := ts.req("GET", host, fmt.Sprintf("/api/extensions?limit=500&offset=%d", offset), nil)
				require.Equal(t, http.StatusOK, status, "%v", list)
				page := list["data"].([]any)
				for _, e := range page {
					seen[e.(map[string]any)["number"].(string)]++
				}
				if len(page) < 500 {
					break
				}
			}
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
