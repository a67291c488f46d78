#!/usr/bin/env bash
# Failover latency: runs `sentproxy demo` (a real master, replica and three
# Sentinels on loopback; SIGKILL of the master; a writer INCRing every 10ms
# through sentproxy) RUNS times and reports, per run and as medians:
#   - time from the first +switch-master any Sentinel published to the
#     writer's first success on the new master (target: < 50 ms);
#   - time from sentproxy's switch to that first success;
#   - failed commands the writer saw, and how long writes were blocked
#     (which is mostly Sentinel's down-after-milliseconds, not sentproxy).
# Usage: bench/failover.sh [RUNS]   (env DOWN_AFTER, default 2s)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
down_after=${DOWN_AFTER:-2s}
bash scripts/deps.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/sentproxy" ./cmd/sentproxy

printf '%-4s %-28s %-26s %-8s %-8s\n' run switch_msg_to_first_ok_ms proxy_switch_to_first_ok_ms failed blocked_ms
for i in $(seq 1 "$runs"); do
  "$out/sentproxy" demo --log.level=error --down-after="$down_after" >"$out/run$i.txt"
  python3 - "$out/run$i.txt" "$i" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(s):
    m = re.match(r"([\d.]+)(µs|ms|s)$", s)
    v = float(m.group(1))
    return {"µs": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]
m = re.search(r"Summary: (\d+) INCRs acknowledged, (\d+) failed; writes were blocked for (\S+)\.", text)
n = re.search(r"First success on the new master: (\S+) after the first \+switch-master, (\S+) after sentproxy switched", text)
print(f"{sys.argv[2]:<4} {ms(n.group(1)):<28.3f} {ms(n.group(2)):<26.3f} {m.group(2):<8} {ms(m.group(3)):<8.0f}")
PY
done | tee "$out/table.txt"
python3 - "$out/table.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
cols = list(zip(*rows))
print("median", *(f"{statistics.median(map(float, c)):.3f}" for c in cols[1:]))
PY
