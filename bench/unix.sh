#!/usr/bin/env bash
# What a unix socket on the clients' side gives: redis-benchmark GET and SET
# (-c CLIENTS, pipeline 1) against sentproxy (tcp mode, epoll engine) and
# HAProxy (mode tcp, one thread), each listening on a unix socket and on
# TCP loopback, all in front of one redis-server (TCP) followed by one
# Sentinel. Rounds rotate the target order; the table gives medians over
# rounds of requests/s, of each target's ratio to HAProxy on TCP within its
# round, and of the proxy's CPU per request (utime+stime from
# /proc/PID/stat, both tests).
#
# Usage: bash bench/unix.sh
# Env:   ROUNDS (default 5), REQUESTS (default 200000 per test), CLIENTS
#        (default 50).
# Needs redis-server, redis-sentinel, redis-benchmark, haproxy, go. Prints
# a Markdown table.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
for b in redis-server redis-sentinel redis-cli redis-benchmark haproxy go; do
  command -v "$b" >/dev/null 2>&1 || { echo "unix: $b not found (apt-get install -y redis-server redis-sentinel redis-tools haproxy)" >&2; exit 1; }
done

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_init unix

read -r MPORT SPORT HPORT <<<"$(free_ports 3)"
start_master_and_sentinel "$MPORT" "$SPORT"

go build -o "$OUT/sentproxy" ./cmd/sentproxy
declare -A where pid # where: "-p PORT" or "-s PATH" for redis-benchmark and redis-cli
start_sentproxy() { # NAME LISTEN-ADDRESS WHERE
  local w
  w=$(free_ports 1)
  "$OUT/sentproxy" run --sentinel.addrs="127.0.0.1:$SPORT" --proxy.listen-address="$2" \
    --web.listen-address="127.0.0.1:$w" --log.level=warn >"$OUT/$1.log" 2>&1 &
  pids+=($!)
  pid[$1]=$!
  where[$1]=$3
  until_ok 15 bash -c "[ \"\$(redis-cli $3 ping)\" = PONG ]"
}
p=$(free_ports 1)
start_sentproxy sentproxy-tcp "127.0.0.1:$p" "-p $p"
start_sentproxy sentproxy-unix "unix:$OUT/sentproxy.sock" "-s $OUT/sentproxy.sock"

start_haproxy "bind 127.0.0.1:$HPORT" "bind unix@$OUT/haproxy.sock mode 666" "server master 127.0.0.1:$MPORT"
pid[haproxy-tcp]=$haproxy_pid
pid[haproxy-unix]=$haproxy_pid
where[haproxy-tcp]="-p $HPORT"
where[haproxy-unix]="-s $OUT/haproxy.sock"
until_ok 10 bash -c "[ \"\$(redis-cli -p $HPORT ping)\" = PONG ]"

bench() { # TARGET: prints "SET_rps GET_rps"
  # shellcheck disable=SC2086 # where[] holds two words on purpose
  redis-benchmark ${where[$1]} -c "$CLIENTS" -n "$REQUESTS" -t set,get -r 100000 -d 16 --csv \
    | tr -d '"' | awk -F, '$1=="SET"{s=$2} $1=="GET"{g=$2} END{print s, g}'
}

targets=(sentproxy-tcp sentproxy-unix haproxy-tcp haproxy-unix)
for t in "${targets[@]}"; do bench "$t" >/dev/null; done # warm-up
date_start=$(date -u '+%Y-%m-%d %H:%M')
run_rounds "$ROUNDS" "$REQUESTS"

echo "Unix socket vs TCP on the clients' side: \`ROUNDS=$ROUNDS REQUESTS=$REQUESTS CLIENTS=$CLIENTS bash bench/unix.sh\` ($date_start UTC, $(nproc) CPUs, $(redis-server --version | cut -d' ' -f3), $(haproxy -v | head -n 1 | cut -d' ' -f1-3)); medians of $ROUNDS rounds, -c $CLIENTS, pipeline 1."
echo
ratio_table haproxy-tcp "HAProxy TCP"
