#!/usr/bin/env bash
# Static checks and unit tests of the Prometheus configuration and rules:
#
#   promtool check config prometheus/prometheus.yml   (also loads the rule files it names)
#   promtool check rules  prometheus/rules/*.yml
#   promtool test rules   prometheus/tests/*.yml
#
# Usage: scripts/promcheck.sh (from anywhere; called by `make test`).
# PROMTOOL overrides the promtool binary. When promtool is missing and we run as root,
# the Debian/Ubuntu "prometheus" package (which ships promtool) is installed with apt-get;
# otherwise the script fails and says how to install it.
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

main() {
	local promtool
	promtool="$(find_promtool)"
	log "using $("$promtool" --version 2>&1 | head -n1)"

	shopt -s nullglob
	local rules=("$PROM_DIR"/rules/*.yml)
	local tests=("$PROM_DIR"/tests/*.yml)
	shopt -u nullglob
	[[ -f "$PROM_DIR/prometheus.yml" ]] || die "missing $PROM_DIR/prometheus.yml"
	(( ${#rules[@]} > 0 )) || die "no rule files in $PROM_DIR/rules"
	(( ${#tests[@]} > 0 )) || die "no test files in $PROM_DIR/tests"

	# Relative paths keep promtool's messages short; rule_files in prometheus.yml and
	# in the tests resolve relative to the file that names them, whatever the cwd.
	cd "$ROOT"
	local status=0
	log "check config"
	"$promtool" check config prometheus/prometheus.yml || status=1
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
