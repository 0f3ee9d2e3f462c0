package docs_test

import (
	"context"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/docs"
)

// TestOpenAPIValid loads the contract as kin-openapi reads OpenAPI 3.1 and
// validates it (refs resolve, schemas are well formed, examples and
// defaults fit their schemas), and checks that the JSON served at
// /openapi.json is the same document.
func TestOpenAPIValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(docs.OpenAPIYAML)
	require.NoError(t, err)
	require.True(t, doc.IsOpenAPI31OrLater(), "the contract is OpenAPI 3.1")
	require.NoError(t, doc.Validate(context.Background()))

	js, err := docs.OpenAPIJSON()
	require.NoError(t, err)
	fromJSON, err := openapi3.NewLoader().LoadFromData(js)
	require.NoError(t, err)
	require.Equal(t, len(doc.Paths.Map()), len(fromJSON.Paths.Map()))
	require.Equal(t, doc.Components.Schemas["Tenant"].Value.AllOf[0].Ref, fromJSON.Components.Schemas["Tenant"].Value.AllOf[0].Ref)
}
