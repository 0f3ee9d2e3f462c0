#!/usr/bin/env bash
# Runs the Go tests against PostgreSQL (the body of `make test`).
#
# Usage: scripts/test.sh [go test args...]      e.g. scripts/test.sh -race -run TestTenant
#
# If DATABASE_URL is set it is used as is. Otherwise a throwaway cluster is
# created in a fresh temporary folder on a free port, DATABASE_URL points at
# its "postgres" database (the tests create their own databases from it), and
# the cluster and folder are removed afterwards, whether the tests pass, fail
# or are interrupted. The exit code is go test's.
#
# Runs `go test` in the current directory, so it works from any Go module.
# TEST_PACKAGES overrides the package pattern (default ./...).

set -euo pipefail

# shellcheck source=scripts/pg.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

# CI images and fresh machines often have Go only in /usr/local/go/bin.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || pg_die "go not found on PATH"

tmp_root=""    # throwaway cluster folder, removed on exit
gotest_pid=""  # go test's pid (and process group id)

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [[ -n $tmp_root ]]; then
		# Immediate shutdown: nothing in a throwaway cluster is worth a checkpoint.
		if [[ -f $tmp_root/data/postmaster.pid ]]; then
			pg_stop_cluster "$tmp_root/data" immediate || true
		fi
		# pg_ctl can fail (e.g. a half-started server); make sure nothing survives.
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

# On Ctrl-C or kill, stop go test (its whole process group: go test plus the
# test binaries it runs) before the EXIT trap tears down the cluster. It
# always gets SIGINT: on SIGTERM go test dies at once and leaves its
# /tmp/go-build* work folder behind, on SIGINT it cleans up after itself.
# shellcheck disable=SC2317 # invoked by trap
on_signal() {
	local code=$1 i
	trap - INT TERM HUP
	if [[ -n $gotest_pid ]]; then
		kill -INT -- "-$gotest_pid" 2>/dev/null || kill -INT "$gotest_pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$gotest_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$gotest_pid" 2>/dev/null || kill -KILL "$gotest_pid" 2>/dev/null || true
		wait "$gotest_pid" 2>/dev/null || true
	fi
	exit "$code"
}

trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# A random start in 55000-59999 keeps parallel runs from racing for the same
# port; then walk up until nothing listens there.
free_port() {
	local port=$((55000 + RANDOM % 5000)) i
	for ((i = 0; i < 200; i++)); do
		if command -v ss >/dev/null; then
			# All states, not just listeners: a connection bound to the port
			# (it is inside the kernel's ephemeral range) also blocks it.
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

start_throwaway_cluster() {
	pg_clean_env
	pg_setup_bin
	# Under /tmp, not the checkout: when we are root, postgres must be able
	# to traverse to it, and a clone may sit in a mode-700 folder.
	tmp_root=$(mktemp -d /tmp/controlplane-test-pg.XXXXXX)
	mkdir "$tmp_root/data"
	if pg_is_root; then
		id -u "$PG_OS_USER" >/dev/null 2>&1 || pg_die "user $PG_OS_USER does not exist"
		chown -R "$PG_OS_USER": "$tmp_root"
	fi
	chmod 700 "$tmp_root/data"
	# Nothing here has to survive a crash: skip every fsync.
	PG_INITDB_ARGS=(--no-sync)
	pg_initdb "$tmp_root/data" \
		"fsync = off" "synchronous_commit = off" "full_page_writes = off"

	# Another process can grab the port between the check and the bind: retry.
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
	start_throwaway_cluster
fi

# go test runs in the background so that a signal aimed at this script
# (kill -INT, Ctrl-C) is handled right away by on_signal instead of after the
# tests finish. setsid gives it its own process group, which on_signal can
# signal as a whole: go test does not pass an interrupt on to the test
# binaries, it expects the terminal to deliver it to all of them. (bash's
# `set -m` would do the same but grabs the terminal and can stop a
# backgrounded `make test` with SIGTTIN.) The default -timeout comes first so
# the caller's own -timeout wins.
go_test=(go test -count=1 -timeout 10m)
# shellcheck disable=SC2206 # TEST_PACKAGES may list several patterns.
go_test+=(${TEST_PACKAGES:-./...} "$@")
# The fuzz smoke run (scripts/fuzz.sh) follows a passing go test, in the same
# process group, so an interrupt stops it too.
fuzz_script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fuzz.sh"
# shellcheck disable=SC2016 # expanded by the inner bash
run_tests=(bash -c '"${@:2}" && bash "$1"' run_tests "$fuzz_script" "${go_test[@]}")
if command -v setsid >/dev/null; then
	setsid "${run_tests[@]}" &
else
	"${run_tests[@]}" &
fi
gotest_pid=$!

rc=0
wait "$gotest_pid" || rc=$?
gotest_pid=""
exit "$rc"
