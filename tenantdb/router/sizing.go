package router

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Sizing is the router's share of a tenant server's connections, derived
// from the server itself when serve starts (TENANT_SERVER_MAX_CONNS and
// TENANT_POOLS_MAX unset): the physical limit is max_connections, and a
// budget that ignores it either wastes the server (the old fixed 60) or
// overruns it.
type Sizing struct {
	MaxConnections int // the server's max_connections
	Reserved       int // superuser_reserved_connections (+ reserved_connections, PostgreSQL 16+)
	InUse          int // client connections open at start: other replicas, other applications
	Headroom       int // kept free: 10% of max_connections, at least 5
	Own            int // this process's other pools: the catalog's (if on this server) and provisioning's
	// Budget is what is left for the router, at least minBudget.
	Budget int
}

// ownPools is what serve's other pools may open on the tenant server
// besides the router and the catalog: the provisioner's admin pool (4),
// and the short-lived connections of creates and retries (a tenant's
// migration pool of 2, the template build), a few at a time.
const ownPools = 4 + 4

// minBudget is the smallest budget the router works with.
const minBudget = 8

// SizeFromServer reads the tenant server's limits and the connections
// open now, and derives the router's budget. catalogHere says whether the
// catalog's pool (catalogConns) is on the same server.
func SizeFromServer(ctx context.Context, url string, catalogHere bool, catalogConns int) (Sizing, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return Sizing{}, fmt.Errorf("tenant server: invalid connection string")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Sizing{}, err
	}
	defer conn.Close(ctx)
	var s Sizing
	// reserved_connections exists from PostgreSQL 16 on: missing_ok.
	err = conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int,
			current_setting('superuser_reserved_connections')::int + COALESCE(current_setting('reserved_connections', true)::int, 0),
			(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int`).
		Scan(&s.MaxConnections, &s.Reserved, &s.InUse)
	if err != nil {
		return Sizing{}, err
	}
	s.Headroom = max(5, s.MaxConnections/10)
	s.Own = ownPools
	if catalogHere {
		s.Own += catalogConns
	}
	s.Budget = max(minBudget, s.MaxConnections-s.Reserved-s.InUse-s.Headroom-s.Own)
	return s, nil
}
