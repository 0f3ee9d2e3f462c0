package pgtest

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PoolerURL returns the URL of the test PgBouncer (PGTEST_POOLER_URL:
// transaction pooling in front of DATABASE_URL's server, as user postgres)
// naming database name. make test starts one and sets it; a plain go test
// that did not set it skips the test, saying so.
func PoolerURL(t testing.TB, name string) string {
	t.Helper()
	raw := os.Getenv("PGTEST_POOLER_URL")
	if raw == "" {
		t.Skip("PGTEST_POOLER_URL is not set: this test runs through PgBouncer; `make test` starts one (scripts/test.sh), or point it at a pgbouncer in transaction mode in front of DATABASE_URL")
	}
	return WithDatabase(t, raw, name)
}

// PoolerPool is one pool of the test PgBouncer (a row of SHOW POOLS): the
// server connections it shares among clients of one database and user.
type PoolerPool struct {
	Database, User string
	Clients        int // client connections on it (active, idle in the pool, or waiting)
}

// PoolerPools reads the test PgBouncer's pools from its admin console (the
// pgbouncer database, as PGTEST_POOLER_URL's user, one of its admin_users).
func PoolerPools(t testing.TB) []PoolerPool {
	t.Helper()
	cfg, err := pgx.ParseConfig(PoolerURL(t, "pgbouncer"))
	if err != nil {
		t.Fatalf("parse PGTEST_POOLER_URL: %v", err)
	}
	// The console speaks the simple query protocol only.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgbouncer console: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SHOW POOLS")
	if err != nil {
		t.Fatalf("SHOW POOLS: %v", err)
	}
	defer rows.Close()
	col := map[string]int{}
	for i, f := range rows.FieldDescriptions() {
		col[f.Name] = i
	}
	var pools []PoolerPool
	for rows.Next() {
		v := rows.RawValues()
		n := 0
		for _, c := range []string{"cl_active", "cl_waiting"} {
			i, err := strconv.Atoi(string(v[col[c]]))
			if err != nil {
				t.Fatalf("SHOW POOLS %s: %v", c, err)
			}
			n += i
		}
		pools = append(pools, PoolerPool{Database: string(v[col["database"]]), User: string(v[col["user"]]), Clients: n})
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("SHOW POOLS: %v", err)
	}
	return pools
}
