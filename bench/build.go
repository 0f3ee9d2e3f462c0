package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
)

// buildAll builds the product, its variants and the baseline, in parallel.
func (e *env) buildAll(ctx context.Context) error {
	e.logf("building the product, its variants and the baseline")
	dir := filepath.Join(e.work, "bin")
	if err := os.MkdirAll(filepath.Join(e.work, "overlay"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	e.bin = binaries{
		product:  filepath.Join(dir, "controlplane"),
		fleet:    filepath.Join(dir, "controlplane-fleet"),
		many:     filepath.Join(dir, "controlplane-many"),
		baseline: filepath.Join(dir, "baseline"),
	}
	fleetOverlay, err := e.overlay("fleet", e.rolloutMigration())
	if err != nil {
		return err
	}
	manyOverlay, err := e.overlay("many", e.manyMigrations())
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return build(gctx, e.cfg.Root, e.bin.product, "./cmd/controlplane", nil) })
	g.Go(func() error { return build(gctx, e.cfg.Root, e.bin.baseline, "./bench/baseline", nil) })
	g.Go(func() error { return build(gctx, e.cfg.Root, e.bin.fleet, "./cmd/controlplane", fleetOverlay) })
	g.Go(func() error { return build(gctx, e.cfg.Root, e.bin.many, "./cmd/controlplane", manyOverlay) })
	if e.cfg.ProfileDir != "" {
		e.bin.pprof = filepath.Join(dir, "controlplane-pprof")
		path := filepath.Join(e.work, "overlay", "pprof.go")
		if err := os.WriteFile(path, []byte(pprofFile), 0o644); err != nil {
			return err
		}
		g.Go(func() error {
			return build(gctx, e.cfg.Root, e.bin.pprof, "./cmd/controlplane", map[string]string{"cmd/controlplane/zz_bench_pprof.go": path})
		})
	}
	return g.Wait()
}

// pprofFile is added to package main of the pprof variant: the product has
// no pprof endpoint, and must not get one for the benchmark's sake.
const pprofFile = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// rolloutMigration is the "one new migration" of benchmark 3, numbered
// after the checkout's latest.
func (e *env) rolloutMigration() []migration {
	v := e.base + 1
	return []migration{{
		version: v, name: fmt.Sprintf("%06d_bench_rollout", v),
		up:   "ALTER TABLE extensions ADD COLUMN bench_note text;\n",
		down: "ALTER TABLE extensions DROP COLUMN bench_note;\n",
	}}
}

// manyMigrations brings the tenant migrations to ManyMigrations files,
// each a small column addition like a real schema change.
func (e *env) manyMigrations() []migration {
	var out []migration
	for v := e.base + 1; len(e.mig)+len(out) < e.sz.ManyMigrations; v++ {
		out = append(out, migration{
			version: v, name: fmt.Sprintf("%06d_bench_many_%d", v, v),
			up:   fmt.Sprintf("ALTER TABLE extensions ADD COLUMN bench_m%d text;\n", v),
			down: fmt.Sprintf("ALTER TABLE extensions DROP COLUMN bench_m%d;\n", v),
		})
	}
	return out
}

// overlay writes ms and returns the go build overlay that adds them to
// migrations/tenant.
func (e *env) overlay(tag string, ms []migration) (map[string]string, error) {
	dir := filepath.Join(e.work, "overlay", tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range ms {
		for dirn, body := range map[string]string{"up": m.up, "down": m.down} {
			name := m.name + "." + dirn + ".sql"
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				return nil, err
			}
			out[filepath.Join("migrations", "tenant", name)] = path
		}
	}
	return out, nil
}

// readMigrations reads the tenant migrations of the checkout, in order.
func readMigrations(dir string) ([]migration, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byVersion := map[uint]*migration{}
	for _, ent := range ents {
		name := ent.Name()
		base, dirn, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), ".")
		if !ok || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, _ := strings.Cut(base, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		m := byVersion[uint(v)]
		if m == nil {
			m = &migration{version: uint(v), name: base}
			byVersion[uint(v)] = m
		}
		switch dirn {
		case "up":
			m.up = string(b)
		case "down":
			m.down = string(b)
		}
	}
	var out []migration
	for _, m := range byVersion {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	if len(out) == 0 {
		return nil, fmt.Errorf("no tenant migrations in %s", dir)
	}
	return out, nil
}
