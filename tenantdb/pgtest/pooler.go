package pgtest

import (
	"os"
	"testing"
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
