package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/query"
)

func TestDIDs(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		a, bh := "acme.example.com", "beta.example.org"
		b.req("POST", a, "/api/extensions", map[string]any{"number": "1001"})
		b.req("POST", a, "/api/queues", map[string]any{"name": "Sales"})

		status, hdr, d := b.req("POST", a, "/api/dids", map[string]any{"number": "+1 555-123-4567", "target_type": "extension", "target_id": 1, "description": "main line"})
		require.Equal(t, http.StatusCreated, status, "%v", d)
		require.Equal(t, "/api/dids/1", hdr.Get("Location"))
		require.Equal(t, "+15551234567", d["number"], "spaces and dashes are normalised away")

		// The operator lookup a SIP edge makes per call.
		for _, path := range []string{"/api/dids/+15551234567", "/api/dids/%2B15551234567"} {
			status, _, route := b.req("GET", "", path, nil)
			require.Equal(t, http.StatusOK, status, "%s: %v", path, route)
			require.Equal(t, map[string]any{"id": 1.0, "slug": "acme-corp", "domain": a, "status": "active"}, route["tenant"])
			require.Equal(t, "extension", route["target_type"])
			require.EqualValues(t, 1, route["target_id"])
		}
		status, _, got := b.req("GET", "", "/api/dids/15551234567", nil)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		status, _, got = b.req("GET", "", "/api/dids/+15550000000", nil)
		require.Equal(t, http.StatusNotFound, status, "%v", got)
		// On a tenant host the same path reads the tenant's DID by id.
		status, _, got = b.req("GET", a, "/api/dids/1", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "main line", got["description"])
		status, _, _ = b.req("GET", bh, "/api/dids/1", nil)
		require.Equal(t, http.StatusNotFound, status)

		// A number belongs to one tenant.
		status, _, got = b.req("POST", bh, "/api/dids", map[string]any{"number": "+15551234567"})
		require.Equal(t, http.StatusConflict, status, "%v", got)
		require.Contains(t, fields(got), "number")
		require.NotContains(t, got["error"].(map[string]any)["message"], "acme", "another tenant's identity is not revealed")

		// Bad input, and a failed tenant write leaves no claim behind.
		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"number": "5551234567"}, "number"},
			{map[string]any{"number": "+0551234567"}, "number"},
			{map[string]any{"number": "+15550001111", "target_type": "voicemail", "target_id": 1}, "target_type"},
			{map[string]any{"number": "+15550001111", "target_type": "extension"}, "target_id"},
			{map[string]any{"number": "+15550001111", "target_id": 1}, "target_id"},
			{map[string]any{"number": "+15550001111", "target_type": "extension", "target_id": 99}, "target_id"},
			{map[string]any{"number": "+15550001111", "target_type": "queue", "target_id": 7}, "target_id"},
		} {
			status, _, got := b.req("POST", a, "/api/dids", tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%v: %v", tc.body, got)
			require.Contains(t, fields(got), tc.field, "%v", tc.body)
		}
		status, _, got = b.req("POST", bh, "/api/dids", map[string]any{"number": "+15550001111"})
		require.Equal(t, http.StatusCreated, status, "no orphan claim from acme's failed creates: %v", got)

		// Re-point to the queue; the lookup follows.
		status, _, got = b.req("PATCH", a, "/api/dids/1", map[string]any{"target_type": "queue", "target_id": 1})
		require.Equal(t, http.StatusOK, status, "%v", got)
		_, _, route := b.req("GET", "", "/api/dids/+15551234567", nil)
		require.Equal(t, "queue", route["target_type"])
		status, _, got = b.req("PATCH", a, "/api/dids/1", map[string]any{"target_id": 42})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		_, _, route = b.req("GET", "", "/api/dids/+15551234567", nil)
		require.Equal(t, "queue", route["target_type"], "a failed update restores the index")
		require.EqualValues(t, 1, route["target_id"])
		status, _, _ = b.req("PATCH", a, "/api/dids/1", map[string]any{"number": "+15559999999"})
		require.Equal(t, http.StatusUnprocessableEntity, status)

		// A routed-to queue cannot be deleted; the DID can.
		status, _, got = b.req("DELETE", a, "/api/queues/1", nil)
		require.Equal(t, http.StatusConflict, status, "%v", got)
		status, _, _ = b.req("PATCH", a, "/api/dids/1", map[string]any{"target_type": "none"})
		require.Equal(t, http.StatusOK, status)
		status, _, _ = b.req("DELETE", a, "/api/queues/1", nil)
		require.Equal(t, http.StatusNoContent, status)
		status, _, _ = b.req("DELETE", a, "/api/dids/1", nil)
		require.Equal(t, http.StatusNoContent, status)
		status, _, _ = b.req("GET", "", "/api/dids/+15551234567", nil)
		require.Equal(t, http.StatusNotFound, status)
		status, _, _ = b.req("POST", bh, "/api/dids", map[string]any{"number": "+15551234567"})
		require.Equal(t, http.StatusCreated, status, "the freed number can be claimed elsewhere")

		// Deleting a tenant frees its numbers.
		b.do("PATCH", "/api/tenants/2", map[string]any{"status": "suspended"})
		status, _ = b.do("DELETE", "/api/tenants/2?purge=now", nil)
		require.Equal(t, http.StatusNoContent, status)
		status, _, _ = b.req("GET", "", "/api/dids/+15551234567", nil)
		require.Equal(t, http.StatusNotFound, status)
	})
}

func TestDIDRaceAcrossTenants(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		hosts := []string{"acme.example.com", "beta.example.org"}
		const n = 10
		var wg sync.WaitGroup
		statuses := make([]int, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				buf, _ := json.Marshal(map[string]any{"number": "+442071838750"})
				req, _ := http.NewRequest("POST", b.srv.URL+"/api/dids", bytes.NewReader(buf))
				req.Host = hosts[i%2]
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					statuses[i] = resp.StatusCode
					resp.Body.Close()
				}
			}(i)
		}
		close(start)
		wg.Wait()
		winners := 0
		for _, s := range statuses {
			require.Contains(t, []int{http.StatusCreated, http.StatusConflict}, s)
			if s == http.StatusCreated {
				winners++
			}
		}
		require.Equal(t, 1, winners)

		_, _, route := b.req("GET", "", "/api/dids/+442071838750", nil)
		owner := route["tenant"].(map[string]any)["domain"].(string)
		for _, h := range hosts {
			_, _, list := b.req("GET", h, "/api/dids", nil)
			want := 0.0
			if h == owner {
				want = 1
			}
			require.Equal(t, want, list["total"], "only the owner %s has the DID (%s)", owner, h)
		}
	})
}

// TestDIDReconcile simulates a process that died between the index write
// and the tenant write (or before settling) and checks the reconciler.
func TestDIDReconcile(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.twoTenants()
	ctx := context.Background()
	store := b.app.Store
	acme, _ := store.Cache().ByID(1)
	db, release, err := b.app.Router.Acquire(context.Background(), acme)
	require.NoError(t, err)
	defer release()
	insertDID := func(number string) {
		require.NoError(t, db.Exec(`INSERT INTO `+query.Table(db, "dids")+` (number) VALUES (?)`, number).Error)
	}
	none := controlplane.DIDTarget{Type: "none"}

	// 1. Claimed, then the process died before the tenant write.
	require.NoError(t, store.ClaimDID(ctx, 1, "+15550000001", none))
	// 2. Claimed and written, not settled.
	require.NoError(t, store.ClaimDID(ctx, 1, "+15550000002", none))
	insertDID("+15550000002")
	// 3. A delete that died after marking the index.
	require.NoError(t, store.ClaimDID(ctx, 1, "+15550000003", none))
	insertDID("+15550000003")
	require.NoError(t, store.SettleDID(ctx, "+15550000003", none))
	_, err = store.BeginDIDChange(ctx, 1, "+15550000003", controlplane.DIDDeleting, none)
	require.NoError(t, err)

	// Young rows belong to running requests: left alone.
	_, err = b.app.ReconcileDIDs(ctx, didGrace)
	require.NoError(t, err)
	status, _, _ := b.req("GET", "", "/api/dids/+15550000002", nil)
	require.Equal(t, http.StatusNotFound, status, "not settled yet")

	_, err = b.app.ReconcileDIDs(ctx, 0)
	require.NoError(t, err)
	status, _, _ = b.req("POST", "beta.example.org", "/api/dids", map[string]any{"number": "+15550000001"})
	require.Equal(t, http.StatusCreated, status, "the orphan claim was released")
	status, _, route := b.req("GET", "", "/api/dids/+15550000002", nil)
	require.Equal(t, http.StatusOK, status, "the unsettled DID is indexed: %v", route)
	require.Equal(t, "acme-corp", route["tenant"].(map[string]any)["slug"])
	_, _, list := b.req("GET", "acme.example.com", "/api/dids", nil)
	require.EqualValues(t, 1, list["total"], "the interrupted delete is finished")
	left, err := store.UnsettledDIDs(ctx, farFuture)
	require.NoError(t, err)
	require.Empty(t, left)
}

var farFuture = time.Now().Add(24 * time.Hour)
