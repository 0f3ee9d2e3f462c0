// Command bench runs the control plane's benchmarks, each against its
// baseline in the same run, prints a summary and writes
// docs/BENCHMARKS.md. `make bench` runs it on a throwaway PostgreSQL;
// with DATABASE_URL set it uses that server.
//
//	go run ./bench/cmd/bench -size full -out docs/BENCHMARKS.md
//	go run ./bench/cmd/bench -size full -only reads -profile /tmp/prof
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/laracopilot/controlplane/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	size := flag.String("size", "full", "smoke (seconds, every code path) or full (the sizes docs/BENCHMARKS.md reports)")
	only := flag.String("only", "", "comma-separated benchmarks to run: "+strings.Join(bench.Benchmarks, ", ")+" (default all)")
	rows := flag.String("rows", "", "comma-separated rows of benchmark 6 (connections) to run: 1-5, rows 1 and 4 together (default all)")
	out := flag.String("out", "", "write the report (markdown) to this file, e.g. docs/BENCHMARKS.md")
	profile := flag.String("profile", "", "save CPU and heap profiles of serve during benchmark 1 in this folder")
	procs := flag.Int("gomaxprocs", 0, "GOMAXPROCS of every server (default: the number of CPUs)")
	flag.Parse()

	// BENCH_CLUSTER_DIR: bench/run.sh's folder for the clusters of benchmark
	// 6, set when it made the run's server itself.
	cfg := bench.Config{ServerURL: os.Getenv("DATABASE_URL"), ClusterDir: os.Getenv("BENCH_CLUSTER_DIR"), GoMaxProcs: *procs, ProfileDir: *profile, Log: os.Stderr}
	switch *size {
	case "full":
		cfg.Sizes = bench.Full
	case "smoke":
		cfg.Sizes = bench.Smoke
	default:
		return fmt.Errorf("-size must be smoke or full, got %q", *size)
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if *rows != "" {
		cfg.Rows = strings.Split(*rows, ",")
		for _, r := range cfg.Rows {
			if r < "1" || r > "5" || len(r) != 1 {
				return fmt.Errorf("-rows: benchmark 6 has rows 1 to 5, got %q", r)
			}
		}
	}
	if cfg.ServerURL == "" {
		return errors.New("DATABASE_URL is not set: run `make bench`, which starts a throwaway PostgreSQL")
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cfg.Root = root

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Println()
	rep.Summary(os.Stdout)
	if *out != "" {
		var b bytes.Buffer
		rep.Markdown(&b)
		if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", *out)
	}
	for _, r := range rep.Rows() {
		if r.Met == "no" {
			fmt.Println("some targets are missed: see the explanations in the report")
			break
		}
	}
	return nil
}

// moduleRoot finds the checkout being measured: the nearest folder above
// the working directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
