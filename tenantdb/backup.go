package tenantdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/laracopilot/controlplane/controlplane"
)

// DumpFile writes tenant t's database (database mode) or schema (schema
// mode) to the file at path as a pg_dump archive in its custom format,
// which pg_restore reads.
//
// A database is dumped as the tenant's own role: whatever code the tenant
// may have planted with its credentials (functions behind defaults, views,
// policies) runs, if pg_dump runs any, with the tenant's privileges only,
// never the control plane's. A schema-mode tenant has no role and no
// credentials, so nothing in its schema is a tenant's own code; its schema
// is dumped as the control plane's role.
//
// The password goes to pg_dump in its environment, never on its command
// line (which every local user can read).
func (p *Provisioner) DumpFile(ctx context.Context, t *controlplane.Tenant, path string) error {
	if err := p.checkName(t); err != nil {
		return err
	}
	user, password, database := p.server.User, p.server.Password, t.DBName
	// pg_dump writes (and syncs) the file itself: a file, unlike a pipe,
	// also lets it record each table's data offset in the archive.
	args := []string{"--format=custom", "--no-password", "--lock-wait-timeout=60000", "--file=" + path}
	if t.Isolation == controlplane.IsolationSchema {
		database = p.server.Database
		args = append(args, "--schema="+t.DBName)
	} else {
		user, password = t.DBName, p.roles.Password(t.DBName)
	}
	return p.pgTool(ctx, "pg_dump", args, database, user, password, nil)
}

// pgTool runs PostgreSQL's client program name (pg_dump, pg_restore; from
// PG_BIN_DIR or PATH) on database as user, reaching the server as the
// control plane's own connections do (host, port, TLS settings), with
// stdout to w (nil: kept with stderr for the error). The password goes in
// its environment, never on its command line, which every local user can
// read. An error carries the program's first 4 kB of messages.
func (p *Provisioner) pgTool(ctx context.Context, name string, args []string, database, user, password string, w io.Writer) error {
	bin := name
	if p.pgBin != "" {
		bin = filepath.Join(p.pgBin, name)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("%s not found (install PostgreSQL's client, or set PG_BIN_DIR): %w", name, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(toolEnv(),
		"PGHOST="+p.server.Host, "PGPORT="+strconv.Itoa(int(p.server.Port)), "PGUSER="+user, "PGDATABASE="+database,
		"PGAPPNAME=controlplane-"+strings.TrimPrefix(name, "pg_"), "PGCONNECT_TIMEOUT=10", "PGOPTIONS=")
	if password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+password)
	}
	cmd.Env = append(cmd.Env, p.tls...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &limited{b: &stderr, n: 4096}
	if w == nil {
		cmd.Stdout = cmd.Stderr
	}
	cmd.WaitDelay = 5 * time.Second // a program ignoring the kill does not hold the operation
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return errors.New(name + ": " + strings.Join(strings.Fields(msg), " "))
	}
	return nil
}

// toolEnv is the part of this process's environment a client program
// gets: what it needs to run (PATH, HOME, locale, time zone) and a pgpass
// file, never the rest (DATABASE_URL, TENANT_ROLE_SECRET, ADMIN_TOKEN and
// the like are not pg_dump's business).
func toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "PATH", name == "HOME", name == "LANG", name == "TZ", name == "TMPDIR", name == "PGPASSFILE", strings.HasPrefix(name, "LC_"):
			env = append(env, kv)
		}
	}
	return env
}

// limited keeps the first n bytes written to it.
type limited struct {
	b *bytes.Buffer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// libpqTLS turns the TLS settings of a server's URL into libpq's
// environment, for the client programs (pg_dump) that reach the server as
// the control plane's own connections do.
func libpqTLS(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil
	}
	var env []string
	for param, name := range map[string]string{"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslsni": "PGSSLSNI"} {
		if v := u.Query().Get(param); v != "" {
			env = append(env, name+"="+v)
		}
	}
	return env
}
