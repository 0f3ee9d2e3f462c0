package sqlerr_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/laracopilot/controlplane/controlplane"
	"github.com/laracopilot/controlplane/controlplane/sqlerr"
	"github.com/laracopilot/controlplane/tenantdb/pgtest"
)

// secret is the password in every URL below: no translated error may show it.
const secret = "s3cret-Pw-0utage"

// outageCase is one real error and what it must become: the code from
// Translate (catalog) and from TranslateTenant (a tenant's database).
type outageCase struct {
	name         string
	err          error
	code, tenant controlplane.Code
	hide         []string // strings no client message may hold (hosts, ports, the secret)
}

// TestTranslateOutages produces each kind of outage for real (refused and
// cut connections, a server that says it is starting up, a terminated
// backend, a deadlock...) and checks the one mapping: outages are 503
// codes, the rest stays what it was, through gorm's and fmt.Errorf's
// wrapping, and no message carries a host, port or password.
func TestTranslateOutages(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	var cases []outageCase
	add := func(name string, err error, code, tenant controlplane.Code, hide ...string) {
		t.Helper()
		require.Error(t, err, name)
		t.Logf("%s: %T: %v", name, err, err)
		cases = append(cases, outageCase{name, err, code, tenant, append(hide, secret, "127.0.0.1")})
	}
	down := func(name string, err error, hide ...string) {
		t.Helper()
		add(name, err, controlplane.Unavailable, controlplane.TenantUnavailable, hide...)
	}
	retry := func(name string, err error) { // 503 for the catalog and a tenant alike
		t.Helper()
		add(name, err, controlplane.Unavailable, controlplane.Unavailable)
	}

	// Nothing listens: connection refused, as pgx and as the net package say it.
	closedPort := freePort(t)
	refusedURL := "postgres://postgres:" + secret + "@127.0.0.1:" + closedPort + "/x?sslmode=disable&connect_timeout=5"
	_, err := pgx.Connect(ctx, refusedURL)
	var ce *pgconn.ConnectError
	require.ErrorAs(t, err, &ce)
	down("refused (pgconn.ConnectError)", err, closedPort)
	_, err = net.Dial("tcp", "127.0.0.1:"+closedPort)
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	down("refused (net.OpError)", err, closedPort)

	// Refused through gorm (its query path, and its transaction).
	gdb, err := gorm.Open(postgres.Open(refusedURL), &gorm.Config{DisableAutomaticPing: true, Logger: logger.Discard})
	require.NoError(t, err)
	var n int
	down("refused, through gorm", gdb.WithContext(ctx).Raw(`SELECT 1`).Scan(&n).Error, closedPort)
	down("refused, through a gorm transaction", gdb.Transaction(func(*gorm.DB) error { return nil }), closedPort)

	// A name that does not resolve (.invalid never does, RFC 2606).
	_, err = pgx.Connect(ctx, "postgres://postgres:"+secret+"@no-such-host.invalid:5432/x?sslmode=disable&connect_timeout=5")
	down("DNS failure (pgx)", err, "no-such-host")
	_, err = net.DefaultResolver.LookupHost(ctx, "no-such-host.invalid")
	var dnsErr *net.DNSError
	require.ErrorAs(t, err, &dnsErr)
	down("DNS failure (net.DNSError)", err, "no-such-host")

	// A server that accepts and never answers: timeouts while connecting,
	// by connect_timeout and by the caller's deadline.
	silent := silentServer(t)
	_, err = pgx.Connect(ctx, "postgres://postgres:"+secret+"@"+silent+"/x?sslmode=disable&connect_timeout=1")
	down("connect_timeout", err, silent)
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = pgx.Connect(dctx, "postgres://postgres:"+secret+"@"+silent+"/x?sslmode=disable")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	down("context deadline exceeded while connecting", err, silent)

	// A server that says why it refuses: starting up, shutting down, full.
	for _, code := range []string{"57P01", "57P02", "57P03", "53300", "08006", "08P01"} {
		addr := refusingServer(t, code)
		_, err := pgx.Connect(ctx, "postgres://postgres:"+secret+"@"+addr+"/x?sslmode=disable")
		var pg *pgconn.PgError
		require.ErrorAs(t, err, &pg, code)
		require.Equal(t, code, pg.Code)
		down("server refuses: "+code, err, addr)
	}
	// ... but a wrong password or a missing database is no outage: waiting
	// does not cure it. It is a 500 for the operator to fix.
	addr := refusingServer(t, "28P01")
	_, err = pgx.Connect(ctx, "postgres://postgres:"+secret+"@"+addr+"/x?sslmode=disable")
	add("wrong password (28P01)", err, controlplane.Internal, controlplane.Internal)
	_, err = pgx.Connect(ctx, pgtest.WithDatabase(t, db.URL, "no_such_database_"+closedPort))
	add("no such database (3D000)", err, controlplane.Internal, controlplane.Internal)

	// A connection lost mid-query: closed (the server's side of it ends:
	// EOF) or reset, in the extended protocol (pgx reports io's EOF or the
	// reset) and the simple one (pgx reports its conn closed); then used
	// again, and a new connection tried while cut.
	for _, tc := range []struct {
		name  string
		cut   func(*pgtest.Proxy)
		cause error
	}{{"closed", (*pgtest.Proxy).Cut, io.ErrUnexpectedEOF}, {"reset", (*pgtest.Proxy).Reset, syscall.ECONNRESET}} {
		proxy := pgtest.NewProxy(t, db.URL)
		extended, simple := connect(t, proxy.URL(db.URL)), connect(t, proxy.URL(db.URL))
		pids := []uint32{extended.PgConn().PID(), simple.PgConn().PID()}
		errc := make(chan error, 2)
		go func() { var x any; errc <- extended.QueryRow(ctx, `SELECT pg_sleep($1)`, 10).Scan(&x) }()
		go func() { _, err := simple.Exec(ctx, `SELECT pg_sleep(10)`); errc <- err }()
		// Cut once both queries run on the server (not after a pause,
		// which a slow machine could outlast).
		admin := pgtest.Open(t, db.URL)
		require.Eventually(t, func() bool {
			var n int
			err := admin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE pid IN ($1, $2) AND state = 'active' AND query LIKE 'SELECT pg_sleep%'`,
				pids[0], pids[1]).Scan(&n)
			return err == nil && n == 2
		}, 10*time.Second, 10*time.Millisecond, "both queries running")
		tc.cut(proxy)
		for range 2 {
			err := <-errc
			if errors.Is(err, pgconn.ErrConnClosed) {
				down("connection "+tc.name+" mid-query (pgx: conn closed)", err, proxy.Addr())
			} else {
				require.ErrorIs(t, err, tc.cause)
				down("connection "+tc.name+" mid-query", err, proxy.Addr())
			}
		}
		_, err = extended.Exec(ctx, `SELECT 1`)
		require.ErrorIs(t, err, pgconn.ErrConnClosed)
		down("pgx conn closed, used after "+tc.name, err)
		_, err = pgx.Connect(ctx, proxy.URL(db.URL))
		down("reconnect while "+tc.name, err, proxy.Addr())
	}

	// database/sql on a pinned connection that died: driver.ErrBadConn.
	sdb := pgtest.Open(t, db.URL)
	sconn, err := sdb.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, sconn.Raw(func(dc any) error { return dc.(*stdlib.Conn).Conn().Close(ctx) }))
	_, err = sconn.ExecContext(ctx, `SELECT 1`)
	require.ErrorIs(t, err, driver.ErrBadConn)
	down("driver.ErrBadConn", err)
	_ = sconn.Close()

	// pg_terminate_backend of this test's own connection: 57P01, as an
	// administrator's (or a failover's) shutdown gives it.
	conn, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	var pid int
	require.NoError(t, conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	admin := pgtest.Open(t, db.URL)
	var killed bool
	require.NoError(t, admin.QueryRow(`SELECT pg_terminate_backend($1) FROM pg_stat_activity WHERE pid = $1 AND datname = $2`, pid, db.Name).Scan(&killed))
	require.True(t, killed)
	time.Sleep(100 * time.Millisecond)
	_, err = conn.Exec(ctx, `SELECT 1`)
	down("admin shutdown (pg_terminate_backend)", err)

	// Timeouts of a query that runs: statement_timeout (57014) and the
	// caller's deadline. Not the tenant's fault: Unavailable either way.
	_, err = connect(t, db.URL).Exec(ctx, `SET statement_timeout = '50ms'; SELECT pg_sleep(1)`)
	retry("statement timeout (57014)", err)
	qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = admin.ExecContext(qctx, `SELECT pg_sleep(1)`)
	cancel()
	retry("deadline mid-query", err)

	// A transaction that lost to a concurrent one.
	_, err = admin.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0)`)
	require.NoError(t, err)
	retry("serialization failure (40001)", serializationFailure(t, db.URL))
	retry("deadlock (40P01)", deadlock(t, db.URL))

	// Not outages: they keep their meaning, or are bugs.
	_, err = admin.Exec(`INSERT INTO t VALUES (1, 0)`)
	add("unique violation", err, controlplane.Conflict, controlplane.Conflict)
	_, err = admin.Exec(`SELEC 1`)
	add("syntax error", err, controlplane.Internal, controlplane.Internal)
	add("not found", gorm.ErrRecordNotFound, controlplane.NotFound, controlplane.NotFound)
	add("a bug", errors.New("nil map"), controlplane.Internal, controlplane.Internal)
	budget := &controlplane.Error{Code: controlplane.Unavailable, Message: "at its connection budget"}
	add("a domain error passes", fmt.Errorf("dial: %w", budget), controlplane.Unavailable, controlplane.Unavailable)

	for _, tc := range cases {
		for _, err := range []error{tc.err, fmt.Errorf("list tenants: %w", tc.err), fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", tc.err))} {
			for _, side := range []struct {
				name      string
				translate func(error, map[string]sqlerr.Constraint) error
				want      controlplane.Code
			}{{"catalog", sqlerr.Translate, tc.code}, {"tenant", sqlerr.TranslateTenant, tc.tenant}} {
				got := side.translate(err, nil)
				require.Equal(t, side.want, controlplane.ErrorCode(got), "%s (%s): %v", tc.name, side.name, err)
				var de *controlplane.Error
				require.ErrorAs(t, got, &de)
				for _, h := range tc.hide {
					require.NotContains(t, de.Message, h, "%s: the message shows %q", tc.name, h)
				}
				require.NotContains(t, strings.ToLower(de.Message), "password", tc.name)
			}
			// The renderer's safety net agrees on what is an outage.
			out := sqlerr.Outage(err)
			isOutage := tc.code == controlplane.Unavailable && tc.name != "a domain error passes"
			require.Equal(t, isOutage, out != nil, "%s: Outage", tc.name)
			if out != nil {
				require.Equal(t, controlplane.Unavailable, out.Code)
			}
		}
	}
}

// freePort returns a port on 127.0.0.1 nothing listens on (it listened a
// moment ago; the kernel does not hand it out again at once).
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	return port
}

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// refusingServer speaks the PostgreSQL protocol just far enough to refuse
// every connection with a FATAL of the given SQLSTATE, as a server starting
// up (57P03), shutting down (57P01, 57P02) or full (53300) does. pgx then
// returns exactly what it returns from a real server in that state.
func refusingServer(t *testing.T, code string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				be := pgproto3.NewBackend(c, c)
				for {
					msg, err := be.ReceiveStartupMessage()
					if err != nil {
						return
					}
					if _, ok := msg.(*pgproto3.SSLRequest); ok {
						if _, err := c.Write([]byte("N")); err != nil {
							return
						}
						continue
					}
					break
				}
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: "refused with " + code})
				_ = be.Flush()
			}()
		}
	}()
	return ln.Addr().String()
}

// serializationFailure makes two serializable transactions write what the
// other read; the second to commit fails with 40001.
func serializationFailure(t *testing.T, url string) error {
	ctx := context.Background()
	a, b := connect(t, url), connect(t, url)
	for _, c := range []*pgx.Conn{a, b} {
		_, err := c.Exec(ctx, `BEGIN ISOLATION LEVEL SERIALIZABLE`)
		require.NoError(t, err)
		_, err = c.Exec(ctx, `SELECT sum(v) FROM t`)
		require.NoError(t, err)
	}
	_, err := a.Exec(ctx, `UPDATE t SET v = v + 1 WHERE id = 1`)
	require.NoError(t, err)
	_, err = b.Exec(ctx, `UPDATE t SET v = v + 1 WHERE id = 2`)
	require.NoError(t, err)
	_, err = a.Exec(ctx, `COMMIT`)
	require.NoError(t, err)
	_, err = b.Exec(ctx, `COMMIT`)
	var pg *pgconn.PgError
	require.ErrorAs(t, err, &pg)
	require.Equal(t, "40001", pg.Code)
	return err
}

// deadlock locks rows 1 and 2 in opposite orders on two connections; the
// server aborts one with 40P01.
func deadlock(t *testing.T, url string) error {
	ctx := context.Background()
	a, b := connect(t, url), connect(t, url)
	for _, c := range []*pgx.Conn{a, b} {
		_, err := c.Exec(ctx, `BEGIN`)
		require.NoError(t, err)
	}
	_, err := a.Exec(ctx, `UPDATE t SET v = v + 1 WHERE id = 1`)
	require.NoError(t, err)
	_, err = b.Exec(ctx, `UPDATE t SET v = v + 1 WHERE id = 2`)
	require.NoError(t, err)
	type result struct {
		c   *pgx.Conn
		err error
	}
	done := make(chan result, 2)
	go func() { _, err := a.Exec(ctx, `UPDATE t SET v = v + 1 WHERE id = 2`); done <- result{a, err} }()
	go func() { _, err := b.Exec(ctx, `UPDATE t SET v = v + 1 WHERE id = 1`); done <- result{b, err} }()
	var found error
	for range 2 {
		r := <-done
		if r.err != nil {
			found = r.err
		}
		// Each ends its transaction once its statement is over (the
		// loser's is aborted; the winner goes on once it is rolled back).
		_, _ = r.c.Exec(ctx, `ROLLBACK`)
	}
	var pg *pgconn.PgError
	require.ErrorAs(t, found, &pg)
	require.Equal(t, "40P01", pg.Code)
	return found
}

func connect(t *testing.T, url string) *pgx.Conn {
	c, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}
