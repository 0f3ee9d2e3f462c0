package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Cluster is a PostgreSQL cluster of a test's own, made and driven by
// scripts/pg.sh (initdb, pg_ctl; as the postgres user when run as root),
// for tests that stop and start the server for real: the shared test
// server must never go down under the other tests.
type Cluster struct {
	t    testing.TB
	dir  string
	Port int
	// URL is the cluster's "controlplane" database, as the superuser.
	URL string
	// walLevel is the cluster's wal_level: logical (scripts/pg.sh's) but
	// for a test of a server that cannot be a move's source.
	walLevel string
}

// ClusterOption sets up a cluster of NewCluster differently.
type ClusterOption func(*Cluster)

// WalLevel starts the cluster with wal_level = level ("replica" or
// "logical", the default) instead.
func WalLevel(level string) ClusterOption { return func(c *Cluster) { c.walLevel = level } }

// NewCluster initialises and starts a cluster, destroyed when the test
// ends. It takes a few seconds (initdb).
func NewCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	c := &Cluster{t: t, dir: filepath.Join(os.TempDir(), "cptest-cluster-"+randomHex(5)), Port: port}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/controlplane?sslmode=disable", port)
	for _, o := range opts {
		o(c)
	}
	t.Cleanup(func() { c.run("destroy", c.dir) })
	c.Start()
	return c
}

// Start starts the cluster (initialising it the first time) and waits
// until it answers.
func (c *Cluster) Start() {
	c.t.Helper()
	// Settings for a new cluster: room for the moves several tests run at
	// once into one cluster (each takes an apply worker, up to two
	// table-sync workers, and as many slots and WAL senders on its source;
	// the defaults allow about two); and commits acknowledged before
	// their WAL is written, as on the test server (scripts/pg.sh), which a
	// move must not lose.
	c.run("start", c.dir, fmt.Sprint(c.Port), "max_worker_processes = 32", "max_logical_replication_workers = 24",
		"max_replication_slots = 48", "max_wal_senders = 48", "synchronous_commit = off")
}

// Stop stops the cluster with a fast shutdown: every session is ended
// (admin shutdown, SQLSTATE 57P01) and new connections are refused.
func (c *Cluster) Stop() { c.t.Helper(); c.run("stop", c.dir) }

func (c *Cluster) run(args ...string) {
	c.t.Helper()
	_, file, _, _ := runtime.Caller(0) // …/tenantdb/pgtest/cluster.go
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "pg.sh")
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	if c.walLevel != "" {
		cmd.Env = append(os.Environ(), "PG_WAL_LEVEL="+c.walLevel)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("scripts/pg.sh %v: %v\n%s", args, err, out)
	}
}
