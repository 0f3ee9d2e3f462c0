package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// TestThroughPgBouncer: serve with TENANT_POOLER_URL, in front of the
// tenant server a PgBouncer in transaction mode (make test's). Tenants of
// both modes are created (provisioning and migrations go direct: through the
// pooler a database tenant could not even be created), and their extensions
// written and read over the HTTP API, concurrently, through the pooler: each
// tenant sees exactly its own, and the pooler's pools show who connected.
func TestThroughPgBouncer(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	b := setupOn(t, db, controlplane.IsolationDatabase, "TENANT_POOLER_URL="+pgtest.PoolerURL(t, db.Name))
	acme := b.create(seed()) // database mode, the default
	beta := b.create(map[string]any{"name": "Beta", "slug": "beta", "domain": "beta.example.org", "isolation": "schema", "max_extensions": 50})
	require.Equal(t, "database", acme["isolation"])
	require.Equal(t, "schema", beta["isolation"])

	hosts := map[string]string{"acme": "acme.example.com", "beta": "beta.example.org"}
	var wg sync.WaitGroup
	for name, host := range hosts {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5 {
					number := fmt.Sprintf("2%d%02d", w, i) // the same numbers in both tenants
					status, _, got := b.req("POST", host, "/api/extensions", map[string]any{"number": number, "name": name + " " + number})
					if !assert.Equal(t, http.StatusCreated, status, "%s: %v", host, got) {
						return
					}
					assert.Equal(t, name+" "+number, got["name"])
					status, _, got = b.req("GET", host, "/api/extensions?limit=100", nil)
					if assert.Equal(t, http.StatusOK, status, "%s: %v", host, got) {
						for _, e := range got["data"].([]any) {
							assert.Regexp(t, "^"+name+" ", e.(map[string]any)["name"], "%s read another tenant's extension", host)
						}
					}
				}
			}()
		}
	}
	wg.Wait()

	for name, host := range hosts {
		status, _, got := b.req("GET", host, "/api/extensions?limit=100", nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Len(t, numbers(got), 20, host)
		require.EqualValues(t, 20, got["total"])

		// A write in a transaction (the update locks the row), then a read.
		id := got["data"].([]any)[0].(map[string]any)["id"]
		path := fmt.Sprintf("/api/extensions/%v", id)
		status, _, got = b.req("PATCH", host, path, map[string]any{"name": name + " renamed"})
		require.Equal(t, http.StatusOK, status, "%v", got)
		status, _, got = b.req("GET", host, path, nil)
		require.Equal(t, http.StatusOK, status, "%v", got)
		require.Equal(t, name+" renamed", got["name"])
		status, _, _ = b.req("DELETE", host, path, nil)
		require.Equal(t, http.StatusNoContent, status)
		status, _, got = b.req("GET", host, "/api/extensions?limit=100", nil)
		require.Equal(t, http.StatusOK, status)
		require.EqualValues(t, 19, got["total"])
	}

	// The router's connections are the pooler's clients: the database
	// tenant's as its own role into its own database, the schema tenant's
	// lane as the control plane's role into the catalog's database.
	acmeDB := acme["db_name"].(string)
	pools := pgtest.PoolerPools(t)
	require.True(t, slices.ContainsFunc(pools, func(p pgtest.PoolerPool) bool {
		return p.Database == acmeDB && p.User == acmeDB && p.Clients > 0
	}), "no client of %s as its role in the pooler: %+v", acmeDB, pools)
	require.True(t, slices.ContainsFunc(pools, func(p pgtest.PoolerPool) bool {
		return p.Database == db.Name && p.User == "postgres" && p.Clients > 0
	}), "no schema lane in the pooler: %+v", pools)
}

// TestPoolerElsewhereStopsServe: a TENANT_POOLER_URL leading to another
// database than TENANT_DATABASE_URL (schema tenants would all be refused)
// stops serve at start with a configuration error naming the variable.
func TestPoolerElsewhereStopsServe(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg, err := config.Load([]string{"DATABASE_URL=" + db.URL, "TENANT_DB_PREFIX=" + db.Prefix, "TENANT_SPARE_DATABASES=0",
		"TENANT_POOLER_URL=" + pgtest.PoolerURL(t, "postgres")}, nil)
	require.NoError(t, err)
	app, err := newApp(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		app.Close()
	}
	require.ErrorAs(t, err, new(configError))
	require.ErrorContains(t, err, `config: TENANT_POOLER_URL: the pooler leads to database "postgres"`)
}
