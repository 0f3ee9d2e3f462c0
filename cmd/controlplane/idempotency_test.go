package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/migrations"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// createKeyed sends POST /api/tenants with the header lines given (each
// pair a name and a value; a name may repeat) and body, as JSON unless it
// is a string. It returns the status, the headers and the decoded body.
func (b *bundle) createKeyed(body any, headers ...string) (int, http.Header, map[string]any) {
	b.t.Helper()
	raw, ok := body.(string)
	if !ok {
		buf, err := json.Marshal(body)
		require.NoError(b.t, err)
		raw = string(buf)
	}
	req, err := http.NewRequest("POST", b.srv.URL+"/api/tenants", strings.NewReader(raw))
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	var got map[string]any
	require.NoError(b.t, json.Unmarshal(out, &got), "body: %s", out)
	return resp.StatusCode, resp.Header, got
}

func idemKey(key string) []string { return []string{"Idempotency-Key", key} }

// tenantCount is how many tenants the catalog lists.
func (b *bundle) tenantCount(headers ...string) int {
	b.t.Helper()
	status, _, list := b.req("GET", "", "/api/tenants", nil, headers...)
	require.Equal(b.t, http.StatusOK, status)
	return int(list["total"].(float64))
}

// idempotencyRows is the idempotency_keys table, one JSON object a row.
func (b *bundle) idempotencyRows() []string {
	b.t.Helper()
	db := pgtest.Open(b.t, b.db.URL)
	defer db.Close()
	rows, err := db.Query(`SELECT row_to_json(k)::text FROM idempotency_keys k ORDER BY created_at, key`)
	require.NoError(b.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(b.t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(b.t, rows.Err())
	return out
}

// ageKeys makes every stored key look older by d.
func (b *bundle) ageKeys(d time.Duration) {
	b.t.Helper()
	db := pgtest.Open(b.t, b.db.URL)
	defer db.Close()
	_, err := db.Exec(`UPDATE idempotency_keys SET created_at = created_at - make_interval(secs => $1)`, d.Seconds())
	require.NoError(b.t, err)
}

func errOf(got map[string]any) map[string]any { return got["error"].(map[string]any) }

// A retried create gets the first one's tenant, once; one tenant and one
// database exist. Spacing, key order and what Normalize changes make no
// other request.
func TestIdempotentCreateRetry(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		status, hdr, first := b.createKeyed(seed(), idemKey("create-acme-1")...)
		require.Equal(t, http.StatusCreated, status, "%v", first)
		require.Empty(t, hdr.Get("Idempotent-Replayed"))
		secret := first["api_key"].(map[string]any)["key"].(string)
		require.Regexp(t, `^lc_[0-9a-f]{64}$`, secret)

		same := `{"settings": [], "max_extensions": 50, "timezone": "America/New_York", "status": "active",
			"domain": "ACME.example.com.", "slug": "acme-corp", "name": "  Acme Corp "}`
		for _, body := range []any{seed(), same} {
			status, hdr, again := b.createKeyed(body, idemKey("create-acme-1")...)
			require.Equal(t, http.StatusCreated, status, "%v", again)
			require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
			require.Equal(t, "/api/tenants/1", hdr.Get("Location"))
			require.Nil(t, again["api_key"], "the key's secret is shown once, to the first answer")
			delete(again, "api_key")
			_, now := b.do("GET", "/api/tenants/1", nil)
			require.Equal(t, now, again, "the tenant as it is now")
		}

		// A change made since shows in the retry's answer.
		status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"max_extensions": 60})
		require.Equal(t, http.StatusOK, status)
		status, _, again := b.createKeyed(seed(), idemKey("create-acme-1")...)
		require.Equal(t, http.StatusCreated, status)
		require.EqualValues(t, 60, again["max_extensions"])

		require.Equal(t, 1, b.tenantCount())
		if b.cfg.TenantIsolation == "database" {
			require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), 1)
		}
		_, audit := b.do("GET", "/api/audit?tenant=1", nil)
		creates := 0
		for _, e := range audit["data"].([]any) {
			if e.(map[string]any)["action"] == "tenant.create" {
				creates++
			}
		}
		require.Equal(t, 1, creates)

		// Without the key, the same body is a new create: 409 for the slug.
		status, _ = b.do("POST", "/api/tenants", seed())
		require.Equal(t, http.StatusConflict, status)

		// The catalog keeps who, which key, a hash and the tenant id: no secret.
		rows := b.idempotencyRows()
		require.Len(t, rows, 1)
		require.Contains(t, rows[0], `"key":"create-acme-1"`)
		require.Contains(t, rows[0], `"tenant_id":1`)
		require.NotContains(t, rows[0], secret)
		require.NotContains(t, rows[0], secret[3:], "not even the hex")
	})
}

func TestIdempotencyKeyReusedWithAnotherRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	status, _, _ := b.createKeyed(seed(), idemKey("k1")...)
	require.Equal(t, http.StatusCreated, status)

	for _, change := range []map[string]any{{"slug": "beta", "domain": "beta.example.com"}, {"max_extensions": 51}, {"settings": []any{"x"}}, {"isolation": "database"}} {
		body := seed()
		for k, v := range change {
			body[k] = v
		}
		status, hdr, got := b.createKeyed(body, idemKey("k1")...)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v: %v", change, got)
		require.Equal(t, "invalid", errOf(got)["code"])
		require.Equal(t, "Idempotency-Key reused with a different request", errOf(got)["message"])
		require.Contains(t, errOf(got)["fields"], "Idempotency-Key")
		require.Empty(t, hdr.Get("Location"))
	}
	require.Equal(t, 1, b.tenantCount())
	// The refusals were not stored: the key still stands for its create.
	status, _, got := b.createKeyed(seed(), idemKey("k1")...)
	require.Equal(t, http.StatusCreated, status, "%v", got)
	require.Len(t, b.idempotencyRows(), 1)
}

// Keys are per actor: the same key from another actor is another request.
// The operator API knows two actors (the token's, and development mode's
// when there is no token), the CLI and tests a third, named in the context.
func TestIdempotencyKeysArePerActor(t *testing.T) {
	t.Parallel()
	dev := setup(t, controlplane.IsolationSchema) // actor "operator (development mode, no ADMIN_TOKEN)"
	cfg := dev.cfg
	cfg.AdminToken = config.Secret(adminToken)
	operator, _ := dev.restartLogged(cfg) // actor "operator", same catalog

	status, _, acme := dev.createKeyed(seed(), idemKey("shared-key")...)
	require.Equal(t, http.StatusCreated, status, "%v", acme)

	beta := map[string]any{"name": "Beta", "slug": "beta", "domain": "beta.example.org"}
	status, hdr, got := operator.createKeyed(beta, append(idemKey("shared-key"), bearerAdmin...)...)
	require.Equal(t, http.StatusCreated, status, "another actor's key does not collide: %v", got)
	require.Empty(t, hdr.Get("Idempotent-Replayed"))
	require.Equal(t, "beta", got["slug"])
	// Each actor's retry gets its own tenant.
	status, _, got = operator.createKeyed(beta, append(idemKey("shared-key"), bearerAdmin...)...)
	require.Equal(t, http.StatusCreated, status)
	require.Equal(t, "beta", got["slug"])
	status, _, got = dev.createKeyed(seed(), idemKey("shared-key")...)
	require.Equal(t, http.StatusCreated, status)
	require.Equal(t, "acme-corp", got["slug"])

	ctx := controlplane.WithActor(context.Background(), "cli:alice@host")
	spec := controlplane.NewTenantSpec()
	spec.Name, spec.Slug, spec.Domain = "Gamma", "gamma", "gamma.example.net"
	res, err := dev.app.Tenants.CreateIdempotent(ctx, "shared-key", spec)
	require.NoError(t, err)
	require.False(t, res.Replayed)
	require.Equal(t, "gamma", res.Tenant.Slug)
	res, err = dev.app.Tenants.CreateIdempotent(ctx, "shared-key", spec)
	require.NoError(t, err)
	require.True(t, res.Replayed)
	require.Equal(t, "gamma", res.Tenant.Slug)

	require.Equal(t, 3, dev.tenantCount())
	require.Len(t, dev.idempotencyRows(), 3)
}

// Eight requests with one key at once make one tenant; every one of them
// answers with it, and only one carries the initial key. With eight
// different bodies under one key, one creates and the others are refused.
func TestIdempotentConcurrentCreates(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		const n = 8
		type answer struct {
			status int
			body   map[string]any
		}
		race := func(key string, body func(i int) map[string]any) []answer {
			out := make([]answer, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					buf, _ := json.Marshal(body(i))
					req, _ := http.NewRequest("POST", b.srv.URL+"/api/tenants", bytes.NewReader(buf))
					req.Header.Set("Idempotency-Key", key)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						return
					}
					defer resp.Body.Close()
					out[i].status = resp.StatusCode
					_ = json.NewDecoder(resp.Body).Decode(&out[i].body)
				}()
			}
			close(start)
			wg.Wait()
			return out
		}

		answers := race("same-key", func(int) map[string]any { return seed() })
		withSecret := 0
		for _, a := range answers {
			// 202 when the tenant was still being provisioned.
			require.Contains(t, []int{http.StatusCreated, http.StatusAccepted}, a.status, "%v", a.body)
			require.Equal(t, answers[0].body["id"], a.body["id"], "one tenant (not necessarily id 1: every request reserved one)")
			if k, ok := a.body["api_key"].(map[string]any); ok && k["key"] != nil {
				withSecret++
			}
		}
		require.Equal(t, 1, withSecret)
		require.Equal(t, 1, b.tenantCount())
		if b.cfg.TenantIsolation == "database" {
			require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), 1)
		}

		answers = race("other-key", func(i int) map[string]any {
			s := string(rune('a' + i))
			return map[string]any{"name": "T " + s, "slug": "t-" + s, "domain": s + ".example.net"}
		})
		count := map[int]int{}
		for _, a := range answers {
			count[a.status]++
			if a.status == http.StatusUnprocessableEntity {
				require.Contains(t, errOf(a.body)["fields"], "Idempotency-Key")
			}
		}
		require.Equal(t, map[int]int{http.StatusCreated: 1, http.StatusUnprocessableEntity: n - 1}, count)
		require.Equal(t, 2, b.tenantCount())
		if b.cfg.TenantIsolation == "database" {
			require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), 2, "the refused creates leave no database")
		}
		// Every id the races reserved is unlocked again.
		status, _, list := b.req("GET", "", "/api/tenants", nil)
		require.Equal(t, http.StatusOK, status)
		for _, tn := range list["data"].([]any) {
			require.Equal(t, "ready", tn.(map[string]any)["provisioning"])
		}
	})
}

// A client error is stored and answered again, even once its cause is
// gone; a request the server could not read (400, 413, an unknown field)
// never reached the create and is not.
func TestIdempotentClientErrorIsReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)

	bad := seed()
	bad["timezone"] = "Mars/Olympus"
	status, hdr, first := b.createKeyed(bad, idemKey("bad-tz")...)
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Empty(t, hdr.Get("Idempotent-Replayed"))
	status, hdr, again := b.createKeyed(bad, idemKey("bad-tz")...)
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
	require.Equal(t, first, again)
	// The key stands for the failed request: a corrected one needs a new key.
	status, _, got := b.createKeyed(seed(), idemKey("bad-tz")...)
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Equal(t, "Idempotency-Key reused with a different request", errOf(got)["message"])

	// A taken slug: 409, and 409 again after the slug is free.
	b.create(seed())
	dup := seed()
	dup["domain"] = "other.example.com"
	status, _, first = b.createKeyed(dup, idemKey("dup-slug")...)
	require.Equal(t, http.StatusConflict, status)
	require.Contains(t, errOf(first)["fields"], "slug")
	status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"slug": "acme-renamed"})
	require.Equal(t, http.StatusOK, status)
	status, hdr, again = b.createKeyed(dup, idemKey("dup-slug")...)
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
	require.Equal(t, first, again)
	status, _, got = b.createKeyed(dup, idemKey("dup-slug-2")...)
	require.Equal(t, http.StatusCreated, status, "%v", got)

	// Unreadable requests are not stored: the key is still free after them.
	for _, body := range []string{`{"name": "x"`, `{"colour": "blue"}`} {
		status, _, got = b.createKeyed(body, idemKey("unread")...)
		require.Contains(t, []int{http.StatusBadRequest, http.StatusUnprocessableEntity}, status, "%v", got)
	}
	third := map[string]any{"name": "Third", "slug": "third", "domain": "third.example.com"}
	status, _, got = b.createKeyed(third, idemKey("unread")...)
	require.Equal(t, http.StatusCreated, status, "%v", got)

	// Stored errors hold the error body, no more.
	for _, row := range b.idempotencyRows() {
		require.NotContains(t, row, "lc_")
	}
}

// Keys expire after a day (IdempotencyTTL); then the same key is a new
// request. Expired keys are deleted by later lookups.
func TestIdempotencyKeysExpire(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	status, _, _ := b.createKeyed(seed(), idemKey("old")...)
	require.Equal(t, http.StatusCreated, status)
	beta := map[string]any{"name": "Beta", "slug": "beta", "domain": "beta.example.org"}
	status, _, _ = b.createKeyed(beta, idemKey("also-old")...)
	require.Equal(t, http.StatusCreated, status)

	b.ageKeys(23 * time.Hour)
	status, hdr, _ := b.createKeyed(seed(), idemKey("old")...)
	require.Equal(t, http.StatusCreated, status)
	require.Equal(t, "true", hdr.Get("Idempotent-Replayed"), "23 hours: still kept")

	b.ageKeys(2 * time.Hour) // 25 hours old now
	// The TTL is the service's: with two days, the key still stands.
	twoDays := *b.app.Tenants
	twoDays.IdempotencyTTL = 48 * time.Hour
	res, err := twoDays.CreateIdempotent(controlplane.WithActor(context.Background(), "operator (development mode, no ADMIN_TOKEN)"), "old", controlplane.TenantSpec{
		Name: "Acme Corp", Slug: "acme-corp", Domain: "acme.example.com", Status: "active", Timezone: "America/New_York",
		MaxExtensions: 50, Settings: json.RawMessage(`[]`),
	})
	require.NoError(t, err)
	require.True(t, res.Replayed)
	require.Len(t, b.idempotencyRows(), 2, "nothing was expired at 48 hours")

	// With the default day, the key is expired: the same body is a new
	// create, whose slug its own first tenant holds.
	status, hdr, got := b.createKeyed(seed(), idemKey("old")...)
	require.Equal(t, http.StatusConflict, status, "%v", got)
	require.Empty(t, hdr.Get("Idempotent-Replayed"))
	rows := b.idempotencyRows()
	require.Len(t, rows, 1, "both expired keys were deleted, the new outcome stored")
	require.Contains(t, rows[0], `"key":"old"`)
	require.Contains(t, rows[0], `"code": "conflict"`)
	require.Equal(t, 2, b.tenantCount())
}

func TestIdempotencyKeyHeaderIsChecked(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	for name, headers := range map[string][]string{
		"empty":     idemKey(""),
		"too long":  idemKey(strings.Repeat("k", 256)),
		"not ASCII": idemKey("clé"),
		"control":   idemKey("a\tb"),
		"twice":     append(idemKey("a"), idemKey("b")...),
	} {
		status, _, got := b.createKeyed(seed(), headers...)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %v", name, got)
		require.Equal(t, "invalid", errOf(got)["code"], name)
		require.Contains(t, errOf(got)["fields"], "Idempotency-Key", name)
		require.Contains(t, errOf(got)["message"], "Idempotency-Key", name)
	}
	// The header is checked before the body is read.
	status, _, got := b.createKeyed(`{"name": `, idemKey("")...)
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Contains(t, errOf(got)["fields"], "Idempotency-Key")
	require.Equal(t, 0, b.tenantCount())
	require.Empty(t, b.idempotencyRows())

	// 255 printable characters, spaces and quotes included, are a key.
	key := strings.Repeat(`"k ~`, 63) + "abc"
	require.Len(t, key, 255)
	status, _, got = b.createKeyed(seed(), idemKey(key)...)
	require.Equal(t, http.StatusCreated, status, "%v", got)
	status, hdr, _ := b.createKeyed(seed(), idemKey(key)...)
	require.Equal(t, http.StatusCreated, status)
	require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
}

// A retry while the first request is still provisioning answers with the
// tenant as it is, pending (202), and makes nothing.
func TestIdempotentRetryWhileProvisioning(t *testing.T) {
	t.Parallel()
	good := setup(t, controlplane.IsolationSchema)
	slowMigrations, err := migrations.TenantPlus(map[string]string{
		"000900_slow.up.sql":   "SELECT pg_sleep(3);\n",
		"000900_slow.down.sql": "SELECT 1;\n",
	})
	require.NoError(t, err)
	b := good.restart(slowMigrations)

	type answer struct {
		status int
		body   map[string]any
	}
	first := make(chan answer, 1)
	go func() {
		status, _, got := b.createKeyed(seed(), idemKey("slow")...)
		first <- answer{status, got}
	}()
	require.Eventually(t, func() bool { return b.tenantCount() == 1 }, 10*time.Second, 20*time.Millisecond)

	status, hdr, got := b.createKeyed(seed(), idemKey("slow")...)
	require.Equal(t, http.StatusAccepted, status, "%v", got)
	require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
	require.Equal(t, "/api/tenants/1", hdr.Get("Location"))
	require.Equal(t, "pending", got["provisioning"])
	require.Nil(t, got["api_key"])

	a := <-first
	require.Equal(t, http.StatusCreated, a.status, "%v", a.body)
	require.Equal(t, "ready", a.body["provisioning"])
	require.NotNil(t, a.body["api_key"])
	status, _, got = b.createKeyed(seed(), idemKey("slow")...)
	require.Equal(t, http.StatusCreated, status)
	require.Equal(t, "ready", got["provisioning"])
	require.Equal(t, 1, b.tenantCount())
}

// A create whose provisioning failed answered 500, which is not stored: a
// retry with its key provisions the same tenant again (never a second
// one, never a 409 for its slug), and the retry that finishes it gets the
// initial key the create never issued.
func TestIdempotentRetryAfterProvisioningFailed(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, good *bundle) {
		broken := good.restart(brokenMigrations(t))
		status, _, got := broken.createKeyed(seed(), idemKey("fails")...)
		require.Equal(t, http.StatusInternalServerError, status, "%v", got)
		require.Equal(t, "provisioning_failed", errOf(got)["code"])

		status, _, got = broken.createKeyed(seed(), idemKey("fails")...)
		require.Equal(t, http.StatusInternalServerError, status, "tried again, failed again: %v", got)
		require.Equal(t, "provisioning_failed", errOf(got)["code"])

		status, hdr, got := good.createKeyed(seed(), idemKey("fails")...)
		require.Equal(t, http.StatusCreated, status, "%v", got)
		require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
		require.EqualValues(t, 1, got["id"])
		require.Equal(t, "ready", got["provisioning"])
		require.Equal(t, allTenantTables, good.tenantTables(got))
		key := got["api_key"].(map[string]any)
		require.Equal(t, "initial", key["name"])
		require.Regexp(t, `^lc_[0-9a-f]{64}$`, key["key"])

		status, _, got = good.createKeyed(seed(), idemKey("fails")...)
		require.Equal(t, http.StatusCreated, status)
		require.Nil(t, got["api_key"])
		require.Equal(t, 1, good.tenantCount())
		_, keys := good.do("GET", "/api/tenants/1/keys", nil)
		require.Len(t, keys["data"], 1)
		_, audit := good.do("GET", "/api/audit?tenant=1", nil)
		provisions := 0
		for _, e := range audit["data"].([]any) {
			if e.(map[string]any)["action"] == "tenant.provision" {
				provisions++
			}
		}
		require.Equal(t, 2, provisions, "each retry's provisioning is audited")
	})
}

// The tenant a key created was deleted since: a retry says so, and does
// not create it again.
func TestIdempotentRetryAfterDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	status, _, _ := b.createKeyed(seed(), idemKey("gone")...)
	require.Equal(t, http.StatusCreated, status)
	status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"status": "suspended"})
	require.Equal(t, http.StatusOK, status)
	status, _ = b.do("DELETE", "/api/tenants/1?purge=now", nil)
	require.Equal(t, http.StatusNoContent, status)

	status, hdr, got := b.createKeyed(seed(), idemKey("gone")...)
	require.Equal(t, http.StatusNotFound, status, "%v", got)
	require.Equal(t, "true", hdr.Get("Idempotent-Replayed"))
	require.Equal(t, "tenant 1, created by the first request with this Idempotency-Key, has since been deleted", errOf(got)["message"])
	require.Equal(t, 0, b.tenantCount())
}

// With spare databases ready, racing requests with one key claim them in
// the statement that records the key: the losers' claims roll back with
// their inserts, so one spare becomes the tenant and the other stays ready.
func TestIdempotentConcurrentCreatesClaimingSpares(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	require.NoError(t, b.app.Tenants.Spares.Fill(context.Background()))
	require.Equal(t, map[int64]string{1: "ready", 2: "ready"}, b.spareRows())

	const n = 8
	ids := make(chan any, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, got := b.createKeyed(seed(), idemKey("spare-race")...)
			if status != http.StatusCreated && status != http.StatusAccepted {
				ids <- status
				return
			}
			ids <- got["id"]
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[any]int{}
	for id := range ids {
		seen[id]++
	}
	require.Len(t, seen, 1, "every answer is the one tenant: %v", seen)
	var id int64
	for v := range seen {
		f, ok := v.(float64)
		require.True(t, ok, "an answer was %v", v)
		id = int64(f)
	}
	require.Contains(t, []int64{1, 2}, id, "the tenant took a spare's id")
	require.Equal(t, 1, b.tenantCount())
	require.Equal(t, map[int64]string{3 - id: "ready"}, b.spareRows(), "the other spare is ready again")
	require.Len(t, pgtest.TenantDatabases(t, b.db.Prefix), 2, "the tenant's and the spare left")
}
