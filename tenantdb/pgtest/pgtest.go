// Package pgtest hands tests real PostgreSQL databases: each call makes a
// fresh, uniquely named database on the server DATABASE_URL points at
// (make test starts a throwaway cluster and sets it) and drops it, with
// every tenant database made under the test's prefix, when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// ServerURL returns DATABASE_URL, failing the test when it is unset: a
// database test that silently skips proves nothing. The fast lane (go test
// -short, make test-fast) asks for the tests without PostgreSQL: there
// every database test is skipped, on purpose and saying so.
func ServerURL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL: the fast lane (-short) runs without it; make test runs everything")
	}
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		t.Fatal("DATABASE_URL is not set: run the tests with `make test`, which starts a throwaway PostgreSQL")
	}
	return dsn
}

// DB is a throwaway database and the tenant-name prefix reserved for it.
type DB struct {
	Name string
	URL  string
	// Prefix is unique to this database: tenant databases created with it
	// cannot clash with those of tests running in parallel, and are dropped
	// on cleanup.
	Prefix string
}

// New creates an empty database for t and registers its cleanup.
func New(t testing.TB) DB {
	t.Helper()
	return create(t, "")
}

// create makes the test's database, a copy of template if not "".
func create(t testing.TB, template string) DB {
	t.Helper()
	server := ServerURL(t)
	suffix := randomHex(5)
	d := DB{Name: "cptest_" + suffix, Prefix: "t" + suffix + "_"}
	admin := open(t, server, "")
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stmt := `CREATE DATABASE ` + pgx.Identifier{d.Name}.Sanitize()
	if template != "" {
		stmt += ` TEMPLATE ` + pgx.Identifier{template}.Sanitize()
	}
	if _, err := admin.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	d.URL = WithDatabase(t, server, d.Name)
	t.Cleanup(func() { drop(t, server, d) })
	return d
}

// WithDatabase returns the URL raw pointing at database name instead.
func WithDatabase(t testing.TB, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		t.Fatal("DATABASE_URL must be a postgres:// URL for the tests")
	}
	u.Path = "/" + name
	return u.String()
}

// Open returns a small pool on url, closed when the test ends.
func Open(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db := open(t, dsn, "")
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func open(t testing.TB, dsn, name string) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	if name != "" {
		cfg.Database = name
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(4)
	return db
}

// drop removes the test database and every tenant database with its prefix.
func drop(t testing.TB, server string, d DB) {
	admin := open(t, server, "")
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := admin.QueryContext(ctx, `SELECT datname FROM pg_database WHERE datname = $1 OR starts_with(datname, $2)`, d.Name, d.Prefix)
	if err != nil {
		t.Errorf("list test databases: %v", err)
		return
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err == nil {
			names = append(names, n)
		}
	}
	_ = rows.Close()
	for _, n := range names {
		// Template databases (the provisioner's) refuse DROP until unmarked.
		_, _ = admin.ExecContext(ctx, `ALTER DATABASE `+pgx.Identifier{n}.Sanitize()+` WITH IS_TEMPLATE false`)
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{n}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", n, err)
		}
	}
	// Tenant roles are cluster-wide: drop those of this test's tenants.
	rows, err = admin.QueryContext(ctx, `SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)`, d.Prefix)
	if err != nil {
		t.Errorf("list test roles: %v", err)
		return
	}
	var roles []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err == nil {
			roles = append(roles, n)
		}
	}
	_ = rows.Close()
	for _, n := range roles {
		if _, err := admin.ExecContext(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{n}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", n, err)
		}
	}
}

// TenantDatabases lists the databases on the server whose name starts with
// prefix: the tenant databases a test made (not the provisioner's template).
func TenantDatabases(t testing.TB, prefix string) []string {
	t.Helper()
	admin := open(t, ServerURL(t), "")
	defer admin.Close()
	rows, err := admin.Query(`SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND NOT datistemplate ORDER BY datname`, prefix)
	if err != nil {
		t.Fatalf("list databases: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToLower(hex.EncodeToString(b))
}
