#!/bin/bash
# Drain throughput of staged api + N workers on one Redis or a 3-master
# Cluster (docs/SCALING.md). Needs a built staged at $STAGED_BIN (default
# /tmp/scalebench/staged).
# usage: run.sh single|cluster WORKERS JOBS
set -u
BIN=${STAGED_BIN:-/tmp/scalebench/staged}
topo=$1; W=$2; N=$3
D=$(mktemp -d); cd $D
pids=()
# pids are the processes themselves (no subshells), so that they all stop:
# a leftover redis-server would keep holding an inherited flock.
trap 'kill ${pids[@]} 2>/dev/null' EXIT  # also when timeout(1) stops the script
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
if [ $topo = single ]; then
  p=$(port); redis-server --port $p --save "" --appendonly no --daemonize no --dir $D >/dev/null & pids+=($!)
  URL=redis://127.0.0.1:$p/0
else
  addrs=()
  for i in 1 2 3; do p=$(port); mkdir n$i; redis-server --port $p --cluster-enabled yes --save "" --appendonly no --dir $D/n$i >/dev/null & pids+=($!); addrs+=(127.0.0.1:$p); done
  for a in ${addrs[@]}; do until redis-cli -h 127.0.0.1 -p ${a#*:} ping 2>/dev/null | grep -q PONG; do sleep 0.1; done; done
  redis-cli --cluster create ${addrs[@]} --cluster-replicas 0 --cluster-yes >/dev/null
  URL=redis+cluster://$(IFS=,; echo "${addrs[*]}")
  # every node: ok, all slots served, all three masters known
  for a in ${addrs[@]}; do until redis-cli -h 127.0.0.1 -p ${a#*:} cluster info | tr -d '\r' | grep -c -x -e cluster_state:ok -e cluster_slots_ok:16384 -e cluster_known_nodes:3 | grep -q 3; do sleep 0.1; done; done
fi
sleep 0.3
ap=$(port)
STAGED_REDIS_URL=$URL STAGED_ADDR=127.0.0.1:$ap STAGED_RATE_LIMIT=0 STAGED_TENANT_MAX_LIVE=0 $BIN api >api.log 2>&1 & pids+=($!)
until curl -sf http://127.0.0.1:$ap/readyz >/dev/null; do sleep 0.1; done
wp=()
for i in $(seq $W); do STAGED_REDIS_URL=$URL STAGED_CONCURRENCY=16 STAGED_METRICS_ADDR=off $BIN worker >w$i.log 2>&1 & pids+=($!); wp+=($!); done
until curl -sf http://127.0.0.1:$ap/v1/pipelines | grep -q sleep; do sleep 0.1; done
sleep 1
kill -STOP ${wp[@]}
# one curl, 16 submits at a time (a process per submit was too slow on a loaded machine)
curl -s --no-progress-meter -Z --parallel-max 16 -X POST -H 'Content-Type: application/json' -d '{"type":"sleep","input":{"stages":2,"ms":0}}' "http://127.0.0.1:$ap/v1/jobs#[1-$N]" >/dev/null
q=$(curl -s "http://127.0.0.1:$ap/v1/jobs?limit=1" | jq '.counts.queued // 0')
[ "$q" -lt $N ] && { echo "only $q of $N submits were accepted: draining those"; N=$q; }
start=$(date +%s.%N)
kill -CONT ${wp[@]}
sub=$start
while :; do
  c=$(curl -s "http://127.0.0.1:$ap/v1/jobs?limit=1" | jq '.counts.succeeded // 0')
  [ "$c" -ge $N ] && break
  sleep 0.05
done
end=$(date +%s.%N)
echo "$topo workers=$W jobs=$N drain=$(echo "$end-$start"|bc)s jobs/s=$(echo "$N/($end-$start)"|bc)"
# On a Cluster, per master: pub/sub commands run there (scripts' calls
# included), PUBLISH messages it received over the Cluster bus, all bus
# messages it received, and its CPU seconds (sys+user).
if [ $topo = cluster ]; then
  for a in ${addrs[@]}; do
    r="redis-cli -h 127.0.0.1 -p ${a#*:}"
    calls() { $r info commandstats | tr -d '\r' | sed -n "s/^cmdstat_$1:calls=\([0-9]*\),.*/\1/p"; }
    ci() { $r cluster info | tr -d '\r' | sed -n "s/^$1:\([0-9]*\)/\1/p"; }
    cpu=$($r info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s+=$2} END {printf "%.2f", s}')
    echo "  $a publish=$(calls publish) spublish=$(calls spublish) bus_publish_received=$(ci cluster_stats_messages_publish_received) bus_received=$(ci cluster_stats_messages_received) cpu_s=$cpu"
  done
fi
kill ${pids[@]} 2>/dev/null; wait 2>/dev/null
rm -rf $D
