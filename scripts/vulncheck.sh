#!/usr/bin/env bash
# govulncheck over the whole module, against the Go vulnerability database.
#
# The database is built from the golang.org/x/vulndb module (its data/osv
# files, indexed by its own cmd/indexdb), fetched through the Go module
# proxy like any dependency: the machines this runs on (CI among them)
# reach the proxy but not vuln.go.dev. Both tools are pinned; the built
# database is cached under ~/.cache/controlplane-vulndb.
#
# Findings the code calls in a module we require fail the check: upgrade
# that module. Findings in the standard library are listed with the Go
# release that fixes them, without failing: the Go toolchain is the one the
# machine has (GOTOOLCHAIN=local), and releases must be built with a Go
# that has the fixes (scripts/vulncheck/main.go).
set -euo pipefail
cd "$(dirname "$0")/.."

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
GOVULNCHECK_VERSION=v1.9.0

cache=${XDG_CACHE_HOME:-$HOME/.cache}/controlplane-vulndb/$VULNDB_VERSION
if [[ ! -f $cache/index/db.json ]]; then
	echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION (once)" >&2
	src=$(GOFLAGS=-mod=mod go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $src/data/osv ]] || { echo "vulncheck: no data/osv in $src" >&2; exit 2; }
	rm -rf "$cache.tmp"
	mkdir -p "$(dirname "$cache")"
	GOFLAGS=-mod=mod go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$cache.tmp"
	mv "$cache.tmp" "$cache"
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Exit status 3 means "vulnerabilities found"; the filter decides.
status=0
GOFLAGS=-mod=mod go run "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION" -db "file://$cache" -format json ./... >"$out" || status=$?
if ((status != 0 && status != 3)); then
	echo "vulncheck: govulncheck failed (status $status)" >&2
	exit "$status"
fi
go run ./scripts/vulncheck <"$out"
