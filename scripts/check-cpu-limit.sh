#!/usr/bin/env bash
# What --proxy.event-loops=auto decides under real cgroup CPU limits: starts
# sentproxy (pointed at a closed loopback port: no Sentinel is needed to
# decide) in a cgroup of its own with each CPU quota in turn, reads /status,
# and prints the event loops and GOMAXPROCS it runs with, next to what Go
# alone gave. Also under `taskset -c 0` (one CPU) and with GOMAXPROCS=2 set.
#
# Usage: sudo bash scripts/check-cpu-limit.sh
# Needs root and a cgroup v1 cpu hierarchy or cgroup v2 with the cpu
# controller available; go, curl and python3. It removes the cgroup it made
# and stops only the sentproxy processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "check-cpu-limit: needs root (it makes a cgroup)" >&2; exit 1; }
for b in go curl python3; do
  command -v "$b" >/dev/null || { echo "check-cpu-limit: $b not found" >&2; exit 1; }
done

tmp=$(mktemp -d)
cg=""
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$cg" ] && [ -d "$cg" ]; then rmdir "$cg" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

base=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpu(,|$)/ {print $2; exit}' /proc/mounts)
if [ -n "$base" ]; then
  cg=$base/sentproxy-check-$$
  mkdir "$cg"
  set_quota() { # CPUs, or "max"
    if [ "$1" = max ]; then echo -1 >"$cg/cpu.cfs_quota_us"; else
      echo 100000 >"$cg/cpu.cfs_period_us"
      local q
      q=$(python3 -c "print(int($1 * 100000))")
      echo "$q" >"$cg/cpu.cfs_quota_us"
    fi
  }
  kind="cgroup v1 ($base)"
elif [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
  grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
  cg=/sys/fs/cgroup/sentproxy-check-$$
  mkdir "$cg"
  set_quota() {
    if [ "$1" = max ]; then echo "max 100000" >"$cg/cpu.max"; else
      local q
      q=$(python3 -c "print(int($1 * 100000))")
      echo "$q 100000" >"$cg/cpu.max"
    fi
  }
  kind="cgroup v2"
else
  echo "check-cpu-limit: no cgroup cpu controller found" >&2
  exit 1
fi

go build -o "$tmp/sentproxy" ./cmd/sentproxy
# A closed port on loopback for the Sentinel: the decision needs none.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

measure() { # label quota prefix...
  local label=$1 quota=$2
  shift 2
  set_quota "$quota"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$cg" "$@" "$tmp/sentproxy" run \
    --sentinel.addrs=127.0.0.1:"$closed" --proxy.listen-address=127.0.0.1:0 \
    --web.listen-address=127.0.0.1:"$port" --log.format=json >"$tmp/log" 2>&1 &
  pid=$!
  local ok=false
  for _ in $(seq 100); do
    if curl -fs "http://127.0.0.1:$port/status" -o "$tmp/status.json"; then ok=true; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  $ok || { cat "$tmp/log" >&2; echo "check-cpu-limit: $label: no /status" >&2; exit 1; }
  python3 - "$label" "$tmp/status.json" "$tmp/log" <<'PY'
import json, sys
label, status, log = sys.argv[1:]
s = json.load(open(status))
rec = next(json.loads(l) for l in open(log) if '"event loops"' in l)
print(f"| {label} | {rec['go_default']} | {s['routes'][0].get('event_loops', 0)} | {s['gomaxprocs']} | {rec['why']} |")
PY
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
}

echo "$kind, $(nproc) CPUs; sentproxy run with its defaults"
echo
echo "| case | Go's GOMAXPROCS | event loops | GOMAXPROCS | why |"
echo "|---|---:|---:|---:|---|"
measure "no CPU limit" max
measure "limit 3 CPUs" 3
measure "limit 1.5 CPUs" 1.5
measure "limit 0.5 CPUs" 0.5
measure "no limit, taskset -c 0" max taskset -c 0
measure "no limit, GOMAXPROCS=2 set" max env GOMAXPROCS=2
