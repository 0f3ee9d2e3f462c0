// Package docs holds the API's contract, docs/openapi.yaml, embedded in the
// binary so that the server can publish the very file the tests check the
// code against (GET /openapi.json).
package docs

import (
	_ "embed"
	"sync"

	"sigs.k8s.io/yaml"
)

// OpenAPIYAML is docs/openapi.yaml as written: hand-maintained, the
// contract (code-first generation would make the code its own contract).
//
//go:embed openapi.yaml
var OpenAPIYAML []byte

// OpenAPIJSON is OpenAPIYAML converted to JSON, once: clients and tools
// read JSON more readily than YAML, and the conversion is the same for
// every request.
var OpenAPIJSON = sync.OnceValues(func() ([]byte, error) {
	return yaml.YAMLToJSON(OpenAPIYAML)
})
