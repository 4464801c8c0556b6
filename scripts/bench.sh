#!/usr/bin/env bash
# Side-by-side load benchmarks of the flash-sale service, driven by cmd/loadgen.
#
#   scripts/bench.sh                      the full run (about 11 minutes on 2 cores)
#   QUICK=1 scripts/bench.sh              a smoke run with tiny sizes (about 2 minutes)
#   BENCHES=1,3 scripts/bench.sh          only some benchmarks (4 comes from 1 and 3)
#   scripts/bench.sh summarize DIR        print the summary of an earlier run again
#
# Benchmarks:
#   1  checkout throughput and latency: the service vs `loadgen serve-trivial` (the
#      ceiling of the HTTP stack and the generator on this machine), steady profile
#   2  telemetry overhead: the same load with traces at ratio 1.0 and 0.01 exported over
#      OTLP/HTTP to a discarding sink (scripts/otlpsink), and with OTEL_SDK_DISABLED=true
#   3  flash sale: time to sell out, purchase and checkout p99, invariants
#   4  resources: peak RSS during the flash crowd; CPU per 1,000 checkouts of the
#      service, PostgreSQL, Redis and the generator (from the runs of 1 and 3)
#   5  scaling: 1, 2, 3 instances on one database and Redis, one generator per instance
#   6  open loop: fixed arrival rates, to find what one PostgreSQL absorbs
#
# Every comparison interleaves its variants round by round (the order rotates each round)
# and repeats them REPEATS times, so that medians and ratios come from one run on a noisy
# machine. Each service start gets a fresh database (created as user flashsale on the
# local server of scripts/services.sh, dropped when the service stops) and a fresh
# REDIS_KEY_PREFIX (its keys are deleted when the service stops).
#
# Output: raw loadgen -json reports, service logs, every exact command and the machine
# description in .dev/bench/<UTC timestamp>/ (meta.json, runs.jsonl: one line per run with
# the CPU, memory and database counts taken around it); the Markdown summary on stdout
# (also saved as summary.md there), made from that directory by `loadgen summarize`.
# Progress goes to stderr.
#
# Settings (environment; defaults for a 2-core machine, QUICK=1 defaults in brackets):
#   REPEATS=3 [2]            rounds of every comparison
#   CONNS=200 [20]           steady-profile concurrency (benchmarks 1, 2, 5)
#   DURATION=15s [3s]        length of each steady run of benchmarks 1 and 2
#   STEADY_ITEMS=10000 [1000] items of the sale of steady and open runs (steady buys
#                            nothing, so a sale never runs out)
#   FLASH_USERS=3000 [150]   flash crowd (benchmarks 3 and 5)
#   FLASH_ITEMS=10000 [300]  items of the flash sale
#   FLASH_MAX=120s [30s]     longest a flash run may take
#   SCALE_INSTANCES="1 2 3" ["1 2"]
#   SCALE_DURATION=10s [3s]  steady runs of benchmark 5
#   SCALE_FLASH=1            also split a flash crowd across the instances (0: skip)
#   OPEN_RATES="2000 4000 5000 6000 8000" ["200 400"]
#   OPEN_DURATION=8s [3s]
#   OPEN_MAX_INFLIGHT=512
#   TELEMETRY_MODES="full ratio001 off"   (also: metrics = default, no OTLP endpoint)
#   METRIC_EXPORT_MS=5000    OTEL_METRIC_EXPORT_INTERVAL of the OTLP modes (60000 is the
#                            default; 5000 makes the metric push happen within a run)
#   BENCH_LOG_LEVEL=warn     LOG_LEVEL of the service
#   KEEP_DBS=1               keep the databases and Redis keys (default: drop them)
#   FLASHSALE_PG_PORT=25432, FLASHSALE_REDIS_PORT=25379 (as scripts/services.sh)
# Service tuning variables in the environment (DB_MAX_OPEN_CONNS, REDIS_POOL_SIZE,
# ATTEMPT_*, PURCHASE_*, GOMAXPROCS, GOGC, ...) reach the service and are shown in the
# summary; inherited OTEL_*, METRICS_ADDR and PPROF_ADDR are dropped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export PATH="/usr/local/go/bin:$PATH"
# Build with the Go release go.mod's toolchain line names, as the Makefile does, also when
# this script is run on its own (the machine's go command may ignore that line).
export GOTOOLCHAIN="${GOTOOLCHAIN:-$(sed -n 's/^toolchain[[:space:]]*//p' "$ROOT/go.mod")}"

log() { printf '[bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 1
}

# ---------------------------------------------------------------- settings

QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
	: "${REPEATS:=2}" "${CONNS:=20}" "${DURATION:=3s}" "${STEADY_ITEMS:=1000}"
	: "${FLASH_USERS:=150}" "${FLASH_ITEMS:=300}" "${FLASH_MAX:=30s}"
	: "${SCALE_INSTANCES:=1 2}" "${SCALE_DURATION:=3s}"
	: "${OPEN_RATES:=200 400}" "${OPEN_DURATION:=3s}"
else
	: "${REPEATS:=3}" "${CONNS:=200}" "${DURATION:=15s}" "${STEADY_ITEMS:=10000}"
	: "${FLASH_USERS:=3000}" "${FLASH_ITEMS:=10000}" "${FLASH_MAX:=120s}"
	: "${SCALE_INSTANCES:=1 2 3}" "${SCALE_DURATION:=10s}"
	: "${OPEN_RATES:=2000 4000 5000 6000 8000}" "${OPEN_DURATION:=8s}"
fi
: "${SCALE_FLASH:=1}" "${OPEN_MAX_INFLIGHT:=512}"
: "${TELEMETRY_MODES:=full ratio001 off}" "${METRIC_EXPORT_MS:=5000}"
: "${BENCH_LOG_LEVEL:=warn}" "${KEEP_DBS:=0}" "${BENCHES:=1,2,3,4,5,6}"
PG_HOST=127.0.0.1
PG_PORT="${FLASHSALE_PG_PORT:-25432}"
PG_USER=flashsale
REDIS_PORT="${FLASHSALE_REDIS_PORT:-25379}"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

is_uint() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_dur() { [[ "$1" =~ ^[0-9]+(ms|s|m)$ ]]; }

validate_settings() {
	local v
	for v in REPEATS CONNS STEADY_ITEMS FLASH_USERS FLASH_ITEMS OPEN_MAX_INFLIGHT METRIC_EXPORT_MS; do
		is_uint "${!v}" || die "$v=${!v}: want a positive integer"
	done
	for v in DURATION FLASH_MAX SCALE_DURATION OPEN_DURATION; do
		is_dur "${!v}" || die "$v=${!v}: want a duration like 15s, 500ms or 2m"
	done
	for v in $SCALE_INSTANCES; do is_uint "$v" || die "SCALE_INSTANCES: $v is not a positive integer"; done
	for v in $OPEN_RATES; do is_uint "$v" || die "OPEN_RATES: $v is not a positive integer"; done
	for v in $TELEMETRY_MODES; do
		[[ "$v" =~ ^(full|ratio001|off|metrics)$ ]] || die "TELEMETRY_MODES: unknown mode $v (full, ratio001, off, metrics)"
	done
	((STEADY_ITEMS <= 999999 && FLASH_ITEMS <= 999999)) || die "a sale holds at most 999999 items"
	[[ "$BENCHES" =~ ^[1-6](,[1-6])*$ ]] || die "BENCHES=$BENCHES: want a comma list of 1..6"
}

want() { [[ ",$BENCHES," == *",$1,"* ]]; }

# ---------------------------------------------------------------- process bookkeeping

PIDS=()     # every background process this script started and has not stopped
DBS=()      # databases created and not dropped
PREFIXES=() # Redis key prefixes to delete

forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# stop_pid PID: SIGTERM (its children first: loadgen runs in a wrapping subshell), wait
# up to 25 s (the service drains for up to SHUTDOWN_TIMEOUT), then SIGKILL.
stop_pid() {
	local pid="$1" i
	if kill -0 "$pid" 2>/dev/null; then
		pkill -TERM -P "$pid" 2>/dev/null || true
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 250; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "process $pid did not stop on SIGTERM: SIGKILL"
			pkill -KILL -P "$pid" 2>/dev/null || true
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

psql_q() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -At "$@"; }

drop_db() {
	local db="$1" keep=() d
	if [[ "$KEEP_DBS" != 1 ]]; then
		dropdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" --if-exists --force "$db" ||
			log "warning: could not drop database $db"
	fi
	for d in "${DBS[@]}"; do [[ "$d" == "$db" ]] || keep+=("$d"); done
	DBS=("${keep[@]}")
}

clean_prefix() {
	local prefix="$1" keep=() p
	if [[ "$KEEP_DBS" != 1 ]]; then
		redis-cli -p "$REDIS_PORT" --scan --pattern "$prefix:*" |
			xargs -r -n 500 redis-cli -p "$REDIS_PORT" unlink >/dev/null ||
			log "warning: could not delete the Redis keys of $prefix"
	fi
	for p in "${PREFIXES[@]}"; do [[ "$p" == "$prefix" ]] || keep+=("$p"); done
	PREFIXES=("${keep[@]}")
}

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	for p in "${DBS[@]}"; do drop_db "$p"; done
	for p in "${PREFIXES[@]}"; do clean_prefix "$p"; done
	if ((rc != 0)) && [[ -n "${OUT:-}" ]]; then
		log "failed (exit $rc); outputs so far in ${OUT#"$ROOT"/}"
	fi
	exit "$rc"
}

# free_port: a TCP port no one listens on now, below the kernel's range of ephemeral ports
# (so no outgoing connection takes it meanwhile).
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		[[ -n "$(ss -ltnH "sport = :$p")" ]] || break
	done
	echo "$p"
}

# json_list ARGS...: the arguments as a JSON array of strings.
json_list() { jq -cn '$ARGS.positional' --args "$@"; }

# record NAME CMD...: append the exact command (environment assignments included) to
# commands.txt and to the current run's command list. The admin token is masked.
CUR_CMDS=()
record() {
	local name="$1" line
	shift
	line="$(printf '%q ' "$@")"
	line="${line% }"
	line="${line//"$ADMIN_TOKEN"/\$ADMIN_TOKEN}"
	printf '# %s\n%s\n' "$name" "$line" >>"$OUT/commands.txt"
	CUR_CMDS+=("$line")
}

SEQ=0
new_db() {
	SEQ=$((SEQ + 1))
	REPLY="fsbench_${TAG}_$SEQ"
	createdb -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$REPLY" || die "createdb $REPLY failed (does user $PG_USER have CREATEDB?)"
	DBS+=("$REPLY")
}
db_url() { printf 'postgres://%s@%s:%s/%s?sslmode=disable' "$PG_USER" "$PG_HOST" "$PG_PORT" "$1"; }
new_prefix() {
	SEQ=$((SEQ + 1))
	REPLY="fsb${TAG}x$SEQ"
	PREFIXES+=("$REPLY")
}

# wait_http URL PID LOG WHAT: wait until URL answers 2xx, while PID lives.
wait_http() {
	local url="$1" pid="$2" logf="$3" what="$4" i
	for ((i = 0; i < 600; i++)); do
		if curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$logf" >&2 || true
			die "$what exited before it was ready (log: ${logf#"$ROOT"/})"
		fi
		sleep 0.1
	done
	tail -n 20 "$logf" >&2 || true
	die "$what was not ready within 60 s at $url (log: ${logf#"$ROOT"/})"
}

# launch NAME READY_URL WHAT CMD...: record CMD, start it in the background with its output
# in logs/NAME.log, and wait until READY_URL answers; the pid is in REPLY.
launch() {
	local name="$1" url="$2" what="$3"
	shift 3
	local logf="$OUT/logs/$name.log"
	record "$name" "$@"
	"$@" >"$logf" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_http "$url" "$pid" "$logf" "$what"
	REPLY=$pid
}

# start_service NAME DB PREFIX PORT [VAR=VALUE...]: start bin/flashsale in the background
# and wait for /readyz; the pid is in REPLY.
start_service() {
	local name="$1" db="$2" prefix="$3" port="$4"
	shift 4
	launch "$name" "http://127.0.0.1:$port/readyz" "service $name" \
		env HTTP_ADDR="127.0.0.1:$port" DATABASE_URL="$(db_url "$db")" REDIS_URL="$REDIS_URL" \
		REDIS_KEY_PREFIX="$prefix" ADMIN_TOKEN="$ADMIN_TOKEN" LOG_LEVEL="$BENCH_LOG_LEVEL" \
		RATE_LIMIT_USER=0 RATE_LIMIT_ADDR=0 SHUTDOWN_DELAY=0 "$@" "$FLASHSALE"
}

# start_trivial NAME PORT: loadgen serve-trivial; pid in REPLY.
start_trivial() {
	launch "$1" "http://127.0.0.1:$2/sales/active" "trivial target $1" \
		"$LOADGEN" serve-trivial -addr "127.0.0.1:$2" -items "$STEADY_ITEMS"
}

# start_sink NAME PORT: the discarding OTLP receiver; pid in REPLY.
start_sink() {
	launch "$1" "http://127.0.0.1:$2/stats" "OTLP sink $1" "$OTLPSINK" -addr "127.0.0.1:$2"
}

# create_sale PORT ITEMS: a sale starting now through the admin API; its id in REPLY.
create_sale() {
	local port="$1" items="$2" body i
	for ((i = 0; i < 5; i++)); do
		if body="$(curl -fsS -m 10 -X POST "http://127.0.0.1:$port/admin/sales" \
			-H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
			-d "{\"total_items\": $items, \"duration\": \"1h\"}" 2>/dev/null)"; then
			REPLY="$(jq -r .id <<<"$body")"
			is_uint "$REPLY" && return 0
		fi
		sleep 1 # sales are keyed by their start second: a 409 is cured by the next one
	done
	die "could not create a sale of $items items on port $port"
}

# ---------------------------------------------------------------- measurement

CLK_TCK="$(getconf CLK_TCK)"

# ticks PID [children]: utime+stime of a process in clock ticks (0 when gone); with
# "children", plus the cutime+cstime of its reaped children.
ticks() {
	local s f
	s="$(cat "/proc/$1/stat" 2>/dev/null)" || {
		echo 0
		return
	}
	s="${s##*) }" # the command name may hold spaces; fields start at the state (3rd)
	read -ra f <<<"$s"
	if [[ "${2:-}" == children ]]; then
		echo $((f[11] + f[12] + f[13] + f[14]))
	else
		echo $((f[11] + f[12]))
	fi
}

sum_ticks() {
	local t=0 p
	for p in "$@"; do t=$((t + $(ticks "$p"))); done
	echo "$t"
}

# PostgreSQL: the whole cluster (postmaster, its live children, and the reaped ones
# through the postmaster's cutime) and the backends of one database.
pg_cluster_ticks() {
	[[ -n "$PG_PID" ]] || {
		echo 0
		return
	}
	local t p
	t="$(ticks "$PG_PID" children)"
	for p in $(ps -o pid= --ppid "$PG_PID"); do t=$((t + $(ticks "$p"))); done
	echo "$t"
}
pg_db_ticks() {
	[[ -n "$PG_PID" && -n "$1" ]] || {
		echo 0
		return
	}
	local t=0 pid args
	while read -r pid args; do
		[[ "$args" == "postgres: $PG_USER $1 "* ]] && t=$((t + $(ticks "$pid")))
	done < <(ps -o pid=,args= --ppid "$PG_PID")
	echo "$t"
}

# machine_ticks: "busy total" jiffies of all CPUs from /proc/stat.
machine_ticks() {
	local _cpu user nice system idle iowait irq softirq steal _rest
	read -r _cpu user nice system idle iowait irq softirq steal _rest </proc/stat
	echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

vm_kb() { # vm_kb PID FIELD: VmRSS/VmHWM in kB, 0 when gone
	local status k v _
	status="$(cat "/proc/$1/status" 2>/dev/null)" || {
		echo 0
		return
	}
	while read -r k v _; do
		if [[ "$k" == "$2:" ]]; then
			echo "$v"
			return
		fi
	done <<<"$status"
	echo 0
}

# The current run: CUR_TARGETS are the pids of the process(es) under test, CUR_DB its
# database ("" for the trivial target), CUR_SINK the OTLP sink's pid and port.
CUR_TARGETS=()
CUR_DB=""
CUR_SINK_PID=""
CUR_SINK_PORT=""
CUR_DBSTATS=0
LG_JSONS=()
LG_PIDS=()
declare -A M0

measure_begin() {
	local busy total p sum=0
	read -r busy total < <(machine_ticks)
	M0[busy]=$busy
	M0[total]=$total
	M0[target]="$(sum_ticks "${CUR_TARGETS[@]}")"
	M0[pg_cluster]="$(pg_cluster_ticks)"
	M0[pg_db]="$(pg_db_ticks "$CUR_DB")"
	M0[redis]="$(ticks "$REDIS_PID")"
	M0[sink]=0
	[[ -n "$CUR_SINK_PID" ]] && M0[sink]="$(ticks "$CUR_SINK_PID")"
	for p in "${CUR_TARGETS[@]}"; do sum=$((sum + $(vm_kb "$p" VmRSS))); done
	M0[rss]=$sum
	M0[db]=null
	if [[ -n "$CUR_DB" && "$CUR_DBSTATS" == 1 ]]; then
		M0[db]="$(db_stats "$CUR_DB")"
	fi
	# RSS sampler: the largest sum of the targets' VmRSS, every 100 ms.
	RSS_FILE="$(mktemp "$OUT/tmp/rss.XXXXXX")"
	echo "$sum" >"$RSS_FILE"
	: >"$RSS_FILE.run" # the sampler stops when this file goes: no signal, no job notice
	(
		max=0
		while [[ -e "$RSS_FILE.run" ]]; do
			s=0
			alive=0
			for p in "${CUR_TARGETS[@]}"; do
				v="$(vm_kb "$p" VmRSS)"
				((v > 0)) && alive=1
				s=$((s + v))
			done
			((alive)) || break
			if ((s > max)); then
				max=$s
				echo "$max" >"$RSS_FILE"
			fi
			sleep 0.1
		done
	) &
	RSS_PID=$!
	PIDS+=("$RSS_PID")
	M0[start]="$(date +%s.%N)"
	LG_JSONS=()
	LG_PIDS=()
}

# db_stats DB: {"attempts": rows of checkout_attempts, "xact_commit": ..., "lsn": ...}
db_stats() {
	psql_q -d "$1" -c "SELECT json_build_object('attempts', (SELECT count(*) FROM checkout_attempts),
		'xact_commit', (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
		'lsn', pg_current_wal_lsn()::text)" 2>/dev/null || echo null
}

# launch_lg NAME ARGS...: run loadgen in the background, wrapped in a subshell that
# records its exit status and CPU time (the `times` of its children).
launch_lg() {
	local name="$1"
	shift
	local base="$OUT/runs/$name"
	record "$name" "$LOADGEN" "$@"
	(
		rc=0
		"$LOADGEN" "$@" >"$base.json" 2>"$base.stderr" || rc=$?
		times >"$base.times"
		echo "$rc" >"$base.rc"
	) &
	LG_PIDS+=($!)
	PIDS+=($!)
	LG_JSONS+=("runs/$name.json")
}

# measure_end BENCH VARIANT ROUND INSTANCES: wait for the loadgens, take the deltas
# and append the run to runs.jsonl.
measure_end() {
	local bench="$1" variant="$2" round="$3" instances="$4"
	local p rcs=() times=() j
	for p in "${LG_PIDS[@]}"; do
		wait "$p" || true
		forget_pid "$p"
	done
	local wall busy total
	wall="$(awk -v a="${M0[start]}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')"
	read -r busy total < <(machine_ticks)
	local t_target t_pgc t_pgdb t_redis t_sink=0 hwm=0 rss_max db1=null
	t_target="$(sum_ticks "${CUR_TARGETS[@]}")"
	t_pgc="$(pg_cluster_ticks)"
	t_pgdb="$(pg_db_ticks "$CUR_DB")"
	t_redis="$(ticks "$REDIS_PID")"
	[[ -n "$CUR_SINK_PID" ]] && t_sink="$(ticks "$CUR_SINK_PID")"
	for p in "${CUR_TARGETS[@]}"; do hwm=$((hwm + $(vm_kb "$p" VmHWM))); done
	rm -f "$RSS_FILE.run"
	wait "$RSS_PID" 2>/dev/null || true
	forget_pid "$RSS_PID"
	rss_max="$(cat "$RSS_FILE")"
	rm -f "$RSS_FILE"
	if [[ -n "$CUR_DB" && "$CUR_DBSTATS" == 1 && "${M0[db]}" != null ]]; then
		sleep 1.1 # backends report their transaction counts at most once a second
		db1="$(db_stats "$CUR_DB")"
	fi
	local sink=null
	if [[ -n "$CUR_SINK_PORT" ]]; then
		sink="$(curl -fsS -m 5 "http://127.0.0.1:$CUR_SINK_PORT/stats" 2>/dev/null || echo null)"
	fi
	for j in "${LG_JSONS[@]}"; do
		rcs+=("$(cat "$OUT/${j%.json}.rc" 2>/dev/null || echo 255)")
		times+=("$(sed -n 2p "$OUT/${j%.json}.times" 2>/dev/null || echo '')")
		if [[ "${rcs[-1]}" != 0 ]]; then
			log "  loadgen $(basename "$j" .json) exited ${rcs[-1]}: $(tail -n 3 "$OUT/${j%.json}.stderr" | tr '\n' ' ')"
		fi
	done
	jq -cn --arg bench "$bench" --arg variant "$variant" --argjson round "$round" \
		--argjson instances "$instances" --argjson wall "$wall" \
		--argjson reports "$(json_list "${LG_JSONS[@]}")" --argjson rcs "[$(IFS=,; echo "${rcs[*]}")]" \
		--argjson lg_times "$(json_list "${times[@]}")" \
		--argjson ticks "{\"machine_busy\": $((busy - M0[busy])), \"machine_total\": $((total - M0[total])),
			\"target\": $((t_target - M0[target])), \"pg_cluster\": $((t_pgc - M0[pg_cluster])),
			\"pg_db\": $((t_pgdb - M0[pg_db])), \"redis\": $((t_redis - M0[redis])), \"sink\": $((t_sink - M0[sink]))}" \
		--argjson rss "{\"before_kb\": ${M0[rss]}, \"max_sampled_kb\": $rss_max, \"hwm_kb\": $hwm}" \
		--argjson db0 "${M0[db]}" --argjson db1 "$db1" --argjson sink "$sink" \
		--argjson commands "$(json_list "${CUR_CMDS[@]}")" \
		'{bench: $bench, variant: $variant, round: $round, instances: $instances, wall_s: $wall,
		  reports: $reports, rcs: $rcs, loadgen_times: $lg_times, ticks: $ticks, rss: $rss,
		  db_before: $db0, db_after: $db1, sink: $sink, commands: $commands}' >>"$OUT/runs.jsonl"
	CUR_CMDS=()
}

# ---------------------------------------------------------------- helpers of the benchmarks

# rotate ROUND ITEMS...: the items, rotated by ROUND-1, in REPLY_ARR.
rotate() {
	local r="$1"
	shift
	local n=$# i
	REPLY_ARR=()
	local items=("$@")
	for ((i = 0; i < n; i++)); do REPLY_ARR+=("${items[$(((i + r - 1) % n))]}"); done
}

# service_run NAME [VAR=VALUE...]: a fresh database, prefix and port; starts one
# instance and sets CUR_TARGETS, CUR_DB, SVC_PORT, SVC_PREFIX.
service_run() {
	local name="$1"
	shift
	new_db
	CUR_DB="$REPLY"
	new_prefix
	SVC_PREFIX="$REPLY"
	SVC_PORT="$(free_port)"
	start_service "$name" "$CUR_DB" "$SVC_PREFIX" "$SVC_PORT" "$@"
	CUR_TARGETS=("$REPLY")
}

service_done() {
	local p
	for p in "${CUR_TARGETS[@]}"; do stop_pid "$p"; done
	[[ -n "$CUR_SINK_PID" ]] && stop_pid "$CUR_SINK_PID"
	[[ -n "$CUR_DB" ]] && drop_db "$CUR_DB"
	[[ -n "${SVC_PREFIX:-}" ]] && clean_prefix "$SVC_PREFIX"
	CUR_TARGETS=()
	CUR_DB=""
	CUR_SINK_PID=""
	CUR_SINK_PORT=""
	SVC_PREFIX=""
	CUR_DBSTATS=0
}

steady_args() { # steady_args PORT CONCURRENCY DURATION
	printf '%s\n' -target "http://127.0.0.1:$1" -profile steady -concurrency "$2" -duration "$3" -json
}

# ---------------------------------------------------------------- benchmarks

bench1() {
	log "benchmark 1: checkout throughput, service vs trivial target ($REPEATS rounds × 2, CONNS=$CONNS, $DURATION each)"
	local r v args
	for ((r = 1; r <= REPEATS; r++)); do
		rotate "$r" service trivial
		for v in "${REPLY_ARR[@]}"; do
			log "  round $r: $v"
			if [[ "$v" == service ]]; then
				service_run "b1-r$r-service"
				CUR_DBSTATS=1
				measure_begin
				mapfile -t args < <(steady_args "$SVC_PORT" "$CONNS" "$DURATION")
				launch_lg "b1-r$r-service" "${args[@]}" -create-sale -items "$STEADY_ITEMS" \
					-admin-token "$ADMIN_TOKEN" -database-url "$(db_url "$CUR_DB")"
				measure_end b1 service "$r" 1
				service_done
			else
				local port
				port="$(free_port)"
				start_trivial "b1-r$r-trivial" "$port"
				CUR_TARGETS=("$REPLY")
				CUR_DB=""
				measure_begin
				mapfile -t args < <(steady_args "$port" "$CONNS" "$DURATION")
				launch_lg "b1-r$r-trivial" "${args[@]}" -database-url=
				measure_end b1 trivial "$r" 1
				service_done
			fi
		done
	done
}

bench2() {
	log "benchmark 2: telemetry overhead, modes: $TELEMETRY_MODES ($REPEATS rounds, CONNS=$CONNS, $DURATION each)"
	local r m args env modes
	read -ra modes <<<"$TELEMETRY_MODES"
	for ((r = 1; r <= REPEATS; r++)); do
		rotate "$r" "${modes[@]}"
		for m in "${REPLY_ARR[@]}"; do
			log "  round $r: $m"
			env=()
			CUR_SINK_PID=""
			CUR_SINK_PORT=""
			case "$m" in
			full | ratio001)
				CUR_SINK_PORT="$(free_port)"
				start_sink "b2-r$r-$m-sink" "$CUR_SINK_PORT"
				CUR_SINK_PID="$REPLY"
				env=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$CUR_SINK_PORT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
					OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_METRIC_EXPORT_INTERVAL="$METRIC_EXPORT_MS")
				if [[ "$m" == full ]]; then env+=(OTEL_TRACES_SAMPLER_ARG=1.0); else env+=(OTEL_TRACES_SAMPLER_ARG=0.01); fi
				;;
			off) env=(OTEL_SDK_DISABLED=true) ;;
			metrics) env=() ;;
			esac
			service_run "b2-r$r-$m" "${env[@]}"
			measure_begin
			mapfile -t args < <(steady_args "$SVC_PORT" "$CONNS" "$DURATION")
			launch_lg "b2-r$r-$m" "${args[@]}" -create-sale -items "$STEADY_ITEMS" \
				-admin-token "$ADMIN_TOKEN" -database-url=
			measure_end b2 "$m" "$r" 1
			service_done
		done
	done
}

bench3() {
	log "benchmark 3: flash sale of $FLASH_ITEMS items, $FLASH_USERS users ($REPEATS runs)"
	local r
	for ((r = 1; r <= REPEATS; r++)); do
		log "  run $r"
		service_run "b3-r$r-flash"
		measure_begin
		launch_lg "b3-r$r-flash" -target "http://127.0.0.1:$SVC_PORT" -profile flash -users "$FLASH_USERS" \
			-create-sale -items "$FLASH_ITEMS" -admin-token "$ADMIN_TOKEN" -duration "$FLASH_MAX" \
			-database-url "$(db_url "$CUR_DB")" -json
		measure_end b3 flash "$r" 1
		service_done
	done
}

bench5() {
	local what="steady $SCALE_DURATION at CONNS=$CONNS split"
	[[ "$SCALE_FLASH" == 1 ]] && what+=", then a flash crowd split"
	log "benchmark 5: scaling over instances: $SCALE_INSTANCES ($REPEATS rounds; $what)"
	local r n i sale share args ports pids insts
	for ((r = 1; r <= REPEATS; r++)); do
		read -ra insts <<<"$SCALE_INSTANCES"
		rotate "$r" "${insts[@]}"
		for n in "${REPLY_ARR[@]}"; do
			log "  round $r: $n instance(s)"
			new_db
			CUR_DB="$REPLY"
			new_prefix
			SVC_PREFIX="$REPLY"
			ports=()
			pids=()
			for ((i = 1; i <= n; i++)); do
				local port
				port="$(free_port)"
				while [[ " ${ports[*]} " == *" $port "* ]]; do port="$(free_port)"; done
				ports+=("$port")
			done
			# Instances start one after the other: migrations run under an advisory lock anyway.
			for ((i = 0; i < n; i++)); do
				start_service "b5-r$r-n$n-i$((i + 1))" "$CUR_DB" "$SVC_PREFIX" "${ports[$i]}"
				pids+=("$REPLY")
			done
			CUR_TARGETS=("${pids[@]}")

			create_sale "${ports[0]}" "$STEADY_ITEMS"
			sale="$REPLY"
			measure_begin
			for ((i = 0; i < n; i++)); do
				share=$((CONNS / n + (i < CONNS % n ? 1 : 0)))
				mapfile -t args < <(steady_args "${ports[$i]}" "$share" "$SCALE_DURATION")
				launch_lg "b5-r$r-n$n-steady-i$((i + 1))" "${args[@]}" -sale "$sale" -database-url=
			done
			measure_end b5 "steady-$n" "$r" "$n"

			if [[ "$SCALE_FLASH" == 1 ]]; then
				create_sale "${ports[0]}" "$FLASH_ITEMS"
				sale="$REPLY"
				measure_begin
				for ((i = 0; i < n; i++)); do
					share=$((FLASH_USERS / n + (i < FLASH_USERS % n ? 1 : 0)))
					launch_lg "b5-r$r-n$n-flash-i$((i + 1))" -target "http://127.0.0.1:${ports[$i]}" -profile flash \
						-users "$share" -sale "$sale" -duration "$FLASH_MAX" -database-url "$(db_url "$CUR_DB")" -json
				done
				measure_end b5 "flash-$n" "$r" "$n"
			fi
			service_done
		done
	done
}

bench6() {
	log "benchmark 6: open loop at $OPEN_RATES checkouts/s ($REPEATS rounds, $OPEN_DURATION each)"
	local r rate rates
	read -ra rates <<<"$OPEN_RATES"
	for ((r = 1; r <= REPEATS; r++)); do
		rotate "$r" "${rates[@]}"
		for rate in "${REPLY_ARR[@]}"; do
			log "  round $r: $rate/s"
			service_run "b6-r$r-rate$rate"
			CUR_DBSTATS=1
			measure_begin
			launch_lg "b6-r$r-rate$rate" -target "http://127.0.0.1:$SVC_PORT" -profile open -rate "$rate" \
				-max-inflight "$OPEN_MAX_INFLIGHT" -duration "$OPEN_DURATION" -create-sale -items "$STEADY_ITEMS" \
				-admin-token "$ADMIN_TOKEN" -database-url= -json
			measure_end b6 "$rate" "$r" 1
			service_done
		done
	done
}

# ---------------------------------------------------------------- main

# The summary (medians, ratios, tables) is `loadgen summarize`, from the files of the run
# directory: meta.json, runs.jsonl and the reports under runs/.
if [[ "${1:-}" == summarize ]]; then
	[[ $# -eq 2 ]] || die "usage: scripts/bench.sh summarize DIR"
	exec go run ./cmd/loadgen summarize "$2"
fi
[[ $# -eq 0 ]] || die "unexpected argument ${1}; see the comment at the top of scripts/bench.sh"

validate_settings
for tool in go psql createdb dropdb redis-cli curl jq awk getconf ss pkill; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not on PATH"
done
psql_q -d postgres -c 'SELECT 1' >/dev/null 2>&1 ||
	die "PostgreSQL is not reachable at $PG_HOST:$PG_PORT as $PG_USER: run scripts/services.sh start"
[[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] ||
	die "Redis is not reachable at 127.0.0.1:$REDIS_PORT: run scripts/services.sh start"

# Inherited telemetry and listener settings would change what is measured or collide.
for v in $(compgen -e | grep -E '^(OTEL_|METRICS_ADDR$|PPROF_ADDR$)' || true); do unset "$v"; done
SERVICE_ENV=()
for v in $(compgen -e | grep -E '^(DB_MAX_|REDIS_POOL_SIZE$|ATTEMPT_|PURCHASE_|REQUEST_TIMEOUT$|SALE_|USER_ITEM_LIMIT$|GOMAXPROCS$|GOGC$|GOMEMLIMIT$)' || true); do
	SERVICE_ENV+=("$v=${!v}")
done

START_EPOCH="$(date +%s)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
TAG="$(date -u +%H%M%S)$((RANDOM % 100))"
OUT="$ROOT/.dev/bench/$STAMP"
mkdir -p "$OUT/runs" "$OUT/logs" "$OUT/tmp"
: >"$OUT/commands.txt"
: >"$OUT/runs.jsonl"
ADMIN_TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Room for the flash crowd's connections (the generator keeps two per user).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "output: ${OUT#"$ROOT"/}"
log "building bin/flashsale, bin/loadgen, bin/otlpsink"
mkdir -p bin
go build -o bin/flashsale ./cmd/flashsale
go build -o bin/loadgen ./cmd/loadgen
go build -o bin/otlpsink ./scripts/otlpsink
FLASHSALE="$ROOT/bin/flashsale"
LOADGEN="$ROOT/bin/loadgen"
OTLPSINK="$ROOT/bin/otlpsink"

PG_PID="$(ss -ltnpH "sport = :$PG_PORT" 2>/dev/null | sed -n 's/.*"postgres",pid=\([0-9]*\).*/\1/p' | head -n1)"
if [[ -z "$PG_PID" ]]; then
	PG_PID="$(scripts/services.sh status 2>/dev/null | sed -n 's/^postgres: running (pid \([0-9]*\).*/\1/p')"
fi
[[ -n "$PG_PID" ]] || log "warning: PostgreSQL's pid not found: its CPU is not measured"
REDIS_PID="$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')"

dirty=""
[[ -z "$(git status --porcelain 2>/dev/null)" ]] || dirty=" + uncommitted changes"
invocation="scripts/bench.sh"
[[ "$QUICK" == 1 ]] && invocation="QUICK=1 $invocation"
[[ "$BENCHES" != 1,2,3,4,5,6 ]] && invocation="BENCHES=$BENCHES $invocation"
settings=()
for v in QUICK REPEATS CONNS DURATION STEADY_ITEMS FLASH_USERS FLASH_ITEMS FLASH_MAX SCALE_INSTANCES SCALE_DURATION \
	SCALE_FLASH OPEN_RATES OPEN_DURATION OPEN_MAX_INFLIGHT TELEMETRY_MODES METRIC_EXPORT_MS BENCHES; do
	settings+=(--arg "$v" "${!v}")
done
jq -n --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--arg commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty" \
	--arg root "$ROOT" --arg out ".dev/bench/$STAMP" --arg invocation "$invocation" \
	--argjson clk "$CLK_TCK" \
	--arg nproc "$(nproc)" --arg cpu_model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
	--arg mem "$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)" \
	--arg os "$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null)" --arg kernel "$(uname -r)" \
	--arg go "$(go version | awk '{print $3}')" \
	--arg pg "$(psql_q -d postgres -c 'SHOW server_version' | awk '{print "PostgreSQL " $1}')" \
	--arg pgsync "$(psql_q -d postgres -c 'SHOW synchronous_commit')" \
	--arg redis "$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^redis_version://p')" \
	--arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--argjson service_env "$(json_list "${SERVICE_ENV[@]}")" --argjson settings "$(jq -n '$ARGS.named' "${settings[@]}")" \
	'{date: $date, commit: $commit, root: $root, out: $out, invocation: $invocation, clk_tck: $clk,
	  machine: {nproc: $nproc, cpu_model: $cpu_model, mem: $mem, os: $os, kernel: $kernel, go: $go,
	            postgres: ($pg + " (synchronous_commit " + $pgsync + ")"), redis: $redis, load_before: $load},
	  service_env: $service_env, settings: $settings}' >"$OUT/meta.json"

want 1 && bench1
want 2 && bench2
want 3 && bench3
want 5 && bench5
want 6 && bench6

elapsed=$(($(date +%s) - START_EPOCH))
jq --arg e "$((elapsed / 60)) min $((elapsed % 60)) s" --arg l "$(cut -d' ' -f1-3 /proc/loadavg)" \
	'.elapsed = $e | .load_after = $l' "$OUT/meta.json" >"$OUT/meta.json.new"
mv "$OUT/meta.json.new" "$OUT/meta.json"
rmdir "$OUT/tmp" 2>/dev/null || true
"$LOADGEN" summarize "$OUT" | tee "$OUT/summary.md"
log "done in $((elapsed / 60)) min $((elapsed % 60)) s; summary also in ${OUT#"$ROOT"/}/summary.md"
