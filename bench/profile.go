package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Profiles (-profile DIR) come from extra rounds that are never counted:
// serve runs as a variant built with net/http/pprof (the product has no
// pprof endpoint and gets none for the benchmark's sake), the baseline with
// PPROF_ADDR.

// profiles runs one extra round per mode against a serve built with
// net/http/pprof, and one against the baseline, and saves their CPU
// profiles (over the round) and heap and allocation profiles (at its end)
// in ProfileDir. These rounds are not counted.
func (e *env) profiles(ctx context.Context, rs *readsSetup) error {
	pprofAddr, err := freeAddr()
	if err != nil {
		return err
	}
	o := rs.opts
	o.name, o.bin = "serve (pprof)", e.bin.pprof
	o.extra = map[string]string{"BENCH_PPROF_ADDR": pprofAddr}
	srv, err := e.serve(ctx, o)
	if err != nil {
		return err
	}
	defer srv.stop()
	for _, mode := range []string{"schema", "database"} {
		ts := rs.schema
		if mode == "database" {
			ts = rs.db
			if err := prime(ctx, srv, ts, e.sz.Clients); err != nil {
				return err
			}
		}
		spec := loadSpec{base: srv.base, hosts: domains(ts), ids: e.sz.Extensions, clients: e.sz.Clients, warmup: e.sz.Warmup, duration: e.sz.Duration}
		if err := e.profileLoad(ctx, pprofAddr, "reads-"+mode, spec); err != nil {
			return err
		}
	}
	srv.stop()
	baseAddr, err := freeAddr()
	if err != nil {
		return err
	}
	base, err := e.baseline(ctx, rs.tenantDB, rs.exemplar.DBName, baseAddr, nil)
	if err != nil {
		return err
	}
	defer base.stop()
	spec := loadSpec{base: base.base, hosts: domains(rs.schema), ids: e.sz.Extensions, clients: e.sz.Clients, warmup: e.sz.Warmup, duration: e.sz.Duration}
	return e.profileLoad(ctx, baseAddr, "reads-baseline", spec)
}

// profileLoad runs spec while it takes a CPU profile of the server whose
// pprof listens on pprofAddr, then its heap and allocation profiles, into
// ProfileDir as NAME.cpu.pprof, NAME.heap.pprof, NAME.allocs.pprof.
func (e *env) profileLoad(ctx context.Context, pprofAddr, name string, spec loadSpec) error {
	var res loadResult
	err := e.profile(ctx, pprofAddr, name, spec.warmup, spec.duration, func() error {
		res = runLoad(ctx, spec)
		return nil
	})
	e.logf("profiled %s (%.0f req/s) into %s", name, res.RPS, e.cfg.ProfileDir)
	return err
}

// profile runs fn; after skip, it takes a CPU profile for about d of it,
// and when fn is done the heap and allocation profiles.
func (e *env) profile(ctx context.Context, pprofAddr, name string, skip, d time.Duration, fn func() error) error {
	if err := os.MkdirAll(e.cfg.ProfileDir, 0o755); err != nil {
		return err
	}
	fetch := func(path, file string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pprofAddr+path, nil)
		if err != nil {
			return err
		}
		resp, err := newClient(1).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
		}
		f, err := os.Create(filepath.Join(e.cfg.ProfileDir, file))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		return err
	}
	var wg sync.WaitGroup
	var perr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(skip)
		secs := max(1, int(d.Seconds())-1)
		perr = fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), name+".cpu.pprof")
	}()
	err := fn()
	wg.Wait()
	if err := errors.Join(err, perr); err != nil {
		return err
	}
	for _, p := range []string{"heap", "allocs"} {
		if err := fetch("/debug/pprof/"+p, name+"."+p+".pprof"); err != nil {
			return err
		}
	}
	return nil
}
