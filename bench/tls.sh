#!/usr/bin/env bash
# What TLS to the master costs: redis-benchmark GET and SET (-c CLIENTS,
# pipeline 1) in plain text against sentproxy --master.tls (tcp mode, which
# then copies through Go's TLS, and resp mode) and against HAProxy (mode
# tcp, one thread, `server ... ssl`), all in front of one redis-server that
# takes TLS, followed by one Sentinel; and, for scale, redis-benchmark in TLS
# straight to Redis (--tls). Certificates come from openssl, made for the
# run. Rounds rotate the target order; the table gives medians over rounds
# of requests/s and of the proxy's CPU per request (utime+stime from
# /proc/PID/stat, both tests).
#
# Usage: bash bench/tls.sh
# Env:   ROUNDS (default 5), REQUESTS (default 100000 per test), CLIENTS
#        (default 50), KEEPALIVE (default 1; 0 makes redis-benchmark open a
#        new connection for every request, so that each one costs the
#        proxies a TLS handshake with the master: the PHP-style client),
#        CLIENT_TLS (default 0; 1 makes the clients' leg TLS too:
#        redis-benchmark --tls to every target, sentproxy
#        --proxy.tls-cert-file, HAProxy `bind ... ssl crt`).
# Needs redis-server, redis-sentinel, redis-benchmark (with TLS, as
# Debian's), haproxy, openssl, go. Prints a Markdown table.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-5}
REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-50}
KEEPALIVE=${KEEPALIVE:-1}
CLIENT_TLS=${CLIENT_TLS:-0}
for b in redis-server redis-sentinel redis-cli redis-benchmark haproxy openssl go; do
  command -v "$b" >/dev/null 2>&1 || { echo "tls: $b not found (apt-get install -y redis-server redis-sentinel redis-tools haproxy openssl)" >&2; exit 1; }
done

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_init tls

# --- certificates: a CA and one certificate for 127.0.0.1, client and server ---
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$OUT/ca.key" -out "$OUT/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$OUT/tls.key" -out "$OUT/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$OUT/ext.cnf"
openssl x509 -req -in "$OUT/tls.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial -days 2 \
  -extfile "$OUT/ext.cnf" -out "$OUT/tls.crt" 2>/dev/null
cat "$OUT/tls.crt" "$OUT/tls.key" >"$OUT/tls.pem" # HAProxy's crt: both in one file

# --- redis-server (TLS on MTLS, plain on MPORT for control) and a Sentinel ---
read -r MPORT MTLS SPORT HPORT <<<"$(free_ports 4)"
tls_conf=(--tls-cert-file "$OUT/tls.crt" --tls-key-file "$OUT/tls.key" --tls-ca-cert-file "$OUT/ca.crt" --tls-replication yes)
redis-server --bind 127.0.0.1 --port "$MPORT" --tls-port "$MTLS" "${tls_conf[@]}" --save '' --appendonly no \
  --dir "$OUT" --logfile "$OUT/redis.log" &
pids+=($!)
until_ok 10 redis-cli -p "$MPORT" ping
printf 'bind 127.0.0.1\nport %s\ndir %s\nlogfile %s/sentinel.log\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-replication yes\nsentinel monitor mymaster 127.0.0.1 %s 1\n' \
  "$SPORT" "$OUT" "$OUT" "$OUT/tls.crt" "$OUT/tls.key" "$OUT/ca.crt" "$MTLS" >"$OUT/sentinel.conf"
redis-sentinel "$OUT/sentinel.conf" &
pids+=($!)
until_ok 10 redis-cli -p "$SPORT" ping

# --- sentproxy, tcp and resp mode, TLS to the master ---
go build -o "$OUT/sentproxy" ./cmd/sentproxy
declare -A port pid
served=()
[ "$CLIENT_TLS" = 0 ] || served=(--proxy.tls-cert-file="$OUT/tls.crt" --proxy.tls-key-file="$OUT/tls.key")
client_tls=()
[ "$CLIENT_TLS" = 0 ] || client_tls=(--tls --cacert "$OUT/ca.crt")
start_sentproxy() { # NAME MODE
  local p w
  read -r p w <<<"$(free_ports 2)"
  "$OUT/sentproxy" run --sentinel.addrs="127.0.0.1:$SPORT" --master.tls --tls.ca-file="$OUT/ca.crt" \
    --tls.cert-file="$OUT/tls.crt" --tls.key-file="$OUT/tls.key" --proxy.mode="$2" "${served[@]}" \
    --proxy.listen-address="127.0.0.1:$p" --web.listen-address="127.0.0.1:$w" --log.level=warn \
    >"$OUT/$1.log" 2>&1 &
  pids+=($!)
  pid[$1]=$!
  port[$1]=$p
  until_ok 15 bash -c "[ \"\$(redis-cli -p $p ${client_tls[*]} ping)\" = PONG ]"
}
start_sentproxy sentproxy-tcp tcp
start_sentproxy sentproxy-resp resp

# --- HAProxy, TLS to the master ---
served_ssl=""
[ "$CLIENT_TLS" = 0 ] || served_ssl=" ssl crt $OUT/tls.pem"
start_haproxy "bind 127.0.0.1:$HPORT$served_ssl" \
  "server master 127.0.0.1:$MTLS ssl verify required ca-file $OUT/ca.crt crt $OUT/tls.pem"
pid[haproxy]=$haproxy_pid
port[haproxy]=$HPORT
until_ok 10 bash -c "[ \"\$(redis-cli -p $HPORT ${client_tls[*]} ping)\" = PONG ]"
pid[direct-tls]=""
port[direct-tls]=$MTLS

bench() { # TARGET: prints "SET_rps GET_rps"
  local -a tls=("${client_tls[@]}")
  [ "$1" != direct-tls ] || tls=(--tls --cacert "$OUT/ca.crt" --cert "$OUT/tls.crt" --key "$OUT/tls.key")
  redis-benchmark -h 127.0.0.1 -p "${port[$1]}" "${tls[@]}" -c "$CLIENTS" -k "$KEEPALIVE" -n "$REQUESTS" -t set,get -r 100000 -d 16 --csv \
    | tr -d '"' | awk -F, '$1=="SET"{s=$2} $1=="GET"{g=$2} END{print s, g}'
}

targets=(direct-tls sentproxy-tcp sentproxy-resp haproxy)
for t in "${targets[@]}"; do bench "$t" >/dev/null; done # warm-up: keyspace, connections
date_start=$(date -u '+%Y-%m-%d %H:%M')
run_rounds "$ROUNDS" "$REQUESTS"

legs="TLS to the master"
[ "$CLIENT_TLS" = 0 ] || legs="TLS on both legs"
echo "$legs: \`ROUNDS=$ROUNDS REQUESTS=$REQUESTS CLIENTS=$CLIENTS KEEPALIVE=$KEEPALIVE CLIENT_TLS=$CLIENT_TLS bash bench/tls.sh\` ($date_start UTC, $(nproc) CPUs, $(redis-server --version | cut -d' ' -f3), $(haproxy -v | head -n 1 | cut -d' ' -f1-3)); medians of $ROUNDS rounds, -c $CLIENTS, -k $KEEPALIVE, pipeline 1."
echo
ratio_table haproxy HAProxy
