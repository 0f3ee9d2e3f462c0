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

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/pg.sh
source scripts/pg.sh

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || pg_die "go not found on PATH"

tmp_root=""  # throwaway cluster and build folder, removed on exit
child_pid="" # the benchmark process (its own process group)

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [[ -n $tmp_root ]]; then
		if [[ -f $tmp_root/data/postmaster.pid ]]; then
			pg_stop_cluster "$tmp_root/data" immediate || true
		fi
		if [[ -f $tmp_root/data/postmaster.pid ]]; then
			local pid
			pid=$(head -n 1 "$tmp_root/data/postmaster.pid" 2>/dev/null || true)
			if [[ $pid =~ ^[0-9]+$ ]]; then
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
		rm -rf -- "$tmp_root"
	fi
	exit "$rc"
}

# On Ctrl-C or kill, interrupt the benchmark (it stops its servers and
# drops what it made) and give it time to, before the cluster goes.
# shellcheck disable=SC2317 # invoked by trap
on_signal() {
	local code=$1 i
	trap - INT TERM HUP
	if [[ -n $child_pid ]]; then
		kill -INT -- "-$child_pid" 2>/dev/null || kill -INT "$child_pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			kill -0 "$child_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$child_pid" 2>/dev/null || true
		wait "$child_pid" 2>/dev/null || true
	fi
	exit "$code"
}

trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

free_port() {
	local port=$((55000 + RANDOM % 5000)) i
	for ((i = 0; i < 200; i++)); do
		if command -v ss >/dev/null; then
			if [[ -z $(ss -tanH "sport = :$port" 2>/dev/null) ]]; then
				echo "$port"
				return 0
			fi
		elif ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
		port=$((port >= 59999 ? 55000 : port + 1))
	done
	pg_die "no free port found in 55000-59999"
}

start_cluster() {
	pg_clean_env
	pg_setup_bin
	tmp_root=$(mktemp -d /tmp/controlplane-bench-pg.XXXXXX)
	mkdir "$tmp_root/data"
	if pg_is_root; then
		chown -R "$PG_OS_USER": "$tmp_root"
	fi
	chmod 700 "$tmp_root/data"
	local settings=("fsync = off" "synchronous_commit = off" "full_page_writes = off" "max_connections = 400")
	if [[ -f $(dirname "$PG_BIN")/lib/pg_stat_statements.so ]]; then
		settings+=("shared_preload_libraries = 'pg_stat_statements'")
	fi
	PG_INITDB_ARGS=(--no-sync)
	pg_initdb "$tmp_root/data" "${settings[@]}"
	# First match wins: postgres stays trusted, every other role (tenant
	# roles) must prove its password with SCRAM.
	{
		echo "host all postgres 127.0.0.1/32 trust"
		echo "host all all 127.0.0.1/32 scram-sha-256"
		cat "$tmp_root/data/pg_hba.conf"
	} >"$tmp_root/pg_hba.conf"
	pg_run cp "$tmp_root/pg_hba.conf" "$tmp_root/data/pg_hba.conf"

	local attempt port rc
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		rc=0
		pg_start_cluster "$tmp_root/data" "$port" "$tmp_root/postgres.log" "$tmp_root" 1 || rc=$?
		if ((rc == 0)); then
			pg_wait_ready "$port"
			export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			pg_log "throwaway postgres on 127.0.0.1:$port (in $tmp_root)"
			return 0
		fi
		((rc == 2)) || break
		pg_log "port $port was taken, trying another one (attempt $attempt)"
	done
	pg_die "could not start the throwaway postgres"
}

if [[ -z ${DATABASE_URL:-} ]]; then
	start_cluster
else
	tmp_root=$(mktemp -d /tmp/controlplane-bench.XXXXXX)
fi

if [[ ${1:-} == smoke ]]; then
	cmd=(go test -count=1 -timeout 10m -run '^TestSmoke$' -v ./bench/)
else
	# Built, not `go run`: a signal then reaches the harness itself.
	go build -o "$tmp_root/bench" ./bench/cmd/bench
	if (($# == 0)); then
		set -- -size full -out docs/BENCHMARKS.md
	fi
	cmd=("$tmp_root/bench" "$@")
fi

# In the background, in a process group of its own, so that a signal aimed
# at this script is handled at once by on_signal (as scripts/test.sh does).
if command -v setsid >/dev/null; then
	setsid "${cmd[@]}" &
else
	"${cmd[@]}" &
fi
child_pid=$!
rc=0
wait "$child_pid" || rc=$?
child_pid=""
exit "$rc"
