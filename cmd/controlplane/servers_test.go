package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// Two keys for SERVER_SECRET_KEY (32 bytes each, base64).
var (
	serverKey      = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	otherServerKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 32))
)

// rawDo sends a JSON request and returns the status, the headers and the
// body as sent on the wire (for checks that no secret is in it).
func (b *bundle) rawDo(method, path, body string, headers ...string) (int, http.Header, string) {
	b.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, r)
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return resp.StatusCode, resp.Header, string(raw)
}

// serverAudit returns the audit entries of server actions, oldest first.
func (b *bundle) serverAudit() []map[string]any {
	b.t.Helper()
	status, got := b.do("GET", "/api/audit?limit=500", nil)
	require.Equal(b.t, http.StatusOK, status, "%v", got)
	var out []map[string]any
	for _, e := range got["data"].([]any) {
		entry := e.(map[string]any)
		if strings.HasPrefix(entry["action"].(string), "server.") {
			out = append([]map[string]any{entry}, out...)
		}
	}
	return out
}

// withPassword is the test database's URL with a password in it: the test
// cluster trusts local connections, so the password is carried but never
// checked, which is what a test of where it ends up needs.
func withPassword(t *testing.T, raw, password string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

func TestServersCRUD(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.create(seed())

	status, hdr, raw := b.rawDo("POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@10.0.0.2:5432/postgres?sslmode=require", "capacity": 500}`)
	require.Equal(t, http.StatusCreated, status, raw)
	require.Equal(t, "/api/servers/pg-b", hdr.Get("Location"))
	var created map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &created))
	for k, v := range map[string]any{
		"name": "pg-b", "url": "postgres://cp@10.0.0.2:5432/postgres?sslmode=require", "has_password": false,
		"capacity": 500.0, "status": "active", "schema_tenants": 0.0, "database_tenants": 0.0, "spares": 0.0,
		"tenants": map[string]any{"pending": 0.0, "ready": 0.0, "failed": 0.0, "deleting": 0.0},
	} {
		require.Equal(t, v, created[k], k)
	}
	require.NotEmpty(t, created["created_at"])

	status, got := b.do("GET", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, created, got)

	// The list has both, by name, with what the catalog says is on each.
	status, got = b.do("GET", "/api/servers", nil)
	require.Equal(t, http.StatusOK, status)
	list := got["data"].([]any)
	require.Len(t, list, 2)
	def, pgb := list[0].(map[string]any), list[1].(map[string]any)
	require.Equal(t, "default", def["name"])
	require.Equal(t, b.cfg.TenantDatabaseURL.Value(), def["url"], "the default server is TENANT_DATABASE_URL's")
	require.Equal(t, 1.0, def["schema_tenants"])
	require.Equal(t, 0.0, def["database_tenants"])
	require.Equal(t, 1.0, def["tenants"].(map[string]any)["ready"])
	require.Equal(t, created, pgb)

	status, got = b.do("GET", "/api/servers/default", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, def, got, "one server's counts are the list's")

	status, got = b.do("PATCH", "/api/servers/pg-b", map[string]any{"status": "draining"})
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.Equal(t, "draining", got["status"])
	status, got = b.do("PATCH", "/api/servers/pg-b", map[string]any{"capacity": 800, "status": "disabled"})
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.Equal(t, 800.0, got["capacity"])
	require.Equal(t, "disabled", got["status"])
	status, got = b.do("PATCH", "/api/servers/pg-b", map[string]any{})
	require.Equal(t, http.StatusOK, status, "an empty patch changes nothing")
	require.Equal(t, 800.0, got["capacity"])
	status, got = b.do("PATCH", "/api/servers/pg-b", map[string]any{"status": "active"})
	require.Equal(t, http.StatusOK, status, "%v", got)

	for _, path := range []string{"/api/servers/pg-x", "/api/servers/PG-B"} {
		for _, method := range []string{"GET", "PATCH", "DELETE"} {
			status, got = b.do(method, path, map[string]any{"capacity": 1})
			require.Equal(t, http.StatusNotFound, status, "%s %s", method, path)
			require.Equal(t, "not_found", got["error"].(map[string]any)["code"])
		}
	}

	status, got = b.do("DELETE", "/api/servers/default", nil)
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, got["error"].(map[string]any)["message"], "TENANT_DATABASE_URL")

	status, _ = b.do("DELETE", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusNoContent, status)
	status, _ = b.do("GET", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _ = b.do("DELETE", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusNotFound, status)

	// Every write is in the audit trail, named for what it did.
	var actions []string
	for _, e := range b.serverAudit() {
		require.Nil(t, e["tenant_id"])
		actions = append(actions, e["action"].(string)+" "+e["target"].(string))
	}
	require.Equal(t, []string{
		"server.register default", "server.create pg-b", "server.drain pg-b", "server.update pg-b", "server.activate pg-b", "server.delete pg-b",
	}, actions)
}

// Bad input is a 4xx naming the field, never a 500.
func TestServerValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	ok := `"url": "postgres://cp@10.0.0.2/postgres", "capacity": 5`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"no name", "POST", "/api/servers", `{` + ok + `}`, 422, "name"},
		{"upper-case name", "POST", "/api/servers", `{"name": "PG-B", ` + ok + `}`, 422, "name"},
		{"underscore", "POST", "/api/servers", `{"name": "pg_b", ` + ok + `}`, 422, "name"},
		{"long name", "POST", "/api/servers", `{"name": "` + strings.Repeat("a", 64) + `", ` + ok + `}`, 422, "name"},
		{"name of the wrong type", "POST", "/api/servers", `{"name": 7, ` + ok + `}`, 422, "name"},
		{"no url", "POST", "/api/servers", `{"name": "pg-b", "capacity": 5}`, 422, "url"},
		{"key=value url", "POST", "/api/servers", `{"name": "pg-b", "url": "host=10.0.0.2 user=cp", "capacity": 5}`, 422, "url"},
		{"http url", "POST", "/api/servers", `{"name": "pg-b", "url": "http://10.0.0.2/", "capacity": 5}`, 422, "url"},
		{"unknown parameter", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h/postgres?statement_timeout=0", "capacity": 5}`, 422, "url"},
		{"bad port", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h:0/postgres", "capacity": 5}`, 422, "url"},
		{"NUL in url", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h/\u0000", "capacity": 5}`, 422, "url"},
		{"no capacity", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h/postgres"}`, 422, "capacity"},
		{"capacity 0", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h/postgres", "capacity": 0}`, 422, "capacity"},
		{"capacity too big", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h/postgres", "capacity": 1000001}`, 422, "capacity"},
		{"capacity a string", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h/postgres", "capacity": "500"}`, 422, "capacity"},
		{"capacity a fraction", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp@h/postgres", "capacity": 1.5}`, 422, "capacity"},
		{"bad status", "POST", "/api/servers", `{"name": "pg-b", ` + ok + `, "status": "gone"}`, 422, "status"},
		{"unknown field", "POST", "/api/servers", `{"name": "pg-b", ` + ok + `, "region": "eu"}`, 422, "region"},
		{"read-only field", "POST", "/api/servers", `{"name": "pg-b", ` + ok + `, "has_password": true}`, 422, "has_password"},
		{"password without key", "POST", "/api/servers", `{"name": "pg-b", "url": "postgres://cp:s3cret@h/postgres", "capacity": 5}`, 400, "url"},
		{"malformed JSON", "POST", "/api/servers", `{"name": `, 400, ""},
		{"empty body", "POST", "/api/servers", ``, 400, ""},
		{"patch status", "PATCH", "/api/servers/default", `{"status": "paused"}`, 422, "status"},
		{"patch capacity", "PATCH", "/api/servers/default", `{"capacity": -1}`, 422, "capacity"},
		{"patch url", "PATCH", "/api/servers/default", `{"url": "postgres://cp@h/postgres"}`, 422, "url"},
		{"patch name", "PATCH", "/api/servers/default", `{"name": "other"}`, 422, "name"},
		{"patch null body", "PATCH", "/api/servers/default", `[]`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, raw := b.rawDo(tc.method, tc.path, tc.body)
			require.Equal(t, tc.status, status, raw)
			var body struct {
				Error struct {
					Code    string            `json:"code"`
					Message string            `json:"message"`
					Fields  map[string]string `json:"fields"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal([]byte(raw), &body), raw)
			require.NotEmpty(t, body.Error.Message)
			if tc.field != "" {
				require.Contains(t, body.Error.Fields, tc.field, raw)
				require.Contains(t, body.Error.Message, tc.field)
			}
			require.NotContains(t, raw, "s3cret")
		})
	}
	status, got := b.do("GET", "/api/servers", nil)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, got["data"], 1, "nothing was registered")
	status, got = b.do("GET", "/api/servers/default", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, float64(controlplane.MaxServerCapacity), got["capacity"], "nothing was changed")
}

// Concurrent registrations of one name: exactly one is made, the others
// get 409 naming the field.
func TestServerDuplicateNameRace(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	const n = 12
	statuses := make([]int, n)
	bodies := make([]map[string]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], bodies[i] = b.do("POST", "/api/servers", map[string]any{
				"name": "pg-b", "url": fmt.Sprintf("postgres://cp@10.0.0.%d/postgres", i+1), "capacity": 10 + i,
			})
		}()
	}
	wg.Wait()
	created := 0
	for i, st := range statuses {
		switch st {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			e := bodies[i]["error"].(map[string]any)
			require.Equal(t, "conflict", e["code"])
			require.Contains(t, e["fields"], "name")
		default:
			t.Fatalf("unexpected %d: %v", st, bodies[i])
		}
	}
	require.Equal(t, 1, created)
	status, got := b.do("GET", "/api/servers", nil)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, got["data"], 2)
	require.Len(t, b.serverAudit(), 2, "one register, one create")
}

// A server is removed only when no tenant and no spare database is on it.
// Placement is not wired yet, so the tenant is put there by hand, as a
// later move would.
func TestServerDeleteRefusedWhileInUse(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	tenant := b.create(seed())
	status, got := b.do("POST", "/api/servers", map[string]any{"name": "pg-b", "url": "postgres://cp@10.0.0.2/postgres", "capacity": 5})
	require.Equal(t, http.StatusCreated, status, "%v", got)
	catalogDB := pgtest.Open(t, b.db.URL)
	_, err := catalogDB.Exec(`UPDATE tenants SET server = 'pg-b' WHERE id = $1`, tenant["id"])
	require.NoError(t, err)

	status, got = b.do("GET", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 1.0, got["schema_tenants"])
	require.Equal(t, 1.0, got["tenants"].(map[string]any)["ready"])

	status, got = b.do("DELETE", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Contains(t, got["error"].(map[string]any)["message"], "still holds 1 tenants and 0 spare databases")

	_, err = catalogDB.Exec(`UPDATE tenants SET server = 'default' WHERE id = $1`, tenant["id"])
	require.NoError(t, err)
	_, err = catalogDB.Exec(`INSERT INTO tenant_spares (id, db_name, template, server) VALUES (9999, 'x9999', 'tpl', 'pg-b')`)
	require.NoError(t, err)
	status, got = b.do("GET", "/api/servers", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 1.0, got["data"].([]any)[1].(map[string]any)["spares"])
	status, got = b.do("DELETE", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Contains(t, got["error"].(map[string]any)["message"], "0 tenants and 1 spare databases")

	_, err = catalogDB.Exec(`DELETE FROM tenant_spares WHERE id = 9999`)
	require.NoError(t, err)
	status, _ = b.do("DELETE", "/api/servers/pg-b", nil)
	require.Equal(t, http.StatusNoContent, status)

	// The foreign key holds even around the API.
	_, err = catalogDB.Exec(`UPDATE tenants SET server = 'pg-b' WHERE id = $1`, tenant["id"])
	require.ErrorContains(t, err, "tenants_server_fkey")
}

// A password sent with a server's URL is sealed in the catalog and shows
// nowhere: not in any response (create, get, list, patch, errors), the
// audit trail, the log, or the catalog's url column. Only ConnURL, for the
// control plane's own connections, puts it back.
func TestServerPasswordNeverLeaks(t *testing.T) {
	t.Parallel()
	const password = "Tr0ub4dor&3-sekrit"
	const defaultPassword = "default-sekrit-9f2c"
	db := pgtest.New(t)
	tenantURL := withPassword(t, db.URL, defaultPassword)
	first := setupOn(t, db, controlplane.IsolationSchema, "SERVER_SECRET_KEY="+serverKey, "TENANT_DATABASE_URL="+tenantURL)
	b, logs := first.restartLogged(first.cfg)

	var bodies []string
	keep := func(status int, want int, raw string) {
		t.Helper()
		require.Equal(t, want, status, raw)
		bodies = append(bodies, raw)
	}
	pgURL := "postgres://cp:" + url.QueryEscape(password) + "@10.0.0.2:5432/postgres?sslmode=require"
	status, _, raw := b.rawDo("POST", "/api/servers", `{"name": "pg-b", "url": "`+pgURL+`", "capacity": 500}`)
	keep(status, http.StatusCreated, raw)
	require.Contains(t, raw, `"url":"postgres://cp@10.0.0.2:5432/postgres?sslmode=require"`)
	require.Contains(t, raw, `"has_password":true`)
	status, _, raw = b.rawDo("POST", "/api/servers", `{"name": "pg-c", "url": "postgres://cp@10.0.0.3/postgres?password=`+url.QueryEscape(password)+`", "capacity": 5}`)
	keep(status, http.StatusCreated, raw)
	status, _, raw = b.rawDo("POST", "/api/servers", `{"name": "pg-b", "url": "`+pgURL+`", "capacity": 500}`)
	keep(status, http.StatusConflict, raw)
	status, _, raw = b.rawDo("POST", "/api/servers", `{"name": "pg-d", "url": "`+pgURL+`&sslmode=x", "capacity": 500}`)
	keep(status, http.StatusUnprocessableEntity, raw)
	status, _, raw = b.rawDo("POST", "/api/servers", `{"name": "pg-e", "url": "postgres://cp:`+password+`@h:port/db", "capacity": 500}`)
	keep(status, http.StatusUnprocessableEntity, raw)
	status, _, raw = b.rawDo("GET", "/api/servers/pg-b", "")
	keep(status, http.StatusOK, raw)
	status, _, raw = b.rawDo("GET", "/api/servers", "")
	keep(status, http.StatusOK, raw)
	status, _, raw = b.rawDo("PATCH", "/api/servers/pg-b", `{"status": "draining"}`)
	keep(status, http.StatusOK, raw)
	status, _, raw = b.rawDo("DELETE", "/api/servers/pg-c", "")
	keep(status, http.StatusNoContent, raw)
	status, _, raw = b.rawDo("GET", "/api/audit?limit=500", "")
	keep(status, http.StatusOK, raw)
	require.Contains(t, raw, `"action":"server.create"`)

	// The default server's password, from TENANT_DATABASE_URL, is sealed
	// too (a key is set), and shows nowhere either.
	status, got := b.do("GET", "/api/servers/default", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, true, got["has_password"])
	require.Equal(t, db.URL, got["url"])

	for _, secret := range []string{password, url.QueryEscape(password), defaultPassword} {
		for _, body := range bodies {
			require.NotContains(t, body, secret)
		}
		require.NotContains(t, logs.String(), secret)
	}
	require.Contains(t, logs.String(), `"route":"/api/servers"`, "the requests were logged")

	var urls, sealed string
	require.NoError(t, pgtest.Open(t, db.URL).QueryRow(`SELECT string_agg(url, ' '), string_agg(encode(password_enc, 'escape'), ' ') FROM servers`).Scan(&urls, &sealed))
	for _, secret := range []string{password, url.QueryEscape(password), defaultPassword} {
		require.NotContains(t, urls, secret)
		require.NotContains(t, sealed, secret)
	}

	// The control plane's own use gets it back, and only that.
	full, err := b.app.Servers.ConnURL(context.Background(), "pg-b")
	require.NoError(t, err)
	u, err := url.Parse(full)
	require.NoError(t, err)
	pw, _ := u.User.Password()
	require.Equal(t, password, pw)
	u.User = url.User("cp")
	require.Equal(t, "postgres://cp@10.0.0.2:5432/postgres?sslmode=require", u.String())
	full, err = b.app.Servers.ConnURL(context.Background(), controlplane.DefaultServer)
	require.NoError(t, err)
	require.Equal(t, tenantURL, full, "the default server's credentials come from the environment")
}

// A password sealed with one key opens with that key only: another key (or
// none) fails with an error that names the server and holds no password,
// while the registry itself still reads fine.
func TestServerKeyRoundTripAndWrongKey(t *testing.T) {
	t.Parallel()
	const password = "rotate-me-7d41"
	b := setup(t, controlplane.IsolationSchema, "SERVER_SECRET_KEY="+serverKey)
	ctx := context.Background()
	status, got := b.do("POST", "/api/servers", map[string]any{"name": "pg-b", "url": "postgres://cp:" + password + "@10.0.0.2/postgres", "capacity": 5})
	require.Equal(t, http.StatusCreated, status, "%v", got)
	status, got = b.do("POST", "/api/servers", map[string]any{"name": "pg-c", "url": "postgres://cp@10.0.0.3/postgres", "capacity": 5})
	require.Equal(t, http.StatusCreated, status, "%v", got)
	full, err := b.app.Servers.ConnURL(ctx, "pg-b")
	require.NoError(t, err)
	require.Equal(t, "postgres://cp:"+password+"@10.0.0.2/postgres", full)

	for name, key := range map[string]string{"another key": otherServerKey, "no key": ""} {
		cfg := b.cfg
		cfg.ServerSecretKey = config.Secret(key)
		other := newServers(cfg, b.app.Store, b.app.Servers.Log)
		_, err := other.ConnURL(ctx, "pg-b")
		require.Error(t, err, name)
		require.Equal(t, controlplane.Internal, controlplane.ErrorCode(err), name)
		require.Contains(t, err.Error(), "server pg-b", name)
		require.Contains(t, err.Error(), "SERVER_SECRET_KEY", name)
		require.NotContains(t, err.Error(), password, name)
		full, err := other.ConnURL(ctx, "pg-c")
		require.NoError(t, err, "%s: a server without a sealed password needs no key", name)
		require.Equal(t, "postgres://cp@10.0.0.3/postgres", full)
		srv, err := other.Get(ctx, "pg-b")
		require.NoError(t, err)
		require.True(t, srv.HasPassword)
	}
	_, err = b.app.Servers.ConnURL(ctx, "pg-x")
	require.Equal(t, controlplane.NotFound, controlplane.ErrorCode(err))
}

// The default server is registered at the first start with
// TENANT_DATABASE_URL's URL, and left alone by later starts with the same
// one: no write, no audit entry, no log line. A start with another URL
// updates it once. Without a key the catalog keeps no password for it.
func TestDefaultServerRegistration(t *testing.T) {
	t.Parallel()
	const password = "env-only-31e8"
	db := pgtest.New(t)
	catalogDB := pgtest.Open(t, db.URL)
	row := func() (url string, sealed []byte, updated string) {
		t.Helper()
		require.NoError(t, catalogDB.QueryRow(`SELECT url, password_enc, updated_at::text FROM servers WHERE name = 'default'`).Scan(&url, &sealed, &updated))
		return
	}
	tenantURL := withPassword(t, db.URL, password)
	b := setupOn(t, db, controlplane.IsolationSchema, "TENANT_DATABASE_URL="+tenantURL)
	b.create(seed())
	url1, sealed, updated := row()
	require.Equal(t, db.URL, url1)
	require.Nil(t, sealed, "no key: the password stays in the environment")
	require.Len(t, b.serverAudit(), 1)

	again, logs := b.restartLogged(b.cfg)
	url2, _, updated2 := row()
	require.Equal(t, url1, url2)
	require.Equal(t, updated, updated2, "an unchanged URL is not written again")
	require.NotContains(t, logs.String(), "tenant server default")
	require.Len(t, again.serverAudit(), 1)

	// Another host for TENANT_DATABASE_URL (the same server, by name).
	moved := strings.Replace(tenantURL, "127.0.0.1", "localhost", 1)
	require.NotEqual(t, tenantURL, moved)
	cfg := b.cfg
	cfg.TenantDatabaseURL = config.Secret(moved)
	after, logs := b.restartLogged(cfg)
	url3, _, _ := row()
	require.Equal(t, strings.Replace(db.URL, "127.0.0.1", "localhost", 1), url3)
	require.Equal(t, 1, strings.Count(logs.String(), `"msg":"tenant server default updated from TENANT_DATABASE_URL"`))
	require.Contains(t, logs.String(), `"url_before":"`+db.URL+`"`)
	require.NotContains(t, logs.String(), password)
	entries := after.serverAudit()
	require.Len(t, entries, 2)
	require.Equal(t, "server.update", entries[1]["action"])
	require.Equal(t, "system", entries[1]["actor"])
	_, logs = b.restartLogged(cfg)
	require.NotContains(t, logs.String(), "tenant server default")

	// With a key the password is sealed once, and later starts keep the
	// sealed bytes (no new nonce each time); dropping the key drops it.
	cfg.ServerSecretKey = config.Secret(serverKey)
	_, logs = b.restartLogged(cfg)
	require.Contains(t, logs.String(), `"password":"sealed in the catalog (SERVER_SECRET_KEY)"`)
	_, sealed1, _ := row()
	require.NotNil(t, sealed1)
	b.restartLogged(cfg)
	_, sealed2, _ := row()
	require.Equal(t, sealed1, sealed2)
	cfg.ServerSecretKey = ""
	b.restartLogged(cfg)
	_, sealed3, _ := row()
	require.Nil(t, sealed3)

	// The tenant made before stays on the default server throughout.
	var server string
	require.NoError(t, catalogDB.QueryRow(`SELECT server FROM tenants WHERE slug = 'acme-corp'`).Scan(&server))
	require.Equal(t, "default", server)
}

// Upgrading a catalog with tenants: migration 8 puts them on the default
// server, and `migrate catalog up` records its URL, as serve would.
func TestServersMigrationKeepsTenantsOnDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.create(seed())
	run := func(args ...string) string {
		out, err := b.cli(args...)
		require.NoError(t, err)
		return out
	}
	run("migrate", "catalog", "down", catalogStepsTo(t, 7)) // before the registry
	catalogDB := pgtest.Open(t, b.db.URL)
	var n int
	require.NoError(t, catalogDB.QueryRow(`SELECT count(*) FROM information_schema.tables WHERE table_name = 'servers'`).Scan(&n))
	require.Zero(t, n)
	run("migrate", "catalog", "up")
	var server, url string
	require.NoError(t, catalogDB.QueryRow(`SELECT t.server, s.url FROM tenants t JOIN servers s ON s.name = t.server WHERE t.slug = 'acme-corp'`).Scan(&server, &url))
	require.Equal(t, "default", server)
	require.Equal(t, b.db.URL, url)
}

// The operator API's gate applies: the operator token, and never on a
// tenant's host.
func TestServersNeedTheOperator(t *testing.T) {
	t.Parallel()
	const token = "operator-token-0123456789abcdef"
	b := setup(t, controlplane.IsolationSchema, "ADMIN_TOKEN="+token)
	auth := []string{"Authorization", "Bearer " + token}
	status, _, _ := b.req("POST", "", "/api/tenants", seed(), auth...)
	require.Equal(t, http.StatusCreated, status)
	status, _, _ = b.req("GET", "", "/api/servers", nil)
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = b.req("POST", "", "/api/servers", map[string]any{"name": "pg-b", "url": "postgres://cp@h/postgres", "capacity": 5})
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = b.req("GET", "acme.example.com", "/api/servers", nil, auth...)
	require.Equal(t, http.StatusNotFound, status)
	status, _, _ = b.req("GET", "", "/t/acme-corp/api/servers", nil, auth...)
	require.Equal(t, http.StatusNotFound, status)
	status, _, got := b.req("GET", "", "/api/servers", nil, auth...)
	require.Equal(t, http.StatusOK, status, "%v", got)
}

// The CLI goes through the same service, on the catalog, and is audited
// as its user.
func TestServersCLI(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	run := func(args ...string) (string, error) { return b.cli(append([]string{"servers"}, args...)...) }
	out, err := run("add", "pg-b", "--url", "postgres://cp@10.0.0.2:5432/postgres?sslmode=require", "--capacity", "500", "--json")
	require.NoError(t, err)
	var srv controlplane.Server
	require.NoError(t, json.Unmarshal([]byte(out), &srv))
	require.Equal(t, "pg-b", srv.Name)
	require.Equal(t, 500, srv.Capacity)

	out, err = run("list")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^NAME\s+STATUS\s+CAPACITY`, lines[0])
	require.Regexp(t, `^default\s+active\s+1000000\s`, lines[1])
	require.Regexp(t, `^pg-b\s+active\s+500\s+0\s+0\s+0\s+0\s+0\s+pgpass\s+postgres://cp@10.0.0.2:5432/postgres\?sslmode=require$`, lines[2])

	out, err = run("drain", "pg-b")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^status:\s+draining$`, out)
	out, err = run("show", "pg-b", "--json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &srv))
	require.Equal(t, controlplane.ServerDraining, srv.Status)

	_, err = run("add", "pg-b", "--url", "postgres://cp@10.0.0.2/postgres", "--capacity", "5")
	require.Equal(t, controlplane.Conflict, controlplane.ErrorCode(err))
	_, err = run("add", "pg-c", "--url", "postgres://cp:pw@10.0.0.3/postgres", "--capacity", "5")
	require.Equal(t, controlplane.BadRequest, controlplane.ErrorCode(err), "a password needs SERVER_SECRET_KEY")
	_, err = run("add", "pg-c", "--url", "postgres://cp@10.0.0.3/postgres")
	require.ErrorContains(t, err, "add needs --url and --capacity")
	_, err = run("remove", "default")
	require.Equal(t, controlplane.Conflict, controlplane.ErrorCode(err))
	out, err = run("remove", "pg-b")
	require.NoError(t, err)
	require.Equal(t, "server pg-b removed\n", out)
	_, err = run("show", "pg-b")
	require.Equal(t, controlplane.NotFound, controlplane.ErrorCode(err))

	entries := b.serverAudit()
	require.Len(t, entries, 4)
	for _, e := range entries[1:] {
		require.Regexp(t, `^cli:.+@.+$`, e["actor"])
	}
}
