package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// cluster starts a PostgreSQL cluster of the run's own in
// ClusterDir/name with scripts/pg.sh, as the run's server is made
// (bench/run.sh): max_connections maxConns, fsync off, the postgres role
// trusted and every other role (tenant roles) authenticating with
// SCRAM-SHA-256, pg_stat_statements preloaded when the run's server has
// it. The run destroys it when it ends, whatever happens; stop destroys it
// sooner: it stops the server at once and deletes its files in the
// background (a cluster of 1,000 databases holds gigabytes), which
// settleClusters waits for. Nothing else uses it, so PostgreSQL's CPU measured there is the
// whole cluster's (pg.whole).
func (e *env) cluster(ctx context.Context, name string, maxConns int) (*pg, func(), error) {
	return e.clusterIn(ctx, e.cfg.ClusterDir, name, maxConns)
}

// clusterRoot is the folder a benchmark starts its own clusters in:
// ClusterDir, or else a temporary folder (named after prefix) that done
// removes, once the clusters stopped in it have let go of their files.
func (e *env) clusterRoot(prefix string) (root string, done func(), err error) {
	if e.cfg.ClusterDir != "" {
		return e.cfg.ClusterDir, func() {}, nil
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	done = func() {
		e.settleClusters()
		_ = os.RemoveAll(dir)
	}
	// Traversable: the postgres user runs the clusters in it.
	if err := os.Chmod(dir, 0o755); err != nil {
		done()
		return "", nil, err
	}
	return dir, done, nil
}

// clusterIn is cluster in folder root instead of ClusterDir (benchmark 7
// makes one of its own when the run has none).
func (e *env) clusterIn(ctx context.Context, root, name string, maxConns int) (*pg, func(), error) {
	dir := filepath.Join(root, name, "data")
	settings := []string{"max_connections = " + strconv.Itoa(maxConns), "fsync = off", "synchronous_commit = off", "full_page_writes = off"}
	if e.pg.stmts {
		settings = append(settings, "shared_preload_libraries = 'pg_stat_statements'")
	}
	e.clusters = append(e.clusters, dir)
	var err error
	for range 3 { // the port may be taken between the pick and the bind
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		args := append([]string{filepath.Join(e.cfg.Root, "scripts", "pg.sh"), "start", dir, strconv.Itoa(port)}, settings...)
		if _, _, err = runCmd(ctx, "bash", args, nil); err != nil {
			continue
		}
		url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
		var p *pg
		if p, err = openPG(ctx, url, e.pg.run); err != nil {
			break
		}
		p.whole, p.dir, p.conf = true, dir, settings
		e.logf("%s: a cluster of its own on 127.0.0.1:%d, max_connections %d", name, port, maxConns)
		stop := func() {
			p.close()
			_, _, _ = runCmd(context.WithoutCancel(ctx), "bash", []string{filepath.Join(e.cfg.Root, "scripts", "pg.sh"), "stop", dir}, nil)
			e.removing.Go(func() { destroyCluster(ctx, e.cfg.Root, dir) })
		}
		return p, stop, nil
	}
	destroyCluster(ctx, e.cfg.Root, dir)
	return nil, nil, fmt.Errorf("start a cluster in %s: %w", dir, err)
}

// halt stops the env's cluster (scripts/pg.sh stop: a fast shutdown, every
// backend ended at once, as a crash of the server would end them) and keeps
// its files, for restart. The run still destroys it at the end.
func (e *env) halt(ctx context.Context) error {
	if e.pg.dir == "" {
		return errors.New("halt: not a cluster of the run's own")
	}
	_, _, err := runCmd(ctx, "bash", []string{filepath.Join(e.cfg.Root, "scripts", "pg.sh"), "stop", e.pg.dir}, nil)
	return err
}

// restart starts the env's cluster again after halt, on the same port (its
// clients know it by its address) with the same settings, once it accepts
// connections, and reconnects the harness: its pool's connections died
// with the server, and the postmaster whose CPU it measures is a new
// process.
func (e *env) restart(ctx context.Context) error {
	if e.pg.dir == "" {
		return errors.New("restart: not a cluster of the run's own")
	}
	args := append([]string{filepath.Join(e.cfg.Root, "scripts", "pg.sh"), "start", e.pg.dir, e.pg.url.Port()}, e.pg.conf...)
	if _, _, err := runCmd(ctx, "bash", args, nil); err != nil {
		return err
	}
	e.pg.admin.Reset()
	var pid int
	if err := e.pg.admin.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return err
	}
	if e.pg.local {
		e.pg.postmaster, _, _, _ = procTimes(pid)
	}
	return nil
}

// destroyCluster stops the cluster in dir, if it runs, and deletes it.
func destroyCluster(ctx context.Context, root, dir string) {
	_, _, _ = runCmd(context.WithoutCancel(ctx), "bash", []string{filepath.Join(root, "scripts", "pg.sh"), "destroy", dir}, nil)
	_ = os.Remove(filepath.Dir(dir))
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort() (int, error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}

// settleClusters waits until the clusters stopped so far are deleted: no
// measurement runs while their files are (the disk is shared).
func (e *env) settleClusters() {
	t0 := time.Now()
	e.removing.Wait()
	if d := time.Since(t0); d > time.Second {
		e.logf("waited %s for stopped clusters to be deleted", d.Round(time.Second))
	}
}
