#!/usr/bin/env python3
"""Turns bench/run.sh's raw measurements into bench/RESULTS.md and prints the
tables. Standard library only.

Usage: report.py RAW.tsv COMMANDS.txt HAPROXY.cfg RESULTS.md
Context (date, machine, versions, ...) comes from BENCH_* environment
variables set by run.sh.
"""
import csv
import os
import statistics
import sys
from collections import defaultdict

raw_path, cmds_path, hacfg_path, out_path = sys.argv[1:5]
env = os.environ.get
TARGETS = ["direct", "sentproxy", "haproxy"]
PROXIES = ["sentproxy", "haproxy"]
TESTS = ["SET", "GET"]
clk_tck = int(env("BENCH_CLK_TCK", "100"))

rows = list(csv.DictReader(open(raw_path), delimiter="\t"))
for r in rows:
    r["round"] = int(r["round"])
    r["pipe"] = int(r["pipe"])
    for k in ("rps", "p50_ms", "p99_ms"):
        r[k] = float(r[k])
    for k in ("requests", "proxy_cpu_ticks", "master_cpu_ticks"):
        r[k] = int(r[k])
pipes = sorted({r["pipe"] for r in rows})
rounds = sorted({r["round"] for r in rows})

by = {(r["round"], r["target"], r["pipe"], r["test"]): r for r in rows}
med = statistics.median


def fmt_rps(v):
    return f"{v:,.0f}"


def table(header, body):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def cell(key, field):
    vals = [by[(rd,) + key][field] for rd in rounds if (rd,) + key in by]
    return med(vals) if vals else None


# Median rps / p50 / p99 per target, one table per pipeline depth.
perf_tables = []
for p in pipes:
    body = []
    for t in TARGETS:
        row = [t]
        for test in TESTS:
            row += [fmt_rps(cell((t, p, test), "rps")),
                    f"{cell((t, p, test), 'p50_ms'):.3f}",
                    f"{cell((t, p, test), 'p99_ms'):.3f}"]
        body.append(row)
    hdr = ["target"]
    for test in TESTS:
        hdr += [f"{test} rps", f"{test} p50 ms", f"{test} p99 ms"]
    perf_tables.append((p, table(hdr, body)))

# Throughput ratios: computed within each round, then the median over rounds.
pairs = [("sentproxy", "direct"), ("haproxy", "direct"), ("sentproxy", "haproxy")]
ratio_body = []
for p in pipes:
    for test in TESTS:
        row = [f"{test} P={p}"]
        for a, b in pairs:
            per_round = [by[(rd, a, p, test)]["rps"] / by[(rd, b, p, test)]["rps"]
                         for rd in rounds if (rd, a, p, test) in by and (rd, b, p, test) in by]
            spread = f" ({min(per_round):.3f}–{max(per_round):.3f})" if len(per_round) > 1 else ""
            row.append(f"{med(per_round):.3f}{spread}")
        ratio_body.append(row)
ratio_table = table(["test", "sentproxy / direct", "haproxy / direct", "sentproxy / haproxy"], ratio_body)


# CPU per request: one redis-benchmark invocation runs SET and GET with n
# requests each, so the ticks of that invocation are divided by 2n.
def us_per_req(rd, t, p, field):
    r = by.get((rd, t, p, "SET"))
    if r is None:
        return None
    return r[field] / clk_tck * 1e6 / (2 * r["requests"])


cpu_body = []
for p in pipes:
    sp = med([us_per_req(rd, "sentproxy", p, "proxy_cpu_ticks") for rd in rounds])
    hp = med([us_per_req(rd, "haproxy", p, "proxy_cpu_ticks") for rd in rounds])
    ratio = med([us_per_req(rd, "sentproxy", p, "proxy_cpu_ticks") / us_per_req(rd, "haproxy", p, "proxy_cpu_ticks")
                 for rd in rounds if us_per_req(rd, "haproxy", p, "proxy_cpu_ticks")] or [float("nan")])
    mcpu = [f"{med([us_per_req(rd, t, p, 'master_cpu_ticks') for rd in rounds]):.2f}" for t in TARGETS]
    cpu_body.append([f"P={p}", f"{sp:.2f}", f"{hp:.2f}", f"{ratio:.2f}"] + mcpu)
cpu_table = table(["pipeline", "sentproxy µs/req", "haproxy µs/req", "sentproxy / haproxy",
                   "redis-server µs/req (direct)", "(via sentproxy)", "(via haproxy)"], cpu_body)

# Every measurement, for the record.
raw_body = []
for r in sorted(rows, key=lambda r: (r["round"], r["pipe"], TARGETS.index(r["target"]), TESTS.index(r["test"]))):
    pc = "" if r["target"] == "direct" else f"{r['proxy_cpu_ticks'] / clk_tck * 1e6 / (2 * r['requests']):.2f}"
    raw_body.append([str(r["round"]), r["target"], str(r["pipe"]), r["test"], fmt_rps(r["rps"]),
                     f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", str(r["requests"]), pc])
raw_table = table(["round", "target", "P", "test", "rps", "p50 ms", "p99 ms", "requests", "proxy µs/req"], raw_body)

summary = []
for p, t in perf_tables:
    summary.append(f"### Pipeline depth {p} (median of {len(rounds)} rounds)\n\n{t}")
summary.append("### Throughput ratios (per-round ratio, median over rounds; range in parentheses)\n\n" + ratio_table)
summary.append("### CPU time per request (utime+stime from /proc/PID/stat, median over rounds)\n\n" + cpu_table)
summary_md = "\n\n".join(summary)

cmds = open(cmds_path).read().rstrip()
hacfg = open(hacfg_path).read().rstrip()
quick = env("BENCH_QUICK", "0") == "1"

md = f"""# sentproxy throughput benchmark

Generated by `bench/run.sh`{' with `QUICK=1` (smoke run: one round, small request counts — not a measurement)' if quick else ''}.
Re-run with `bash bench/run.sh` from anywhere (env `ROUNDS`, `REQUESTS_P1`,
`REQUESTS_P16`, `CLIENTS`, `QUICK=1`).

- Date: {env('BENCH_DATE')}
- Machine: {env('BENCH_NPROC')} CPUs ({env('BENCH_CPU')}), kernel {env('BENCH_KERNEL')}; everything
  (redis-server, Sentinel, both proxies, redis-benchmark) shares these CPUs.
- redis-server: {env('BENCH_REDIS')}
- redis-benchmark: {env('BENCH_BENCHMARK')}
- HAProxy: {env('BENCH_HAPROXY')}
- sentproxy: {env('BENCH_SENTPROXY')}; built with {env('BENCH_GO')}
- Load average (1/5/15 min, whole machine, other work included): {env('BENCH_LOAD')}
- Rounds: {env('BENCH_ROUNDS')}; clients: {env('BENCH_CLIENTS')}; benchmark time: {env('BENCH_ELAPSED')} s
- Ports (chosen at run time): {env('BENCH_PORTS')}

Method: each round runs redis-benchmark against every target (Redis directly,
through sentproxy, through HAProxy), in an order rotated by one each round so
that drift hits all targets alike; per target, pipeline depth 1 then 16. One
invocation runs SET then GET with `-n` requests each. Latencies are
redis-benchmark's p50/p99 in ms. Ratios are computed within a round (the
machine is noisy) and the median of those per-round ratios is shown. Proxy CPU
is the proxy process's utime+stime (clock ticks, CLK_TCK={clk_tck}) read before
and after each invocation, divided by the 2n requests of that invocation; the
redis-server columns are the same measure for the master, for context. A
warm-up of 10000 SET+GET per target (not recorded) runs first.

## Results

{summary_md}

### Every measurement

{raw_table}

## Commands

Master (`redis-server redis.conf`): `bind 127.0.0.1`, `port MPORT`, `save ""`,
`appendonly no`, `daemonize no`. Sentinel (`redis-sentinel sentinel.conf`, in
a temp dir since Sentinel rewrites it): `sentinel monitor mymaster 127.0.0.1 MPORT 1`.

sentproxy (`go build -o "$OUT/sentproxy" ./cmd/sentproxy`; ready once
`curl -fs http://127.0.0.1:WPORT/readyz` returns 200):

```
{env('BENCH_SP_CMD')}
```

HAProxy (`haproxy -f haproxy.cfg -db`):

```
{hacfg}
```

redis-benchmark, once per target and pipeline depth per round:

```
{cmds}
```
"""
with open(out_path, "w") as f:
    f.write(md)
print(summary_md)
