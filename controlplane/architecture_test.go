package controlplane_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPackageBoundaries keeps the layout docs/ARCHITECTURE.md describes:
// the domain knows neither HTTP nor SQL, a tenant's data knows nothing of
// HTTP or of the catalog, the HTTP layer reaches tenant data only through
// the router's handle, and only the wiring (cmd/) puts the pieces
// together. It reads the imports with go list, so it needs no database.
func TestPackageBoundaries(t *testing.T) {
	const mod = "github.com/laracopilot/controlplane"
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..")
	out, err := cmd.Output()
	require.NoError(t, err, "go list")
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		imports[strings.TrimPrefix(f[0], mod+"/")] = f[1:]
	}
	require.Contains(t, imports, "controlplane")

	ours := func(imp string) (string, bool) { return strings.CutPrefix(imp, mod+"/") }
	sql := []string{"gorm.io/", "github.com/jackc/pgx", "github.com/golang-migrate/", "github.com/lib/pq", "database/sql"}
	has := func(imp string, prefixes ...string) bool {
		for _, p := range prefixes {
			if imp == strings.TrimSuffix(p, "/") || strings.HasPrefix(imp, p) {
				return true
			}
		}
		return false
	}
	for pkg, imps := range imports {
		for _, imp := range imps {
			dep, internal := ours(imp)
			switch {
			case pkg == "controlplane" && internal:
				t.Errorf("the domain (controlplane) imports %s: it must import no package of this module", dep)
			case pkg == "controlplane" && has(imp, append(sql, "github.com/gin-gonic/")...):
				t.Errorf("the domain (controlplane) imports %s: neither HTTP nor SQL belongs there", imp)
			case (pkg == "config" || pkg == "migrations" || pkg == "docs") && internal:
				t.Errorf("%s imports %s: it must import no package of this module", pkg, dep)
			case strings.HasPrefix(pkg, "tenantdb") && (has(imp, "github.com/gin-gonic/") || dep == "controlplane/httpapi" || dep == "controlplane/catalog"):
				t.Errorf("%s imports %s: a tenant's data knows nothing of HTTP or of the catalog", pkg, imp)
			case slices.Contains([]string{"tenantdb/extensions", "tenantdb/dids", "tenantdb/queues", "tenantdb/rates", "tenantdb/cdrs", "tenantdb/contacts"}, pkg) && dep == "tenantdb":
				t.Errorf("%s imports tenantdb: a resource uses tenantdb/query, not the provisioning of tenants", pkg)
			case pkg == "controlplane/httpapi" && (dep == "tenantdb" || dep == "tenantdb/router" || dep == "tenantdb/servers" || has(imp, "github.com/jackc/pgx", "database/sql", "github.com/lib/pq")):
				t.Errorf("controlplane/httpapi imports %s: it reaches a tenant's data only through the router's handle (DBRouter)", imp)
			case pkg == "controlplane/console" && (dep == "tenantdb" || strings.HasPrefix(dep, "tenantdb/") || has(imp, sql...)):
				t.Errorf("controlplane/console imports %s: the console reads and acts through the domain services, as the API does, with no SQL of its own", imp)
			case (dep == "tenantdb/servers" || dep == "controlplane/catalog") && !strings.HasPrefix(pkg, "cmd/") && !strings.HasPrefix(pkg, "bench"):
				t.Errorf("%s imports %s: only the wiring (cmd/controlplane) does", pkg, dep)
			case dep == "cmd/controlplane/internal/apiclient":
				t.Errorf("%s imports %s: the generated client is for the tests only", pkg, dep)
			case pkg == "cmd/controlplane/internal/apiclient" && internal:
				t.Errorf("the generated client imports %s: it is made from docs/openapi.yaml alone", dep)
			case (dep == "bench" || strings.HasPrefix(dep, "bench/") || dep == "tenantdb/pgtest" || dep == "tenantdb/tenanttest") &&
				!strings.HasPrefix(pkg, "bench") && !strings.HasPrefix(pkg, "tenantdb/pgtest") && !strings.HasPrefix(pkg, "tenantdb/tenanttest"):
				t.Errorf("%s imports %s, which only tests and the benchmarks may", pkg, dep)
			}
		}
	}
}
