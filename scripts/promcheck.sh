#!/usr/bin/env bash
# Static checks and unit tests of the Prometheus configuration and rules:
#
#   promtool check config prometheus/prometheus.yml prometheus/prometheus-otlp.yml
#                                                     (also loads the rule files they name)
#   promtool check rules  prometheus/rules/*.yml
#   promtool test rules   prometheus/tests/*.yml
#
# and makes sure the strict OpenMetrics parser of the Go suite's exposition test
# (cmd/flashsale/exposition_test.go: the Prometheus Python client's parser) is installed.
#
# Usage: scripts/promcheck.sh (from anywhere; called by `make test`).
# PROMTOOL overrides the promtool binary. When promtool is missing and we run as root,
# the Debian/Ubuntu "prometheus" package (which ships promtool) is installed with apt-get;
# otherwise the script fails and says how to install it. Likewise python3-prometheus-client
# for the strict parser.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PROM_DIR="$ROOT/prometheus"

log() { printf 'promcheck: %s\n' "$*" >&2; }
die() { printf 'promcheck: error: %s\n' "$*" >&2; exit 1; }

find_promtool() {
	if [[ -n "${PROMTOOL:-}" ]]; then
		command -v "$PROMTOOL" || die "PROMTOOL=$PROMTOOL is not an executable"
		return
	fi
	if command -v promtool >/dev/null 2>&1; then
		command -v promtool
		return
	fi
	if [[ "$(id -u)" -ne 0 ]]; then
		die "promtool not found; install it (as root: apt-get install -y prometheus) or set PROMTOOL=/path/to/promtool"
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		die "promtool not found and apt-get is unavailable; install Prometheus's promtool or set PROMTOOL"
	fi
	log "promtool not found: installing the prometheus package with apt-get"
	# Only promtool is used; the package's service is not started here.
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
		die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2 ||
		die "apt-get install prometheus failed"
	command -v promtool || die "the prometheus package did not provide promtool"
}

# ensure_strict_parser installs Debian's python3-prometheus-client when no python3 can
# import its OpenMetrics parser (the Go test looks for python3 on PATH, then
# /usr/bin/python3). Without root it only warns: the test then skips, or fails under
# FLASHSALE_REQUIRE_SERVICES=1.
ensure_strict_parser() {
	local py
	for py in python3 /usr/bin/python3; do
		if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
			return
		fi
	done
	if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "warning: no python3 with prometheus_client: apt-get install -y python3-prometheus-client (the strict OpenMetrics test needs it)"
		return
	fi
	log "installing python3-prometheus-client (strict OpenMetrics parser) with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
		die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-prometheus-client >&2 ||
		die "apt-get install python3-prometheus-client failed"
}

main() {
	ensure_strict_parser
	local promtool
	promtool="$(find_promtool)"
	log "using $("$promtool" --version 2>&1 | head -n1)"

	shopt -s nullglob
	local rules=("$PROM_DIR"/rules/*.yml)
	local tests=("$PROM_DIR"/tests/*.yml)
	shopt -u nullglob
	[[ -f "$PROM_DIR/prometheus.yml" ]] || die "missing $PROM_DIR/prometheus.yml"
	[[ -f "$PROM_DIR/prometheus-otlp.yml" ]] || die "missing $PROM_DIR/prometheus-otlp.yml"
	(( ${#rules[@]} > 0 )) || die "no rule files in $PROM_DIR/rules"
	(( ${#tests[@]} > 0 )) || die "no test files in $PROM_DIR/tests"

	# Relative paths keep promtool's messages short; rule_files in prometheus.yml and
	# in the tests resolve relative to the file that names them, whatever the cwd.
	cd "$ROOT"
	local status=0
	log "check config"
	"$promtool" check config prometheus/prometheus.yml prometheus/prometheus-otlp.yml || status=1
	log "check rules"
	"$promtool" check rules "${rules[@]#"$ROOT"/}" || status=1
	log "test rules"
	"$promtool" test rules "${tests[@]#"$ROOT"/}" || status=1

	if (( status != 0 )); then
		die "Prometheus checks failed (see above)"
	fi
	log "OK: config, ${#rules[@]} rule files and ${#tests[@]} test files pass"
}

main "$@"
