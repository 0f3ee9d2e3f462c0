package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/laracopilot/controlplane/docs"
)

// Every response the end-to-end tests receive from a bundle's server is
// checked against docs/openapi.yaml, the contract: a validating
// RoundTripper sits in http.DefaultClient (which b.do, b.req, get,
// http.Get and http.Post all use), and each test server registers the test
// that owns it, which fails at its end with every response that broke the
// contract. So the whole suite of end-to-end tests doubles as the proof
// that the code answers what the spec says, without a test of its own per
// route.
//
// The validator is kin-openapi v0.153 (openapi3filter.ValidateResponse),
// whose OpenAPI 3.1 support is enough here: it loads 3.1 documents, and for
// a 3.1 document ValidateResponse validates as JSON Schema 2020-12 through
// santhosh-tekuri/jsonschema (unevaluatedProperties, type arrays such as
// [string, "null"]). For a schema without 2020-12 keywords it falls back to
// its own validator, which also reads type arrays, additionalProperties and
// oneOf, but takes the empty schema {} as not nullable: the spec spells
// "any value" out (AnyValue). TestContractValidatorCatches shows it
// rejecting what it must on both paths. pb33f/libopenapi-validator would do
// too; kin is also what oapi-codegen reads the spec with, so one library
// reads it for both.

// loadedContract is docs/openapi.yaml and a router over its operations.
type loadedContract struct {
	doc    *openapi3.T
	router routers.Router
}

// contract is docs/openapi.yaml, loaded and routed once for the package.
var contract = sync.OnceValues(func() (*loadedContract, error) {
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	// The servers the spec names are examples (make run's address); the
	// tests' servers listen elsewhere, so routes are found by path alone.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	return &loadedContract{doc: doc, router: router}, err
})

// contractTestServers maps a test server's address to the test that owns it.
var contractTestServers sync.Map // host:port → *contractRecord

type contractRecord struct {
	mu         sync.Mutex
	violations []string
	// seen counts the responses checked per request shape (method, path
	// with its numbers as {n}, status): see contractSamples.
	seen map[string]int
}

// contractSamples is how many responses of one shape a test server's
// responses are checked for. Validating one costs about 2 ms, and the
// load the move, outage and rate-limit tests send repeats the same few
// requests thousands of times (14,408 responses in a run of this package,
// 32 s of validation): the first ones of each shape carry what the rest
// would, and every shape any test produces is still checked.
const contractSamples = 20

var numberSegment = regexp.MustCompile(`/[0-9]+\b`)

// sample says whether resp to req is one of the first contractSamples of
// its shape on this server.
func (r *contractRecord) sample(req *http.Request, status int) bool {
	shape := req.Method + " " + numberSegment.ReplaceAllString(req.URL.Path, "/{n}") + " " + strconv.Itoa(status)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[shape]++
	return r.seen[shape] <= contractSamples
}

func init() {
	http.DefaultClient.Transport = contractTransport{next: http.DefaultTransport}
}

// serveChecked is httptest.NewServer(h) whose responses to requests made
// through http.DefaultClient are checked against the contract for as long
// as t runs; t fails at its end naming each violation.
func serveChecked(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	rec := &contractRecord{}
	addr := srv.Listener.Addr().String()
	contractTestServers.Store(addr, rec)
	t.Cleanup(func() {
		srv.Close()
		contractTestServers.Delete(addr)
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, v := range rec.violations {
			t.Errorf("response breaks docs/openapi.yaml: %s", v)
		}
	})
	return srv
}

type contractTransport struct{ next http.RoundTripper }

func (c contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	v, ok := contractTestServers.Load(req.URL.Host)
	if !ok {
		return resp, nil // not one of the bundles' servers
	}
	rec := v.(*contractRecord)
	if !rec.sample(req, resp.StatusCode) {
		return resp, nil
	}
	if problem := checkContract(req, resp); problem != "" {
		rec.mu.Lock()
		rec.violations = append(rec.violations, fmt.Sprintf("%s %s → %d: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, problem))
		rec.mu.Unlock()
	}
	return resp, nil
}

// checkContract says how resp breaks the contract for req, "" if it does
// not. A JSON body is read whole and put back for the caller.
func checkContract(req *http.Request, resp *http.Response) string {
	c, err := contract()
	if err != nil {
		return "the spec does not load: " + err.Error()
	}
	// The spec's paths are the /api/... forms; /t/{slug}/api/... is the
	// same route (stripSlug).
	path := req.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(path, "/t/"); ok {
		_, tail, _ := strings.Cut(rest, "/")
		path = "/" + tail
	}
	if path == "/console" || strings.HasPrefix(path, "/console/") {
		// The fleet console's HTML pages and forms (docs/CONSOLE.md), not
		// API operations: its own tests check what they answer.
		return ""
	}
	lookup := req.Clone(context.Background())
	lookup.URL.RawPath = path
	if lookup.URL.Path, err = url.PathUnescape(path); err != nil {
		return "" // a malformed path the test sent on purpose; the server's answer is its business
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	isJSON := mediaType == "application/json"
	var body []byte
	if isJSON {
		body, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return "" // the caller sees the read fail as it would have
		}
	}

	route, params, err := c.router.FindRoute(lookup)
	if err != nil {
		// No route in the spec (an unknown path, a method the path does
		// not have): the answer must be the error object, 404 or 405,
		// since the spec routes no such request.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusBadRequest {
			return fmt.Sprintf("no operation in the spec for this request (%v), yet it was answered %d", err, resp.StatusCode)
		}
		if !isJSON {
			return "an error without the JSON error object (Content-Type " + resp.Header.Get("Content-Type") + ")"
		}
		errSchema := c.doc.Components.Schemas["Error"].Value
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return "error body is not JSON: " + err.Error()
		}
		if err := errSchema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			return "error body is not the Error object: " + err.Error() + "; body: " + clip(body)
		}
		return ""
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: lookup, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if isJSON || resp.ContentLength == 0 || mediaType == "" {
		in.Body = io.NopCloser(bytes.NewReader(body))
	} else {
		// Not JSON (the metrics' text, a backup's archive): the status,
		// headers and media type are checked; the body is the caller's to
		// read, unbuffered.
		in.Options.ExcludeResponseBody = true
		if problem := checkMediaType(route, resp.StatusCode, resp.Header.Get("Content-Type")); problem != "" {
			return problem
		}
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return err.Error() + "; body: " + clip(body)
	}
	return ""
}

// checkMediaType: the operation's response for status declares content of
// the response's media type.
func checkMediaType(route *routers.Route, status int, contentType string) string {
	ref := route.Operation.Responses.Status(status)
	if ref == nil {
		ref = route.Operation.Responses.Default()
	}
	if ref == nil {
		return fmt.Sprintf("status %d is not in the spec", status)
	}
	if ref.Value.Content.Get(contentType) == nil {
		return fmt.Sprintf("the spec has no content %q for status %d", contentType, status)
	}
	return ""
}

// clip is a body short enough for a failure message.
func clip(body []byte) string {
	const max = 600
	if len(body) > max {
		return string(body[:max]) + "…"
	}
	return string(body)
}

// TestContractValidatorCatches shows the check above is not vacuous: the
// validator rejects what breaks the spec (an unknown field, a null where
// none is allowed, a missing field, a missing Retry-After, a 2xx nowhere
// in the spec) and takes what keeps it, for /t/{slug} paths too.
func TestContractValidatorCatches(t *testing.T) {
	tenant := `{"id":1,"name":"Acme","slug":"acme","domain":"acme.example.com","status":"active","timezone":"UTC",
		"max_extensions":100,"settings":[],"isolation":"schema","server":"default","db_name":"tenant_1","provisioning":"ready",
		"schema_version":3,"schema_dirty":false,"migrated_at":null,"migration_error":"","last_error":"",
		"created_at":"2026-11-30T00:00:00Z","updated_at":"2026-11-30T00:00:00.123456Z","deleted_at":null}`
	answer := func(method, path string, status int, body string, header ...string) string {
		req := httptest.NewRequest(method, "http://127.0.0.1:1"+path, nil)
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return checkContract(req, &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))})
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		header             []string
		ok                 bool
	}{
		{"a tenant", "GET", "/api/tenants/1", 200, tenant, nil, true},
		{"an unknown field", "GET", "/api/tenants/1", 200, strings.Replace(tenant, `"id":1,`, `"id":1,"secret":"x",`, 1), nil, false},
		{"a wrong type", "GET", "/api/tenants/1", 200, strings.Replace(tenant, `"deleted_at":null`, `"deleted_at":5`, 1), nil, false},
		{"a missing field", "GET", "/api/tenants/1", 200, strings.Replace(tenant, `"slug":"acme",`, ``, 1), nil, false},
		{"a bad enum", "GET", "/api/tenants/1", 200, strings.Replace(tenant, `"active"`, `"paused"`, 1), nil, false},
		{"an undocumented success", "GET", "/api/tenants/1", 203, tenant, nil, false},
		{"an error", "GET", "/api/tenants/1", 404, `{"error":{"code":"not_found","message":"tenant 1 not found"}}`, nil, true},
		{"an unknown code", "GET", "/api/tenants/1", 404, `{"error":{"code":"gone","message":"x"}}`, nil, false},
		{"503 without Retry-After", "GET", "/api/tenants/1", 503, `{"error":{"code":"unavailable","message":"x"}}`, nil, false},
		{"503 with Retry-After", "GET", "/api/tenants/1", 503, `{"error":{"code":"unavailable","message":"x"}}`, []string{"Retry-After", "5"}, true},
		{"any settings", "GET", "/api/tenants/1", 200, strings.Replace(tenant, `"settings":[]`, `"settings":[null,1,"x",{"a":[null]},[true]]`, 1), nil, true},
		{"an audit change from null", "GET", "/api/audit", 200, `{"data":[{"id":1,"at":"2026-11-30T00:00:00Z","actor":"operator","action":"key.create","tenant_id":1,"target":"key 1","diff":{"name":{"before":null,"after":"initial"}}}],"total":1,"limit":50,"offset":0}`, nil, true},
		{"an unknown field in a list's item", "GET", "/api/audit", 200, `{"data":[{"id":1,"at":"2026-11-30T00:00:00Z","actor":"operator","action":"key.create","tenant_id":null,"target":"key 1","diff":null,"extra":1}],"total":1,"limit":50,"offset":0}`, nil, false},
		{"a tenant path under /t/{slug}", "GET", "/t/acme/api/extensions", 200, `{"data":[],"total":0,"limit":50,"offset":0}`, nil, true},
		{"a wrong page under /t/{slug}", "GET", "/t/acme/api/extensions", 200, `{"data":[]}`, nil, false},
		{"no route, the error", "GET", "/nowhere", 404, `{"error":{"code":"not_found","message":"no route"}}`, nil, true},
		{"no route, yet 200", "GET", "/nowhere", 200, `{}`, nil, false},
	} {
		problem := answer(tc.method, tc.path, tc.status, tc.body, tc.header...)
		if tc.ok && problem != "" {
			t.Errorf("%s: refused: %s", tc.name, problem)
		}
		if !tc.ok && problem == "" {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
