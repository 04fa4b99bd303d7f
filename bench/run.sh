#!/usr/bin/env bash
# bench/run.sh — staged's benchmark, then the reference peers of
# ../shared/peers (asynq-raw, BullMQ), one after the other on one private
# redis-server, then the ratios against the targets of issue 14.
#
#   bench/run.sh                 the full run (a few minutes)
#   bench/run.sh --smoke         tiny sizes, staged only, < 60 s; exits 0 unless
#                                the bench itself fails (never on a missed target)
#   bench/run.sh [--smoke] -scenarios drain,idle ...   extra flags go to the staged bench
#
# Environment: N (jobs, 20000), C (HTTP connections, 50), DURATION (HTTP load,
# 10s), LAT_N (latency jobs, 40), ROUNDS (repeat staged and the peers, taking
# medians, 1), PEERS (the peers' folder, ../shared/peers),
# PROFILE_DIR (write CPU profiles of the drain, submit and poll scenarios there),
# OUT (also write every JSON line of the run to this file).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
N=${N:-20000}
C=${C:-50}
DURATION=${DURATION:-10s}
LAT_N=${LAT_N:-40}
ROUNDS=${ROUNDS:-1}
PEERS=${PEERS:-$root/../shared/peers}

smoke=0
args=()
for a in "$@"; do
	case $a in
	--smoke) smoke=1 ;;
	*) args+=("$a") ;;
	esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/staged-bench.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

say() { printf '\n==> %s\n' "$*" >&2; }

say "building the bench"
go build -o "$tmp/bench" ./bench
B=$tmp/bench
lines=$tmp/lines.jsonl
: >"$lines"

if [ "$smoke" -eq 1 ]; then
	say "smoke run (tiny sizes, no peers; figures are not meaningful)"
	"$B" -n 300 -c 8 -duration 1s -warmup 200ms -latency-n 5 -idle-window 1s ${args[@]+"${args[@]}"} | tee "$tmp/staged.out"
	grep '^{' "$tmp/staged.out" >>"$lines" || true
	"$B" report "$lines"
	if [ -n "${OUT:-}" ]; then cp "$lines" "$OUT"; fi
	exit 0
fi

# One private redis-server for everything.
port=$("$B" freeport)
addr=127.0.0.1:$port
redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
	--daemonize no --logfile "$tmp/redis.log" &
pids+=($!)
# rcmd CMD: sends one inline command to the Redis and prints the reply's
# first line (bash's /dev/tcp: no redis-cli needed).
rcmd() {
	local reply
	exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
	printf '%s\r\n' "$1" >&3
	read -r reply <&3
	exec 3>&-
	printf '%s\n' "${reply%$'\r'}"
}
for _ in $(seq 100); do
	[ "$(rcmd PING 2>/dev/null)" = "+PONG" ] && break
	sleep 0.1
done
say "redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on $addr; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

# flush empties the Redis between runs.
flush() { rcmd FLUSHALL >/dev/null; }

staged() {
	say "staged: bench -redis $addr -flush -n $N -c $C -duration $DURATION -latency-n $LAT_N ${args[*]-} (the program of go run ./bench)"
	local prof=()
	if [ -n "${PROFILE_DIR:-}" ]; then prof=(-cpuprofile "$PROFILE_DIR"); fi
	"$B" -redis "$addr" -flush -n "$N" -c "$C" -duration "$DURATION" -latency-n "$LAT_N" \
		${prof[@]+"${prof[@]}"} ${args[@]+"${args[@]}"} | tee "$tmp/staged.out"
	grep '^{' "$tmp/staged.out" >>"$lines" || true
}

raw="$PEERS/asynq-raw"
asynq_raw() {
	local st hport hpid id
	for st in 0 4; do
		flush
		say "asynq-raw -mode worker -n $N -stages $st"
		"$B" measure -redis "$addr" -n "$N" -tag "peer=asynq-raw,mode=worker-redis,stages=$st" -- \
			"$tmp/asynq-raw" -redis "$addr" -mode worker -n "$N" -stages "$st" | tee -a "$lines"
	done
	flush
	say "asynq-raw -mode latency -n $LAT_N (default interval)"
	"$tmp/asynq-raw" -redis "$addr" -mode latency -n "$LAT_N" | tee -a "$lines"
	say "asynq-raw -mode latency -n $LAT_N -interval 20ms"
	"$tmp/asynq-raw" -redis "$addr" -mode latency -n "$LAT_N" -interval 20ms | tee -a "$lines"

	flush
	hport=$("$B" freeport)
	"$tmp/asynq-raw" -redis "$addr" -mode http -listen "127.0.0.1:$hport" 2>"$tmp/peer-http.log" &
	hpid=$!
	pids+=("$hpid")
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break
		sleep 0.1
	done
	say "asynq-raw -mode http: POST /submit, the same load generator ($C connections, $DURATION)"
	"$B" loadgen -method POST -url "http://127.0.0.1:$hport/submit" -body '{"type":"x","input":{}}' \
		-c "$C" -d "$DURATION" -pid "$hpid" -redis "$addr" -tag "peer=asynq-raw,mode=http-submit" | tee -a "$lines"
	id=$(curl -sf -X POST -H 'Content-Type: application/json' -d '{"type":"x","input":{}}' \
		"http://127.0.0.1:$hport/submit" | sed -E 's/.*"id":"([^"]+)".*/\1/')
	say "asynq-raw -mode http: GET /status/$id"
	"$B" loadgen -url "http://127.0.0.1:$hport/status/$id" \
		-c "$C" -d "$DURATION" -pid "$hpid" -redis "$addr" -tag "peer=asynq-raw,mode=http-poll" | tee -a "$lines"
	kill "$hpid" 2>/dev/null || true
	wait "$hpid" 2>/dev/null || true
}

bull="$PEERS/bullmq"
bullmq() {
	flush
	say "node bench.js worker $N 4 50"
	(cd "$tmp/bullmq" && "$B" measure -redis "$addr" -n "$N" -tag "peer=bullmq,mode=worker-redis,stages=4" -- \
		env REDIS_PORT="$port" node bench.js worker "$N" 4 50) | tee -a "$lines"
	flush
	say "node bullmq-e2e.js $N 4 50 (add and process at the same time)"
	(cd "$tmp/bullmq" && "$B" measure -redis "$addr" -n "$N" -tag "peer=bullmq,mode=e2e-redis,stages=4" -- \
		env REDIS_PORT="$port" node bullmq-e2e.js "$N" 4 50) | tee -a "$lines"
	flush
	say "node bench.js latency $LAT_N"
	(cd "$tmp/bullmq" && REDIS_PORT="$port" node bench.js latency "$LAT_N") | tee -a "$lines"
}

have_raw=0
if [ -d "$raw" ]; then
	say "building the asynq-raw peer ($raw)"
	(cd "$raw" && go build -o "$tmp/asynq-raw" .) && have_raw=1
else
	say "skipping asynq-raw: no $raw"
fi
have_bull=0
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	say "skipping BullMQ: node or npm is not installed"
elif [ ! -d "$bull" ]; then
	say "skipping BullMQ: no $bull"
else
	say "npm install of the BullMQ peer in a temp copy of $bull"
	mkdir -p "$tmp/bullmq"
	cp "$bull/package.json" "$bull/bench.js" bench/bullmq-e2e.js "$tmp/bullmq/"
	if (cd "$tmp/bullmq" && npm install --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1); then
		have_bull=1
	else
		say "skipping BullMQ: npm install failed:"
		tail -5 "$tmp/npm.log" >&2
	fi
fi

for round in $(seq "$ROUNDS"); do
	say "round $round of $ROUNDS"
	flush
	staged
	if [ "$have_raw" -eq 1 ]; then asynq_raw; fi
	if [ "$have_bull" -eq 1 ]; then bullmq; fi
done

say "ratios (issue 14)$([ "$ROUNDS" -gt 1 ] && echo ", medians of $ROUNDS rounds")"
"$B" report "$lines"
if [ -n "${OUT:-}" ]; then cp "$lines" "$OUT"; fi
exit 0
