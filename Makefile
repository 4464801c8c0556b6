# Developer / CI front door. See scripts/services.sh for the local PostgreSQL + Redis.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

# Go may not be on PATH (CI): prepend the toolchain and GOPATH/bin.
GOROOT_BIN := /usr/local/go/bin
GOPATH_BIN := $(shell PATH="$(GOROOT_BIN):$$PATH" go env GOPATH 2>/dev/null | cut -d: -f1)/bin
export PATH := $(GOROOT_BIN):$(GOPATH_BIN):$(PATH)
# The Go release everything is built and tested with. go1.26.8 (the machine's) has
# standard-library vulnerabilities in net/http, crypto/tls and crypto/x509 that
# `make vulncheck` reports; the go command fetches this release from the module proxy once
# (about 76 MB). go.mod's toolchain line says the same to machines whose go command honours it.
GOTOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN

FLASHSALE_PG_PORT ?= 25432
FLASHSALE_REDIS_PORT ?= 25379
export FLASHSALE_PG_PORT FLASHSALE_REDIS_PORT

ADMIN_TOKEN ?= dev-admin-token
export ADMIN_TOKEN

# The build's identity, stamped into the binary (service.version on the resource, the labels
# of flashsale_build_info on /metrics): the nearest tag or the commit, and the full commit.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.revision=$(REVISION)

FUZZTIME ?= 30s
# How long `make test` fuzzes each target.
FUZZTIME_SUITE ?= 5s
SERVICES := scripts/services.sh
COLLECTOR := scripts/collector.sh
DEV := .dev

# Environment for tests and benchmarks against the local services.
TEST_ENV := FLASHSALE_TEST_DATABASE_URL='postgres://flashsale@127.0.0.1:$(FLASHSALE_PG_PORT)/postgres?sslmode=disable' \
	FLASHSALE_TEST_REDIS_URL='redis://127.0.0.1:$(FLASHSALE_REDIS_PORT)/0' \
	FLASHSALE_REQUIRE_SERVICES=1

.PHONY: help run test test-fast test-stack test-faults check-prometheus slo collector bench bench-load fuzz vulncheck services services-stop services-status build image clean

# `## target: summary` lines are what `make help` prints (their first line); further `##`
# lines go on with the target's description.

## help: list the targets (the default goal)
help:
	@awk '/^## [a-z-]+: / { sub(/^## /, ""); sub(/[;,]$$/, ""); i = index($$0, ": "); \
		printf "  %-17s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2) }' $(firstword $(MAKEFILE_LIST))

## run: start the server on :8080 (DATABASE_URL/REDIS_URL if both are set, else local services);
## Ctrl-C stops it at once: no load balancer to drain (SHUTDOWN_DELAY defaults to 0 here)
run:
	@if [[ -n "$${DATABASE_URL:-}" && -n "$${REDIS_URL:-}" ]]; then \
		echo "run: using DATABASE_URL and REDIS_URL from the environment"; \
	else \
		$(SERVICES) start; \
		eval "$$($(SERVICES) env)"; \
	fi; \
	SHUTDOWN_DELAY="$${SHUTDOWN_DELAY:-0}" exec go run -ldflags "$(LDFLAGS)" ./cmd/flashsale

## test: everything CI runs: vet, vulncheck, fuzz, the Prometheus checks, go test -race ./...
## against the local services, including the end-to-end stack test (service + OpenTelemetry
## Collector + Prometheus); prints "N passed, N failed"
test: services check-prometheus collector
	go vet ./...
	scripts/vulncheck.sh
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SUITE)
	@mkdir -p $(DEV)
	@status=0; \
	$(TEST_ENV) FLASHSALE_OTELCOL="$$($(COLLECTOR) path)" \
		go test -race -count=1 -timeout 30m -v ./... 2>&1 | tee $(DEV)/test-output.txt || status=$$?; \
	passed=$$(grep -cE '^[[:space:]]*--- PASS:' $(DEV)/test-output.txt || true); \
	failed=$$(grep -cE '^[[:space:]]*--- FAIL:' $(DEV)/test-output.txt || true); \
	if [[ $$status -ne 0 && $$failed -eq 0 ]]; then \
		failed=$$(grep -cE '^FAIL[[:space:]]' $(DEV)/test-output.txt || true); \
		[[ $$failed -gt 0 ]] || failed=1; \
	fi; \
	echo; \
	echo "$$passed passed, $$failed failed"; \
	exit $$status

## test-fast: the inner loop: the packages whose tests need no server, in seconds once built
test-fast:
	go test -count=1 ./internal/flashsale ./internal/batch ./internal/httpapi ./internal/reading ./internal/telemetry

## test-stack: only the observability stack's tests (compose validation and end to end)
test-stack: services check-prometheus collector
	$(TEST_ENV) FLASHSALE_OTELCOL="$$($(COLLECTOR) path)" go test -count=1 -timeout 20m -v ./internal/stack

## test-faults: the fault suite at full size (10,000-item sales, 3,000 buyers);
## instance killed, Redis flushed and restarted, PostgreSQL crashed, slow and stalled dependencies, SIGTERM under
## load, overload, Redis Cluster and Sentinel failovers (internal/faults; `make test` runs it
## with small sizes under -race)
test-faults: services
	@mkdir -p $(DEV)
	$(TEST_ENV) FLASHSALE_FAULTS=full go test -count=1 -timeout 30m -v ./internal/faults 2>&1 | tee $(DEV)/faults-output.txt

## check-prometheus: promtool check config/rules and the alert unit tests (installs promtool when root);
## and the SLO rules up to date with their spec (scripts/slo.sh check; builds Sloth once)
check-prometheus:
	scripts/promcheck.sh
	scripts/slo.sh check

## slo: regenerate prometheus/rules/flashsale-slos.yml from prometheus/slos/flashsale.yml with Sloth
slo:
	scripts/slo.sh generate

## collector: build the OpenTelemetry Collector of otel-collector/builder-config.yaml (cached)
collector:
	@$(COLLECTOR) build >/dev/null

## bench: benchmarks (6 runs each, for benchstat) into .dev/bench.txt
bench: services
	@mkdir -p $(DEV)
	$(TEST_ENV) go test -run '^$$' -bench . -benchmem -count 6 -timeout 60m ./... | tee $(DEV)/bench.txt

## bench-load: side-by-side load benchmarks with cmd/loadgen (scripts/bench.sh);
## QUICK=1 for a smoke run; raw reports in .dev/bench/, a Markdown summary on stdout
bench-load: services
	scripts/bench.sh

## fuzz: run every fuzz target (each func Fuzz* of a _test.go file) for FUZZTIME (default 30s);
## go test fuzzes one target at a time, so each gets its own run
fuzz: services
	@found=0; \
	for dir in $$(grep -rlE --include='*_test.go' --exclude-dir=.dev --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*\(' . | xargs -r -n1 dirname | sort -u); do \
		for target in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]*\(' "$$dir"/*_test.go | sed 's/^func //; s/($$//' | sort); do \
			found=$$((found + 1)); \
			echo "== $$dir $$target ($(FUZZTIME))"; \
			$(TEST_ENV) go test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$dir"; \
		done; \
	done; \
	[[ $$found -gt 0 ]] || { echo "fuzz: no fuzz targets found"; exit 1; }; \
	echo "fuzz: $$found targets, $(FUZZTIME) each"

## vulncheck: govulncheck over every package (scripts/vulncheck.sh);
## against a vulnerability database built from the golang.org/x/vulndb module, cached under ~/.cache/flashsale
vulncheck:
	scripts/vulncheck.sh

## services: start the local PostgreSQL + Redis (idempotent)
services:
	@$(SERVICES) start

## services-stop: stop them
services-stop:
	@$(SERVICES) stop

## services-status: show their state
services-status:
	@$(SERVICES) status

## build: build bin/flashsale, stamped with VERSION and REVISION
build:
	go build -ldflags "$(LDFLAGS)" -o bin/flashsale ./cmd/flashsale

## image: build the flashsale Docker image, stamped with VERSION and REVISION
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t flashsale .

## clean: remove build and test outputs (keeps the services' data)
clean:
	rm -rf bin
	rm -f $(DEV)/test-output.txt $(DEV)/bench.txt
	find . -path ./$(DEV) -prune -o \( -name '*.test' -o -name '*.out' -o -name '*.prof' \) -type f -print -exec rm -f {} +
