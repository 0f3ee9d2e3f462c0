#!/usr/bin/env bash
# Runs the benchmarks (the body of `make bench` and `make bench-smoke`)
# against a throwaway PostgreSQL, made like scripts/test.sh makes its own.
#
# Usage:
#   bench/run.sh                  all benchmarks at full size; writes docs/BENCHMARKS.md
#   bench/run.sh FLAGS...         bench/cmd/bench with these flags instead, e.g.
#                                 bench/run.sh -size full -only reads -profile /tmp/prof
#   bench/run.sh smoke            TestSmoke: every benchmark at tiny size (a test)
#
# If DATABASE_URL is set it is used as is (the run creates and drops its own
# bn* databases and roles there). Otherwise a cluster is created in a fresh
# temporary folder on a free port and removed afterwards, whatever happens.
# It differs from the test cluster in three settings, each for the
# benchmarks' sake:
#   - max_connections = 400: benchmark 1 keeps 200 tenant databases' pools
#     warm within a budget of 300 connections;
#   - pg_stat_statements is preloaded: the report shows what PostgreSQL
#     executed per operation;
#   - roles other than postgres authenticate with SCRAM-SHA-256, as tenant
#     roles do in production, so a new tenant connection costs what it
#     costs there (the harness itself connects as postgres, trusted).
# Benchmark 6 (connections) needs servers of max_connections 300 and 100:
# the harness starts them itself, made alike, in BENCH_CLUSTER_DIR, a folder
# this script makes and removes (with any cluster still in it) whatever
# happens. With DATABASE_URL set there is no such folder, and those rows run
# on the given server (the report says so). Benchmark 7 (servers) starts its
# three tenant servers in that folder too, and benchmark 9 (move) its two,
# or, without it, in a temporary folder of their own.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || pg_die "go not found on PATH"

build_dir=$(mktemp -d /tmp/controlplane-bench.XXXXXX) # the harness binary
cluster_dir=""                                       # benchmark 6's clusters

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [[ -n $cluster_dir ]]; then
		# The harness removes its clusters itself; these are what an
		# interrupted or killed harness left.
		local main=$PG_TMP_ROOT d
		for d in "$cluster_dir"/*/; do
			[[ -d $d ]] || continue
			PG_TMP_ROOT=${d%/}
			pg_throwaway_cleanup
		done
		PG_TMP_ROOT=$main
		rm -rf -- "$cluster_dir"
	fi
	pg_throwaway_cleanup
	rm -rf -- "$build_dir"
	exit "$rc"
}

# On Ctrl-C or kill, interrupt the benchmark (it stops its servers and
# drops what it made) and give it time to, before the cluster goes.
# shellcheck disable=SC2317 # invoked by trap
on_signal() {
	trap - INT TERM HUP
	pg_stop_group 300
	exit "$1"
}

trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

if [[ -z ${DATABASE_URL:-} ]]; then
	settings=("max_connections = 400")
	pg_setup_bin
	if [[ -f $(dirname "$PG_BIN")/lib/pg_stat_statements.so ]]; then
		settings+=("shared_preload_libraries = 'pg_stat_statements'")
	fi
	pg_throwaway_init controlplane-bench-pg "${settings[@]}"
	# First match wins: postgres stays trusted, every other role (tenant
	# roles) must prove its password with SCRAM.
	{
		echo "host all postgres 127.0.0.1/32 trust"
		echo "host all all 127.0.0.1/32 scram-sha-256"
		cat "$PG_TMP_ROOT/data/pg_hba.conf"
	} >"$PG_TMP_ROOT/pg_hba.conf"
	pg_run cp "$PG_TMP_ROOT/pg_hba.conf" "$PG_TMP_ROOT/data/pg_hba.conf"
	pg_throwaway_start
	# Traversable: the postgres user runs the clusters in it.
	cluster_dir=$(mktemp -d /tmp/controlplane-bench-clusters.XXXXXX)
	chmod 755 "$cluster_dir"
	export BENCH_CLUSTER_DIR=$cluster_dir
fi

if [[ ${1:-} == smoke ]]; then
	cmd=(go test -count=1 -timeout 10m -run '^TestSmoke$' -v ./bench/)
else
	# Built, not `go run`: a signal then reaches the harness itself.
	go build -o "$build_dir/bench" ./bench/cmd/bench
	if (($# == 0)); then
		set -- -size full -out docs/BENCHMARKS.md
	fi
	cmd=("$build_dir/bench" "$@")
fi

# In the background, in a process group of its own, so that a signal aimed
# at this script is handled at once by on_signal (as scripts/test.sh does).
pg_run_group "${cmd[@]}"
rc=0
pg_wait_group || rc=$?
exit "$rc"
