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
	budget, pools := routerSizes(ctx, cfg, log, cfg.TenantDatabaseURL.Value(), false)
	require.Equal(t, 4*budget, pools, "pools beyond the budget keep no connection, only their few KB")
	var line map[string]float64
	var msg struct {
		Msg     string `json:"msg"`
		Derived bool   `json:"derived"`
	}
	first := []byte(strings.Split(strings.TrimSpace(logs.String()), "\n")[0])
	require.NoError(t, json.Unmarshal(first, &msg))
	require.Equal(t, "tenant connection budget", msg.Msg)
	require.True(t, msg.Derived)
	_ = json.Unmarshal(first, &line) // the numbers (strings fail to decode and are skipped)
	// The budget is what the numbers it was derived from leave, all logged.
	require.EqualValues(t, max(8, line["max_connections"]-line["reserved"]-line["in_use"]-line["headroom"]-line["own_pools"]), budget)
	require.EqualValues(t, budget, line["budget"])
	require.Equal(t, max(5, int(line["max_connections"])/10), int(line["headroom"]))
	require.Equal(t, 4+4+20, int(line["own_pools"]), "the catalog is on the same server here")

	cfg, logs, log = load("TENANT_SERVER_MAX_CONNS=100000")
	budget, _ = routerSizes(ctx, cfg, log, cfg.TenantDatabaseURL.Value(), false)
	require.Equal(t, 100000, budget, "a setting wins")
	require.Contains(t, logs.String(), "TENANT_SERVER_MAX_CONNS is more than the tenant server leaves")
	require.Contains(t, logs.String(), `"max_connections":`)
}
