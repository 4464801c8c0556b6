# Developer / CI front door. See scripts/services.sh for the local PostgreSQL + Redis.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build
.DELETE_ON_ERROR:

# Go may not be on PATH (CI): prepend the toolchain and GOPATH/bin.
GOROOT_BIN := /usr/local/go/bin
GOPATH_BIN := $(shell PATH="$(GOROOT_BIN):$$PATH" go env GOPATH 2>/dev/null | cut -d: -f1)/bin
export PATH := $(GOROOT_BIN):$(GOPATH_BIN):$(PATH)

FLASHSALE_PG_PORT ?= 55432
FLASHSALE_REDIS_PORT ?= 56379
export FLASHSALE_PG_PORT FLASHSALE_REDIS_PORT

ADMIN_TOKEN ?= dev-admin-token
export ADMIN_TOKEN

FUZZTIME ?= 30s
SERVICES := scripts/services.sh
COLLECTOR := scripts/collector.sh
DEV := .dev

# Environment for tests and benchmarks against the local services.
TEST_ENV := FLASHSALE_TEST_DATABASE_URL='postgres://flashsale@127.0.0.1:$(FLASHSALE_PG_PORT)/postgres?sslmode=disable' \
	FLASHSALE_TEST_REDIS_URL='redis://127.0.0.1:$(FLASHSALE_REDIS_PORT)/0' \
	FLASHSALE_REQUIRE_SERVICES=1

.PHONY: run test test-stack check-prometheus collector bench bench-load fuzz services services-stop services-status build clean

## run: start the server (uses DATABASE_URL/REDIS_URL if both are set, else local services)
run:
	@if [[ -n "$${DATABASE_URL:-}" && -n "$${REDIS_URL:-}" ]]; then \
		echo "run: using DATABASE_URL and REDIS_URL from the environment"; \
	else \
		$(SERVICES) start; \
		eval "$$($(SERVICES) env)"; \
	fi; \
	exec go run ./cmd/flashsale

## test: go vet, the Prometheus rule checks and race-enabled tests of every package against
## the local services, including the end-to-end stack test (service + OpenTelemetry Collector
## + Prometheus); prints "N passed, N failed"
test: services check-prometheus collector
	go vet ./...
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

## test-stack: only the observability stack's tests (compose validation and end to end)
test-stack: services check-prometheus collector
	$(TEST_ENV) FLASHSALE_OTELCOL="$$($(COLLECTOR) path)" go test -count=1 -timeout 20m -v ./internal/stack

## check-prometheus: promtool check config/rules and the alert unit tests (installs promtool when root)
check-prometheus:
	scripts/promcheck.sh

## collector: build the OpenTelemetry Collector of otel-collector/builder-config.yaml (cached)
collector:
	@$(COLLECTOR) build >/dev/null

## bench: benchmarks (6 runs each, for benchstat) into .dev/bench.txt
bench: services
	@mkdir -p $(DEV)
	$(TEST_ENV) go test -run '^$$' -bench . -benchmem -count 6 -timeout 60m ./... | tee $(DEV)/bench.txt

## bench-load: side-by-side load benchmarks with cmd/loadgen (scripts/bench.sh; QUICK=1 for a
## smoke run); raw reports in .dev/bench/, a Markdown summary on stdout
bench-load: services
	scripts/bench.sh

## fuzz: run every Fuzz target for FUZZTIME (default 30s) each
fuzz: services
	@found=0; \
	for pkg in $$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do \
		for target in $$(go test -list '^Fuzz' -run '^$$' "$$pkg" | grep -E '^Fuzz' || true); do \
			found=1; \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(TEST_ENV) go test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done; \
	[[ $$found -eq 1 ]] || echo "fuzz: no Fuzz targets found"

## services: start the local PostgreSQL + Redis (idempotent)
services:
	@$(SERVICES) start

## services-stop: stop them
services-stop:
	@$(SERVICES) stop

## services-status: show their state
services-status:
	@$(SERVICES) status

## build: build bin/flashsale
build:
	go build -o bin/flashsale ./cmd/flashsale

## clean: remove build and test outputs (keeps the services' data)
clean:
	rm -rf bin
	rm -f $(DEV)/test-output.txt $(DEV)/bench.txt
	find . -path ./$(DEV) -prune -o \( -name '*.test' -o -name '*.out' -o -name '*.prof' \) -type f -print -exec rm -f {} +
