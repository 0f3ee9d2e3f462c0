package router

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tenant traffic through a transaction pooler (PgBouncer, pool_mode =
// transaction; Config.PoolerURL).
//
// Such a pooler hands each transaction (each statement, outside one) of a
// client connection to whichever server connection of the (database, user)
// pair is free. Two things the router otherwise relies on then break:
//
//   - Named prepared statements: pgx prepares each statement once per
//     connection ("stmtcache_…") and reuses it by name; through the pooler
//     the name lands on another backend ("prepared statement … does not
//     exist") or one that has it from another client ("… already exists").
//     PgBouncer before 1.21 cannot track them (Debian 12 ships 1.18).
//   - Session state: a SET, a session advisory lock or a temporary table
//     stays on a backend other clients then get. The router sets none:
//     schema tenants' statements name their schema, database tenants each
//     have a database and role of their own, so a (database, user) pool of
//     the pooler never mixes tenants (docs/OPERATIONS.md, "Behind
//     PgBouncer"), and their transactions take only transaction-scoped
//     locks.
//
// So the router's connections then use poolerExecMode, and refuse startup
// parameters the pooler would refuse or drop.

// poolerExecMode is how statements run through a transaction pooler:
// unnamed statements only, one round trip per read. See throughPooler for
// the measurement behind the choice.
const poolerExecMode = pgx.QueryExecModeExec

// poolerStartupParams are the startup parameters PgBouncer 1.18 passes on
// (it tracks them per client and sets them on the server connection it
// hands over). Any other one it refuses ("unsupported startup parameter"),
// or with ignore_startup_parameters drops: either way it would not apply.
var poolerStartupParams = []string{"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}

// throughPooler adapts cfg, parsed from connString, to a transaction
// pooler: statements run in poolerExecMode unless connString names a
// default_query_exec_mode itself (a pooler that tracks protocol-level
// prepared statements, PgBouncer 1.21+ with max_prepared_statements, may
// take cache_statement); startup parameters the pooler would not pass on
// are an error, naming them but never the connection string.
//
// Why exec rather than cache_describe (both unnamed statements, one round
// trip for a warm read): cache_describe was no faster through PgBouncer
// (BenchmarkPoolerExecModes; numbers in docs/OPERATIONS.md, "Behind
// PgBouncer"), costs an extra round trip for each statement a connection
// has not described yet (a lane meets many tenants, each with statements of
// its own), and keeps each statement's result description per connection:
// after a migration adds a column every connection fails each cached
// statement once ("bind message has 10 result formats but query has 11
// columns"), which exec, describing each result as it comes, never does.
func throughPooler(cfg *pgx.ConnConfig, connString string) error {
	raw, err := pgconn.ParseConfig(connString)
	if err != nil {
		return fmt.Errorf("tenant pooler: invalid connection string")
	}
	if _, explicit := raw.RuntimeParams["default_query_exec_mode"]; !explicit {
		cfg.DefaultQueryExecMode = poolerExecMode
	}
	var refused []string
	for name := range cfg.RuntimeParams {
		if !slices.Contains(poolerStartupParams, strings.ToLower(name)) {
			refused = append(refused, name)
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return fmt.Errorf("tenant pooler: the connection string sets %s: a transaction pooler refuses startup parameters other than %s (PgBouncer: unsupported startup parameter), and would share them between clients if told to ignore them",
			strings.Join(refused, ", "), strings.Join(poolerStartupParams, ", "))
	}
	return nil
}

// PoolerMismatchError says that the pooler leads somewhere else than the
// tenant server's URL: another server, database or role. Schema tenants
// would then be looked for in the wrong place (and all refused), database
// tenants perhaps on another server.
type PoolerMismatchError struct{ What, Direct, Pooled string }

func (e *PoolerMismatchError) Error() string {
	return fmt.Sprintf("the pooler leads to %s %q, the tenant server's URL to %q: it must reach the same server, database and role", e.What, e.Pooled, e.Direct)
}

// CheckPooler connects once directly (url) and once through the pooler
// (poolerURL, as the router would) and compares where each lands: the
// server (by its postmaster's start time, which two servers do not share to
// the microsecond), the database and the role. A mismatch is a
// *PoolerMismatchError; failing to connect is another error (the pooler may
// be down for now). Neither names a URL.
func CheckPooler(ctx context.Context, url, poolerURL string) error {
	direct, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("tenant server: invalid connection string")
	}
	pooled, err := pgx.ParseConfig(poolerURL)
	if err != nil {
		return fmt.Errorf("tenant pooler: invalid connection string")
	}
	if err := throughPooler(pooled, poolerURL); err != nil {
		return err
	}
	var where [2][3]string
	for i, cfg := range []*pgx.ConnConfig{direct, pooled} {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", [2]string{"tenant server", "tenant pooler"}[i], err)
		}
		err = conn.QueryRow(ctx, `SELECT pg_postmaster_start_time()::text, current_database(), current_user`).Scan(&where[i][0], &where[i][1], &where[i][2])
		_ = conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", [2]string{"tenant server", "tenant pooler"}[i], err)
		}
	}
	for k, what := range []string{"a server started at", "database", "role"} {
		if where[0][k] != where[1][k] {
			return &PoolerMismatchError{What: what, Direct: where[0][k], Pooled: where[1][k]}
		}
	}
	return nil
}
