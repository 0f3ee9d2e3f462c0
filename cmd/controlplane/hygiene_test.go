package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/controlplane"
)

// bad stands in a request body for the text under test: each badText
// replaces it, inside the JSON string that holds it.
const bad = "@BAD@"

// badText is the text no text field may take, as written in a JSON body,
// and the reason the answer names. PostgreSQL refuses the first two (the
// request failed with 500); encoding/json silently turns the last two into
// U+FFFD, which was stored in place of what the client sent.
var badText = []struct{ name, json, reason string }{
	{"NUL", `a\u0000b`, controlplane.ReasonNUL},
	{"NUL alone", `\u0000`, controlplane.ReasonNUL},
	{"invalid UTF-8", "a\xffb", controlplane.ReasonUTF8},
	{"UTF-8 of a surrogate", "\xed\xa0\x80", controlplane.ReasonUTF8},
	{"lone surrogate", `a\ud800b`, controlplane.ReasonSurrogate},
}

// TestTextHygiene sends NUL, invalid UTF-8 and lone surrogates in every
// text field of every route that takes a JSON body, and in the query and
// path parameters that reach the database: each is refused (422 naming
// the field for a body or query parameter, 400 for a path), and nothing
// was stored.
func TestTextHygiene(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema)
	b.create(seed())
	fixtures := []struct {
		path string
		body map[string]any
	}{
		{"/api/extensions", map[string]any{"number": "1001", "name": "Alice", "password": "correct horse"}},
		{"/api/queues", map[string]any{"name": "Support", "extension": "500"}},
		{"/api/contacts", map[string]any{"name": "Grace", "phones": []any{map[string]any{"number": "+15559876543"}}, "tags": []any{"vip"}}},
		{"/api/dids", map[string]any{"number": "+15551234567", "target_type": "queue", "target_id": 1}},
		{"/api/rates", map[string]any{"prefix": "44", "rate_per_minute": "0.03", "min_seconds": 30, "increment_seconds": 6, "effective_from": "2020-01-01T00:00:00Z"}},
		{"/api/cdrs", call(1, "+442071838750", "2025-11-02")},
	}
	for _, f := range fixtures {
		status, _, got := b.req("POST", acme, f.path, f.body)
		require.Equal(t, http.StatusCreated, status, "%s: %v", f.path, got)
	}
	before := b.everything()

	tenant := map[string]any{
		"name": "New Co", "slug": "new-co", "domain": "new.example.com", "status": "active", "timezone": "UTC",
		"isolation": "schema", "settings": []any{map[string]any{"key": "moh", "value": "jazz"}, "x"},
	}
	ext := map[string]any{"number": "1002", "name": "Bob", "password": "correct horse", "outbound_caller_id": "+15551230000"}
	queue := map[string]any{"name": "Sales", "extension": "600", "strategy": "ring-all"}
	did := map[string]any{"number": "+15550001111", "target_type": "extension", "target_id": 1, "description": "main"}
	contact := map[string]any{
		"name": "Ada", "company": "Engines", "email": "ada@example.com", "notes": "n",
		"phones": []any{map[string]any{"number": "+15550002222", "label": "work"}},
		"emails": []any{map[string]any{"email": "ada2@example.com", "label": "home"}}, "tags": []any{"vip"},
	}
	rate := map[string]any{
		"prefix": "33", "rate_per_minute": "0.01", "connect_fee": "0", "min_seconds": 1, "increment_seconds": 1,
		"effective_from": "2025-01-01T00:00:00Z", "effective_to": "2026-01-01T00:00:00Z",
	}
	cdr := call(2, "+33123456789", "2025-11-03")
	cdrBatch := map[string]any{"cdrs": []any{call(3, "+33123456789", "2025-11-03"), call(4, "+33123456789", "2025-11-03")}}

	type route struct {
		method, host, path string
		body               map[string]any
		fields             []string // where bad goes, by path as the answer names it
	}
	routes := []route{
		{"POST", "", "/api/tenants", tenant, []string{"name", "slug", "domain", "status", "timezone", "isolation", "settings[0].value", "settings[1]"}},
		{"PUT", "", "/api/tenants/1", tenant, []string{"name", "slug", "domain", "status", "timezone", "isolation", "settings[0].value", "settings[1]"}},
		{"PATCH", "", "/api/tenants/1", map[string]any{"name": "x", "settings": []any{"x"}}, []string{"name", "settings[0]"}},
		{"POST", "", "/api/tenants/1/keys", map[string]any{"name": "crm"}, []string{"name"}},
		{"POST", acme, "/api/extensions", ext, []string{"number", "name", "password", "outbound_caller_id"}},
		{"PUT", acme, "/api/extensions/1", ext, []string{"number", "name", "password", "outbound_caller_id"}},
		{"PATCH", acme, "/api/extensions/1", ext, []string{"number", "name", "password", "outbound_caller_id"}},
		{"POST", acme, "/api/queues", queue, []string{"name", "extension", "strategy"}},
		{"PUT", acme, "/api/queues/1", queue, []string{"name", "extension", "strategy"}},
		{"PATCH", acme, "/api/queues/1", queue, []string{"name", "extension", "strategy"}},
		{"POST", acme, "/api/dids", did, []string{"number", "target_type", "description"}},
		{"PUT", acme, "/api/dids/1", did, []string{"number", "target_type", "description"}},
		{"PATCH", acme, "/api/dids/1", map[string]any{"description": "x"}, []string{"description"}},
		{"POST", acme, "/api/contacts", contact, []string{"name", "company", "email", "notes", "phones[0].number", "phones[0].label", "emails[0].email", "emails[0].label", "tags[0]"}},
		{"PUT", acme, "/api/contacts/1", contact, []string{"name", "company", "email", "notes", "phones[0].number", "phones[0].label", "emails[0].email", "emails[0].label", "tags[0]"}},
		{"PATCH", acme, "/api/contacts/1", contact, []string{"name", "company", "email", "notes", "phones[0].label", "tags[0]"}},
		{"POST", acme, "/api/rates", rate, []string{"prefix", "rate_per_minute", "connect_fee", "effective_from", "effective_to"}},
		{"PUT", acme, "/api/rates/1", rate, []string{"prefix", "rate_per_minute", "effective_from", "effective_to"}},
		{"PATCH", acme, "/api/rates/1", rate, []string{"prefix", "effective_from", "effective_to"}},
		{"POST", acme, "/api/cdrs", cdr, []string{"uuid", "direction", "src", "dst", "start_at", "answer_at", "end_at", "disposition"}},
		// A batch in the shape switches send takes the fast path (sonic);
		// the answer is the same as on the strict path.
		{"POST", acme, "/api/cdrs", cdrBatch, []string{"cdrs[1].uuid", "cdrs[0].src", "cdrs[1].dst", "cdrs[1].disposition", "cdrs[0].start_at"}},
	}
	for _, r := range routes {
		for _, field := range r.fields {
			body := withBad(t, r.body, field)
			for _, bt := range badText {
				raw := bytes.ReplaceAll(body, []byte(bad), []byte(bt.json))
				status, got := b.raw(r.method, r.host, r.path, "application/json", raw)
				name := fmt.Sprintf("%s %s %s with %s", r.method, r.path, field, bt.name)
				require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %v", name, got)
				require.Equal(t, "invalid", errCode(got), name)
				require.Equal(t, map[string]any{field: bt.reason}, fields(got), name)
			}
		}
	}

	// The CSV import, cell by cell.
	header := "prefix,rate_per_minute,connect_fee,min_seconds,increment_seconds,effective_from,effective_to\n"
	row := strings.Split("34,0.01,0,1,1,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z", ",")
	for i, col := range strings.Split(strings.TrimSpace(header), ",") {
		for _, bt := range []struct{ text, reason string }{{"a\x00b", controlplane.ReasonNUL}, {"a\xffb", controlplane.ReasonUTF8}} {
			cells := append([]string(nil), row...)
			cells[i] = bt.text
			status, got := b.raw("POST", acme, "/api/rates/import", "text/csv", []byte(header+strings.Join(cells, ",")+"\n"))
			require.Equal(t, http.StatusUnprocessableEntity, status, "%s %q: %v", col, bt.text, got)
			require.Equal(t, map[string]any{"row 2: " + col: bt.reason}, fields(got), "%s %q", col, bt.text)
		}
	}

	// Query parameters: filters and search terms reach the database.
	queries := []struct{ host, path, param string }{
		{"", "/api/tenants", "q"}, {"", "/api/tenants", "status"}, {"", "/api/audit", "tenant"},
		{acme, "/api/contacts", "q"}, {acme, "/api/contacts", "phone"}, {acme, "/api/rates", "prefix"},
		{acme, "/api/cdrs", "src"}, {acme, "/api/cdrs", "dst"}, {acme, "/api/cdrs", "direction"}, {acme, "/api/cdrs", "disposition"},
		{acme, "/api/cdrs", "cursor"}, {acme, "/api/cdrs", "from"}, {acme, "/api/cdrs", "to"},
		{acme, "/api/reports/calls", "group"}, {acme, "/api/reports/calls", "from"}, {acme, "/api/extensions", "limit"},
	}
	for _, q := range queries {
		for _, bt := range []struct{ text, reason string }{{"a%00b", controlplane.ReasonNUL}, {"a%FFb", controlplane.ReasonUTF8}, {"%ED%A0%80", controlplane.ReasonUTF8}} {
			target := q.path + "?" + q.param + "=" + bt.text
			status, _, got := b.req("GET", q.host, target, nil)
			require.Equal(t, http.StatusUnprocessableEntity, status, "%s: %v", target, got)
			require.Equal(t, map[string]any{q.param: bt.reason}, fields(got), target)
		}
	}
	status, _, got := b.req("POST", acme, "/api/cdrs/rerate?from=2025-01-01&to=%00", nil)
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", got)
	require.Equal(t, map[string]any{"to": controlplane.ReasonNUL}, fields(got))

	// Path parameters: 400, as any malformed id in the path.
	for target, field := range map[string]string{
		"/api/cdrs/a%00b": "id", "/api/cdrs/%FF": "id", "/api/dids/%2B1555%00": "key", "/t/acme-corp%00/api/extensions": "slug",
		"/t/%FF/api/extensions": "slug", "/api/tenants/1%00": "id",
	} {
		status, _, got := b.req("GET", "", target, nil)
		require.Equal(t, http.StatusBadRequest, status, "%s: %v", target, got)
		require.Equal(t, "bad_request", errCode(got), target)
		require.Contains(t, fields(got), field, target)
	}

	// None of it reached a database.
	require.Equal(t, before, b.everything())
}

// withBad returns body as JSON with bad in place of the string at path
// (name, settings[0].value, cdrs[1].src).
func withBad(t *testing.T, body map[string]any, path string) []byte {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	var doc any
	require.NoError(t, json.Unmarshal(raw, &doc))
	parts := strings.FieldsFunc(path, func(r rune) bool { return r == '.' || r == '[' })
	out, err := json.Marshal(setAt(t, doc, parts))
	require.NoError(t, err)
	return out
}

func setAt(t *testing.T, v any, path []string) any {
	if len(path) == 0 {
		return bad
	}
	if idx, ok := strings.CutSuffix(path[0], "]"); ok {
		var i int
		_, err := fmt.Sscan(idx, &i)
		require.NoError(t, err)
		list := v.([]any)
		list[i] = setAt(t, list[i], path[1:])
		return list
	}
	obj := v.(map[string]any)
	require.Contains(t, obj, path[0])
	obj[path[0]] = setAt(t, obj[path[0]], path[1:])
	return obj
}

// everything reads every resource of the operator API and of acme's, for
// comparing before and after.
func (b *bundle) everything() map[string]any {
	b.t.Helper()
	out := map[string]any{}
	for _, r := range []struct{ host, path string }{
		{"", "/api/tenants"}, {"", "/api/tenants/1/keys"}, {"", "/api/audit"},
		{acme, "/api/extensions"}, {acme, "/api/queues"}, {acme, "/api/queues/1/members"}, {acme, "/api/contacts"},
		{acme, "/api/dids"}, {acme, "/api/rates"}, {acme, "/api/cdrs"},
	} {
		status, _, got := b.req("GET", r.host, r.path, nil)
		require.Equal(b.t, http.StatusOK, status, "%s: %v", r.path, got)
		out[r.host+r.path] = got
	}
	return out
}

// TestHostHygiene: a host that is not a host name gets the JSON 400 of any
// malformed request, wherever net/http lets it reach the handler (the host
// of an absolute request URI; X-Forwarded-Host from a trusted proxy). What
// net/http refuses itself keeps its plain-text 400: pinned here, as
// docs/API.md describes it.
func TestHostHygiene(t *testing.T) {
	t.Parallel()
	b := setup(t, controlplane.IsolationSchema, "TRUSTED_PROXIES=127.0.0.1/32,::1/128")
	b.create(seed())
	for _, tc := range []struct {
		name, request string
		status        int
		field         string // "": net/http's plain-text answer
	}{
		{"absolute URI with a byte over 0x7f", "GET http://acme\xff.example.com/api/extensions HTTP/1.1\r\nHost: acme.example.com\r\n", 400, "Host"},
		{"absolute URI, percent-encoded UTF-8", "GET http://acme%C3%A9.example.com/api/extensions HTTP/1.1\r\nHost: acme.example.com\r\n", 400, "Host"},
		{"absolute URI on the health check", "GET http://\xc3\xa9.example.com/healthz HTTP/1.1\r\nHost: localhost\r\n", 400, "Host"},
		{"forwarded host with a byte over 0x7f", "GET /api/extensions HTTP/1.1\r\nHost: acme.example.com\r\nX-Forwarded-Host: acme.example.com\xff\r\n", 400, "X-Forwarded-Host"},
		{"forwarded host with a path", "GET /api/extensions HTTP/1.1\r\nHost: acme.example.com\r\nX-Forwarded-Host: acme.example.com/x\r\n", 400, "X-Forwarded-Host"},
		{"forwarded host with a space", "GET /api/tenants HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: local host, localhost\r\n", 400, "X-Forwarded-Host"},
		{"forwarded host, fine", "GET /api/extensions HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: ACME.example.com.:443, x\r\n", 200, ""},
		{"absolute URI, fine", "GET http://acme.example.com/api/extensions HTTP/1.1\r\nHost: localhost\r\n", 200, ""},
		// Refused by net/http before any handler runs.
		{"Host with a byte over 0x7f", "GET /api/extensions HTTP/1.1\r\nHost: acme\xff.example.com\r\n", 400, ""},
		{"Host with a control character", "GET /api/extensions HTTP/1.1\r\nHost: acme\x01.example.com\r\n", 400, ""},
		{"Host with a space", "GET /api/extensions HTTP/1.1\r\nHost: acme example.com\r\n", 400, ""},
		{"forwarded host with a control character", "GET /api/extensions HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-Host: acme\x00.example.com\r\n", 400, ""},
		{"absolute URI with a control character", "GET http://acme\x01.example.com/ HTTP/1.1\r\nHost: localhost\r\n", 400, ""},
		{"absolute URI with a NUL, percent-encoded", "GET http://acme%00.example.com/ HTTP/1.1\r\nHost: localhost\r\n", 400, ""},
	} {
		resp, body := rawHTTP(t, b.srv.Listener.Addr().String(), tc.request+"Connection: close\r\n\r\n")
		require.Equal(t, tc.status, resp.StatusCode, "%s: %s", tc.name, body)
		if tc.status == http.StatusOK {
			continue
		}
		if tc.field == "" {
			require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), "%s: %s", tc.name, body)
			continue
		}
		require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"), tc.name)
		var got map[string]any
		require.NoError(t, json.Unmarshal(body, &got), "%s: %s", tc.name, body)
		require.Equal(t, "bad_request", errCode(got), tc.name)
		require.Contains(t, fields(got), tc.field, tc.name)
	}
}

// rawHTTP sends request as written, bytes a client library would refuse
// to send included, and reads the answer.
func rawHTTP(t *testing.T, addr, request string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}
