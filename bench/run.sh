#!/usr/bin/env bash
# Throughput, latency and CPU cost of Redis SET/GET through sentproxy in both
# of its modes, compared with Redis directly and with HAProxy (plain
# `mode tcp`, one thread), all on loopback. One run starts a master, a
# Sentinel, three sentproxy processes (--proxy.mode=tcp with each
# --proxy.engine, and --proxy.mode=resp, each on its own ports, all following
# the same Sentinel) and HAProxy on free
# ports, then for ROUNDS rounds runs redis-benchmark against every target:
#   - CLIENTS (50) clients, pipeline 1:  direct, tcp, epoll, resp, haproxy
#   - CLIENTS (50) clients, pipeline 16: direct, tcp, epoll, resp, haproxy
#   - CLIENTS_LOW (10) clients, pipeline 1 ("moderate load"): direct, tcp, epoll, resp
# Within a round the measurements of one configuration run back to back, in a
# target order rotated each round, so that drift on a shared machine hits all
# targets alike and in-round ratios compare neighbours. It also reads each
# proxy's CPU time (utime+stime from /proc/PID/stat) around every benchmark to
# report proxy CPU per request.
# Writes RESULTS (default bench/RESULTS.md; overwritten, except for the
# sections between "<!-- NAME:begin -->" and "<!-- NAME:end -->" that other
# programs own, such as bench/drill's and bench/scale's, which are kept) and
# prints the tables.
#
# Usage: bench/run.sh
# Env:   ROUNDS (default 3), REQUESTS_P1 (default 200000), REQUESTS_P16
#        (default 1000000), REQUESTS_LOW (default 50000), CLIENTS (default 50),
#        CLIENTS_LOW (default 10), RESULTS (output file), KEEP_RAW (a file to
#        copy the raw measurements to, for re-running report.py), QUICK=1 (one round,
#        small counts: a smoke run in well under a minute; writes to
#        $TMPDIR/sentproxy-bench-quick.md unless RESULTS is set, so that it
#        never overwrites bench/RESULTS.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# The command as invoked, with the settings given in the environment.
invocation=""
for v in QUICK ROUNDS REQUESTS_P1 REQUESTS_P16 REQUESTS_LOW CLIENTS CLIENTS_LOW RESULTS KEEP_RAW; do
  [ -z "${!v:-}" ] || invocation+="$v=${!v} "
done
invocation+="bash bench/run.sh"

if [ "${QUICK:-0}" = 1 ]; then
  ROUNDS=${ROUNDS:-1}
  REQUESTS_P1=${REQUESTS_P1:-20000}
  REQUESTS_P16=${REQUESTS_P16:-100000}
  REQUESTS_LOW=${REQUESTS_LOW:-10000}
  RESULTS=${RESULTS:-${TMPDIR:-/tmp}/sentproxy-bench-quick.md}
fi
ROUNDS=${ROUNDS:-3}
REQUESTS_P1=${REQUESTS_P1:-200000}
REQUESTS_P16=${REQUESTS_P16:-1000000}
REQUESTS_LOW=${REQUESTS_LOW:-50000}
CLIENTS=${CLIENTS:-50}
CLIENTS_LOW=${CLIENTS_LOW:-10}
RESULTS=${RESULTS:-$root/bench/RESULTS.md}
[ "$CLIENTS_LOW" != "$CLIENTS" ] || { echo "bench: CLIENTS_LOW must differ from CLIENTS" >&2; exit 1; }
targets=(direct tcp epoll resp haproxy)
# Configurations measured every round: clients, pipeline depth, requests per
# test (one invocation runs SET then GET, this many each), targets.
cfg_clients=("$CLIENTS" "$CLIENTS" "$CLIENTS_LOW")
cfg_pipes=(1 16 1)
cfg_requests=("$REQUESTS_P1" "$REQUESTS_P16" "$REQUESTS_LOW")
cfg_targets=("direct tcp epoll resp haproxy" "direct tcp epoll resp haproxy" "direct tcp epoll resp")

# --- dependencies -----------------------------------------------------------
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  # Try without refreshing the package lists first; update only if that fails.
  if ! $sudo apt-get install -y redis-server redis-sentinel redis-tools haproxy >/dev/null 2>&1; then
    $sudo apt-get update -qq
    $sudo apt-get install -y redis-server redis-sentinel redis-tools haproxy >/dev/null
  fi
fi
for b in redis-server redis-sentinel redis-cli redis-benchmark haproxy curl python3 go; do
  command -v "$b" >/dev/null 2>&1 || { echo "bench: $b not found" >&2; exit 1; }
done

# --- process bookkeeping and cleanup (bench/lib.sh) -------------------------
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_init bench

# poll DESCRIPTION SECONDS PID LOG CMD...: run CMD every 0.1s until it
# succeeds; fail if the deadline passes or process PID (the one being waited
# for) exits, showing the end of its LOG.
poll() {
  local what=$1 secs=$2 pid=$3 log=$4
  shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "exited while waiting for $what; log: $(tail -n 20 "$log" 2>/dev/null)"
    [ $SECONDS -lt $deadline ] || die "timed out after ${secs}s waiting for $what; log: $(tail -n 20 "$log" 2>/dev/null)"
    sleep 0.1
  done
}

alive() { kill -0 "$1" 2>/dev/null || die "$2 (pid $1) exited; its log: $(tail -n 20 "$3" 2>/dev/null)"; }

# --- free ports ---------------------------------------------------------------
read -r MPORT SPORT PPORT WPORT RPORT RWPORT HPORT EPORT EWPORT < <(python3 - <<'PY'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

# --- build ----------------------------------------------------------------------
echo "bench: building sentproxy" >&2
go build -o "$OUT/sentproxy" ./cmd/sentproxy
# The revision the binary was built from, read now: others may commit while
# the rounds run. Uncommitted changes are identified by a hash of the diff.
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  rev="$rev + uncommitted changes (tracked diff sha256 $(git diff HEAD 2>/dev/null | sha256sum | cut -c1-12), $(git status --porcelain 2>/dev/null | { grep -c '^??' || true; }) untracked paths) at build time $(date -u '+%H:%M:%S UTC')"
fi

# --- master -----------------------------------------------------------------------
mkdir -p "$OUT/master" "$OUT/sentinel"
cat >"$OUT/master/redis.conf" <<EOF
bind 127.0.0.1
port $MPORT
save ""
appendonly no
daemonize no
dir $OUT/master
logfile $OUT/master/redis.log
EOF
redis-server "$OUT/master/redis.conf" &
MPID=$!
pids+=("$MPID")
poll "redis-server on :$MPORT" 10 "$MPID" "$OUT/master/redis.log" bash -c "[ \"\$(redis-cli -h 127.0.0.1 -p $MPORT ping)\" = PONG ]"

# --- Sentinel ---------------------------------------------------------------------
cat >"$OUT/sentinel/sentinel.conf" <<EOF
bind 127.0.0.1
port $SPORT
daemonize no
dir $OUT/sentinel
logfile $OUT/sentinel/sentinel.log
sentinel monitor mymaster 127.0.0.1 $MPORT 1
EOF
redis-sentinel "$OUT/sentinel/sentinel.conf" &
SPID=$!
pids+=("$SPID")
poll "redis-sentinel on :$SPORT" 10 "$SPID" "$OUT/sentinel/sentinel.log" bash -c \
  "redis-cli -h 127.0.0.1 -p $SPORT sentinel get-master-addr-by-name mymaster | grep -qx $MPORT"

# --- sentproxy, tcp and resp modes -------------------------------------------------
# Two processes, same Sentinel and master name, each with its own proxy and
# web ports; they differ only in --proxy.mode.
sp_tcp_cmd=("$OUT/sentproxy" run --sentinel.addrs=127.0.0.1:$SPORT --sentinel.master-name=mymaster
  --proxy.mode=tcp --proxy.engine=splice --proxy.listen-address=127.0.0.1:$PPORT --web.listen-address=127.0.0.1:$WPORT --log.level=warn)
sp_epoll_cmd=("$OUT/sentproxy" run --sentinel.addrs=127.0.0.1:$SPORT --sentinel.master-name=mymaster
  --proxy.mode=tcp --proxy.engine=epoll --proxy.listen-address=127.0.0.1:$EPORT --web.listen-address=127.0.0.1:$EWPORT --log.level=warn)
sp_resp_cmd=("$OUT/sentproxy" run --sentinel.addrs=127.0.0.1:$SPORT --sentinel.master-name=mymaster
  --proxy.mode=resp --proxy.listen-address=127.0.0.1:$RPORT --web.listen-address=127.0.0.1:$RWPORT --log.level=warn)
"${sp_tcp_cmd[@]}" >"$OUT/sentproxy-tcp.log" 2>&1 &
TPID=$!
pids+=("$TPID")
"${sp_epoll_cmd[@]}" >"$OUT/sentproxy-epoll.log" 2>&1 &
EPID=$!
pids+=("$EPID")
"${sp_resp_cmd[@]}" >"$OUT/sentproxy-resp.log" 2>&1 &
RPID=$!
pids+=("$RPID")
poll "sentproxy (tcp) /readyz on :$WPORT" 30 "$TPID" "$OUT/sentproxy-tcp.log" curl -fs -o /dev/null "http://127.0.0.1:$WPORT/readyz"
poll "sentproxy (epoll) /readyz on :$EWPORT" 30 "$EPID" "$OUT/sentproxy-epoll.log" curl -fs -o /dev/null "http://127.0.0.1:$EWPORT/readyz"
poll "sentproxy (resp) /readyz on :$RWPORT" 30 "$RPID" "$OUT/sentproxy-resp.log" curl -fs -o /dev/null "http://127.0.0.1:$RWPORT/readyz"
alive "$TPID" "sentproxy (tcp)" "$OUT/sentproxy-tcp.log"
alive "$RPID" "sentproxy (resp)" "$OUT/sentproxy-resp.log"
# The epoll process's event loops and GOMAXPROCS, which its defaults take
# from the machine (README: Event loops and GOMAXPROCS), for the report.
BENCH_EPOLL_LOOPS="$(curl -fs "http://127.0.0.1:$EWPORT/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("%d event loop(s), GOMAXPROCS %d" % (s["routes"][0].get("event_loops", 0), s["gomaxprocs"]))')"
export BENCH_EPOLL_LOOPS

# --- HAProxy ------------------------------------------------------------------------
cat >"$OUT/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode tcp
    maxconn 4096
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend redis_in
    bind 127.0.0.1:$HPORT
    default_backend redis_master

backend redis_master
    server master 127.0.0.1:$MPORT maxconn 4096
EOF
haproxy -c -q -f "$OUT/haproxy.cfg" || die "haproxy rejected its config"
haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 &
HPID=$!
pids+=("$HPID")
poll "haproxy on :$HPORT" 10 "$HPID" "$OUT/haproxy.log" bash -c "[ \"\$(redis-cli -h 127.0.0.1 -p $HPORT ping)\" = PONG ]"
alive "$HPID" haproxy "$OUT/haproxy.log"

# Every target answers PING before measuring.
poll "sentproxy (tcp) proxying PING" 10 "$TPID" "$OUT/sentproxy-tcp.log" bash -c "[ \"\$(redis-cli -h 127.0.0.1 -p $PPORT ping)\" = PONG ]"
poll "sentproxy (epoll) proxying PING" 10 "$EPID" "$OUT/sentproxy-epoll.log" bash -c "[ \"\$(redis-cli -h 127.0.0.1 -p $EPORT ping)\" = PONG ]"
poll "sentproxy (resp) proxying PING" 10 "$RPID" "$OUT/sentproxy-resp.log" bash -c "[ \"\$(redis-cli -h 127.0.0.1 -p $RPORT ping)\" = PONG ]"

port_of() {
  case $1 in
    direct) echo "$MPORT" ;;
    tcp) echo "$PPORT" ;;
    epoll) echo "$EPORT" ;;
    resp) echo "$RPORT" ;;
    haproxy) echo "$HPORT" ;;
  esac
}
pid_of() {
  case $1 in
    direct) echo "$MPID" ;;
    tcp) echo "$TPID" ;;
    epoll) echo "$EPID" ;;
    resp) echo "$RPID" ;;
    haproxy) echo "$HPID" ;;
  esac
}
all_alive() {
  alive "$TPID" "sentproxy (tcp)" "$OUT/sentproxy-tcp.log"
  alive "$EPID" "sentproxy (epoll)" "$OUT/sentproxy-epoll.log"
  alive "$RPID" "sentproxy (resp)" "$OUT/sentproxy-resp.log"
  alive "$HPID" haproxy "$OUT/haproxy.log"
  alive "$MPID" redis-server "$OUT/master/redis.log"
}


CLK_TCK=$(getconf CLK_TCK)

# bench_cmd TARGET CLIENTS PIPE REQUESTS: the redis-benchmark command line.
bench_cmd() {
  echo redis-benchmark -h 127.0.0.1 -p "$(port_of "$1")" -c "$2" -n "$4" -t set,get -P "$3" -r 100000 -d 16 --csv
}

# run_bench TARGET CLIENTS PIPE REQUESTS CSV: run one benchmark in the
# background (so that INT/TERM traps run at once), with a deadline, printing
# its CSV to CSV.
run_bench() {
  local cmd deadline what="$1 (c=$2 P=$3)"
  read -r -a cmd <<<"$(bench_cmd "$1" "$2" "$3" "$4")"
  "${cmd[@]}" >"$5" 2>"$5.err" &
  bench_pid=$!
  deadline=$((SECONDS + 300))
  while kill -0 "$bench_pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      kill "$bench_pid" 2>/dev/null || true
      die "redis-benchmark against $what took over 300s"
    fi
    sleep 0.2
  done
  if ! wait "$bench_pid"; then
    bench_pid=""
    die "redis-benchmark against $what failed: $(cat "$5.err")"
  fi
  bench_pid=""
  grep -q '^"SET"' "$5" && grep -q '^"GET"' "$5" || die "no SET/GET rows from $what: $(cat "$5" "$5.err")"
}

# --- warm-up (not recorded): fills the keyspace, warms the proxies ---------------
echo "bench: warm-up" >&2
for t in "${targets[@]}"; do
  redis-benchmark -h 127.0.0.1 -p "$(port_of "$t")" -c "$CLIENTS" -n 10000 -t set,get -P 1 -r 100000 -d 16 --csv >/dev/null 2>&1 \
    || die "warm-up against $t failed"
done

# --- rounds ---------------------------------------------------------------------------
raw="$OUT/raw.tsv"
printf 'round\tseq\ttarget\tclients\tpipe\ttest\trps\tp50_ms\tp99_ms\trequests\tproxy_cpu_ticks\tmaster_cpu_ticks\tload1\n' >"$raw"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
date_start=$(date -u '+%Y-%m-%d %H:%M:%S')
start=$SECONDS
for ((r = 0; r < ROUNDS; r++)); do
  seq=0
  for ((ci = 0; ci < ${#cfg_pipes[@]}; ci++)); do
    c=${cfg_clients[$ci]} p=${cfg_pipes[$ci]} n=${cfg_requests[$ci]}
    read -r -a tl <<<"${cfg_targets[$ci]}"
    for ((k = 0; k < ${#tl[@]}; k++)); do
      t=${tl[$(((k + r) % ${#tl[@]}))]}
      seq=$((seq + 1))
      all_alive
      ppid=""
      [ "$t" = direct ] || ppid=$(pid_of "$t")
      pc0=0 pc1=0
      load1=$(cut -d' ' -f1 /proc/loadavg)
      [ -z "$ppid" ] || pc0=$(cpu_ticks "$ppid")
      mc0=$(cpu_ticks "$MPID")
      csv="$OUT/r$r-$t-c$c-p$p.csv"
      run_bench "$t" "$c" "$p" "$n" "$csv"
      [ -z "$ppid" ] || pc1=$(cpu_ticks "$ppid")
      mc1=$(cpu_ticks "$MPID")
      # One invocation runs SET then GET, n requests each; the CPU ticks
      # cover both and are recorded on both rows (the report divides by 2n).
      tr -d '"' <"$csv" | awk -F, -v r="$((r + 1))" -v s="$seq" -v t="$t" -v c="$c" -v p="$p" -v n="$n" \
        -v pc="$((pc1 - pc0))" -v mc="$((mc1 - mc0))" -v l="$load1" \
        '$1 == "SET" || $1 == "GET" { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, s, t, c, p, $1, $2, $5, $7, n, pc, mc, l }' >>"$raw"
      printf 'bench: round %d/%d %-7s c=%-3s P=%-2s %s\n' "$((r + 1))" "$ROUNDS" "$t" "$c" "$p" \
        "$(tr -d '"' <"$csv" | awk -F, '$1=="SET"||$1=="GET"{printf "%s %s rps p50 %s p99 %s; ", $1, $2, $5, $7}')" >&2
    done
  done
done
elapsed=$((SECONDS - start))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------------------
cmds="$OUT/commands.txt"
{
  for ((ci = 0; ci < ${#cfg_pipes[@]}; ci++)); do
    for t in ${cfg_targets[$ci]}; do
      printf '%-8s %s\n' "$t:" "$(bench_cmd "$t" "${cfg_clients[$ci]}" "${cfg_pipes[$ci]}" "${cfg_requests[$ci]}")"
    done
  done
} >"$cmds"

export BENCH_DATE="$date_start to $(date -u '+%H:%M:%S') UTC (rounds)"
export BENCH_NPROC=$(nproc)
export BENCH_CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
export BENCH_KERNEL="$(uname -srm)"
export BENCH_REDIS=$(redis-server --version)
export BENCH_BENCHMARK=$(redis-benchmark --version 2>/dev/null || echo unknown)
export BENCH_HAPROXY=$(haproxy -v | head -n 1)
export BENCH_SENTPROXY="$("$OUT/sentproxy" version) — git $rev"
export BENCH_GO=$(go version)
export BENCH_ROUNDS=$ROUNDS BENCH_CLIENTS=$CLIENTS BENCH_CLIENTS_LOW=$CLIENTS_LOW BENCH_CLK_TCK=$CLK_TCK BENCH_ELAPSED=$elapsed
export BENCH_REQUESTS="REQUESTS_P1=$REQUESTS_P1 REQUESTS_P16=$REQUESTS_P16 REQUESTS_LOW=$REQUESTS_LOW"
export BENCH_LOAD="$load_before before the rounds, $load_after after"
export BENCH_QUICK=${QUICK:-0}
export BENCH_INVOCATION=$invocation
export BENCH_PORTS="master $MPORT, sentinel $SPORT, sentproxy tcp $PPORT (web $WPORT), sentproxy epoll $EPORT (web $EWPORT), sentproxy resp $RPORT (web $RWPORT), haproxy $HPORT"
export BENCH_SP_TCP_CMD="${sp_tcp_cmd[*]}"
export BENCH_SP_TCP_CMD=${BENCH_SP_TCP_CMD//$OUT/\$OUT}
export BENCH_SP_EPOLL_CMD="${sp_epoll_cmd[*]}"
export BENCH_SP_EPOLL_CMD=${BENCH_SP_EPOLL_CMD//$OUT/\$OUT}
export BENCH_SP_RESP_CMD="${sp_resp_cmd[*]}"
export BENCH_SP_RESP_CMD=${BENCH_SP_RESP_CMD//$OUT/\$OUT}

mkdir -p "$(dirname "$RESULTS")"
python3 "$root/bench/report.py" "$raw" "$cmds" "$OUT/haproxy.cfg" "$RESULTS"
[ -z "${KEEP_RAW:-}" ] || cp "$raw" "$KEEP_RAW"
echo "bench: wrote $RESULTS (${elapsed}s of benchmarks, $((SECONDS))s in all)" >&2
