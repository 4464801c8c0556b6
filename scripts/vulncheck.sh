#!/usr/bin/env bash
# Check the module for known vulnerabilities with govulncheck, against a vulnerability
# database built locally from the golang.org/x/vulndb module.
#
#   scripts/vulncheck.sh [GOVULNCHECK ARGS]   default: ./...  (exit 3: vulnerable code is called)
#   scripts/vulncheck.sh db                   build the database unless cached; print its path
#
# govulncheck's own database (vuln.go.dev) need not be reachable: the OSV entries come from
# the golang.org/x/vulndb module, fetched through the Go module proxy like any module, and
# vulndb's cmd/indexdb writes them in the layout `govulncheck -db file:///...` reads. Both
# the database and the govulncheck binary are cached under
#   ${FLASHSALE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flashsale}/vulndb/<vulndb version>/
#   .../flashsale/tools/govulncheck-<version>/
# Bump VULNDB_VERSION below to check against newer entries (go list -m -versions does not
# list it: take the newest pseudo-version the proxy serves). The first run builds indexdb
# (about 1.5 minutes on two cores); later runs take the time of govulncheck alone.
#
# Standard-library findings are fixed by a newer Go toolchain, not by go.mod's requirements:
# govulncheck checks the standard library of the `go` command it runs with (GOTOOLCHAIN
# applies).
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018

log() { printf 'vulncheck: %s\n' "$*" >&2; }
die() { printf 'vulncheck: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/cache-dir.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"
CACHE_DIR="$(flashsale_cache_dir)" || die "neither FLASHSALE_CACHE_DIR, XDG_CACHE_HOME nor HOME is set"
DB_DIR="$CACHE_DIR/vulndb/$VULNDB_VERSION"
TOOLS_DIR="$CACHE_DIR/tools"

if ! command -v go >/dev/null 2>&1; then
	[[ -x /usr/local/go/bin/go ]] || die "go not found on PATH nor in /usr/local/go/bin"
	export PATH="/usr/local/go/bin:$PATH"
fi
# Build with the Go release go.mod's toolchain line names, as the Makefile does, also when
# this script is run on its own (the machine's go command may ignore that line).
export GOTOOLCHAIN="${GOTOOLCHAIN:-$(sed -n 's/^toolchain[[:space:]]*//p' "$ROOT/go.mod")}"

# lock serialises concurrent runs on a lock file of the cache.
lock() {
	mkdir -p "$CACHE_DIR" 2>/dev/null || die "cannot create $CACHE_DIR; set FLASHSALE_CACHE_DIR to a writable directory"
	if command -v flock >/dev/null 2>&1; then
		exec {lock_fd}>"$CACHE_DIR/.vulncheck.lock"
		flock "$lock_fd"
	fi
}

# tool prints the path of cmd (a main package of module@version), installing it first.
# Installs are kept per Go release: govulncheck type-checks the standard library of the go
# command it runs with, which only a govulncheck built by that release can read.
tool() {
	local pkg="$1" version="$2" name
	name="$(basename "$pkg")"
	local gobin="$TOOLS_DIR/$name-$version-$(go env GOVERSION)"
	if [[ ! -x "$gobin/$name" ]]; then
		log "installing $pkg@$version into $gobin"
		mkdir -p "$gobin"
		GOBIN="$gobin" GOFLAGS=-buildvcs=false go install "$pkg@$version" >&2
	fi
	echo "$gobin/$name"
}

# build_db builds the database unless cached and prints its directory.
build_db() {
	if [[ -f "$DB_DIR/index/db.json" ]]; then
		echo "$DB_DIR"
		return
	fi
	local src indexdb work start=$SECONDS
	# Module-mode commands, run outside this module so that its go.mod is left alone.
	src="$(cd "$CACHE_DIR" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
	[[ -d "$src/data/osv" ]] || die "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv"
	indexdb="$(cd "$CACHE_DIR" && tool golang.org/x/vulndb/cmd/indexdb "$VULNDB_VERSION")"
	mkdir -p "$(dirname "$DB_DIR")"
	work="$(mktemp -d "$DB_DIR.XXXXXX")"
	# shellcheck disable=SC2064 # expand $work now
	trap "rm -rf '$work'" EXIT
	log "indexing $(find "$src/data/osv" -name '*.json' | wc -l) OSV entries of golang.org/x/vulndb@$VULNDB_VERSION"
	"$indexdb" -vulns "$src/data/osv" -out "$work/db" >&2
	[[ -f "$work/db/index/db.json" ]] || die "indexdb wrote no index/db.json"
	mv "$work/db" "$DB_DIR"
	log "built $DB_DIR in $((SECONDS - start))s"
	echo "$DB_DIR"
}

main() {
	lock
	if [[ "${1:-}" == db ]]; then
		build_db
		return
	fi
	local db govulncheck
	db="$(build_db)"
	govulncheck="$(cd "$CACHE_DIR" && tool golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION")"
	[[ $# -gt 0 ]] || set -- ./...
	log "govulncheck $GOVULNCHECK_VERSION with $(go env GOVERSION), database golang.org/x/vulndb@$VULNDB_VERSION"
	cd "$ROOT"
	"$govulncheck" -db "file://$db" "$@"
}

main "$@"
