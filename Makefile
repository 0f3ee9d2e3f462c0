SHELL := /bin/bash
.DEFAULT_GOAL := help

# Fresh machines and CI images often have Go only in /usr/local/go/bin.
ifeq ($(shell command -v go 2>/dev/null),)
ifneq ($(wildcard /usr/local/go/bin/go),)
export PATH := /usr/local/go/bin:$(PATH)
endif
endif

# Local development database (see scripts/pg.sh). Override on the command
# line, e.g. `make run PGPORT_DEV=55432`.
PGPORT_DEV ?= 54329
PGDATA_DEV ?= .data/postgres

# Extra flags for go test, e.g. `make test TESTFLAGS='-run TestTenant -v'`.
TESTFLAGS ?=

# The binary's identity (controlplane version, /healthz, the
# controlplane_build_info metric), stamped into make build's and make run's
# binary; outside a git checkout they stay "dev" and "unknown".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null || c=$$c-dirty; }; echo $$c)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS = -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)

# Every Go file except those under .data (the Postgres data directory may not
# even be readable by us), .git and bin.
GO_FILES = $(shell find . \( -path ./.data -o -path ./.git -o -path ./bin \) -prune -o -type f -name '*.go' -print)

.PHONY: help
help: ## Show this help
	@c=""; r=""; if [[ -t 1 ]]; then c=$$'\033[36m'; r=$$'\033[0m'; fi; \
	grep -hE '^[a-zA-Z_-]+:.*?## .*$$' $(MAKEFILE_LIST) | \
		awk -v c="$$c" -v r="$$r" 'BEGIN {FS = ":.*?## "}; {printf "%s%-12s%s %s\n", c, $$1, r, $$2}'

# make run keeps no spare tenant databases unless asked: spares take their
# ids from the tenants' sequence in the background, so the first tenant of a
# fresh `make run` could be tenant 2, not the README's tenant 1.
.PHONY: run
run: ## Run the control plane on 127.0.0.1:8080 (starts a local Postgres in .data/postgres unless DATABASE_URL is set)
	@export TENANT_SPARE_DATABASES="$${TENANT_SPARE_DATABASES:-0}"; \
	if [[ -z "$${DATABASE_URL:-}" ]]; then \
		bash scripts/pg.sh start $(PGDATA_DEV) $(PGPORT_DEV) && \
		DATABASE_URL="$$(bash scripts/pg.sh url $(PGPORT_DEV))" LISTEN_ADDR="$${LISTEN_ADDR:-127.0.0.1:8080}" go run -ldflags "$(LDFLAGS)" ./cmd/controlplane serve; \
	else \
		LISTEN_ADDR="$${LISTEN_ADDR:-127.0.0.1:8080}" go run -ldflags "$(LDFLAGS)" ./cmd/controlplane serve; \
	fi

.PHONY: build
build: ## Build bin/controlplane, stamped with its version (bin/controlplane version)
	go build -ldflags "$(LDFLAGS)" -o bin/controlplane ./cmd/controlplane

.PHONY: test
test: ## Run the tests and, beside them, a short fuzz run (against a throwaway Postgres unless DATABASE_URL is set)
	bash scripts/test.sh $(TESTFLAGS)

.PHONY: test-race
test-race: ## Run the tests with the race detector
	bash scripts/test.sh -race $(TESTFLAGS)

.PHONY: bench
bench: ## Run every benchmark against its baseline on a throwaway Postgres and write docs/BENCHMARKS.md (~30 min)
	bash bench/run.sh

.PHONY: bench-smoke
bench-smoke: ## Run every benchmark at tiny size, as a test (make test runs it too)
	bash bench/run.sh smoke

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 1m; make test runs them for 3s)
	FUZZTIME=$${FUZZTIME:-1m} bash scripts/fuzz.sh

.PHONY: vet
vet: ## Run go vet
	go vet ./...

.PHONY: fmt
fmt: ## Check formatting with gofmt (fails if a file needs formatting)
	@# </dev/null: with no Go files at all, gofmt would read stdin.
	@files="$$(gofmt -l $(GO_FILES) </dev/null)" || exit 1; \
	if [[ -n "$$files" ]]; then \
		echo "These files need formatting (run: gofmt -w <file>):"; \
		echo "$$files"; \
		exit 1; \
	fi

# staticcheck at a pinned version, fetched through the Go module proxy.
STATICCHECK_VERSION := v0.8.2

.PHONY: staticcheck
staticcheck: ## Run staticcheck (pinned version, fetched through the Go module proxy)
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: vuln
vuln: ## Run govulncheck (pinned; its database built from golang.org/x/vulndb through the module proxy)
	bash scripts/vulncheck.sh

.PHONY: lint
lint: vet fmt staticcheck vuln ## Run go vet, the gofmt check, staticcheck and govulncheck

.PHONY: test-unit test-fast
test-unit: ## The fast lane: every test that needs no PostgreSQL (go test -short), well under a minute
	go test -short -count=1 ./...
test-fast: test-unit ## The same as test-unit

.PHONY: db-start
db-start: ## Start the local development Postgres (.data/postgres, port 54329 by default)
	bash scripts/pg.sh start $(PGDATA_DEV) $(PGPORT_DEV)

.PHONY: db-stop
db-stop: ## Stop the local development Postgres
	bash scripts/pg.sh stop $(PGDATA_DEV)

.PHONY: db-reset
db-reset: ## Stop and delete the local development Postgres, then start a fresh one
	bash scripts/pg.sh destroy $(PGDATA_DEV)
	bash scripts/pg.sh start $(PGDATA_DEV) $(PGPORT_DEV)

.PHONY: clean
clean: ## Remove build output (bin/)
	rm -rf bin
