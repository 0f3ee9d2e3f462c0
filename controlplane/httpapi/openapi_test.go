package httpapi

import (
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/docs"
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML)
	require.NoError(t, err)
	return doc
}

// pathParam matches a path parameter in either notation: gin's :id and
// *rest, OpenAPI's {id}. Parameters are compared by place, not by name:
// OpenAPI counts /api/dids/{key} and /api/dids/{id} as one path, and gin
// names GET's parameter key (a number or an id) but PUT's id.
var pathParam = regexp.MustCompile(`:[^/]+|\*[^/]+|\{[^}/]+\}`)

func routeKey(method, path string) string {
	return method + " " + pathParam.ReplaceAllString(path, "{}")
}

// TestRoutesMatchOpenAPI holds the router to docs/openapi.yaml both ways:
// every route gin registers is an operation of the spec, and every
// operation of the spec is routed. No exception: the spec lists /metrics
// (on the router unless METRICS_ADDR takes it elsewhere, which the
// description says) and /openapi.json too. The /t/{slug} form of tenant
// paths is not a gin route (stripSlug serves it), so it is not listed
// either: the spec's description says every tenant path has it.
func TestRoutesMatchOpenAPI(t *testing.T) {
	doc := loadSpec(t)
	var inSpec []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec = append(inSpec, routeKey(method, path))
		}
	}
	var routed []string
	// With the console mounted, as serve mounts it: its pages are HTML for
	// a browser (docs/CONSOLE.md), not API operations, and are the one
	// part of the router the spec leaves out.
	for _, r := range (&Server{Console: http.NotFoundHandler()}).engine().Routes() {
		if r.Path == "/console" || strings.HasPrefix(r.Path, "/console/") {
			continue
		}
		routed = append(routed, routeKey(r.Method, r.Path))
	}
	sort.Strings(inSpec)
	sort.Strings(routed)
	require.Equal(t, len(slices.Compact(slices.Clone(inSpec))), len(inSpec), "an operation is in the spec twice (paths equal but for parameter names)")
	for _, r := range routed {
		if !slices.Contains(inSpec, r) {
			t.Errorf("gin routes %s, docs/openapi.yaml does not describe it", r)
		}
	}
	for _, o := range inSpec {
		if !slices.Contains(routed, o) {
			t.Errorf("docs/openapi.yaml describes %s, gin does not route it", o)
		}
	}
	require.Greater(t, len(routed), 50, "the router was built")
}

// TestErrorCodesMatchOpenAPI: the spec's ErrorCode enum is exactly the
// codes the server renders: statusOf's, and the router's
// method_not_allowed.
func TestErrorCodesMatchOpenAPI(t *testing.T) {
	doc := loadSpec(t)
	var spec []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		spec = append(spec, v.(string))
	}
	codes := []string{"method_not_allowed"}
	for c := range statusOf {
		codes = append(codes, string(c))
	}
	require.ElementsMatch(t, codes, spec)
}
