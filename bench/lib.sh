# shellcheck shell=bash
# Process bookkeeping and measurement helpers shared by the bench shell scripts (sourced, not run).
#
# bench_init NAME sets OUT (a new temporary directory), pids (the
# long-lived processes the script starts, appended in start order) and
# bench_pid (the short-lived one running now, such as a redis-benchmark, if
# any), defines die, and traps EXIT, INT and TERM so that every one of them
# is stopped (TERM, then KILL after 5 s), by its own PID only, and OUT
# removed, whatever way the script ends.

bench_init() {
  BENCH_NAME=$1
  OUT=$(mktemp -d "${TMPDIR:-/tmp}/sentproxy-$1.XXXXXX")
  pids=()
  bench_pid=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_cleanup() {
  local rc=$? i pid deadline
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ]; then kill "$bench_pid" 2>/dev/null || true; fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  deadline=$((SECONDS + 5))
  for pid in "${pids[@]}" $bench_pid; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$OUT"
  exit "$rc"
}

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

# until_ok SECONDS CMD...: run CMD every 0.1 s until it succeeds, or die.
until_ok() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out: $*"
    sleep 0.1
  done
}

# free_ports N: N free loopback TCP ports, on one line.
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))' "$1"
}

# cpu_ticks PID: utime+stime in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that closes the command name, which
# may contain spaces).
cpu_ticks() {
  local line rest
  read -r line <"/proc/$1/stat"
  rest=${line##*) }
  # rest starts at field 3 (state): utime is field 14 -> word 12, stime 13.
  local -a f
  read -r -a f <<<"$rest"
  echo $((f[11] + f[12]))
}

# start_master_and_sentinel MPORT SPORT: a redis-server on 127.0.0.1:MPORT
# (no persistence) and one Sentinel on SPORT that monitors it as mymaster
# (quorum 1), both in OUT; returns once the Sentinel names the master.
start_master_and_sentinel() {
  redis-server --bind 127.0.0.1 --port "$1" --save '' --appendonly no --dir "$OUT" --logfile "$OUT/redis.log" &
  pids+=($!)
  until_ok 10 redis-cli -p "$1" ping
  printf 'bind 127.0.0.1\nport %s\ndir %s\nlogfile %s/sentinel.log\nsentinel monitor mymaster 127.0.0.1 %s 1\n' \
    "$2" "$OUT" "$OUT" "$1" >"$OUT/sentinel.conf"
  redis-sentinel "$OUT/sentinel.conf" &
  pids+=($!)
  until_ok 10 bash -c "redis-cli -p $2 sentinel get-master-addr-by-name mymaster | grep -qx $1"
}

# run_rounds ROUNDS REQUESTS: ROUNDS rounds over the script's targets
# array, in an order rotated each round. Each measurement runs the
# script's `bench TARGET` (which prints "SET/s GET/s", REQUESTS of each)
# and reads the CPU time of ${pid[TARGET]} (when set) around it; it is
# appended to $OUT/raw.tsv as "target set get cpu_us_per_request round".
# shellcheck disable=SC2154 # targets and pid are the sourcing script's
run_rounds() {
  local rounds=$1 requests=$2 r k t c0 cpu set get hz
  hz=$(getconf CLK_TCK)
  for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < ${#targets[@]}; k++)); do
      t=${targets[$(((k + r) % ${#targets[@]}))]}
      c0=0
      [ -z "${pid[$t]:-}" ] || c0=$(cpu_ticks "${pid[$t]}")
      read -r set get <<<"$(bench "$t")"
      cpu=""
      [ -z "${pid[$t]:-}" ] || cpu=$(awk -v d="$(($(cpu_ticks "${pid[$t]}") - c0))" -v hz="$hz" -v n="$((2 * requests))" 'BEGIN{printf "%.1f", d / hz * 1e6 / n}')
      printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$set" "$get" "$cpu" "$r" >>"$OUT/raw.tsv"
      echo "$BENCH_NAME: round $((r + 1))/$rounds $t SET $set GET $get proxy CPU µs/req ${cpu:--}" >&2
    done
  done
}

# ratio_table REF LABEL: run_rounds's results as a Markdown table, one row
# per target: median SET/s and GET/s, the medians of the per-round ratios
# to target REF (named LABEL in the header), and the median proxy CPU per
# request ("-" for a target without a pid).
# shellcheck disable=SC2154 # targets is the sourcing script's
ratio_table() {
  local t
  echo "| target | SET/s | GET/s | SET ÷ $2 | GET ÷ $2 | proxy CPU µs/request |"
  echo "|---|---:|---:|---:|---:|---:|"
  for t in "${targets[@]}"; do
    awk -F'\t' -v t="$t" -v ref="$1" '
      function median(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
      $1 == ref { hs[$5] = $2; hg[$5] = $3 }
      $1 == t { n++; s[n] = $2; g[n] = $3; rs[$5] = $2; rg[$5] = $3; if ($4 != "") { m++; c[m] = $4 } }
      END {
        for (r in rs) if (hs[r] > 0) { k++; qs[k] = rs[r] / hs[r]; qg[k] = rg[r] / hg[r] }
        printf "| %s | %.0f | %.0f | %.2f | %.2f | %s |\n", t, median(s, n), median(g, n), median(qs, k), median(qg, k), m ? sprintf("%.1f", median(c, m)) : "-"
      }' "$OUT/raw.tsv"
  done
}

# start_haproxy LINES...: HAProxy in mode tcp, one thread (the setting the
# benches compare against), with one `listen redis` section made of LINES
# (its bind and server lines); sets haproxy_pid and returns once it runs.
# Its log is $OUT/haproxy.log.
start_haproxy() {
  {
    printf 'global\n    nbthread 1\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 5s\n'
    printf '    timeout client 1h\n    timeout server 1h\nlisten redis\n'
    printf '    %s\n' "$@"
  } >"$OUT/haproxy.cfg"
  haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 &
  pids+=($!)
  # shellcheck disable=SC2034 # for the sourcing script
  haproxy_pid=$!
}
