package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/catalog"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// bundle is one control plane, wired exactly as serve wires it, on a
// throwaway catalog database, behind a real HTTP server.
type bundle struct {
	t   *testing.T
	app *App
	srv *httptest.Server
	db  pgtest.DB
	cfg config.Config
}

func setup(t *testing.T, isolation controlplane.Isolation, env ...string) *bundle {
	t.Helper()
	return setupOn(t, migratedCatalog(t), isolation, env...)
}

// catalogTemplate is a catalog database migrated once per test binary,
// which migratedCatalog copies.
var catalogTemplate = sync.OnceValues(func() (string, error) {
	return pgtest.CreateTemplate(func(url string) error {
		_, err := catalog.Migrate(url)
		return err
	})
})

// migratedCatalog is a fresh catalog database, already at the latest
// migration: a copy of catalogTemplate, so that the ~180 control planes
// the tests start do not each run the catalog's migrations (~300 ms of a
// bundle's ~440 ms start). serve's migration of an empty catalog is still
// what every test that starts from pgtest.New runs. Each copy gets an
// identity of its own: the migration generated the template's once, and
// two catalogs must never share one (a provisioner adopts only databases
// marked with its own catalog's).
func migratedCatalog(t *testing.T) pgtest.DB {
	t.Helper()
	pgtest.ServerURL(t) // skips in the fast lane (-short), fails without DATABASE_URL, before the template is tried
	name, err := catalogTemplate()
	require.NoError(t, err)
	db := pgtest.NewFrom(t, name)
	conn := pgtest.Open(t, db.URL)
	_, err = conn.Exec(`UPDATE catalog_identity SET id = gen_random_uuid(), created_at = now()`)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	return db
}

// setupOn is setup on a database of the caller's (e.g. on a private
// cluster the test stops and starts).
func setupOn(t *testing.T, db pgtest.DB, isolation controlplane.Isolation, env ...string) *bundle {
	t.Helper()
	return start(t, db, append([]string{
		"DATABASE_URL=" + db.URL,
		"TENANT_ISOLATION=" + string(isolation),
		"TENANT_DB_PREFIX=" + db.Prefix,
	}, env...))
}

// start wires a control plane from env as serve does (a restarted serve,
// when env names a catalog already used) and serves it on a test server.
func start(t *testing.T, db pgtest.DB, env []string) *bundle {
	t.Helper()
	return startWith(t, db, env, migrations.Tenant)
}

// startWith is start with another set of tenant migrations (a newer binary).
func startWith(t *testing.T, db pgtest.DB, env []string, tenantMigrations fs.FS) *bundle {
	t.Helper()
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "BACKUP_DIR=") }) {
		env = append(env, "BACKUP_DIR="+t.TempDir()) // never the checkout's .data
	}
	cfg, err := config.Load(env, nil)
	require.NoError(t, err)
	app, err := newAppWith(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), tenantMigrations)
	require.NoError(t, err)
	t.Cleanup(app.Close)
	srv := serveChecked(t, app.Handler)
	listen(t, app, cfg)
	return &bundle{t: t, app: app, srv: srv, db: db, cfg: cfg}
}

// listen runs the app's catalog listener, as serve does, until the test ends.
func listen(t *testing.T, app *App, cfg config.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		app.Store.Listen(ctx, cfg.DatabaseURL.Value(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// do sends a request; body is sent as is when it is a string, as JSON
// otherwise. It returns the status and the decoded JSON body.
func (b *bundle) do(method, path string, body any) (int, map[string]any) {
	b.t.Helper()
	var r io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		r = bytes.NewBufferString(v)
	case []byte:
		r = bytes.NewReader(v)
	default:
		buf, err := json.Marshal(v)
		require.NoError(b.t, err)
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, r)
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(b.t, json.Unmarshal(raw, &out), "body: %s", raw)
	}
	return resp.StatusCode, out
}

// cli runs the controlplane command with args against the bundle's
// catalog and tenant prefix, as an operator's shell would, and returns what
// it printed on stdout.
func (b *bundle) cli(args ...string) (string, error) {
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append(args, "--database-url", b.db.URL, "--tenant-db-prefix", b.db.Prefix, "--log-level", "error"))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// create posts a tenant and requires 201.
func (b *bundle) create(body map[string]any) map[string]any {
	b.t.Helper()
	status, got := b.do("POST", "/api/tenants", body)
	require.Equal(b.t, http.StatusCreated, status, "body: %v", got)
	return got
}

// tenantTables lists the tables in a tenant's database or schema, apart
// from the migrations table; nil when the database or schema is absent.
func (b *bundle) tenantTables(t map[string]any) []string {
	b.t.Helper()
	name := t["db_name"].(string)
	dbURL, schema := b.db.URL, name
	if t["isolation"] == "database" {
		if !contains(pgtest.TenantDatabases(b.t, b.db.Prefix), name) {
			return nil
		}
		dbURL, schema = pgtest.WithDatabase(b.t, b.db.URL, name), "public"
	}
	db := pgtest.Open(b.t, dbURL)
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name <> $2 ORDER BY 1`, schema, migrations.Table)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(b.t, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(b.t, db.Close())
	return out
}

var allTenantTables = []string{"cdrs", "contact_emails", "contact_phones", "contacts", "dids", "extensions", "queue_members", "queues", "rates"}

func contains(list []string, s string) bool {
	i := sort.SearchStrings(list, s)
	return i < len(list) && list[i] == s
}

func seed() map[string]any {
	return map[string]any{
		"name": "Acme Corp", "slug": "acme-corp", "domain": "acme.example.com", "status": "active",
		"timezone": "America/New_York", "max_extensions": 50, "settings": []any{},
	}
}

func bothModes(t *testing.T, fn func(t *testing.T, b *bundle)) {
	for _, mode := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			fn(t, setup(t, mode))
		})
	}
}

func TestSeedExample(t *testing.T) {
	t.Parallel()
	latest, err := migrations.Latest(migrations.Tenant)
	require.NoError(t, err)
	bothModes(t, func(t *testing.T, b *bundle) {
		created := b.create(seed())
		require.EqualValues(t, 1, created["id"])
		for k, v := range map[string]any{
			"name": "Acme Corp", "slug": "acme-corp", "domain": "acme.example.com", "status": "active",
			"timezone": "America/New_York", "max_extensions": 50.0, "settings": []any{},
			"isolation": string(b.cfg.TenantIsolation), "db_name": b.db.Prefix + "1",
			"provisioning": "ready", "schema_version": float64(latest), "last_error": "",
		} {
			require.Equal(t, v, created[k], "field %s", k)
		}
		require.NotEmpty(t, created["created_at"])
		require.NotEmpty(t, created["updated_at"])
		require.Equal(t, allTenantTables, b.tenantTables(created))

		// The first API key comes with the create, its secret shown once.
		key := created["api_key"].(map[string]any)
		require.Regexp(t, `^lc_[0-9a-f]{64}$`, key["key"])
		require.Equal(t, key["key"].(string)[:11], key["prefix"])
		require.Equal(t, "initial", key["name"])
		delete(created, "api_key")

		status, got := b.do("GET", "/api/tenants/1", nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, created, got)
	})
}

func TestIsolationOverride(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	body := seed()
	body["isolation"] = "schema"
	created := b.create(body)
	require.Equal(t, "schema", created["isolation"])
	require.Equal(t, allTenantTables, b.tenantTables(created))
	require.Empty(t, pgtest.TenantDatabases(t, b.db.Prefix), "a schema tenant must not get a database")
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	with := func(k string, v any) map[string]any {
		s := seed()
		if v == nil {
			delete(s, k)
		} else {
			s[k] = v
		}
		return s
	}
	cases := []struct {
		name  string
		body  any
		field string
	}{
		{"missing name", with("name", nil), "name"},
		{"blank name", with("name", "   "), "name"},
		{"long name", with("name", string(bytes.Repeat([]byte("n"), 201))), "name"},
		{"missing slug", with("slug", nil), "slug"},
		{"upper-case slug", with("slug", "Acme"), "slug"},
		{"double hyphen slug", with("slug", "acme--corp"), "slug"},
		{"trailing hyphen slug", with("slug", "acme-"), "slug"},
		{"long slug", with("slug", string(bytes.Repeat([]byte("a"), 64))), "slug"},
		{"missing domain", with("domain", nil), "domain"},
		{"domain with port", with("domain", "acme.example.com:8080"), "domain"},
		{"domain with scheme", with("domain", "https://acme.example.com"), "domain"},
		{"domain with underscore", with("domain", "ac_me.example.com"), "domain"},
		{"ip address", with("domain", "10.0.0.1"), "domain"},
		{"label too long", with("domain", string(bytes.Repeat([]byte("a"), 64))+".com"), "domain"},
		{"bad status", with("status", "deleted"), "status"},
		{"bad timezone", with("timezone", "Mars/Olympus"), "timezone"},
		{"fixed offset timezone", with("timezone", "+05:00"), "timezone"},
		{"Local timezone", with("timezone", "Local"), "timezone"},
		{"negative cap", with("max_extensions", -1), "max_extensions"},
		{"huge cap", with("max_extensions", 100001), "max_extensions"},
		{"fractional cap", with("max_extensions", 1.5), "max_extensions"},
		{"string cap", with("max_extensions", "50"), "max_extensions"},
		{"settings object", with("settings", map[string]any{"a": 1}), "settings"},
		{"settings null", `{"name":"A","slug":"a","domain":"a.example.com","settings":null}`, "settings"},
		{"bad isolation", with("isolation", "table"), "isolation"},
		{"unknown field", with("colour", "blue"), "colour"},
		{"read-only field", with("provisioning", "ready"), "provisioning"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, got := b.do("POST", "/api/tenants", tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, status, "body: %v", got)
			e := got["error"].(map[string]any)
			require.Equal(t, "invalid", e["code"])
			require.Contains(t, e["fields"], tc.field, "error: %v", e)
			require.NotEmpty(t, e["message"])
		})
	}

	t.Run("malformed JSON is 400", func(t *testing.T) {
		for _, body := range []string{`{"name": "x"`, `{name: 1}`, ``, `[1,2]`, `{"name":"a"} {"name":"b"}`} {
			status, got := b.do("POST", "/api/tenants", body)
			require.Equal(t, http.StatusBadRequest, status, "body %q: %v", body, got)
			require.Equal(t, "bad_request", got["error"].(map[string]any)["code"])
		}
	})
	t.Run("body over 1 MiB is 413", func(t *testing.T) {
		s := seed()
		s["settings"] = []string{string(bytes.Repeat([]byte("x"), 1<<20))}
		status, got := b.do("POST", "/api/tenants", s)
		require.Equal(t, http.StatusRequestEntityTooLarge, status, "%v", got)
		require.Equal(t, "too_large", got["error"].(map[string]any)["code"])
	})

	// Nothing of the above reached the catalog.
	status, got := b.do("GET", "/api/tenants", nil)
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, 0, got["total"])
}

func TestDefaultsAndNormalisation(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	got := b.create(map[string]any{"name": "  Beta  ", "slug": "beta", "domain": "Beta.Example.COM."})
	require.Equal(t, "Beta", got["name"])
	require.Equal(t, "beta.example.com", got["domain"])
	require.Equal(t, "active", got["status"])
	require.Equal(t, "UTC", got["timezone"])
	require.EqualValues(t, controlplane.DefaultMaxExtensions, got["max_extensions"])
	require.Equal(t, []any{}, got["settings"])
	require.Equal(t, "schema", got["isolation"])

	// Settings come back as given.
	settings := []any{map[string]any{"key": "moh", "value": "jazz"}, 42.0, "x", []any{true, nil}}
	body := seed()
	body["settings"] = settings
	got = b.create(body)
	require.Equal(t, settings, got["settings"])
}

func TestUniqueSlugAndDomain(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.create(seed())

	dupSlug := seed()
	dupSlug["domain"] = "other.example.com"
	status, got := b.do("POST", "/api/tenants", dupSlug)
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, "conflict", got["error"].(map[string]any)["code"])
	require.Contains(t, got["error"].(map[string]any)["fields"], "slug")

	dupDomain := seed()
	dupDomain["slug"] = "other"
	dupDomain["domain"] = "ACME.example.com"
	status, got = b.do("POST", "/api/tenants", dupDomain)
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, got["error"].(map[string]any)["fields"], "domain")
}

func TestConcurrentDuplicateCreates(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		const n = 10
		statuses := make(chan int, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			go func() {
				<-start
				body, _ := json.Marshal(seed())
				resp, err := http.Post(b.srv.URL+"/api/tenants", "application/json", bytes.NewReader(body))
				if err != nil {
					statuses <- 0
					return
				}
				_ = resp.Body.Close()
				statuses <- resp.StatusCode
			}()
		}
		close(start)
		count := map[int]int{}
		for i := 0; i < n; i++ {
			count[<-statuses]++
		}
		require.Equal(t, map[int]int{http.StatusCreated: 1, http.StatusConflict: n - 1}, count)

		_, list := b.do("GET", "/api/tenants", nil)
		require.EqualValues(t, 1, list["total"])
		if b.cfg.TenantIsolation == "database" {
			require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), 1, "losers must not leave databases behind")
		}
	})
}

func TestListTenants(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	for _, s := range []struct{ name, slug, domain, status string }{
		{"Alpha Telecom", "alpha", "alpha.example.com", "active"},
		{"Bravo Voice", "bravo", "voice.bravo.net", "suspended"},
		{"Charlie 100% Co", "charlie", "charlie.example.org", "active"},
	} {
		b.create(map[string]any{"name": s.name, "slug": s.slug, "domain": s.domain, "status": s.status})
	}
	slugs := func(body map[string]any) []string {
		var out []string
		for _, t := range body["data"].([]any) {
			out = append(out, t.(map[string]any)["slug"].(string))
		}
		return out
	}
	cases := []struct {
		query string
		slugs []string
		total float64
	}{
		{"", []string{"alpha", "bravo", "charlie"}, 3},
		{"?status=active", []string{"alpha", "charlie"}, 2},
		{"?status=suspended", []string{"bravo"}, 1},
		{"?q=VOICE", []string{"bravo"}, 1},
		{"?q=example", []string{"alpha", "charlie"}, 2},
		{"?q=100%25", []string{"charlie"}, 1},
		{"?q=_", nil, 0},
		{"?limit=2", []string{"alpha", "bravo"}, 3},
		{"?limit=2&offset=2", []string{"charlie"}, 3},
		{"?status=active&q=charlie", []string{"charlie"}, 1},
	}
	for _, tc := range cases {
		status, got := b.do("GET", "/api/tenants"+tc.query, nil)
		require.Equal(t, http.StatusOK, status, tc.query)
		require.Equal(t, tc.slugs, slugs(got), tc.query)
		require.Equal(t, tc.total, got["total"], tc.query)
	}
	for query, field := range map[string]string{
		"?status=gone": "status", "?limit=0x": "limit", "?limit=501": "limit", "?limit=-1": "limit", "?offset=-3": "offset",
	} {
		status, got := b.do("GET", "/api/tenants"+query, nil)
		require.Equal(t, http.StatusUnprocessableEntity, status, query)
		require.Contains(t, got["error"].(map[string]any)["fields"], field, query)
	}
}

func TestUpdateTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	acme := b.create(seed())
	other := seed()
	other["slug"], other["domain"] = "other", "other.example.com"
	b.create(other)

	status, got := b.do("PATCH", "/api/tenants/1", map[string]any{"max_extensions": 60})
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.EqualValues(t, 60, got["max_extensions"])
	require.Equal(t, "Acme Corp", got["name"], "PATCH keeps fields it does not name")
	require.Equal(t, "America/New_York", got["timezone"])

	status, got = b.do("PATCH", "/api/tenants/1", map[string]any{"slug": "acme", "domain": "Acme.Example.net", "settings": []any{"x"}})
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.Equal(t, "acme", got["slug"])
	require.Equal(t, "acme.example.net", got["domain"])
	require.Equal(t, []any{"x"}, got["settings"])
	require.Equal(t, acme["db_name"], got["db_name"], "the database name never changes")

	// PUT replaces: what is left out takes its default.
	status, got = b.do("PUT", "/api/tenants/1", map[string]any{"name": "Acme Inc", "slug": "acme-inc", "domain": "acme.example.com", "timezone": "Asia/Kolkata"})
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.Equal(t, "Acme Inc", got["name"])
	require.Equal(t, "Asia/Kolkata", got["timezone"])
	require.EqualValues(t, controlplane.DefaultMaxExtensions, got["max_extensions"])
	require.Equal(t, []any{}, got["settings"])
	require.Equal(t, acme["db_name"], got["db_name"])
	require.Equal(t, acme["created_at"], got["created_at"])

	errs := []struct {
		method string
		body   any
		status int
		field  string
	}{
		{"PATCH", map[string]any{"slug": "other"}, http.StatusConflict, "slug"},
		{"PATCH", map[string]any{"domain": "OTHER.example.com"}, http.StatusConflict, "domain"},
		{"PATCH", map[string]any{"isolation": "database"}, http.StatusUnprocessableEntity, "isolation"},
		{"PATCH", map[string]any{"max_extensions": -5}, http.StatusUnprocessableEntity, "max_extensions"},
		{"PATCH", map[string]any{"timezone": "EST+5"}, http.StatusUnprocessableEntity, "timezone"},
		{"PATCH", map[string]any{"db_name": "tenant_2"}, http.StatusUnprocessableEntity, "db_name"},
		{"PATCH", map[string]any{"id": 2}, http.StatusUnprocessableEntity, "id"},
		{"PUT", map[string]any{"name": "No slug", "domain": "x.example.com"}, http.StatusUnprocessableEntity, "slug"},
		{"PUT", map[string]any{"name": "X", "slug": "other", "domain": "x.example.com"}, http.StatusConflict, "slug"},
	}
	for _, tc := range errs {
		status, got := b.do(tc.method, "/api/tenants/1", tc.body)
		require.Equal(t, tc.status, status, "%s %v: %v", tc.method, tc.body, got)
		require.Contains(t, got["error"].(map[string]any)["fields"], tc.field, "%s %v", tc.method, tc.body)
	}
	// The failed updates changed nothing.
	_, now := b.do("GET", "/api/tenants/1", nil)
	require.Equal(t, "acme-inc", now["slug"])

	for _, m := range []string{"PATCH", "PUT"} {
		status, got := b.do(m, "/api/tenants/99", map[string]any{"name": "x", "slug": "x", "domain": "x.example.com"})
		require.Equal(t, http.StatusNotFound, status, "%s: %v", m, got)
	}
	status, _ = b.do("PATCH", "/api/tenants/1", `{"max_extensions": 60`)
	require.Equal(t, http.StatusBadRequest, status)
}

// Deleting a tenant (suspended first) takes a final backup and keeps the
// tenant for the grace period: served to nobody (404 as if unknown), its
// slug and domain taken, its database closed to its own role, and
// undeletable; once the grace has passed the reconciler purges it and its
// slug is free again. ?purge=now drops at once.
func TestDeleteTenant(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		acme := b.create(seed())
		host := acme["domain"].(string)
		status, _, did := b.req("POST", host, "/api/dids", map[string]any{"number": "+15557654321"})
		require.Equal(t, http.StatusCreated, status, "%v", did)

		status, got := b.do("DELETE", "/api/tenants/1", nil)
		require.Equal(t, http.StatusConflict, status, "an active tenant is not deleted: %v", got)
		require.Contains(t, got["error"].(map[string]any)["message"], "suspend")
		require.Equal(t, allTenantTables, b.tenantTables(acme), "refused delete leaves data alone")

		b.setStatus(1, "suspended")
		status, got = b.do("DELETE", "/api/tenants/1", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "deleted", got["status"])
		require.NotNil(t, got["deleted_at"])
		require.Equal(t, allTenantTables, b.tenantTables(acme), "kept for the grace period")
		status, _, body := b.req("GET", host, "/api/extensions", nil)
		require.Equal(t, http.StatusNotFound, status, "%v", body)
		require.Equal(t, "unknown_tenant", body["error"].(map[string]any)["code"])
		status, got = b.do("POST", "/api/tenants", seed())
		require.Equal(t, http.StatusConflict, status, "the slug stays taken: %v", got)
		status, _, got = b.req("GET", "", "/api/dids/+15557654321", nil)
		require.Equal(t, http.StatusNotFound, status, "a deleted tenant's DID routes no call: %v", got)
		status, got = b.do("PATCH", "/api/tenants/1", map[string]any{"status": "active"})
		require.Equal(t, http.StatusConflict, status, "a deleted tenant is undeleted, not patched: %v", got)
		_, list := b.do("GET", "/api/tenants/1/backups", nil)
		require.Len(t, list["data"], 1, "the final backup")
		require.Equal(t, "ready", list["data"].([]any)[0].(map[string]any)["state"])
		if acme["isolation"] == "database" {
			require.Error(t, b.tenantLogin(acme), "the database is closed to the tenant's role")
		}
		_, deleted := b.do("GET", "/api/tenants?status=deleted", nil)
		require.Len(t, deleted["data"], 1)
		_, _, metrics := get(t, b.srv.URL, "", "/metrics")
		require.Contains(t, metrics, `controlplane_tenants{provisioning="ready",status="deleted"} 1`)

		status, got = b.do("POST", "/api/tenants/1/undelete", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "suspended", got["status"])
		require.Nil(t, got["deleted_at"])
		b.setStatus(1, "active")
		status, _, body = b.req("GET", host, "/api/extensions", nil)
		require.Equal(t, http.StatusOK, status, "served again: %v", body)
		status, _, got = b.req("GET", "", "/api/dids/+15557654321", nil)
		require.Equal(t, http.StatusOK, status, "and its DID routes again: %v", got)
		if acme["isolation"] == "database" {
			require.NoError(t, b.tenantLogin(acme))
		}

		// Deleted again, and the grace period goes by.
		b.setStatus(1, "suspended")
		status, got = b.do("DELETE", "/api/tenants/1", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		status, got = b.do("DELETE", "/api/tenants/1", nil)
		require.Equal(t, http.StatusConflict, status, "deleted already: %v", got)
		n, err := b.app.Tenants.Purge(context.Background())
		require.NoError(t, err)
		require.Zero(t, n, "not before the grace period")
		_, err = pgtest.Open(t, b.db.URL).Exec(`UPDATE tenants SET deleted_at = now() - interval '73 hours' WHERE id = 1`)
		require.NoError(t, err)
		n, err = b.app.Tenants.Purge(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, n)

		require.Nil(t, b.tenantTables(acme), "database or schema is dropped")
		status, _ = b.do("GET", "/api/tenants/1", nil)
		require.Equal(t, http.StatusNotFound, status)
		status, _ = b.do("DELETE", "/api/tenants/1", nil)
		require.Equal(t, http.StatusNotFound, status)
		_, list = b.do("GET", "/api/tenants/1/backups", nil)
		require.Len(t, list["data"], 2, "a purged tenant's backups stay")

		// The slug and domain are free again; the new tenant gets a new
		// database, and ?purge=now drops at once.
		again := b.create(seed())
		require.NotEqual(t, acme["db_name"], again["db_name"])
		b.setStatus(again["id"], "suspended")
		status, got = b.do("DELETE", fmt.Sprintf("/api/tenants/%v?purge=later", again["id"]), nil)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		status, _ = b.do("DELETE", fmt.Sprintf("/api/tenants/%v?purge=now", again["id"]), nil)
		require.Equal(t, http.StatusNoContent, status)
		require.Nil(t, b.tenantTables(again))
	})
}

// tenantConn connects to a database-mode tenant's database as its role,
// with the credentials a tenant holds.
func (b *bundle) tenantConn(tn map[string]any) (*pgx.Conn, error) {
	b.t.Helper()
	role := tn["db_name"].(string)
	cfg, err := pgx.ParseConfig(b.cfg.TenantDatabaseURL.Value())
	require.NoError(b.t, err)
	cfg.Database, cfg.User, cfg.Password = role, role, b.app.RoleSecret.Password(role)
	return pgx.ConnectConfig(context.Background(), cfg)
}

// tenantLogin says whether a tenant's role can log in to its database.
func (b *bundle) tenantLogin(tn map[string]any) error {
	c, err := b.tenantConn(tn)
	if err == nil {
		_ = c.Close(context.Background())
	}
	return err
}

func TestErrorsAndHealth(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	status, got := b.do("GET", "/api/tenants/42", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, map[string]any{"code": "not_found", "message": "tenant 42 not found"}, got["error"])

	status, got = b.do("GET", "/api/tenants/abc", nil)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, got["error"].(map[string]any)["fields"], "id")

	status, got = b.do("GET", "/nowhere", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "not_found", got["error"].(map[string]any)["code"])

	status, got = b.do("DELETE", "/api/tenants", nil)
	require.Equal(t, http.StatusMethodNotAllowed, status)
	require.Equal(t, "method_not_allowed", got["error"].(map[string]any)["code"])

	status, got = b.do("POST", "/api/tenants/1/provision", nil)
	require.Equal(t, http.StatusNotFound, status, "%v", got)

	status, got = b.do("GET", "/healthz", nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "ok", got["status"])
	require.Equal(t, "dev", got["version"], "the binary's version (unstamped under go test)")
	require.NotEmpty(t, got["commit"])
	status, got = b.do("GET", "/readyz", nil)
	require.Equal(t, http.StatusOK, status, "%v", got)
	require.Equal(t, "ready", got["status"])
}

// catalogStepsTo is the argument of `migrate catalog down` that takes the
// latest catalog to version v, whatever migrations come after it.
func catalogStepsTo(t *testing.T, v uint) string {
	t.Helper()
	latest, err := migrations.Latest(migrations.Catalog)
	require.NoError(t, err)
	return strconv.FormatUint(uint64(latest-v), 10)
}
