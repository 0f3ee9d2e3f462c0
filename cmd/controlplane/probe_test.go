package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// secretMarker is in every record of tenant A: no response to anything but
// A's own credentials may ever contain it.
const secretMarker = "ACME-ONLY-7f3a"

// TestCrossTenantProbes plays a hostile client of tenant B (and an
// anonymous one) trying every way of reaching tenant A's data.
func TestCrossTenantProbes(t *testing.T) {
	t.Parallel()
	for _, mode := range []controlplane.Isolation{controlplane.IsolationDatabase, controlplane.IsolationSchema} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			b := setup(t, mode, "ADMIN_TOKEN="+adminToken)
			keyA := b.createAuthed(seed())
			keyB := b.createAuthed(map[string]any{"name": "Beta", "slug": "beta", "domain": "beta.example.org"})
			a := "acme.example.com"
			// A's data, marked.
			for _, req := range []struct {
				path string
				body map[string]any
			}{
				{"/api/extensions", map[string]any{"number": "1001", "name": secretMarker}},
				{"/api/queues", map[string]any{"name": secretMarker}},
				{"/api/contacts", map[string]any{"name": secretMarker, "phones": []any{map[string]any{"number": "+15550007777"}}}},
				{"/api/dids", map[string]any{"number": "+15550008888", "description": secretMarker}},
			} {
				status, _, got := b.req("POST", a, req.path, req.body, bearerOf(keyA)...)
				require.Equal(t, http.StatusCreated, status, "%s: %v", req.path, got)
			}
			// B has one record of each too, so ids 1 exist on both sides.
			for _, req := range []struct {
				path string
				body map[string]any
			}{
				{"/api/extensions", map[string]any{"number": "2001", "name": "beta"}},
				{"/api/queues", map[string]any{"name": "beta"}},
				{"/api/contacts", map[string]any{"name": "beta"}},
			} {
				status, _, _ := b.req("POST", "beta.example.org", req.path, req.body, bearerOf(keyB)...)
				require.Equal(t, http.StatusCreated, status)
			}

			resources := []string{"/api/extensions", "/api/extensions/1", "/api/queues", "/api/queues/1", "/api/queues/1/members",
				"/api/contacts", "/api/contacts/1", "/api/contacts?phone=%2B15550007777", "/api/dids", "/api/dids/1"}
			hosts := []string{a, "ACME.EXAMPLE.COM", "acme.example.com.", "acme.example.com:443", "Acme.Example.Com.:8080", " acme.example.com"}
			var probes []probe
			for _, r := range resources {
				for _, h := range hosts {
					probes = append(probes, probe{"B's key on A's host " + h, "GET", h, r, keyB})
					probes = append(probes, probe{"no key on A's host " + h, "GET", h, r, ""})
				}
				for _, p := range []string{"/t/acme-corp", "/t/ACME-CORP", "/t/acme-corp.", "/t/beta/../acme-corp", "/t/beta/%2e%2e/acme-corp",
					"/t/beta%2F..%2Facme-corp", "/t/acme-corp%2F", "//t/acme-corp", "/t//acme-corp"} {
					probes = append(probes, probe{"B's key via slug path " + p, "GET", "", p + r, keyB})
					probes = append(probes, probe{"B's key on B's host via " + p, "GET", "beta.example.org", p + r, keyB})
				}
				probes = append(probes, probe{"a forged forwarded host", "GET", "beta.example.org", r, keyB})
				probes = append(probes, probe{"B's key with A's key prefix", "GET", a, r, keyA[:20] + keyB[20:]})
				for _, m := range []string{"PUT", "PATCH", "DELETE"} {
					probes = append(probes, probe{"B writes A's id", m, "beta.example.org", r, keyB})
				}
			}
			for _, p := range []string{"/api/tenants", "/api/tenants/1", "/api/tenants/1/keys", "/api/audit", "/api/dids/+15550008888", "/api/migrations/status"} {
				probes = append(probes, probe{"operator path on a tenant host", "GET", a, p, keyA})
				probes = append(probes, probe{"operator path with a tenant key", "GET", "", p, keyB})
				probes = append(probes, probe{"operator path under a slug", "GET", "", "/t/acme-corp" + p, keyA})
			}

			for _, p := range probes {
				status, body := p.send(t, b)
				require.NotContains(t, body, secretMarker, "%+v leaked A's data (status %d)", p, status)
				require.NotContains(t, body, keyA[3:], "%+v leaked A's key", p)
				require.True(t, status >= 400 || !strings.Contains(p.path, "acme"), "%+v answered %d", p, status)
				require.NotEqual(t, http.StatusInternalServerError, status, "%+v: %s", p, body)
			}

			// A's data is all still there, untouched.
			for _, r := range []string{"/api/extensions/1", "/api/queues/1", "/api/contacts/1", "/api/dids/1"} {
				status, _, got := b.req("GET", a, r, nil, bearerOf(keyA)...)
				require.Equal(t, http.StatusOK, status, r)
				raw, _ := json.Marshal(got)
				require.Contains(t, string(raw), secretMarker, r)
			}
		})
	}
}

type probe struct {
	name, method, host, path, key string
}

func (p probe) send(t *testing.T, b *bundle) (int, string) {
	t.Helper()
	req, err := http.NewRequest(p.method, b.srv.URL+p.path, strings.NewReader(`{"number":"1001","name":"x"}`))
	require.NoError(t, err, p.name)
	if p.host != "" {
		req.Host = p.host
	}
	if p.key != "" {
		req.Header.Set("Authorization", "Bearer "+p.key)
	}
	req.Header.Set("X-Forwarded-Host", "acme.example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// A Host the client refuses to send is no probe at all.
		return http.StatusBadRequest, ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
