package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// req sends a request with the given Host header (empty: the server's own
// address, an admin host) and headers; it returns status, headers and body.
func (b *bundle) req(method, host, path string, body any, headers ...string) (int, http.Header, map[string]any) {
	b.t.Helper()
	var r io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		require.NoError(b.t, err)
		r = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, r)
	require.NoError(b.t, err)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(b.t, json.Unmarshal(raw, &out), "body: %s", raw)
	}
	return resp.StatusCode, resp.Header, out
}

// twoTenants creates acme (the seed) and beta.
func (b *bundle) twoTenants() {
	b.t.Helper()
	b.create(seed())
	b.create(map[string]any{"name": "Beta", "slug": "beta", "domain": "beta.example.org", "max_extensions": 10})
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func numbers(body map[string]any) []string {
	var out []string
	for _, e := range body["data"].([]any) {
		out = append(out, e.(map[string]any)["number"].(string))
	}
	return out
}

func TestRoutingByHostOrSlug(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		status, _, got := b.req("POST", "acme.example.com", "/api/extensions", map[string]any{"number": "1001", "name": "Alice"})
		require.Equal(t, http.StatusCreated, status, "%v", got)
		status, _, got = b.req("POST", "", "/t/beta/api/extensions", map[string]any{"number": "2001", "name": "Bob"})
		require.Equal(t, http.StatusCreated, status, "%v", got)

		// Every way of naming acme sees acme's extensions only.
		for _, tc := range []struct{ host, path string }{
			{"acme.example.com", "/api/extensions"},
			{"ACME.Example.COM:8080", "/api/extensions"},
			{"acme.example.com.", "/api/extensions"},
			{"", "/t/acme-corp/api/extensions"},
			{"acme.example.com", "/t/acme-corp/api/extensions"},
		} {
			status, _, got := b.req("GET", tc.host, tc.path, nil)
			require.Equal(t, http.StatusOK, status, "%+v: %v", tc, got)
			require.Equal(t, []string{"1001"}, numbers(got), "%+v", tc)
		}
		status, _, got = b.req("GET", "beta.example.org", "/api/extensions", nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, []string{"2001"}, numbers(got))

		cases := []struct {
			name, host, path string
			status           int
			code             string
		}{
			{"unknown host", "nobody.example.com", "/api/extensions", 404, "unknown_tenant"},
			{"unknown slug", "", "/t/nobody/api/extensions", 404, "unknown_tenant"},
			{"admin host has no tenant routes", "", "/api/extensions", 404, "unknown_tenant"},
			{"operator API on a tenant host", "acme.example.com", "/api/tenants", 404, "not_found"},
			{"operator API on a tenant host, by id", "acme.example.com", "/api/tenants/1", 404, "not_found"},
			{"operator API under a slug", "", "/t/acme-corp/api/tenants", 404, "not_found"},
			{"operator API on an unknown host", "nobody.example.com", "/api/tenants", 404, "unknown_tenant"},
			{"host and slug disagree", "acme.example.com", "/t/beta/api/extensions", 400, "bad_request"},
			{"unknown tenant route", "acme.example.com", "/api/nothing", 404, "not_found"},
		}
		for _, tc := range cases {
			status, _, got := b.req("GET", tc.host, tc.path, nil)
			require.Equal(t, tc.status, status, "%s: %v", tc.name, got)
			require.Equal(t, tc.code, errCode(got), tc.name)
		}

		// X-Forwarded-Host is not trusted: it cannot turn an admin request
		// into a tenant request, nor move a tenant request to another tenant.
		status, _, got = b.req("GET", "", "/api/extensions", nil, "X-Forwarded-Host", "acme.example.com")
		require.Equal(t, http.StatusNotFound, status, "%v", got)
		status, _, got = b.req("GET", "beta.example.org", "/api/extensions", nil, "X-Forwarded-Host", "acme.example.com")
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, []string{"2001"}, numbers(got))

		// Health answers on any host.
		status, _, _ = b.req("GET", "acme.example.com", "/healthz", nil)
		require.Equal(t, http.StatusOK, status)
	})
}

func TestCatalogChangesReachTheNextRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.twoTenants()

	// Suspension gates at once, and lifting it too.
	status, _ := b.do("PATCH", "/api/tenants/1", map[string]any{"status": "suspended"})
	require.Equal(t, http.StatusOK, status)
	status, _, got := b.req("GET", "acme.example.com", "/api/extensions", nil)
	require.Equal(t, http.StatusForbidden, status)
	require.Equal(t, "tenant_suspended", errCode(got))
	status, _, got = b.req("GET", "", "/t/acme-corp/api/extensions", nil)
	require.Equal(t, http.StatusForbidden, status)
	require.Equal(t, "tenant_suspended", errCode(got))
	status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"status": "active"})
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.req("GET", "acme.example.com", "/api/extensions", nil)
	require.Equal(t, http.StatusOK, status)

	// A new domain and slug route at once; the old ones stop.
	status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"domain": "pbx.acme.test", "slug": "acme"})
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.req("GET", "pbx.acme.test", "/api/extensions", nil)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.req("GET", "", "/t/acme/api/extensions", nil)
	require.Equal(t, http.StatusOK, status)
	status, _, got = b.req("GET", "acme.example.com", "/api/extensions", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "unknown_tenant", errCode(got))
	status, _, _ = b.req("GET", "", "/t/acme-corp/api/extensions", nil)
	require.Equal(t, http.StatusNotFound, status)

	// Another tenant may take the freed domain right away.
	status, _ = b.do("PATCH", "/api/tenants/2", map[string]any{"domain": "acme.example.com"})
	require.Equal(t, http.StatusOK, status)
	status, _, got = b.req("POST", "acme.example.com", "/api/extensions", map[string]any{"number": "77"})
	require.Equal(t, http.StatusCreated, status, "%v", got)
	_, _, got = b.req("GET", "", "/t/beta/api/extensions", nil)
	require.Equal(t, []string{"77"}, numbers(got))

	// A deleted tenant stops routing.
	b.do("PATCH", "/api/tenants/2", map[string]any{"status": "suspended"})
	status, _ = b.do("DELETE", "/api/tenants/2?purge=now", nil)
	require.Equal(t, http.StatusNoContent, status)
	status, _, got = b.req("GET", "acme.example.com", "/api/extensions", nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "unknown_tenant", errCode(got))
}

func TestUnprovisionedTenantIsUnavailable(t *testing.T) {
	t.Parallel()
	good := setup(t, controlplane.IsolationSchema)
	broken := good.restart(brokenMigrations(t))
	status, _ := broken.do("POST", "/api/tenants", seed())
	require.Equal(t, http.StatusInternalServerError, status)

	// The good process learns of broken's tenant through the catalog's
	// notifications, not through a query per request.
	for _, b := range []*bundle{broken, good} {
		require.Eventually(t, func() bool {
			status, hdr, got := b.req("GET", "acme.example.com", "/api/extensions", nil)
			return status == http.StatusServiceUnavailable && errCode(got) == "tenant_unavailable" && hdr.Get("Retry-After") != ""
		}, 5*time.Second, 10*time.Millisecond)
	}
	status, _ = good.do("POST", "/api/tenants/1/provision", nil)
	require.Equal(t, http.StatusOK, status)
	for _, b := range []*bundle{good, broken} {
		require.Eventually(t, func() bool {
			status, _, _ := b.req("GET", "acme.example.com", "/api/extensions", nil)
			return status == http.StatusOK
		}, 5*time.Second, 10*time.Millisecond)
	}
}

func TestExtensionsAPI(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		host := "acme.example.com"
		status, hdr, ext := b.req("POST", host, "/api/extensions", map[string]any{
			"number": "1001", "name": "Alice", "password": "correct horse", "outbound_caller_id": "+15551234567",
		})
		require.Equal(t, http.StatusCreated, status, "%v", ext)
		require.Equal(t, "/api/extensions/1", hdr.Get("Location"))
		require.Equal(t, "1001", ext["number"])
		require.Equal(t, "Alice", ext["name"])
		require.Equal(t, true, ext["enabled"])
		require.Equal(t, true, ext["password_set"])
		require.Equal(t, "+15551234567", ext["outbound_caller_id"])
		require.NotContains(t, ext, "password")
		for k := range ext {
			require.NotContains(t, k, "ha1")
		}
		require.Equal(t, md5hex("1001:acme.example.com:correct horse"), b.ha1(host, 1))

		status, _, ext = b.req("POST", host, "/api/extensions", map[string]any{"number": "1002", "enabled": false})
		require.Equal(t, http.StatusCreated, status, "%v", ext)
		require.Equal(t, false, ext["enabled"])
		require.Equal(t, false, ext["password_set"])
		require.Nil(t, ext["outbound_caller_id"])

		bad := []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"number": "1"}, "number"},
			{map[string]any{"number": "12345678"}, "number"},
			{map[string]any{"number": "10a1"}, "number"},
			{map[string]any{"number": "１２３"}, "number"},
			{map[string]any{}, "number"},
			{map[string]any{"number": 1003}, "number"},
			{map[string]any{"number": "1003", "password": "short"}, "password"},
			{map[string]any{"number": "1003", "outbound_caller_id": "5551234567"}, "outbound_caller_id"},
			{map[string]any{"number": "1003", "outbound_caller_id": "+0551234567"}, "outbound_caller_id"},
			{map[string]any{"number": "1003", "ha1_md5": "x"}, "ha1_md5"},
			{map[string]any{"number": "1003", "name": string(bytes.Repeat([]byte("n"), 201))}, "name"},
		}
		for _, tc := range bad {
			status, _, got := b.req("POST", host, "/api/extensions", tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%v: %v", tc.body, got)
			require.Contains(t, got["error"].(map[string]any)["fields"], tc.field, "%v", tc.body)
		}
		status, _, got := b.req("POST", host, "/api/extensions", map[string]any{"number": "1001"})
		require.Equal(t, http.StatusConflict, status)
		require.Contains(t, got["error"].(map[string]any)["fields"], "number")

		// Read, replace, patch.
		status, _, got = b.req("GET", host, "/api/extensions/1", nil)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "Alice", got["name"])

		status, _, got = b.req("PATCH", host, "/api/extensions/1", map[string]any{"name": "Alice B", "outbound_caller_id": ""})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "Alice B", got["name"])
		require.Nil(t, got["outbound_caller_id"])
		require.Equal(t, true, got["password_set"], "PATCH without password keeps it")

		status, _, got = b.req("PATCH", host, "/api/extensions/1", map[string]any{"number": "1011"})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		require.Contains(t, got["error"].(map[string]any)["fields"], "password")
		status, _, got = b.req("PATCH", host, "/api/extensions/1", map[string]any{"number": "1011", "password": "battery staple"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, md5hex("1011:acme.example.com:battery staple"), b.ha1(host, 1))
		status, _, got = b.req("PATCH", host, "/api/extensions/1", map[string]any{"number": "1002", "password": "battery staple"})
		require.Equal(t, http.StatusConflict, status, "%v", got)
		require.Contains(t, got["error"].(map[string]any)["fields"], "number")

		status, _, got = b.req("PUT", host, "/api/extensions/2", map[string]any{"number": "1002", "name": "Desk"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, true, got["enabled"], "PUT: left-out fields take their defaults")
		require.Equal(t, "Desk", got["name"])
		status, _, _ = b.req("PUT", host, "/api/extensions/2", map[string]any{"name": "No number"})
		require.Equal(t, http.StatusUnprocessableEntity, status)

		// Paging, ordered by number.
		for _, n := range []string{"3003", "2002", "4004"} {
			status, _, _ := b.req("POST", host, "/api/extensions", map[string]any{"number": n})
			require.Equal(t, http.StatusCreated, status)
		}
		_, _, got = b.req("GET", host, "/api/extensions?limit=2&offset=1", nil)
		require.Equal(t, []string{"1011", "2002"}, numbers(got))
		require.EqualValues(t, 5, got["total"])
		status, _, _ = b.req("GET", host, "/api/extensions?limit=1000", nil)
		require.Equal(t, http.StatusUnprocessableEntity, status)

		// Renaming the domain makes the stored digests stale, visibly.
		status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"domain": "acme.example.net"})
		require.Equal(t, http.StatusOK, status)
		_, _, got = b.req("GET", "acme.example.net", "/api/extensions/1", nil)
		require.Equal(t, false, got["password_set"])
		_, _, got = b.req("PATCH", "acme.example.net", "/api/extensions/1", map[string]any{"password": "new realm pw"})
		require.Equal(t, true, got["password_set"])
		require.Equal(t, md5hex("1011:acme.example.net:new realm pw"), b.ha1("acme.example.net", 1))

		// Delete.
		status, _, _ = b.req("DELETE", "acme.example.net", "/api/extensions/1", nil)
		require.Equal(t, http.StatusNoContent, status)
		for _, m := range []string{"GET", "DELETE"} {
			status, _, got = b.req(m, "acme.example.net", "/api/extensions/1", nil)
			require.Equal(t, http.StatusNotFound, status, "%s %v", m, got)
			require.Equal(t, "not_found", errCode(got))
		}
		status, _, _ = b.req("PATCH", "acme.example.net", "/api/extensions/1", map[string]any{"name": "x"})
		require.Equal(t, http.StatusNotFound, status)
	})
}

// ha1 reads an extension's stored MD5 digest straight from the tenant's
// database: the API never shows it.
func (b *bundle) ha1(host string, id int) string {
	b.t.Helper()
	tn, ok := b.app.Store.Cache().ByDomain(host)
	require.True(b.t, ok)
	table := "extensions"
	dbURL := b.db.URL
	if tn.Isolation == controlplane.IsolationSchema {
		table = tn.DBName + ".extensions"
	} else {
		dbURL = pgtest.WithDatabase(b.t, b.db.URL, tn.DBName)
	}
	db := pgtest.Open(b.t, dbURL)
	defer db.Close()
	var h string
	require.NoError(b.t, db.QueryRow(`SELECT ha1_md5 FROM `+table+` WHERE id = $1`, id).Scan(&h))
	return h
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestExtensionCapIsHard(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		body := seed()
		body["max_extensions"] = 5
		b.create(body)
		host := "acme.example.com"
		for i := 0; i < 4; i++ {
			status, _, got := b.req("POST", host, "/api/extensions", map[string]any{"number": strconv.Itoa(100 + i), "enabled": i%2 == 0})
			require.Equal(t, http.StatusCreated, status, "%v", got)
		}

		// 20 concurrent creates with room for one: exactly one wins.
		const n = 20
		var wg sync.WaitGroup
		statuses := make([]int, n)
		messages := make([]string, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				buf, _ := json.Marshal(map[string]any{"number": strconv.Itoa(200 + i)})
				req, _ := http.NewRequest("POST", b.srv.URL+"/api/extensions", bytes.NewReader(buf))
				req.Host = host
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				var out map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&out)
				statuses[i] = resp.StatusCode
				if e, ok := out["error"].(map[string]any); ok {
					messages[i], _ = e["message"].(string)
					require.Equal(t, "quota_exceeded", e["code"])
				}
			}(i)
		}
		close(start)
		wg.Wait()
		count := map[int]int{}
		for i, s := range statuses {
			count[s]++
			if s == http.StatusConflict {
				require.Contains(t, messages[i], "max_extensions=5")
			}
		}
		require.Equal(t, map[int]int{http.StatusCreated: 1, http.StatusConflict: n - 1}, count)
		_, _, got := b.req("GET", host, "/api/extensions", nil)
		require.EqualValues(t, 5, got["total"], "disabled extensions count toward the cap")

		// Raising the cap works on the next request.
		status, _ := b.do("PATCH", "/api/tenants/1", map[string]any{"max_extensions": 6})
		require.Equal(t, http.StatusOK, status)
		status, _, got = b.req("POST", host, "/api/extensions", map[string]any{"number": "300"})
		require.Equal(t, http.StatusCreated, status, "%v", got)

		// Lowering it below the count keeps what exists and blocks new ones.
		status, _ = b.do("PUT", "/api/tenants/1", map[string]any{"name": "Acme", "slug": "acme-corp", "domain": host, "max_extensions": 2})
		require.Equal(t, http.StatusOK, status)
		status, _, got = b.req("POST", host, "/api/extensions", map[string]any{"number": "301"})
		require.Equal(t, http.StatusConflict, status)
		require.Equal(t, "quota_exceeded", errCode(got))
		require.Contains(t, got["error"].(map[string]any)["message"], "max_extensions=2")
		_, _, got = b.req("GET", host, "/api/extensions", nil)
		require.EqualValues(t, 6, got["total"])
		status, _, _ = b.req("PATCH", host, "/api/extensions/1", map[string]any{"name": "still editable"})
		require.Equal(t, http.StatusOK, status)

		// A cap of zero blocks every create.
		b.do("PATCH", "/api/tenants/1", map[string]any{"max_extensions": 0})
		status, _, _ = b.req("POST", host, "/api/extensions", map[string]any{"number": "302"})
		require.Equal(t, http.StatusConflict, status)
	})
}

func TestTenantsCannotReachEachOther(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		a, bh := "acme.example.com", "beta.example.org"
		for _, n := range []string{"1001", "1002", "1003"} {
			status, _, _ := b.req("POST", a, "/api/extensions", map[string]any{"number": n, "name": "acme " + n})
			require.Equal(t, http.StatusCreated, status)
		}
		// The same number exists independently in beta.
		status, _, got := b.req("POST", bh, "/api/extensions", map[string]any{"number": "1001", "name": "beta 1001"})
		require.Equal(t, http.StatusCreated, status, "%v", got)

		// Beta cannot read, change or delete acme's extension 3 by its id.
		for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
			status, _, got := b.req(m, bh, "/api/extensions/3", map[string]any{"number": "1003", "name": "stolen"})
			require.Equal(t, http.StatusNotFound, status, "%s: %v", m, got)
			status, _, _ = b.req(m, "", "/t/beta/api/extensions/3", map[string]any{"number": "1003", "name": "stolen"})
			require.Equal(t, http.StatusNotFound, status, "%s via slug", m)
		}
		_, _, got = b.req("GET", a, "/api/extensions/3", nil)
		require.Equal(t, "acme 1003", got["name"], "acme's extension is untouched")
		_, _, got = b.req("GET", bh, "/api/extensions/1", nil)
		require.Equal(t, "beta 1001", got["name"])
		_, _, got = b.req("GET", a, "/api/extensions", nil)
		require.EqualValues(t, 3, got["total"])
		_, _, got = b.req("GET", bh, "/api/extensions", nil)
		require.EqualValues(t, 1, got["total"])
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.twoTenants()
	b.req("GET", "acme.example.com", "/api/extensions", nil)
	b.req("GET", "acme.example.com", "/api/extensions/9", nil)
	resp, err := http.Get(b.srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(raw)
	for _, want := range []string{
		`controlplane_http_requests_total{method="GET",route="/api/extensions",status="200"} 1`,
		`controlplane_http_requests_total{method="GET",route="/api/extensions/:id",status="404"} 1`,
		`controlplane_http_requests_total{method="POST",route="/api/tenants",status="201"} 2`,
		`controlplane_tenants{provisioning="ready",status="active"} 2`,
		`controlplane_tenant_pools_open{server="default"} 1`,
		fmt.Sprintf(`controlplane_tenant_connections_max{server="default"} %d`, b.app.Router.Stats().ServerMaxConns),
		`controlplane_tenant_connections_waiting{server="default"} 0`,
		`# TYPE controlplane_tenant_connections_opened_total counter`,
		`controlplane_tenant_connections_taken_total{server="default"} 0`,
		`controlplane_http_request_duration_seconds_bucket`,
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "acme", "no tenant in any label")
}

// A write's response shows the same instants as the next read: timestamps
// are kept at the database's precision.
func TestWriteResponsesMatchReads(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.create(seed())
	h := "acme.example.com"
	for _, r := range []struct{ create, path string }{
		{"/api/extensions", "/api/extensions/1"},
		{"/api/queues", "/api/queues/1"},
		{"/api/contacts", "/api/contacts/1"},
		{"/api/dids", "/api/dids/1"},
	} {
		body := map[string]any{"number": "1001", "name": "x"}
		switch r.create {
		case "/api/queues", "/api/contacts":
			body = map[string]any{"name": "x"}
		case "/api/dids":
			body = map[string]any{"number": "+15551230000"}
		}
		status, _, created := b.req("POST", h, r.create, body)
		require.Equal(t, http.StatusCreated, status, "%s: %v", r.create, created)
		_, _, got := b.req("GET", h, r.path, nil)
		require.Equal(t, created, got, r.path)
		patch := map[string]any{"name": "y"}
		if r.create == "/api/dids" {
			patch = map[string]any{"description": "y"}
		}
		status, _, patched := b.req("PATCH", h, r.path, patch)
		require.Equal(t, http.StatusOK, status, "%v", patched)
		_, _, got = b.req("GET", h, r.path, nil)
		require.Equal(t, patched, got, r.path)
	}
}
