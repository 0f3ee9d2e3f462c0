#!/usr/bin/env bash
# Runs every Go fuzz target briefly (FUZZTIME each, default 3s): the seeds
# committed in the f.Add calls, plus a short random exploration, so that the
# hostile-input harness cannot rot. `make test` runs it beside the tests;
# `make fuzz FUZZTIME=5m` explores longer.
#
# Usage: scripts/fuzz.sh            (FUZZTIME=0 skips it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-3s}
# FUZZ_WORKERS: fuzzing processes per target (default: one per CPU).
workers=${FUZZ_WORKERS:-$(nproc)}
if [[ $fuzztime == 0 ]]; then
	exit 0
fi

# "pkgdir FuzzName" for every fuzz target in the module.
mapfile -t targets < <(grep -rhoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' --with-filename . |
	sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)$#\1 \2#' | sort -u)

for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	echo "fuzz: $name (./$dir, $fuzztime)"
	# Go's fuzzer can time out starting its workers on a loaded machine
	# ("context deadline exceeded", no failing input): try such a run again.
	fuzz_once() { go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel "$workers" "./$dir" >/tmp/fuzz.$$.log 2>&1; }
	fuzz_once || { grep -q 'context deadline exceeded' /tmp/fuzz.$$.log && ! grep -q 'Failing input' /tmp/fuzz.$$.log && fuzz_once; } || {
		cat /tmp/fuzz.$$.log
		rm -f /tmp/fuzz.$$.log
		echo "fuzz: $name FAILED (a failing input is saved under ./$dir/testdata/fuzz/$name; commit it as a seed once fixed)"
		exit 1
	}
done
rm -f /tmp/fuzz.$$.log
echo "fuzz: ${#targets[@]} targets passed"
