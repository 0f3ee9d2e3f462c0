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

# "dir Fuzz..." lines, sorted, so a package's targets come together.
mapfile -t targets < <(grep -rhoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' --with-filename . |
	sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)$#\1 \2#' | sort -u)

# One instrumented test binary per package (go test -c -fuzz), run once
# per target, rather than a `go test -fuzz` per target: each of those
# links the package's test binary again, seconds of CPU apiece. The
# binary runs in its package's folder, as go test runs it, so it reads
# and writes testdata/fuzz there; its generated corpus goes where go
# test keeps it.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache=$(go env GOCACHE)/fuzz
log=$work/fuzz.log
built=
for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	bin=$work/${dir//\//_}.test
	if [[ $built != "$dir" ]]; then
		# -fuzz at build time only turns the coverage instrumentation on;
		# -s -w: no symbol table or DWARF (debuggers' only), a cheaper link.
		go test -c -o "$bin" -ldflags='-s -w' -fuzz "^${name}\$" "./$dir"
		pkg=$(go list "./$dir")
		built=$dir
	fi
	echo "fuzz: $name (./$dir, $fuzztime)"
	# Go's fuzzer can time out starting its workers on a loaded machine
	# ("context deadline exceeded", no failing input): try such a run again.
	fuzz_once() {
		(cd "$dir" && "$bin" -test.run '^$' -test.fuzz "^${name}\$" -test.fuzztime "$fuzztime" \
			-test.parallel "$workers" -test.fuzzcachedir "$cache/$pkg") >"$log" 2>&1
	}
	fuzz_once || { grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input' "$log" && fuzz_once; } || {
		cat "$log"
		echo "fuzz: $name FAILED (a failing input is saved under ./$dir/testdata/fuzz/$name; commit it as a seed once fixed)"
		exit 1
	}
done
echo "fuzz: ${#targets[@]} targets passed"
