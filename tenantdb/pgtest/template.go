package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// templates are the databases CreateTemplate made in this test binary.
var templates struct {
	sync.Mutex
	names []string
}

// CreateTemplate makes a database that outlives the test that asks for it,
// built by build (given its URL; build must close what it opens), for
// NewFrom to copy: a schema many tests start from is then made once per
// test binary instead of once per test. DropTemplates drops it; call it
// from TestMain after m.Run.
func CreateTemplate(build func(url string) error) (string, error) {
	server := os.Getenv("DATABASE_URL")
	if server == "" {
		return "", errors.New("DATABASE_URL is not set")
	}
	cfg, err := pgx.ParseConfig(server)
	if err != nil {
		return "", err
	}
	admin := stdlib.OpenDB(*cfg)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "cptest_template_" + randomHex(5)
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create template database: %w", err)
	}
	templates.Lock()
	templates.names = append(templates.names, name)
	templates.Unlock()
	u, err := url.Parse(server)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	if err := build(u.String()); err != nil {
		return "", fmt.Errorf("build template database: %w", err)
	}
	return name, nil
}

// DropTemplates drops the databases CreateTemplate made.
func DropTemplates() {
	templates.Lock()
	defer templates.Unlock()
	server := os.Getenv("DATABASE_URL")
	cfg, err := pgx.ParseConfig(server)
	if err != nil || len(templates.names) == 0 {
		return
	}
	admin := stdlib.OpenDB(*cfg)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range templates.names {
		_, _ = admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{n}.Sanitize()+` WITH (FORCE)`)
	}
	templates.names = nil
}

// NewFrom is New with the database a copy of template (CREATE DATABASE
// ... TEMPLATE, a file-level copy: no statement of the template runs
// again).
func NewFrom(t testing.TB, template string) DB {
	t.Helper()
	return create(t, template)
}
