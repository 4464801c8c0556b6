#!/usr/bin/env bash
# Throwaway PostgreSQL 15 + Redis for local development and CI.
#
#   scripts/services.sh start    start both (idempotent; installs them via apt when root)
#   scripts/services.sh stop     stop both (safe when nothing runs)
#   scripts/services.sh status   print state; exit 0 only if both are up
#   scripts/services.sh env      print `export ...` lines for the URLs
#
# Both listen on 127.0.0.1 only. Ports: FLASHSALE_PG_PORT (default 25432) and
# FLASHSALE_REDIS_PORT (default 25379), below Linux's ephemeral range (32768-60999),
# so that no client socket of a load run can hold them. Data lives in <repo>/.dev/,
# or, when the postgres user cannot reach that directory (e.g. a clone under /root),
# in /tmp/flashsale-dev-<hash of the repo path>/. When another checkout's services
# already answer on the ports, start uses them instead of starting its own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PG_PORT="${FLASHSALE_PG_PORT:-25432}"
REDIS_PORT="${FLASHSALE_REDIS_PORT:-25379}"
PG_BIN="${FLASHSALE_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_USER=flashsale
PG_DB=flashsale
WAIT_SECONDS="${FLASHSALE_SERVICES_WAIT:-60}"
# python3-prometheus-client: the strict OpenMetrics parser the exposition test uses.
INSTALL_CMD="apt-get update && apt-get install -y postgresql-15 redis-server python3-prometheus-client"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# as_pg CMD...: run a command as the OS user that owns the cluster.
# PostgreSQL refuses to run as root, so root delegates to the postgres user
# (from /, since postgres may not be allowed into the current directory).
as_pg() {
	if is_root; then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# ---------------------------------------------------------------- locations

# Unix sockets live in the data dir; their path is limited to 107 bytes.
sock_path_fits() { (( ${#1} + ${#PG_PORT} + 20 < 107 )); }

pick_base_dir() {
	local local_dir="$ROOT/.dev"
	mkdir -p "$local_dir"
	if is_root; then
		chmod 0755 "$local_dir" 2>/dev/null || true
		if runuser -u postgres -- test -x "$local_dir" && sock_path_fits "$local_dir/pg"; then
			echo "$local_dir"
			return
		fi
	elif sock_path_fits "$local_dir/pg"; then
		echo "$local_dir"
		return
	fi
	local hash
	hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
	echo "/tmp/flashsale-dev-$hash"
}

BASE_DIR="$(pick_base_dir)"
PGDATA="$BASE_DIR/pg"
PG_LOG="$PGDATA/postgresql.log"
REDIS_DIR="$BASE_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

DATABASE_URL="postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable"
TEST_DATABASE_URL="postgres://$PG_USER@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

# ---------------------------------------------------------------- helpers

ensure_installed() {
	local missing=()
	[[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/pg_isready" ]] || missing+=(postgresql-15)
	[[ -x "$PG_BIN/psql" ]] || missing+=(postgresql-15)
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	command -v redis-cli >/dev/null 2>&1 || missing+=(redis-server)
	/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null || missing+=(python3-prometheus-client)
	((${#missing[@]} == 0)) && return 0
	local what
	what="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"

	if ! is_root; then
		log "missing: $what"
		log "install as root with:  $INSTALL_CMD"
		exit 1
	fi
	log "installing missing packages: $what"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y postgresql-15 redis-server python3-prometheus-client
	[[ -x "$PG_BIN/initdb" ]] || die "postgresql-15 installed but $PG_BIN/initdb is missing"
	command -v redis-server >/dev/null 2>&1 || die "redis-server installed but not on PATH"
}

# port_in_use PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# proc_matches PID WORD...: PID is alive and its command line contains every WORD.
proc_matches() {
	local pid="$1" cmdline
	shift
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	[[ -r "/proc/$pid/cmdline" ]] || return 1
	cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
	local word
	for word in "$@"; do
		[[ "$cmdline" == *"$word"* ]] || return 1
	done
}

# PID of our postmaster, if it runs (guards against stale pid files whose PID
# was reused by an unrelated process after a crash or reboot).
pg_pid() {
	local pidfile="$PGDATA/postmaster.pid" pid
	[[ -f "$pidfile" ]] || return 1
	pid="$(head -n1 "$pidfile")"
	proc_matches "$pid" postgres "$PGDATA" || return 1
	echo "$pid"
}

# Port our running postmaster actually listens on (line 4 of postmaster.pid).
pg_running_port() { sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null; }

pg_running() { pg_pid >/dev/null; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 2; }

redis_pid() {
	local pid
	[[ -f "$REDIS_PID" ]] || return 1
	pid="$(cat "$REDIS_PID")"
	proc_matches "$pid" redis-server || return 1
	echo "$pid"
}

# Port our running redis listens on (redis titles itself "redis-server 127.0.0.1:PORT").
redis_running_port() {
	local pid
	pid="$(redis_pid)" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | sed -n 's/.*:\([0-9][0-9]*\).*/\1/p'
}

redis_running() { redis_pid >/dev/null; }

redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

# Data directory of the flashsale dev server of another checkout (this script,
# elsewhere) answering on PG_PORT: the role flashsale logs in without a password
# to its database flashsale.
other_pg_dir() {
	PGCONNECT_TIMEOUT=2 "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" \
		-c 'SHOW data_directory' 2>/dev/null
}

# Directory of the dev Redis of another checkout answering on REDIS_PORT.
other_redis_dir() {
	local dir
	dir="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" config get dir 2>/dev/null | sed -n 2p)"
	[[ "$dir" == */.dev/redis || "$dir" == /tmp/flashsale-dev-*/redis ]] || return 1
	echo "$dir"
}

# taken PORT: the one line that says how to run beside whatever holds PORT.
taken() {
	die "port $1 is taken by another process; to run beside it: FLASHSALE_PG_PORT=<free port> FLASHSALE_REDIS_PORT=<free port> make run"
}

psql_admin() {
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres
}

# ---------------------------------------------------------------- postgres

pg_init() {
	[[ -f "$PGDATA/PG_VERSION" ]] && return 0
	log "initdb $PGDATA"
	rm -rf "$PGDATA"
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA"
	if is_root; then chown postgres:postgres "$PGDATA"; fi
	# trust auth for local sockets and loopback TCP: this is a throwaway dev server.
	as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C -A trust >"$BASE_DIR/initdb.log" 2>&1 \
		|| { tail -n 30 "$BASE_DIR/initdb.log" >&2; die "initdb failed (log: $BASE_DIR/initdb.log)"; }
	as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<-'EOF'

		# ---- flashsale dev/CI settings (scripts/services.sh) ----
		listen_addresses = '127.0.0.1'
		max_connections = 300
		shared_buffers = 256MB
		effective_cache_size = 1GB
		work_mem = 4MB
		maintenance_work_mem = 64MB
		# Durability is the point of the service: keep the real commit path.
		fsync = on
		synchronous_commit = on
		full_page_writes = on
		wal_buffers = 16MB
		max_wal_size = 2GB
		checkpoint_completion_target = 0.9
		# 2 cores: no parallel query workers fighting the load generator.
		max_worker_processes = 4
		max_parallel_workers_per_gather = 0
		log_min_duration_statement = 1000
		log_line_prefix = '%m [%p] %q%u@%d '
		log_lock_waits = on
		timezone = 'UTC'
	EOF
}

pg_start() {
	if pg_running; then
		local running_port
		running_port="$(pg_running_port)"
		if [[ "$running_port" != "$PG_PORT" ]]; then
			die "postgres in $PGDATA already runs on port $running_port, not $PG_PORT; run '$0 stop' first"
		fi
		log "postgres already running (pid $(pg_pid), port $PG_PORT)"
	else
		if port_in_use "$PG_PORT"; then
			local other
			other="$(other_pg_dir)" || taken "$PG_PORT"
			log "postgres on port $PG_PORT is another checkout's (data $other): using it"
			return 0
		fi
		pg_init
		# A pid file left by a crash (or a killed session) with a dead or reused PID.
		if [[ -f "$PGDATA/postmaster.pid" ]]; then
			log "removing stale $PGDATA/postmaster.pid"
			rm -f "$PGDATA/postmaster.pid" "$PGDATA"/.s.PGSQL.*
		fi
		log "starting postgres on 127.0.0.1:$PG_PORT (data $PGDATA)"
		if ! as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA" -l "$PG_LOG" -w -t "$WAIT_SECONDS" \
			-o "-p $PG_PORT -k '$PGDATA'" >/dev/null; then
			tail -n 30 "$PG_LOG" >&2 || true
			die "postgres failed to start (log: $PG_LOG)"
		fi
	fi

	local i
	for ((i = 0; i < WAIT_SECONDS; i++)); do
		pg_ready && break
		sleep 1
	done
	if ! pg_ready; then
		tail -n 30 "$PG_LOG" >&2 || true
		die "postgres not ready on 127.0.0.1:$PG_PORT after ${WAIT_SECONDS}s (log: $PG_LOG)"
	fi

	# Role and database (superuser: tests run CREATE DATABASE ... TEMPLATE).
	psql_admin <<-EOF
		SELECT 'CREATE ROLE $PG_USER LOGIN SUPERUSER'
		 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER')\gexec
		SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER'
		 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB')\gexec
	EOF
}

pg_stop() {
	if pg_running; then
		log "stopping postgres (pid $(pg_pid))"
		as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t "$WAIT_SECONDS" >/dev/null
	else
		log "postgres not running"
	fi
}

# ---------------------------------------------------------------- redis

redis_start() {
	if redis_running; then
		local running_port
		running_port="$(redis_running_port)"
		if [[ "$running_port" != "$REDIS_PORT" ]]; then
			die "redis in $REDIS_DIR already runs on port $running_port, not $REDIS_PORT; run '$0 stop' first"
		fi
		log "redis already running (pid $(redis_pid), port $REDIS_PORT)"
	else
		if port_in_use "$REDIS_PORT"; then
			local other
			other="$(other_redis_dir)" || taken "$REDIS_PORT"
			log "redis on port $REDIS_PORT is another checkout's (dir $other): using it"
			return 0
		fi
		mkdir -p "$REDIS_DIR"
		rm -f "$REDIS_PID"
		log "starting redis on 127.0.0.1:$REDIS_PORT (dir $REDIS_DIR)"
		redis-server \
			--bind 127.0.0.1 \
			--port "$REDIS_PORT" \
			--daemonize yes \
			--dir "$REDIS_DIR" \
			--save "" \
			--appendonly no \
			--maxmemory-policy noeviction \
			--pidfile "$REDIS_PID" \
			--logfile "$REDIS_LOG" \
			|| { tail -n 30 "$REDIS_LOG" >&2 || true; die "redis-server failed to start (log: $REDIS_LOG)"; }
	fi

	local i
	for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
		redis_ready && return 0
		sleep 0.5
	done
	tail -n 30 "$REDIS_LOG" >&2 || true
	die "redis not answering PING on 127.0.0.1:$REDIS_PORT after ${WAIT_SECONDS}s (log: $REDIS_LOG)"
}

redis_stop() {
	local pid
	if ! pid="$(redis_pid)"; then
		log "redis not running"
		return 0
	fi
	local port
	port="$(redis_running_port)" || port="$REDIS_PORT"
	log "stopping redis (pid $pid)"
	redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < 40; i++)); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$REDIS_PID"; return 0; }
		sleep 0.25
	done
	die "redis (pid $pid) did not stop"
}

# ---------------------------------------------------------------- commands

print_env() {
	echo "export DATABASE_URL='$DATABASE_URL'"
	echo "export REDIS_URL='$REDIS_URL'"
	echo "export FLASHSALE_TEST_DATABASE_URL='$TEST_DATABASE_URL'"
	echo "export FLASHSALE_TEST_REDIS_URL='$REDIS_URL'"
}

cmd_start() {
	ensure_installed
	mkdir -p "$BASE_DIR"
	chmod 0755 "$BASE_DIR"
	[[ "$BASE_DIR" == "$ROOT/.dev" ]] || log "using $BASE_DIR (postgres cannot reach $ROOT/.dev)"
	pg_start
	redis_start
	log "ready: $DATABASE_URL  $REDIS_URL"
}

cmd_stop() {
	if [[ -x "$PG_BIN/pg_ctl" ]]; then pg_stop; else log "postgres not installed"; fi
	if command -v redis-cli >/dev/null 2>&1; then redis_stop; else log "redis not installed"; fi
}

cmd_status() {
	local rc=0 other
	echo "data dir: $BASE_DIR"
	if pg_running; then
		if pg_ready; then
			echo "postgres: running (pid $(pg_pid), 127.0.0.1:$(pg_running_port)) $DATABASE_URL"
		else
			echo "postgres: running (pid $(pg_pid), port $(pg_running_port)) but not accepting connections on $PG_PORT"
			rc=1
		fi
	elif other="$(other_pg_dir)"; then
		echo "postgres: another checkout's (data $other), 127.0.0.1:$PG_PORT $DATABASE_URL"
	else
		echo "postgres: stopped"
		rc=1
	fi
	if redis_running && redis_ready; then
		echo "redis:    running (pid $(redis_pid), 127.0.0.1:$REDIS_PORT) $REDIS_URL"
	elif redis_running; then
		echo "redis:    running (pid $(redis_pid), port $(redis_running_port)) but not answering PING on $REDIS_PORT"
		rc=1
	elif other="$(other_redis_dir)"; then
		echo "redis:    another checkout's (dir $other), 127.0.0.1:$REDIS_PORT $REDIS_URL"
	else
		echo "redis:    stopped"
		rc=1
	fi
	return "$rc"
}

usage() {
	echo "usage: $0 {start|stop|status|env}" >&2
	exit 2
}

case "${1:-}" in
	start) cmd_start ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	env) print_env ;;
	*) usage ;;
esac
