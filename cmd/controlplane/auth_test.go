package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
)

const adminToken = "test-admin-token-0123456789"

var bearerAdmin = []string{"Authorization", "Bearer " + adminToken}

func bearerOf(key string) []string { return []string{"Authorization", "Bearer " + key} }

// createAuthed creates a tenant with the operator token and returns its key.
func (b *bundle) createAuthed(body map[string]any) string {
	b.t.Helper()
	status, _, got := b.req("POST", "", "/api/tenants", body, bearerAdmin...)
	require.Equal(b.t, http.StatusCreated, status, "%v", got)
	return got["api_key"].(map[string]any)["key"].(string)
}

func TestOperatorAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "ADMIN_TOKEN="+adminToken)
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong-token-0123456789"}, {"Authorization", "Basic " + adminToken}, {"Authorization", adminToken}} {
		status, hdr, got := b.req("GET", "", "/api/tenants", nil, h...)
		require.Equal(t, http.StatusUnauthorized, status, "%v", h)
		require.Equal(t, "unauthorized", errCode(got))
		require.Equal(t, `Bearer realm="operator"`, hdr.Get("WWW-Authenticate"))
	}
	status, _, _ := b.req("GET", "", "/api/tenants", nil, bearerAdmin...)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.req("GET", "", "/api/dids/+15551234567", nil)
	require.Equal(t, http.StatusUnauthorized, status, "the DID lookup is an operator endpoint")
	status, _, _ = b.req("GET", "", "/healthz", nil)
	require.Equal(t, http.StatusOK, status, "health needs no token")
}

func TestTenantKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase, "ADMIN_TOKEN="+adminToken)
	keyA := b.createAuthed(seed())
	keyB := b.createAuthed(map[string]any{"name": "Beta", "slug": "beta", "domain": "beta.example.org"})
	a, bh := "acme.example.com", "beta.example.org"

	status, hdr, got := b.req("GET", a, "/api/extensions", nil)
	require.Equal(t, http.StatusUnauthorized, status, "%v", got)
	require.Equal(t, `Bearer realm="acme.example.com"`, hdr.Get("WWW-Authenticate"))
	status, _, _ = b.req("POST", a, "/api/extensions", map[string]any{"number": "1001"}, bearerOf(keyA)...)
	require.Equal(t, http.StatusCreated, status)
	status, _, _ = b.req("GET", "", "/t/acme-corp/api/extensions", nil, bearerOf(keyA)...)
	require.Equal(t, http.StatusOK, status)

	// A's key opens nothing of B's, by host or by slug; B's key nothing of A's.
	for _, tc := range []struct{ host, path, key string }{
		{bh, "/api/extensions", keyA},
		{"", "/t/beta/api/extensions", keyA},
		{a, "/api/extensions/1", keyB},
		{"", "/t/acme-corp/api/extensions/1", keyB},
		{a, "/api/extensions", "lc_" + keyA[3:10]},
	} {
		status, _, got := b.req("GET", tc.host, tc.path, nil, bearerOf(tc.key)...)
		require.Equal(t, http.StatusUnauthorized, status, "%+v: %v", tc, got)
	}
	// A tenant key is not an operator token.
	status, _, _ = b.req("GET", "", "/api/tenants", nil, bearerOf(keyA)...)
	require.Equal(t, http.StatusUnauthorized, status)
	// The operator may act for any tenant.
	status, _, got = b.req("GET", bh, "/api/extensions", nil, bearerAdmin...)
	require.Equal(t, http.StatusOK, status, "%v", got)

	status, _, _ = b.req("POST", "", "/api/tenants/99/keys", nil, bearerAdmin...)
	require.Equal(t, http.StatusNotFound, status)

	// Keys: listed without secrets, revoked at once, new ones work.
	status, _, created := b.req("POST", "", "/api/tenants/1/keys", map[string]any{"name": "crm sync"}, bearerAdmin...)
	require.Equal(t, http.StatusCreated, status, "%v", created)
	key2 := created["key"].(string)
	key2ID := strconv.Itoa(int(created["id"].(float64)))
	status, _, list := b.req("GET", "", "/api/tenants/1/keys", nil, bearerAdmin...)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, list["data"], 2)
	raw, _ := json.Marshal(list)
	require.NotContains(t, string(raw), keyA)
	require.NotContains(t, string(raw), key2)
	require.NotContains(t, string(raw), `"key"`)
	require.NotContains(t, string(raw), "hash")

	status, _, _ = b.req("DELETE", "", "/api/tenants/1/keys/1", nil, bearerAdmin...)
	require.Equal(t, http.StatusNoContent, status)
	status, _, _ = b.req("GET", a, "/api/extensions", nil, bearerOf(keyA)...)
	require.Equal(t, http.StatusUnauthorized, status, "revocation takes effect on the next request")
	status, _, _ = b.req("GET", a, "/api/extensions", nil, bearerOf(key2)...)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.req("DELETE", "", "/api/tenants/2/keys/"+key2ID, nil, bearerAdmin...)
	require.Equal(t, http.StatusNotFound, status, "a key is revoked through its own tenant only")

	// Another replica hears of the revocation too.
	other := b.restart(nil)
	status, _, _ = other.req("GET", a, "/api/extensions", nil, bearerOf(key2)...)
	require.Equal(t, http.StatusOK, status)
	status, _, _ = b.req("DELETE", "", "/api/tenants/1/keys/"+key2ID, nil, bearerAdmin...)
	require.Equal(t, http.StatusNoContent, status)
	require.Eventually(t, func() bool {
		status, _, _ := other.req("GET", a, "/api/extensions", nil, bearerOf(key2)...)
		return status == http.StatusUnauthorized
	}, 5e9, 1e7)

	// Last use is recorded (in batches).
	b.app.Store.FlushKeyUse(context.Background())
	_, _, list = b.req("GET", "", "/api/tenants/2/keys", nil, bearerAdmin...)
	require.Nil(t, list["data"].([]any)[0].(map[string]any)["last_used_at"], "beta's key was never used")
	b.req("GET", bh, "/api/extensions", nil, bearerOf(keyB)...)
	_, _, list = b.req("GET", "", "/api/tenants/2/keys", nil, bearerAdmin...)
	require.NotNil(t, list["data"].([]any)[0].(map[string]any)["last_used_at"])
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "ADMIN_TOKEN="+adminToken)
	key := b.createAuthed(seed())
	b.req("PATCH", "", "/api/tenants/1", map[string]any{"max_extensions": 60, "name": "Acme Inc"}, bearerAdmin...)
	b.req("PATCH", "", "/api/tenants/1", map[string]any{"status": "suspended"}, bearerAdmin...)
	b.req("POST", "", "/api/tenants/1/keys", nil, bearerAdmin...)
	b.req("DELETE", "", "/api/tenants/1/keys/2", nil, bearerAdmin...)
	b.req("DELETE", "", "/api/tenants/1?purge=now", nil, bearerAdmin...)

	status, _, got := b.req("GET", "", "/api/audit?tenant=1", nil, bearerAdmin...)
	require.Equal(t, http.StatusOK, status, "%v", got)
	var actions []string
	for _, e := range got["data"].([]any) {
		entry := e.(map[string]any)
		actions = append(actions, entry["action"].(string))
		require.Equal(t, "operator", entry["actor"])
		require.NotEmpty(t, entry["at"])
	}
	require.Equal(t, []string{"tenant.delete", "key.revoke", "key.create", "tenant.suspend", "tenant.update", "key.create", "tenant.create"}, actions)
	update := got["data"].([]any)[4].(map[string]any)["diff"].(map[string]any)
	require.Equal(t, map[string]any{"before": 50.0, "after": 60.0}, update["max_extensions"])
	require.Equal(t, map[string]any{"before": "Acme Corp", "after": "Acme Inc"}, update["name"])
	require.Len(t, update, 2, "only what changed")
	raw, _ := json.Marshal(got)
	require.NotContains(t, string(raw), key, "no secret in the trail")

	status, _, _ = b.req("GET", "", "/api/audit?tenant=x", nil, bearerAdmin...)
	require.Equal(t, http.StatusUnprocessableEntity, status)
	status, _, _ = b.req("GET", "", "/api/audit", nil)
	require.Equal(t, http.StatusUnauthorized, status)
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "TRUSTED_PROXIES=127.0.0.0/8,::1")
	b.create(seed())
	// From a trusted proxy (this test client on loopback) the forwarded
	// host counts.
	status, _, got := b.req("GET", "", "/api/extensions", nil, "X-Forwarded-Host", "acme.example.com, internal.lb")
	require.Equal(t, http.StatusOK, status, "%v", got)
	status, _, got = b.req("GET", "", "/api/extensions", nil, "X-Forwarded-Host", "nobody.example.com")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "unknown_tenant", errCode(got))
}

func TestServeRefusesPublicListenerWithoutToken(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0"} {
		cfg, err := config.Load([]string{"DATABASE_URL=postgres://nobody@127.0.0.1:1/none", "LISTEN_ADDR=" + addr}, nil)
		require.NoError(t, err)
		err = serve(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		require.ErrorAs(t, err, new(configError), addr)
		require.Contains(t, err.Error(), "ADMIN_TOKEN")
	}
}
