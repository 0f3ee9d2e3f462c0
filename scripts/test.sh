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
# With the throwaway cluster comes a private PgBouncer in front of it
# (transaction pooling, Debian's pgbouncer, installed if missing), stopped
# with it; PGTEST_POOLER_URL points at it, and the tests that route tenant
# traffic through a pooler use it. With DATABASE_URL set, those tests run
# only if PGTEST_POOLER_URL is set too (a pgbouncer in transaction mode in
# front of that server, trusting its user as the server does); otherwise
# they skip, saying so.
#
# Runs `go test` in the current directory, so it works from any Go module.
# TEST_PACKAGES overrides the package patterns (default: all, ./...).

set -euo pipefail

# shellcheck source=scripts/pg.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg.sh"

# CI images and fresh machines often have Go only in /usr/local/go/bin.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || pg_die "go not found on PATH"

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	pg_throwaway_cleanup
	clusters_cleanup
	exit "$rc"
}

# The tests destroy the clusters they start, but not when their process
# is killed (a timeout, an interrupt), and postgres outlives it: whatever
# is left in PGTEST_CLUSTER_DIR is stopped and deleted here.
# shellcheck disable=SC2317 # invoked by trap
clusters_cleanup() {
	[[ -n ${PGTEST_CLUSTER_DIR:-} && -d $PGTEST_CLUSTER_DIR ]] || return 0
	local d
	for d in "$PGTEST_CLUSTER_DIR"/*/; do
		[[ -f $d/PG_VERSION ]] && bash "$(dirname "${BASH_SOURCE[0]}")/pg.sh" destroy "$d" >/dev/null 2>&1
	done
	rm -rf "$PGTEST_CLUSTER_DIR"
}

# On Ctrl-C or kill, stop go test (its whole process group: go test plus the
# test binaries it runs) before the EXIT trap tears down the cluster. It
# always gets SIGINT: on SIGTERM go test dies at once and leaves its
# /tmp/go-build* work folder behind, on SIGINT it cleans up after itself.
# shellcheck disable=SC2317 # invoked by trap
on_signal() {
	trap - INT TERM HUP
	pg_stop_group 100
	exit "$1"
}

# promtool checks the alert rules of deploy/ (TestDeployMonitoring). It
# comes with Debian's prometheus package, installed here when missing as
# PostgreSQL is; a Prometheus service the install starts is stopped (the
# tests need only the tool).
promtool_setup() {
	PROMTOOL=$(command -v promtool || true)
	if [[ -z $PROMTOOL ]]; then
		pg_apt_install prometheus prometheus "the tests check deploy/prometheus/alerts.yml with its promtool" "install Prometheus's promtool manually"
		PROMTOOL=$(command -v promtool || echo /usr/bin/promtool)
		[[ -x $PROMTOOL ]] || pg_die "installed prometheus but found no promtool"
	fi
	export PROMTOOL
}
promtool_setup

# Chromium drives the fleet console in a real browser
# (TestConsoleInBrowser, through chromedp): Debian's chromium package,
# installed here when missing, as PostgreSQL is. CHROMIUM is exported, so
# under make test the browser test runs (and fails if the browser cannot
# start) instead of skipping as it does under a bare go test without one.
chromium_setup() {
	CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
	if [[ -z $CHROMIUM ]]; then
		pg_apt_install chromium chromium "the tests drive the fleet console (/console) in headless Chromium" "install Chromium (Debian's chromium package) manually, or set CHROMIUM to its binary"
		CHROMIUM=$(command -v chromium || echo /usr/bin/chromium)
		[[ -x $CHROMIUM ]] || pg_die "installed chromium but found no chromium binary"
	fi
	export CHROMIUM
}
chromium_setup

trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# The clusters of the tests live in memory where the machine has room
# (pg_memory_dir): the throwaway one, and those the tests start
# themselves (PGTEST_CLUSTER_DIR, read by tenantdb/pgtest). The suite
# creates and drops databases by the hundred, and on a tmpfs each costs
# about a third less CPU.
mem=$(pg_memory_dir)
PGTEST_CLUSTER_DIR=$(mktemp -d "${mem:-/tmp}/controlplane-test-clusters.XXXXXX")
chmod 755 "$PGTEST_CLUSTER_DIR" # postgres (when we are root) must reach its clusters
export PGTEST_CLUSTER_DIR

if [[ -z ${DATABASE_URL:-} ]]; then
	# No autovacuum: the tests do not need it, and it visits every
	# database the tests made each minute.
	PG_TMP_BASE=${mem:-/tmp} pg_throwaway_init controlplane-test-pg "autovacuum = off"
	pg_throwaway_start
	pg_pooler_start "$PG_TMP_ROOT/pgbouncer" "$PG_PORT"
fi

# go test runs in its own process group (pg_run_group), which on_signal can
# signal as a whole: go test does not pass an interrupt on to the test
# binaries, it expects the terminal to deliver it to all of them. The
# default -timeout and -parallel come first so the caller's own win.
# -parallel 4: most of the end-to-end tests wait (on clusters starting, on
# replication, on a cutover's hold) rather than compute, so four at a time
# keep this 2-CPU machine busy where the default (GOMAXPROCS, 2) left it
# waiting: cmd/controlplane takes about 4.5 minutes instead of 6.
# -ldflags='-s -w': test binaries without the symbol table and DWARF,
# which only debuggers read (a failure's stack trace comes from the
# runtime's own tables): each of the ~25 links costs a third less CPU.
go_test=(go test -count=1 -timeout 20m -parallel 4 -ldflags='-s -w')
# ./cmd/controlplane/ first: go test starts packages in the order given
# (two at a time), and the end-to-end tests there are the longest by far,
# so they start at once instead of after the packages ./... lists first.
# shellcheck disable=SC2206 # TEST_PACKAGES may list several patterns.
go_test+=(${TEST_PACKAGES:-./cmd/controlplane/ ./...} "$@")
# The fuzz smoke run (scripts/fuzz.sh, one fuzzing worker) runs beside go
# test, in the same process group so an interrupt stops it too: the
# end-to-end tests spend much of their time waiting on PostgreSQL, and the
# fuzzer's ~45 s fit in those waits instead of following them. Either
# failing fails the run.
fuzz_script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fuzz.sh"
# shellcheck disable=SC2016 # expanded by the inner bash
run_tests=(bash -c 'FUZZ_WORKERS=1 bash "$1" & fuzz=$!; "${@:2}"; rc=$?; wait "$fuzz" || { [[ $rc == 0 ]] && rc=1; }; exit "$rc"' run_tests "$fuzz_script" "${go_test[@]}")
pg_run_group "${run_tests[@]}"
rc=0
pg_wait_group || rc=$?
exit "$rc"
