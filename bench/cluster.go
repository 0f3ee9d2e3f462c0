package bench

import (
	"context"
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
	dir := filepath.Join(e.cfg.ClusterDir, name, "data")
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
		p.whole = true
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
