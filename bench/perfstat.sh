#!/usr/bin/env bash
# System calls, epoll waits and context switches per request of each proxy,
# counted by `perf stat` on the proxy process (kernel tracepoints, no
# ptrace), so that, unlike bench/syscalls's `strace -c -f`, counting does not
# change the timing it counts. Targets: sentproxy tcp mode with each
# --proxy.engine (splice, epoll), resp mode, and HAProxy (mode tcp, one
# thread), all on loopback in front of one redis-server followed by one
# Sentinel.
#
# Each measurement starts the target under `perf stat`, runs
# `redis-benchmark -t get -c C -n N` through it, and stops it with SIGINT;
# the counts cover the process's whole life, whose start-up and shutdown are
# a few hundred system calls next to the millions a measurement makes. Rounds
# rotate the target order; the table shows medians over rounds. CPU is
# perf's task-clock (all the process's threads) per request. Machine idle is
# the idle time of all CPUs (/proc/stat) during the redis-benchmark run, per
# request: with redis-server, redis-benchmark and the proxy sharing the CPUs,
# time no CPU used is time requests waited for a thread to be woken, so a
# proxy that spends less CPU per request can still give less throughput.
#
# Usage: bash bench/perfstat.sh
# Env:   ROUNDS (default 3), CLIENTS (default "50 1000"), REQUESTS (default
#        200000), PIPELINE (redis-benchmark -P, default 1), TARGETS (default
#        "splice epoll resp haproxy").
#        Target "b" is a second epoll-engine sentproxy for A/B runs, set by
#        B_BIN (another build; default this tree's), B_FLAGS (more flags,
#        e.g. "--proxy.event-loops=2") and B_ENV (more environment, e.g.
#        "GOMAXPROCS=1"): TARGETS="epoll b haproxy" B_BIN=/tmp/old/sentproxy
#        compares two builds side by side in the same rounds.
# Needs perf (Debian: linux-perf), redis-server, redis-sentinel,
# redis-benchmark, haproxy, go and python3. Prints two Markdown tables: the
# medians per target, and each target's requests/s over the first target's
# in the same rounds (medians of the per-round ratios, with a bootstrap 95 %
# interval): with ROUNDS=30 or more, enough to tell 2–3 % apart here.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50 1000}
REQUESTS=${REQUESTS:-200000}
TARGETS=${TARGETS:-splice epoll resp haproxy}
PIPELINE=${PIPELINE:-1}
case $PIPELINE in ''|*[!0-9]*|0) echo "perfstat: PIPELINE=$PIPELINE: want a positive number" >&2; exit 2 ;; esac
for b in perf redis-server redis-sentinel redis-cli redis-benchmark haproxy go python3; do
  command -v "$b" >/dev/null 2>&1 || { echo "perfstat: $b not found (apt-get install -y linux-perf redis-server redis-sentinel redis-tools haproxy)" >&2; exit 1; }
done
for t in $TARGETS; do
  case $t in splice | epoll | resp | haproxy | b) ;; *) echo "perfstat: unknown target $t" >&2; exit 2 ;; esac
done

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_init perfstat

read -r MPORT SPORT LPORT <<<"$(free_ports 3)"

go build -o "$OUT/sentproxy" ./cmd/sentproxy
start_master_and_sentinel "$MPORT" "$SPORT"
printf 'global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nlisten redis\n  bind 127.0.0.1:%s\n  server master 127.0.0.1:%s\n' \
  "$LPORT" "$MPORT" >"$OUT/haproxy.cfg"

events=task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait
CLK_TCK=$(getconf CLK_TCK)
# idle_ticks: the idle time of all CPUs so far (idle + iowait), in clock ticks.
idle_ticks() { awk '$1 == "cpu" {print $5 + $6; exit}' /proc/stat; }
# measure TARGET CLIENTS: one measurement; prints "cpu_us syscalls epoll ctxsw rps idle_us" per request.
measure() {
  local target=$1 clients=$2 cmd
  case $target in
  haproxy) cmd=(haproxy -f "$OUT/haproxy.cfg") ;;
  *)
    local mode=tcp engine=splice bin="$OUT/sentproxy" flags=() env=()
    [ "$target" = resp ] && mode=resp
    [ "$target" = epoll ] && engine=epoll
    if [ "$target" = b ]; then
      engine=epoll bin=${B_BIN:-$bin}
      read -r -a flags <<<"${B_FLAGS:-}"
      read -r -a env <<<"${B_ENV:-}"
    fi
    cmd=(env "${env[@]}" "$bin" run "--sentinel.addrs=127.0.0.1:$SPORT" --sentinel.master-name=mymaster
      "--proxy.mode=$mode" "--proxy.engine=$engine" "--proxy.listen-address=127.0.0.1:$LPORT"
      --web.listen-address=127.0.0.1:0 --log.level=warn "${flags[@]}")
    ;;
  esac
  perf stat -x, -o "$OUT/stat" -e "$events" -- "${cmd[@]}" >"$OUT/target.log" 2>&1 &
  local perf_pid=$! child=""
  pids+=("$perf_pid")
  # Until the target answers; a target that exited (a bad B_FLAGS, say)
  # is reported with its output at once rather than after the timeout.
  local deadline=$((SECONDS + 10))
  until [ "$(redis-cli -p "$LPORT" ping 2>/dev/null)" = PONG ]; do
    kill -0 "$perf_pid" 2>/dev/null || die "$target exited before answering: $(tail -n 5 "$OUT/target.log")"
    [ $SECONDS -lt $deadline ] || die "$target did not answer PING within 10 s"
    sleep 0.1
  done
  child=$(pgrep -P "$perf_pid" | head -n 1) || die "no $target process under perf"
  local rps idle0 idle1
  idle0=$(idle_ticks)
  rps=$(redis-benchmark -p "$LPORT" -c "$clients" -n "$REQUESTS" -P "$PIPELINE" -t get --csv | awk -F'"' '/^"GET"/ {print $4}')
  idle1=$(idle_ticks)
  kill -INT "$child"
  deadline=$((SECONDS + 15))
  while kill -0 "$perf_pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$target did not exit on SIGINT"
    sleep 0.1
  done
  wait "$perf_pid" 2>/dev/null || true
  unset 'pids[${#pids[@]}-1]'
  awk -F, -v n="$REQUESTS" -v rps="$rps" -v idle="$((idle1 - idle0))" -v tck="$CLK_TCK" '
    $3 == "task-clock" {cpu = $1 * 1000 / n}
    $3 == "context-switches" {cs = $1 / n}
    $3 == "raw_syscalls:sys_enter" {sc = $1 / n}
    $3 ~ /epoll_p?wait$/ {ep += $1 / n}
    END {printf "%.1f %.2f %.3f %.3f %s %.2f\n", cpu, sc, ep, cs, rps, idle * 1e6 / tck / n}' "$OUT/stat"
}

read -r -a tlist <<<"$TARGETS"
declare -A res
for c in $CLIENTS; do
  for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#tlist[@]}; i++)); do
      t=${tlist[$(((i + r) % ${#tlist[@]}))]}
      line=$(measure "$t" "$c")
      echo "perfstat: c=$c round $((r + 1)) $t: cpu_us/req syscalls/req epoll_waits/req ctx_switches/req rps machine_idle_us/req = $line" >&2
      res[$c,$t]+="$line"$'\n'
    done
  done
done

bset=""
[[ " $TARGETS " == *" b "* ]] && bset=", b: B_BIN=${B_BIN:-this tree} B_FLAGS=\"${B_FLAGS:-}\" B_ENV=\"${B_ENV:-}\""
echo "\`bash bench/perfstat.sh\` (ROUNDS=$ROUNDS, CLIENTS=\"$CLIENTS\", REQUESTS=$REQUESTS, TARGETS=\"$TARGETS\"$bset); redis-benchmark -t get, pipeline $PIPELINE; medians over rounds, per request"
echo
echo "| clients | target | CPU µs | system calls | epoll waits | context switches | requests/s | machine idle µs |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for c in $CLIENTS; do
  for t in "${tlist[@]}"; do
    printf '%s' "${res[$c,$t]}" | python3 -c '
import statistics, sys
rows = [l.split() for l in sys.stdin if l.strip()]
med = [statistics.median(float(r[k]) for r in rows) for k in range(6)]
print("| %s | %s | %.1f | %.2f | %.3f | %.3f | %.0f | %.2f |" % (sys.argv[1], sys.argv[2], *med))' "$c" "$t"
  done
done

# Paired comparison: each target's requests/s over the first target's in the
# same round. A single run's medians cannot tell 3 % apart on this machine
# (single rounds move by ±10 %); the per-round ratio cancels the drift two
# neighbouring measurements share, and the interval says how sure the
# median is.
ref=${tlist[0]}
if [ "${#tlist[@]}" -gt 1 ]; then
  echo
  echo "Requests/s over $ref's in the same round: median of the per-round ratios, bootstrap 95 % interval (2,000 resamples), rounds where the target was ahead."
  echo
  echo "| clients | target | ÷ $ref | rounds ahead |"
  echo "|---:|---|---:|---:|"
  for c in $CLIENTS; do
    for t in "${tlist[@]:1}"; do
      REF_ROWS=${res[$c,$ref]} T_ROWS=${res[$c,$t]} python3 -c '
import os, random, statistics, sys
rps = lambda v: [float(l.split()[4]) for l in os.environ[v].splitlines() if l.strip()]
ratios = [t / r for t, r in zip(rps("T_ROWS"), rps("REF_ROWS"))]
rng = random.Random(1)
boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
print("| %s | %s | %.3f (%.3f–%.3f) | %d of %d |" % (sys.argv[1], sys.argv[2], statistics.median(ratios),
      boot[50], boot[1949], sum(x > 1 for x in ratios), len(ratios)))' "$c" "$t"
    done
  done
fi
