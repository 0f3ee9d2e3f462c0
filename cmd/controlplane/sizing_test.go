package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/config"
	"github.com/laracopilot/controlplane/tenantdb"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// With neither TENANT_SERVER_MAX_CONNS nor TENANT_POOLS_MAX set, serve
// takes its budget from the tenant server and keeps as many pools as fit
// one warm connection each, and says so once in its log; a budget set
// beyond what the server leaves is kept, with a warning naming the numbers.
func TestRouterSizesFromTheServer(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	load := func(env ...string) (config.Config, *bytes.Buffer, *slog.Logger) {
		cfg, err := config.Load(append([]string{"DATABASE_URL=" + db.URL, "TENANT_DB_PREFIX=" + db.Prefix}, env...), nil)
		require.NoError(t, err)
		var logs bytes.Buffer
		return cfg, &logs, slog.New(slog.NewJSONHandler(&logs, nil))
	}

	cfg, logs, log := load()
	sz, err := tenantdb.SizeFromServer(ctx, db.URL, true, 20)
	require.NoError(t, err)
	budget, pools := routerSizes(ctx, cfg, log)
	require.InDelta(t, sz.Budget, budget, 10, "other tests open and close connections meanwhile")
	require.Equal(t, budget-cfg.TenantSchemaPoolConns, pools, "every pool keeps a warm connection within the budget")
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.Split(strings.TrimSpace(logs.String()), "\n")[0]), &line))
	require.Equal(t, "tenant connection budget", line["msg"])
	require.Equal(t, true, line["derived"])
	require.EqualValues(t, sz.MaxConnections, line["max_connections"])

	cfg, logs, log = load("TENANT_SERVER_MAX_CONNS=100000")
	budget, _ = routerSizes(ctx, cfg, log)
	require.Equal(t, 100000, budget, "a setting wins")
	require.Contains(t, logs.String(), "TENANT_SERVER_MAX_CONNS is more than the tenant server leaves")
	require.Contains(t, logs.String(), `"max_connections":`)
}
