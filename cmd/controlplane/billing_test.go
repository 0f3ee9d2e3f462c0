package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// raw sends body as is with the given Content-Type to host; it returns the
// status and the decoded JSON body.
func (b *bundle) raw(method, host, path, contentType string, body []byte) (int, map[string]any) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, bytes.NewReader(body))
	require.NoError(b.t, err)
	req.Host = host
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	var got map[string]any
	if len(out) > 0 {
		require.NoError(b.t, json.Unmarshal(out, &got), "body: %s", out)
	}
	return resp.StatusCode, got
}

const acme = "acme.example.com"

// workedRates creates docs/DOMAIN.md's worked example in acme: 44 at 0.0300,
// 4420 at 0.0150 until 2025-01-01 then 0.0120; connect fee 0.0150, 30/6.
func (b *bundle) workedRates() {
	b.t.Helper()
	for _, r := range []map[string]any{
		{"prefix": "44", "rate_per_minute": "0.0300", "connect_fee": "0.0150", "min_seconds": 30, "increment_seconds": 6, "effective_from": "2020-01-01T00:00:00Z"},
		{"prefix": "4420", "rate_per_minute": 0.015, "connect_fee": 0.015, "min_seconds": 30, "increment_seconds": 6, "effective_from": "2020-01-01T00:00:00Z", "effective_to": "2025-01-01T00:00:00Z"},
		{"prefix": "4420", "rate_per_minute": "0.0120", "connect_fee": "0.0150", "min_seconds": 30, "increment_seconds": 6, "effective_from": "2025-01-01T00:00:00Z", "effective_to": nil},
	} {
		status, _, got := b.req("POST", acme, "/api/rates", r)
		require.Equal(b.t, http.StatusCreated, status, "%v", got)
	}
}

// call is an answered outbound call to dst: 3 s of ringing, 47 s of talk.
func call(n int, dst, start string) map[string]any {
	return map[string]any{
		"uuid": fmt.Sprintf("a0000000-0000-4000-8000-%012d", n), "direction": "outbound", "src": "1001", "dst": dst,
		"start_at": start + "T14:00:00Z", "answer_at": start + "T14:00:03Z", "end_at": start + "T14:00:50Z",
		"duration": 50, "billsec": 47, "disposition": "ANSWERED",
	}
}

func TestRatesAPI(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		status, hdr, r := b.req("POST", acme, "/api/rates", map[string]any{
			"prefix": "4420", "rate_per_minute": 0.012, "connect_fee": "0.015", "min_seconds": 30, "increment_seconds": 6,
			"effective_from": "2025-01-01T00:00:00-05:00",
		})
		require.Equal(t, http.StatusCreated, status, "%v", r)
		require.Equal(t, "/api/rates/1", hdr.Get("Location"))
		for k, v := range map[string]any{
			"prefix": "4420", "rate_per_minute": "0.01200", "connect_fee": "0.01500", "min_seconds": 30.0,
			"increment_seconds": 6.0, "effective_from": "2025-01-01T05:00:00Z", "effective_to": nil,
		} {
			require.Equal(t, v, r[k], k)
		}
		_, _, got := b.req("GET", acme, "/api/rates/1", nil)
		require.Equal(t, r, got)

		bad := []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"rate_per_minute": "0.01", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "prefix"},
			{map[string]any{"prefix": "+44", "rate_per_minute": "0.01", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "prefix"},
			{map[string]any{"prefix": "44", "rate_per_minute": "abc", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "rate_per_minute"},
			{map[string]any{"prefix": "44", "rate_per_minute": true, "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "rate_per_minute"},
			{map[string]any{"prefix": "44", "rate_per_minute": -1, "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "rate_per_minute"},
			{map[string]any{"prefix": "44", "rate_per_minute": "0.000001", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "rate_per_minute"},
			{map[string]any{"prefix": "44", "rate_per_minute": "0.01", "min_seconds": 0, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "min_seconds"},
			{map[string]any{"prefix": "44", "rate_per_minute": "0.01", "min_seconds": "60", "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "min_seconds"},
			{map[string]any{"prefix": "44", "rate_per_minute": "0.01", "min_seconds": 60, "effective_from": "2025-01-01T00:00:00Z"}, "increment_seconds"},
			{map[string]any{"prefix": "44", "rate_per_minute": "0.01", "min_seconds": 60, "increment_seconds": 60, "effective_from": "tomorrow"}, "effective_from"},
			{map[string]any{"prefix": "44", "rate_per_minute": "0.01", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z", "effective_to": "2024-01-01T00:00:00Z"}, "effective_to"},
			{map[string]any{"prefix": "44", "rate_per_minute": "0.01", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2025-01-01T00:00:00Z", "currency": "EUR"}, "currency"},
			// Overlaps rate 1 (from 2025-01-01T05:00Z, open-ended).
			{map[string]any{"prefix": "4420", "rate_per_minute": "0.01", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2026-01-01T00:00:00Z"}, "effective_from"},
			{map[string]any{"prefix": "4420", "rate_per_minute": "0.01", "min_seconds": 60, "increment_seconds": 60, "effective_from": "2024-01-01T00:00:00Z", "effective_to": "2025-06-01T00:00:00Z"}, "effective_to"},
		}
		for _, tc := range bad {
			status, _, got := b.req("POST", acme, "/api/rates", tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%v: %v", tc.body, got)
			require.Equal(t, "invalid", errCode(got))
			require.Contains(t, fields(got), tc.field, "%v", tc.body)
		}
		status, _ = b.raw("POST", acme, "/api/rates", "application/json", []byte(`{"prefix": "44",`))
		require.Equal(t, http.StatusBadRequest, status)
		status, _ = b.raw("POST", acme, "/api/rates", "application/json", bytes.Repeat([]byte(" "), 1<<20+1))
		require.Equal(t, http.StatusRequestEntityTooLarge, status, "only the import takes more than 1 MiB")

		// Adjacent periods are fine: [2024-01-01, 2025-01-01T05:00Z).
		status, _, got = b.req("POST", acme, "/api/rates", map[string]any{"prefix": "4420", "rate_per_minute": "0.015", "min_seconds": 30,
			"increment_seconds": 6, "effective_from": "2024-01-01T00:00:00Z", "effective_to": "2025-01-01T00:00:00-05:00"})
		require.Equal(t, http.StatusCreated, status, "%v", got)
		status, _, _ = b.req("POST", acme, "/api/rates", map[string]any{"prefix": "33", "rate_per_minute": "0.02", "min_seconds": 1,
			"increment_seconds": 1, "effective_from": "2024-01-01T00:00:00Z"})
		require.Equal(t, http.StatusCreated, status)

		_, _, list := b.req("GET", acme, "/api/rates?prefix=44&limit=1", nil)
		require.EqualValues(t, 2, list["total"])
		require.Len(t, list["data"], 1)
		status, _, got = b.req("GET", acme, "/api/rates?prefix=4x", nil)
		require.Equal(t, http.StatusUnprocessableEntity, status)
		require.Contains(t, fields(got), "prefix")

		status, _, got = b.req("PATCH", acme, "/api/rates/1", map[string]any{"effective_to": "2026-01-01T00:00:00Z", "rate_per_minute": "0.011"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "2026-01-01T00:00:00Z", got["effective_to"])
		require.Equal(t, "0.01100", got["rate_per_minute"])
		require.Equal(t, "0.01500", got["connect_fee"], "PATCH leaves the rest")
		status, _, got = b.req("PATCH", acme, "/api/rates/1", map[string]any{"effective_to": nil})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Nil(t, got["effective_to"])
		status, _, got = b.req("PATCH", acme, "/api/rates/1", map[string]any{"effective_from": "2024-06-01T00:00:00Z"})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		require.Contains(t, fields(got), "effective_from")

		status, _, got = b.req("PUT", acme, "/api/rates/1", map[string]any{"prefix": "4420", "rate_per_minute": "0.0125", "min_seconds": 60,
			"increment_seconds": 60, "effective_from": "2025-01-01T05:00:00Z"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, "0.00000", got["connect_fee"], "PUT: left-out fields take their defaults")

		status, _, _ = b.req("DELETE", acme, "/api/rates/1", nil)
		require.Equal(t, http.StatusNoContent, status)
		for _, m := range []string{"GET", "DELETE"} {
			status, _, got = b.req(m, acme, "/api/rates/1", nil)
			require.Equal(t, http.StatusNotFound, status, "%s: %v", m, got)
		}
		status, _, _ = b.req("GET", acme, "/api/rates/x", nil)
		require.Equal(t, http.StatusBadRequest, status)

		// Beta sees none of acme's rates, through its host or its slug.
		for _, path := range []string{"/api/rates", "/t/beta/api/rates"} {
			host := "beta.example.org"
			if strings.HasPrefix(path, "/t/") {
				host = ""
			}
			_, _, got = b.req("GET", host, path, nil)
			require.EqualValues(t, 0, got["total"], path)
		}
		status, _, _ = b.req("GET", "beta.example.org", "/api/rates/2", nil)
		require.Equal(t, http.StatusNotFound, status)
	})
}

func TestRateImportAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.twoTenants()
	var deck strings.Builder
	deck.WriteString("prefix,rate_per_minute,connect_fee,min_seconds,increment_seconds,effective_from,effective_to\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&deck, "%d,0.0%03d,,60,60,2025-01-01T00:00:00Z,\n", 10000+i, i%1000)
	}
	status, got := b.raw("POST", acme, "/api/rates/import", "text/csv", []byte(deck.String()))
	require.Equal(t, http.StatusCreated, status, "%v", got)
	require.EqualValues(t, 2000, got["imported"])
	_, _, list := b.req("GET", acme, "/api/rates?limit=1", nil)
	require.EqualValues(t, 2000, list["total"])

	// Errors name the row and column; nothing is stored.
	bad := "prefix,rate_per_minute,min_seconds,increment_seconds,effective_from\n" +
		"20000,0.01,60,60,2025-01-01T00:00:00Z\n" +
		"2000x,0.01,60,60,2025-01-01T00:00:00Z\n" +
		"20001,0.01,sixty,60,2025-01-01T00:00:00Z\n" +
		"10000,0.01,60,60,2026-01-01T00:00:00Z\n"
	status, got = b.raw("POST", acme, "/api/rates/import", "text/csv; charset=utf-8", []byte(bad))
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
	require.Contains(t, fields(got), "row 3: prefix")
	require.Contains(t, fields(got), "row 4: min_seconds")
	status, got = b.raw("POST", acme, "/api/rates/import", "text/csv", []byte(strings.Replace(bad, "2000x", "20002", 1)[:strings.Index(bad, "20001")]+"10000,0.01,60,60,2026-01-01T00:00:00Z\n"))
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
	require.Contains(t, fields(got)["row 4: effective_from"], "overlaps the existing rate")
	_, _, list = b.req("GET", acme, "/api/rates?limit=1", nil)
	require.EqualValues(t, 2000, list["total"])

	status, got = b.raw("POST", acme, "/api/rates/import", "application/json", []byte(deck.String()))
	require.Equal(t, http.StatusBadRequest, status, "%v", got)
	require.Contains(t, got["error"].(map[string]any)["message"], "text/csv")

	// More than 1 MiB is fine here (cells are trimmed), up to 16 MiB.
	pad := strings.Repeat(" ", 4096)
	var big strings.Builder
	big.WriteString("prefix,rate_per_minute,min_seconds,increment_seconds,effective_from\n")
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&big, "%d,0.01,60,60,%s2025-01-01T00:00:00Z\n", 50000+i, pad)
	}
	require.Greater(t, big.Len(), 1<<20)
	status, got = b.raw("POST", "", "/t/beta/api/rates/import", "text/csv", []byte(big.String()))
	require.Equal(t, http.StatusCreated, status, "%v", got)
	require.EqualValues(t, 300, got["imported"])
	status, got = b.raw("POST", "beta.example.org", "/api/rates/import", "text/csv", bytes.Repeat([]byte(" "), 16<<20+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, status, "%v", got)
}

func TestCDRsAPI(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.twoTenants()
		b.workedRates()
		one := call(1, "+442071838750", "2025-03-01")
		status, hdr, c := b.req("POST", acme, "/api/cdrs", one)
		require.Equal(t, http.StatusCreated, status, "%v", c)
		require.Equal(t, "/api/cdrs/1", hdr.Get("Location"))
		require.Equal(t, "0.0246", c["cost"], "docs/DOMAIN.md's worked example, to the cent")
		require.EqualValues(t, 3, c["rate_id"])
		require.Nil(t, c["unrated_reason"])
		require.Equal(t, "2025-03-01T14:00:03Z", c["answer_at"])

		// Idempotent by uuid: 200 with the stored CDR, no duplicate.
		status, _, again := b.req("POST", acme, "/api/cdrs", one)
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, c, again)
		for _, key := range []string{"1", one["uuid"].(string)} {
			status, _, got := b.req("GET", acme, "/api/cdrs/"+key, nil)
			require.Equal(t, http.StatusOK, status, key)
			require.Equal(t, c, got)
		}
		status, _, _ = b.req("GET", acme, "/api/cdrs/not-a-uuid", nil)
		require.Equal(t, http.StatusBadRequest, status)

		// A batch: per-item results, 201 when something was stored.
		missed := map[string]any{"uuid": "b0000000-0000-4000-8000-000000000001", "direction": "inbound", "src": "", "dst": "+15551234567",
			"start_at": "2025-03-01T15:00:00Z", "end_at": "2025-03-01T15:00:20Z", "duration": 20, "disposition": "NO ANSWER"}
		status, _, got := b.req("POST", acme, "/api/cdrs", map[string]any{"cdrs": []any{one, call(2, "+33123", "2025-03-02"), missed}})
		require.Equal(t, http.StatusCreated, status, "%v", got)
		require.EqualValues(t, 2, got["created"])
		require.EqualValues(t, 1, got["existing"])
		// One result per CDR, in order: its id and rating, the stored
		// CDR's for one that was already there.
		results := got["results"].([]any)
		require.Len(t, results, 3)
		require.Equal(t, map[string]any{"id": c["id"], "uuid": one["uuid"], "created": false, "rate_id": c["rate_id"], "cost": "0.0246", "unrated_reason": nil}, results[0])
		second := results[1].(map[string]any)
		require.Equal(t, true, second["created"])
		require.Nil(t, second["cost"])
		require.Nil(t, second["rate_id"])
		require.Equal(t, "no_rate", second["unrated_reason"])
		third := results[2].(map[string]any)
		require.Equal(t, "not_answered", third["unrated_reason"])
		require.Equal(t, missed["uuid"], third["uuid"])
		for _, r := range results[1:] {
			status, _, stored := b.req("GET", acme, "/api/cdrs/"+fmt.Sprint(r.(map[string]any)["id"]), nil)
			require.Equal(t, http.StatusOK, status)
			require.Equal(t, r.(map[string]any)["uuid"], stored["uuid"], "the id answered is the stored CDR's")
		}
		status, _, got = b.req("POST", acme, "/api/cdrs", map[string]any{"cdrs": []any{one}})
		require.Equal(t, http.StatusOK, status, "a batch that stored nothing new is 200: %v", got)

		// Invalid batches: nothing stored, fields named by place.
		badBillsec := call(10, "+4420", "2025-03-03")
		badBillsec["billsec"] = 40
		wrongType := call(11, "+4420", "2025-03-03")
		wrongType["duration"] = "50"
		unknown := call(12, "+4420", "2025-03-03")
		unknown["colour"] = "blue"
		status, _, got = b.req("POST", acme, "/api/cdrs", map[string]any{"cdrs": []any{call(13, "+4420", "2025-03-03"), badBillsec}})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		require.Equal(t, []string{"cdrs[1].billsec"}, keys(fields(got)))
		status, _, got = b.req("POST", acme, "/api/cdrs", map[string]any{"cdrs": []any{wrongType, unknown, 7}})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		require.Equal(t, []string{"cdrs[0].duration", "cdrs[1].colour", "cdrs[2]"}, keys(fields(got)))
		status, _, got = b.req("POST", acme, "/api/cdrs", map[string]any{"cdrs": make([]map[string]any, 1001)})
		require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
		require.Contains(t, fields(got), "cdrs")
		for _, body := range []string{`{"uuid":`, `[{"uuid": "x"}]`, ``, `"cdr"`} {
			status, got = b.raw("POST", acme, "/api/cdrs", "application/json", []byte(body))
			require.Equal(t, http.StatusBadRequest, status, "%q: %v", body, got)
		}
		for field, value := range map[string]any{"disposition": "HUNG UP", "direction": "up", "uuid": "1", "start_at": "yesterday", "extension_id": 1} {
			c := call(20, "+4420", "2025-03-03")
			c[field] = value
			status, _, got = b.req("POST", acme, "/api/cdrs", c)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %v", field, got)
			require.Contains(t, fields(got), field)
		}
		_, _, got = b.req("GET", acme, "/api/cdrs?limit=100", nil)
		require.Len(t, got["data"], 3)

		// Rerate after a price change.
		status, _, got = b.req("PATCH", acme, "/api/rates/3", map[string]any{"rate_per_minute": "0.0060"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		status, _, got = b.req("POST", acme, "/api/cdrs/rerate?from=2025-03-01&to=2025-03-02", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.EqualValues(t, 3, got["examined"])
		require.EqualValues(t, 1, got["changed"])
		require.Equal(t, "2025-03-01T05:00:00Z", got["from"], "local dates of the tenant (New York)")
		_, _, got = b.req("GET", acme, "/api/cdrs/1", nil)
		require.Equal(t, "0.0198", got["cost"])
		status, _, got = b.req("POST", acme, "/api/cdrs/rerate?from=2025-03-01", nil)
		require.Equal(t, http.StatusUnprocessableEntity, status)
		require.Contains(t, fields(got), "to")

		// Tenant B sees none of it.
		for _, path := range []string{"/api/cdrs", "/api/cdrs/1", "/api/cdrs/" + one["uuid"].(string), "/api/reports/calls?from=2025-03-01&to=2025-03-01"} {
			status, _, got := b.req("GET", "beta.example.org", path, nil)
			switch {
			case strings.HasPrefix(path, "/api/cdrs/"):
				require.Equal(t, http.StatusNotFound, status, path)
			case path == "/api/cdrs":
				require.Empty(t, got["data"])
			default:
				require.EqualValues(t, 0, got["buckets"].([]any)[0].(map[string]any)["calls"])
			}
		}
		// ... and B's own CDR to the same number is priced by B's rates (none).
		status, _, got = b.req("POST", "beta.example.org", "/api/cdrs", call(1, "+442071838750", "2025-03-01"))
		require.Equal(t, http.StatusCreated, status, "the same uuid in another tenant is another call: %v", got)
		require.Equal(t, "no_rate", got["unrated_reason"])
	})
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestCDRListAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationDatabase)
	b.twoTenants()
	var batch []any
	for i := 0; i < 7; i++ {
		batch = append(batch, call(i, "+4420", fmt.Sprintf("2025-11-0%d", 1+i%3)))
	}
	status, _, got := b.req("POST", acme, "/api/cdrs", map[string]any{"cdrs": batch})
	require.Equal(t, http.StatusCreated, status, "%v", got)

	var ids []float64
	path := "/api/cdrs?limit=3"
	for {
		status, _, page := b.req("GET", acme, path, nil)
		require.Equal(t, http.StatusOK, status, "%v", page)
		for _, c := range page["data"].([]any) {
			ids = append(ids, c.(map[string]any)["id"].(float64))
		}
		if page["next_cursor"] == nil {
			break
		}
		if len(ids) == 3 {
			// A newer call arrives between two pages: it is not in them.
			status, _, _ := b.req("POST", acme, "/api/cdrs", call(99, "+4420", "2025-11-30"))
			require.Equal(t, http.StatusCreated, status)
		}
		path = "/api/cdrs?limit=3&cursor=" + page["next_cursor"].(string)
	}
	require.Equal(t, []float64{6, 3, 5, 2, 7, 4, 1}, ids, "newest first, by start then id")

	_, _, got = b.req("GET", acme, "/api/cdrs?from=2025-11-02&to=2025-11-02", nil)
	require.Len(t, got["data"], 2, "local dates of the tenant")
	for _, bad := range []struct{ query, field string }{
		{"from=11/02/2025", "from"}, {"direction=up", "direction"}, {"limit=0", "limit"},
		{"offset=3", "offset"}, {"cursor=xyz", "cursor"}, {"extension_id=abc", "extension_id"}, {"queue_id=0", "queue_id"},
	} {
		status, _, got := b.req("GET", acme, "/api/cdrs?"+bad.query, nil)
		require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %v", bad.query, got)
		require.Contains(t, fields(got), bad.field, bad.query)
	}
}

func TestCallReportAPI(t *testing.T) {
	t.Parallel()
	bothModes(t, func(t *testing.T, b *bundle) {
		b.create(seed()) // America/New_York
		b.workedRates()
		for i, start := range []string{"2025-11-02T03:30:00Z", "2025-11-02T04:00:00Z", "2025-11-02T05:30:00Z", "2025-11-02T06:30:00Z"} {
			c := call(i, "+442071838750", "2025-11-02")
			c["start_at"], c["answer_at"], c["end_at"], c["duration"], c["billsec"] = start, nil, start, 0, 0
			c["disposition"] = "BUSY"
			status, _, got := b.req("POST", acme, "/api/cdrs", c)
			require.Equal(t, http.StatusCreated, status, "%v", got)
		}
		status, _, rep := b.req("GET", acme, "/api/reports/calls?from=2025-11-01&to=2025-11-03&group=day", nil)
		require.Equal(t, http.StatusOK, status, "%v", rep)
		require.Equal(t, "America/New_York", rep["timezone"])
		days := rep["buckets"].([]any)
		require.Len(t, days, 3)
		nov2 := days[1].(map[string]any)
		require.Equal(t, "2025-11-02T00:00:00-04:00", nov2["local_start"])
		require.Equal(t, "2025-11-02T04:00:00Z", nov2["start"])
		require.Equal(t, "2025-11-03T05:00:00Z", nov2["end"], "a 25-hour day")
		require.EqualValues(t, 3, nov2["calls"])
		require.EqualValues(t, 1, days[0].(map[string]any)["calls"], "03:30Z is Nov 1 in New York")

		_, _, rep = b.req("GET", acme, "/api/reports/calls?from=2025-11-02&to=2025-11-02&group=hour", nil)
		require.Len(t, rep["buckets"], 25)

		// The tenant moves to UTC: the same calls regroup; their instants stay.
		status, _ = b.do("PATCH", "/api/tenants/1", map[string]any{"timezone": "UTC"})
		require.Equal(t, http.StatusOK, status)
		_, _, rep = b.req("GET", acme, "/api/reports/calls?from=2025-11-01&to=2025-11-03", nil)
		require.Equal(t, "UTC", rep["timezone"])
		var per []float64
		for _, d := range rep["buckets"].([]any) {
			per = append(per, d.(map[string]any)["calls"].(float64))
		}
		require.Equal(t, []float64{0, 4, 0}, per)
		_, _, c := b.req("GET", acme, "/api/cdrs/1", nil)
		require.Equal(t, "2025-11-02T03:30:00Z", c["start_at"])

		for _, bad := range []struct{ query, field string }{
			{"to=2025-11-30", "from"}, {"from=2025-11-01&to=2025-11-30&group=week", "group"},
			{"from=2025-11-30&to=2025-11-01", "to"}, {"from=2025-11-01&to=2025-12-31&group=hour", "to"},
		} {
			status, _, got := b.req("GET", acme, "/api/reports/calls?"+bad.query, nil)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %v", bad.query, got)
			require.Contains(t, fields(got), bad.field, bad.query)
		}
	})
}

// TestBillingBadInputIsNever5xx throws malformed and hostile input at every
// billing endpoint: each answer must be a 4xx (or a success), never a 500.
func TestBillingBadInputIsNever5xx(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.twoTenants()
	b.workedRates()
	cdr := `{"uuid": "6f9619ff-8b86-4011-b42d-00c04fc964ff", "direction": "outbound", "start_at": "2025-01-01T00:00:00Z", "end_at": "2025-01-01T00:00:00Z", "disposition": "BUSY", `
	rate := `{"prefix": "1", "min_seconds": 1, "increment_seconds": 1, `
	bodies := []string{`{}`, `[]`, `null`, `1`, `{"cdrs": {}}`, `{"cdrs": [[]]}`, `{"cdrs": [null, 1, "x", {}]}`,
		cdr + `"dst": "+44\u0000", "duration": 0}`,
		cdr + `"dst": "+44", "src": "\ud800", "duration": 0, "end_at": "9999-12-31T23:59:59-23:59"}`,
		cdr + `"dst": "+44", "duration": 99999999999999999999}`,
		cdr + `"dst": "+44", "duration": 0, "extension_id": 9223372036854775807, "queue_id": -5}`,
		rate + `"rate_per_minute": "1e-99999999999", "effective_from": "2025-01-01T00:00:00Z"}`,
		rate + `"rate_per_minute": "NaN", "connect_fee": "Infinity", "effective_from": "2025-01-01T00:00:00Z"}`,
		rate + `"rate_per_minute": 1e400, "effective_from": "2025-01-01T00:00:00Z"}`,
		rate + `"rate_per_minute": {"a": 1}, "effective_from": "2025-01-01T00:00:00Z"}`,
		rate + `"rate_per_minute": "1", "effective_from": "0001-01-01T00:00:00+23:59"}`,
		`{"effective_to": {}}`, `{"effective_to": ""}`, `{"prefix": null}`, `{"rate_per_minute": null}`,
	}
	for _, path := range []string{"/api/cdrs", "/api/rates", "/api/rates/1"} {
		for _, m := range []string{"POST", "PUT", "PATCH"} {
			for _, body := range bodies {
				status, got := b.raw(m, acme, path, "application/json", []byte(body))
				require.Less(t, status, 500, "%s %s %s: %v", m, path, body, got)
			}
		}
	}
	head := "prefix,rate_per_minute,min_seconds,increment_seconds,effective_from\n"
	for _, csv := range []string{"", "\n", "prefix\n", "\"", head + "1,1e-9999999999,1,1,2025-01-01T00:00:00Z\n",
		head + "1,1,99999999999999999999,1,2025-01-01T00:00:00Z\n", head + "1,1,1,1,0000-01-01T00:00:00Z\n", head + "\x00,1,1,1,2025-01-01T00:00:00Z\n"} {
		status, got := b.raw("POST", acme, "/api/rates/import", "text/csv", []byte(csv))
		require.Less(t, status, 500, "import %q: %v", csv, got)
	}
	weird := []string{"\x00", "%", "'", "0000-01-01", "9999-12-31", "2025-02-30", "2025-01-01T00:00:00+25:00", "-1", "99999999999999999999", "ｘ"}
	for _, p := range []string{"from", "to", "cursor", "src", "dst", "direction", "disposition", "extension_id", "queue_id", "limit", "group", "prefix"} {
		for _, v := range weird {
			q := url.Values{p: {v}}.Encode()
			for _, path := range []string{"GET /api/cdrs?", "GET /api/reports/calls?from=2025-01-01&to=2025-01-02&", "GET /api/rates?", "POST /api/cdrs/rerate?from=2025-01-01&to=2025-01-02&"} {
				m, target, _ := strings.Cut(path, " ")
				status, _, got := b.req(m, acme, target+q, nil)
				require.Less(t, status, 500, "%s%s: %v", path, q, got)
			}
		}
	}
	for _, id := range []string{"0", "-1", "99999999999999999999", "%00", "6F9619FF-8B86-4011-B42D-00C04FC964FF", "x"} {
		for _, p := range []string{"/api/cdrs/", "/api/rates/"} {
			status, _, got := b.req("GET", acme, p+id, nil)
			require.Less(t, status, 500, "GET %s%s: %v", p, id, got)
		}
	}
}
