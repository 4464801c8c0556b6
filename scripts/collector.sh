#!/usr/bin/env bash
# Build, locate and check the flashsale OpenTelemetry Collector (otelcol-flashsale).
#
#   scripts/collector.sh build       build unless cached; the binary's path is the last line on stdout
#   scripts/collector.sh path        print the binary's path; exit 1 if it is not built yet
#   scripts/collector.sh validate    build if needed, then `<binary> validate --config otel-collector/config.yaml`
#   scripts/collector.sh run [ARGS]  build if needed, then exec `<binary> --config otel-collector/config.yaml ARGS`
#
# The binary is built by the OpenTelemetry Collector Builder (ocb), installed with
# `go install go.opentelemetry.io/collector/cmd/builder@v0.165.0`, from the manifest
# otel-collector/builder-config.yaml. It is cached under
#   ${FLASHSALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flashsale}/otelcol-flashsale/<key>/otelcol-flashsale
# where <key> is a hash of the manifest and the builder version: editing the manifest
# (or bumping OCB_VERSION below) builds a new binary, anything else reuses the cached one.
# The builder itself is cached under .../flashsale/tools/.
#
# Progress goes to stderr; stdout carries only paths (build, path) or the collector's own
# output (validate, run). Works as root or not, and without Go on PATH as long as it is
# installed in /usr/local/go. The first build downloads modules and compiles a few hundred
# packages: several minutes on two cores. Concurrent builds are serialised with flock.
set -euo pipefail
shopt -s inherit_errexit # a failure inside $(...) fails the assignment too

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
MANIFEST="$ROOT/otel-collector/builder-config.yaml"
CONFIG="$ROOT/otel-collector/config.yaml"
OCB_VERSION=v0.165.0
DIST_NAME=otelcol-flashsale

log() { printf 'collector: %s\n' "$*" >&2; }
die() { printf 'collector: error: %s\n' "$*" >&2; exit 1; }

usage() {
	sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------- locations

# shellcheck source=scripts/cache-dir.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
CACHE_DIR="$(flashsale_cache_dir)" || die "neither FLASHSALE_CACHE_DIR, XDG_CACHE_HOME nor HOME is set"
DIST_DIR="$CACHE_DIR/$DIST_NAME"

# build_key: hash of the manifest and the builder version (the inputs that decide the binary).
build_key() {
	[[ -r "$MANIFEST" ]] || die "manifest not found: $MANIFEST"
	{ printf 'ocb %s\n' "$OCB_VERSION"; cat "$MANIFEST"; } | sha256sum | cut -c1-16
}

binary_path() { echo "$DIST_DIR/$(build_key)/$DIST_NAME"; }

# ---------------------------------------------------------------- toolchain

# setup_go makes `go` runnable: /usr/local/go/bin is added to PATH when go is not on it,
# and Go's caches are moved under the cache dir when HOME cannot provide them.
setup_go() {
	if ! command -v go >/dev/null 2>&1; then
		[[ -x /usr/local/go/bin/go ]] || die "go not found on PATH nor in /usr/local/go/bin"
		export PATH="/usr/local/go/bin:$PATH"
	fi
	# Without a usable HOME, go reports GOCACHE "off" and an empty GOPATH (which holds
	# the module cache and the checksum database's state).
	local gocache gomodcache
	gocache="$(go env GOCACHE 2>/dev/null || true)"
	if [[ -z "$gocache" || "$gocache" == off ]] || ! mkdir -p "$gocache" 2>/dev/null; then
		export GOCACHE="$CACHE_DIR/go-build"
	fi
	gomodcache="$(go env GOMODCACHE 2>/dev/null || true)"
	if [[ -z "$(go env GOPATH 2>/dev/null || true)" || -z "$gomodcache" ]] || ! mkdir -p "$gomodcache" 2>/dev/null; then
		export GOPATH="$CACHE_DIR/go" GOMODCACHE="$CACHE_DIR/go/pkg/mod"
	fi
	# The build directory may sit inside a git checkout (FLASHSALE_CACHE_DIR=.dev/...);
	# stamping VCS data would then fail on "dubious ownership" and adds nothing here.
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
	log "using $(go version) at $(command -v go)"
}

# ocb prints the path of the builder, installing it first when missing.
ocb() {
	local gobin="$CACHE_DIR/tools/ocb-$OCB_VERSION"
	if [[ ! -x "$gobin/builder" ]]; then
		log "installing go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION into $gobin"
		mkdir -p "$gobin"
		GOBIN="$gobin" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION" >&2
	fi
	echo "$gobin/builder"
}

# ---------------------------------------------------------------- commands

# build_binary builds the collector unless the binary for the current manifest exists,
# and prints its path.
build_binary() {
	local bin key
	key="$(build_key)"
	bin="$DIST_DIR/$key/$DIST_NAME"
	if [[ -x "$bin" ]]; then
		log "cached: $bin"
		echo "$bin"
		return
	fi

	mkdir -p "$DIST_DIR" 2>/dev/null || die "cannot create $DIST_DIR; set FLASHSALE_CACHE_DIR to a writable directory"
	if command -v flock >/dev/null 2>&1; then
		exec {lock_fd}>"$DIST_DIR/.lock"
		if ! flock -n "$lock_fd"; then
			log "another build holds $DIST_DIR/.lock; waiting for it"
			flock "$lock_fd"
		fi
		if [[ -x "$bin" ]]; then # built by a concurrent run while we waited
			log "cached: $bin"
			echo "$bin"
			return
		fi
	fi

	setup_go
	local builder work start
	builder="$(ocb)"
	work="$(mktemp -d "$DIST_DIR/build.XXXXXX")"
	# shellcheck disable=SC2064 # expand $work now: it is local
	trap "rm -rf '$work'" EXIT
	start=$SECONDS
	log "building $DIST_NAME from ${MANIFEST#"$ROOT/"} in $work (several minutes on a cold cache)"
	# output_path in the manifest is relative: running the builder from $work puts the
	# generated sources and the binary in $work/$DIST_NAME.
	(cd "$work" && "$builder" --config "$MANIFEST") >&2 \
		|| die "builder failed (see its output above)"
	[[ -x "$work/$DIST_NAME/$DIST_NAME" ]] || die "builder produced no binary at $work/$DIST_NAME/$DIST_NAME"
	"$work/$DIST_NAME/$DIST_NAME" --version >&2

	mkdir -p "$DIST_DIR/$key"
	mv -f "$work/$DIST_NAME/$DIST_NAME" "$bin.tmp"
	mv -f "$bin.tmp" "$bin"
	log "built $bin in $((SECONDS - start))s ($(du -h "$bin" | cut -f1))"
	echo "$bin"
}

main() {
	[[ $# -ge 1 ]] || usage
	local cmd="$1"
	shift
	case "$cmd" in
	build)
		build_binary
		;;
	path)
		local bin
		bin="$(binary_path)"
		echo "$bin"
		[[ -x "$bin" ]] || { log "not built yet: run $0 build"; exit 1; }
		;;
	validate)
		local bin
		bin="$(build_binary | tail -n1)"
		"$bin" validate --config "$CONFIG" "$@"
		log "config OK: ${CONFIG#"$ROOT/"}"
		;;
	run)
		local bin
		bin="$(build_binary | tail -n1)"
		exec "$bin" --config "$CONFIG" "$@"
		;;
	-h | --help | help)
		usage
		;;
	*)
		log "unknown command: $cmd"
		usage
		;;
	esac
}

main "$@"
