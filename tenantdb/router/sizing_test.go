package router_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/laracopilot/controlplane/tenantdb/pgtest"
	"github.com/laracopilot/controlplane/tenantdb/router"
)

// The router's budget comes from the server: max_connections less the
// reserved slots, what is open now, a margin and serve's other pools.
func TestSizeFromServer(t *testing.T) {
	t.Parallel()
	url := pgtest.ServerURL(t)
	ctx := context.Background()
	alone, err := router.SizeFromServer(ctx, url, false, 20)
	require.NoError(t, err)
	require.Positive(t, alone.MaxConnections)
	require.Equal(t, max(5, alone.MaxConnections/10), alone.Headroom)
	require.Equal(t, max(8, alone.MaxConnections-alone.Reserved-alone.InUse-alone.Headroom-alone.Own), alone.Budget)
	require.Less(t, alone.Budget, alone.MaxConnections)

	shared, err := router.SizeFromServer(ctx, url, true, 20)
	require.NoError(t, err)
	require.Equal(t, alone.Own+20, shared.Own, "the catalog's pool on the same server is counted")

	// Connections open elsewhere shrink it.
	held := pgtest.Open(t, url)
	held.SetMaxOpenConns(10) // pgtest's pools hold 4
	for range 10 {
		c, err := held.Conn(ctx)
		require.NoError(t, err)
		defer c.Close()
	}
	busier, err := router.SizeFromServer(ctx, url, false, 20)
	require.NoError(t, err)
	require.GreaterOrEqual(t, busier.InUse, 10, "our ten are counted")
}
