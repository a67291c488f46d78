# Process bookkeeping shared by the bench shell scripts (sourced, not run).
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
