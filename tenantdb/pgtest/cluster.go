package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Cluster is a PostgreSQL cluster of a test's own (NewCluster), or of the
// tests of one binary together (Shared), made and driven by scripts/pg.sh
// (initdb, pg_ctl; as the postgres user when run as root), for tests that
// need more than the shared test server: several servers, or one that
// stops and starts for real (the shared test server must never go down
// under the other tests).
type Cluster struct {
	t    testing.TB // nil for a shared cluster
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
// ends. It takes a few seconds (initdb) and about two seconds of CPU: a
// test that neither stops its servers nor changes their settings takes a
// Shared one instead.
func NewCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	return NewClusters(t, 1, opts...)[0]
}

// NewClusters is NewCluster for n clusters, started side by side (initdb
// is mostly waiting on one core); it fails the test from the test's own
// goroutine, as testing requires, if any of them does not start.
func NewClusters(t testing.TB, n int, opts ...ClusterOption) []*Cluster {
	t.Helper()
	out := make([]*Cluster, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range out {
		c, err := newCluster(opts...)
		if err != nil {
			t.Fatal(err)
		}
		c.t = t
		t.Cleanup(func() { _ = c.destroy() })
		out[i] = c
		wg.Go(func() { errs[i] = c.start() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func newCluster(opts ...ClusterOption) (*Cluster, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pick a port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	// PGTEST_CLUSTER_DIR: where scripts/test.sh puts its clusters (in
	// memory when the machine has room).
	root := os.Getenv("PGTEST_CLUSTER_DIR")
	if root == "" {
		root = os.TempDir()
	}
	c := &Cluster{dir: filepath.Join(root, "cptest-cluster-"+randomHex(5)), Port: port}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/controlplane?sslmode=disable", port)
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// shared are the clusters Shared started in this test binary, by name.
var shared struct {
	sync.Mutex
	byName map[string]*sharedCluster
}

type sharedCluster struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Shared returns the clusters called names that the tests of this binary
// share, each started on first use (side by side, when a test asks for
// several at once). Several tests use them at the same time, so a test
// must not stop one or change its settings, and must look only at its
// own objects there (its catalog's prefix), never count what the whole
// cluster holds. DestroyShared, from TestMain after m.Run, removes them.
func Shared(t testing.TB, names ...string) []*Cluster {
	t.Helper()
	shared.Lock()
	if shared.byName == nil {
		shared.byName = map[string]*sharedCluster{}
	}
	entries := make([]*sharedCluster, len(names))
	for i, name := range names {
		if shared.byName[name] == nil {
			shared.byName[name] = &sharedCluster{}
		}
		entries[i] = shared.byName[name]
	}
	shared.Unlock()
	var wg sync.WaitGroup
	for _, s := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.once.Do(func() {
				s.c, s.err = newCluster()
				if s.err == nil {
					s.err = s.c.start()
				}
			})
		}()
	}
	wg.Wait()
	out := make([]*Cluster, len(names))
	for i, s := range entries {
		if s.err != nil {
			t.Fatalf("shared cluster %s: %v", names[i], s.err)
		}
		out[i] = s.c
	}
	return out
}

// DestroyShared stops and deletes the clusters Shared started.
func DestroyShared() {
	shared.Lock()
	defer shared.Unlock()
	for name, s := range shared.byName {
		if s.c != nil {
			_ = s.c.destroy()
		}
		delete(shared.byName, name)
	}
}

// Start starts the cluster (initialising it the first time) and waits
// until it answers.
func (c *Cluster) Start() {
	c.own().Helper()
	if err := c.start(); err != nil {
		c.t.Fatal(err)
	}
}

// Stop stops the cluster with a fast shutdown: every session is ended
// (admin shutdown, SQLSTATE 57P01) and new connections are refused.
func (c *Cluster) Stop() {
	c.own().Helper()
	if err := c.run("stop", c.dir); err != nil {
		c.t.Fatal(err)
	}
}

// own returns the test that owns c; a shared cluster is nobody's to stop.
func (c *Cluster) own() testing.TB {
	if c.t == nil {
		panic("pgtest: a Shared cluster is never stopped or restarted by a test; take a NewCluster")
	}
	return c.t
}

func (c *Cluster) start() error {
	// Settings for a new cluster: room for the moves several tests run at
	// once into one cluster (each takes an apply worker, up to two
	// table-sync workers, and as many slots and WAL senders on its source;
	// the defaults allow about two); and commits acknowledged before
	// their WAL is written, as on the test server (scripts/pg.sh), which a
	// move must not lose; and no autovacuum, as on the test server
	// (scripts/test.sh): the tenants of every test sharing the cluster
	// stay until it goes, and autovacuum would visit each every minute.
	return c.run("start", c.dir, fmt.Sprint(c.Port), "max_worker_processes = 32", "max_logical_replication_workers = 24",
		"max_replication_slots = 48", "max_wal_senders = 48", "synchronous_commit = off", "autovacuum = off")
}

func (c *Cluster) destroy() error { return c.run("destroy", c.dir) }

func (c *Cluster) run(args ...string) error {
	_, file, _, _ := runtime.Caller(0) // …/tenantdb/pgtest/cluster.go
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "pg.sh")
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	if c.walLevel != "" {
		cmd.Env = append(os.Environ(), "PG_WAL_LEVEL="+c.walLevel)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("scripts/pg.sh %v: %w\n%s", args, err, out)
	}
	return nil
}
