#!/usr/bin/env bash
# bench/ab-http.sh — before/after of the HTTP scenarios: builds of the staged
# bench alternated in one script, next to the minimal Echo handlers of the
# asynq-raw peer, on one private redis-server. Prints one JSON line per run
# (tagged build=<binary's name>, round=N); bench/ab-http.sh -h for usage.
#
#   go build -o /tmp/ab/old ./bench        # on the old commit
#   go build -o /tmp/ab/new ./bench        # on the new one
#   bench/ab-http.sh 4 5s /tmp/ab/old /tmp/ab/new > ab.jsonl
#   bench/ab-http.sh 2 5s /tmp/ab/old /tmp/ab/new -- -scenarios submit   # extra flags go to the bench
#
# Each round: the peer's POST /submit and GET /status/:id with the bench's
# load generator, then every build's submit and poll scenarios, each
# against a flushed Redis. Needs redis-server, redis-cli and curl; PEERS as
# in run.sh.
set -euo pipefail
if [ $# -lt 3 ] || [ "$1" = -h ]; then sed -n 2,15p "$0"; exit 2; fi
rounds=$1; dur=$2; shift 2
builds=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do builds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
extra=("$@")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${PEERS:-$root/../shared/peers}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/staged-ab.XXXXXX")
(cd "$PEERS/asynq-raw" && go build -o "$tmp/asynq-raw" .)
B=${builds[0]}
port=$("$B" freeport); addr=127.0.0.1:$port
redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no --daemonize no --logfile "$tmp/redis.log" &
rpid=$!
hpid=
trap 'kill $rpid ${hpid:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
echo "# $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$rounds"); do
	redis-cli -p "$port" flushall >/dev/null
	hport=$("$B" freeport)
	"$tmp/asynq-raw" -redis "$addr" -mode http -listen "127.0.0.1:$hport" 2>/dev/null &
	hpid=$!
	for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break; sleep 0.1; done
	"$B" loadgen -method POST -url "http://127.0.0.1:$hport/submit" -body '{"type":"x","input":{}}' -c 50 -d "$dur" \
		-pid "$hpid" -redis "$addr" -tag "build=peer,round=$r,scenario=submit"
	id=$(curl -sf -X POST -H 'Content-Type: application/json' -d '{"type":"x","input":{}}' \
		"http://127.0.0.1:$hport/submit" | sed -E 's/.*"id":"([^"]+)".*/\1/')
	"$B" loadgen -url "http://127.0.0.1:$hport/status/$id" -c 50 -d "$dur" -pid "$hpid" -redis "$addr" \
		-tag "build=peer,round=$r,scenario=poll"
	kill "$hpid"; wait "$hpid" 2>/dev/null || true; hpid=
	for b in "${builds[@]}"; do
		"$b" -redis "$addr" -flush -scenarios submit,poll -duration "$dur" -json ${extra[@]+"${extra[@]}"} |
			sed "s/^{/{\"build\":\"$(basename "$b")\",\"round\":$r,/"
	done
done
echo "# $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
