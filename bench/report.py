#!/usr/bin/env python3
"""Turns bench/run.sh's raw measurements into a results file (bench/RESULTS.md
by default) and prints the tables. Standard library only.

Usage: report.py RAW.tsv COMMANDS.txt HAPROXY.cfg RESULTS.md
Context (date, machine, versions, ...) comes from BENCH_* environment
variables set by run.sh. Every section of the old RESULTS.md between "<!-- NAME:begin -->" and
"<!-- NAME:end -->" (the failover table added by hand; the sections that
bench/drill and bench/scale write) is carried over into the new file.
"""
import csv
import os
import re
import statistics
import sys

raw_path, cmds_path, hacfg_path, out_path = sys.argv[1:5]
env = os.environ.get
TARGETS = ["direct", "tcp", "epoll", "resp", "haproxy"]
PROXIES = ["tcp", "epoll", "resp", "haproxy"]
NAMES = {"direct": "direct (Redis)", "tcp": "sentproxy tcp (splice engine)", "epoll": "sentproxy tcp (epoll engine, the default)",
         "resp": "sentproxy resp", "haproxy": "HAProxy"}
TESTS = ["SET", "GET"]
clk_tck = int(env("BENCH_CLK_TCK", "100"))
main_clients = int(env("BENCH_CLIENTS", "50"))

# Issue targets: resp >= 85% of tcp without pipelining, >= 70% with -P 16;
# resp's added p99 under 100 µs at moderate load (the CLIENTS_LOW runs);
# tcp mode's throughput at least HAProxy's, with and without pipelining.
RATIO_GOAL = {1: 0.85, 16: 0.70}
HAPROXY_GOAL = 1.0
LAT_GOAL_US = 100.0

rows = list(csv.DictReader(open(raw_path), delimiter="\t"))
for r in rows:
    for k in ("round", "seq", "clients", "pipe", "requests", "proxy_cpu_ticks", "master_cpu_ticks"):
        r[k] = int(r[k])
    for k in ("rps", "p50_ms", "p99_ms", "load1"):
        r[k] = float(r[k])
rounds = sorted({r["round"] for r in rows})
# Configurations (clients, pipe): the main client count first, then by pipe.
configs = sorted({(r["clients"], r["pipe"]) for r in rows},
                 key=lambda cp: (cp[0] != main_clients, cp[1], cp[0]))
by = {(r["round"], r["target"], r["clients"], r["pipe"], r["test"]): r for r in rows}
med = statistics.median
nr = len(rounds)


def targets_in(cfg):
    return [t for t in TARGETS if any((rd, t) + cfg + (test,) in by for rd in rounds for test in TESTS)]


def cfg_name(cfg):
    return f"c={cfg[0]} P={cfg[1]}"


def fmt_rps(v):
    return f"{v:,.0f}"


def table(header, body):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def cell(t, cfg, test, field):
    vals = [by[(rd, t) + cfg + (test,)][field] for rd in rounds if (rd, t) + cfg + (test,) in by]
    return med(vals) if vals else None


def with_range(vals, fmt):
    """median (min–max) of per-round values."""
    if not vals:
        return "—"
    s = format(med(vals), fmt)
    if len(vals) > 1:
        s += f" ({format(min(vals), fmt)}–{format(max(vals), fmt)})"
    return s


def per_round_ratio(a, b, cfg, test):
    return [by[(rd, a) + cfg + (test,)]["rps"] / by[(rd, b) + cfg + (test,)]["rps"]
            for rd in rounds if (rd, a) + cfg + (test,) in by and (rd, b) + cfg + (test,) in by]


def per_round_added_us(t, cfg, test, field):
    return [(by[(rd, t) + cfg + (test,)][field] - by[(rd, "direct") + cfg + (test,)][field]) * 1000
            for rd in rounds if (rd, t) + cfg + (test,) in by and (rd, "direct") + cfg + (test,) in by]


def us_per_req(rd, t, cfg, field):
    # One invocation = SET + GET, `requests` each; its ticks are on both rows.
    r = by.get((rd, t) + cfg + ("SET",))
    if r is None:
        return None
    return r[field] / clk_tck * 1e6 / (2 * r["requests"])


def per_round_cpu(t, cfg, field="proxy_cpu_ticks"):
    return [v for v in (us_per_req(rd, t, cfg, field) for rd in rounds) if v is not None]


def per_round_cpu_ratio(a, b, cfg):
    out = []
    for rd in rounds:
        x, y = us_per_req(rd, a, cfg, "proxy_cpu_ticks"), us_per_req(rd, b, cfg, "proxy_cpu_ticks")
        if x is not None and y:
            out.append(x / y)
    return out


def verdict_min(vals, goal):
    """Goal: value >= goal. Verdict on the median, with rounds meeting it."""
    if not vals:
        return "—"
    m = med(vals)
    ok = sum(v >= goal for v in vals)
    if m >= goal:
        return f"met, by {m - goal:+.3f} ({ok}/{len(vals)} rounds)"
    return f"**missed by {goal - m:.3f}** ({m / goal:.0%} of goal; {ok}/{len(vals)} rounds meet it)"


def verdict_max(vals, goal, unit="µs"):
    """Goal: value < goal."""
    if not vals:
        return "—"
    m = med(vals)
    ok = sum(v < goal for v in vals)
    if m < goal:
        return f"met, {goal - m:.0f} {unit} to spare ({ok}/{len(vals)} rounds)"
    return f"**missed by {m - goal:.0f} {unit}** ({m / goal:.1f}× the limit; {ok}/{len(vals)} rounds meet it)"


# --- rps and latency per configuration ---------------------------------------
perf_tables = []
for cfg in configs:
    body = []
    for t in targets_in(cfg):
        row = [NAMES[t]]
        for test in TESTS:
            row += [fmt_rps(cell(t, cfg, test, "rps")),
                    f"{cell(t, cfg, test, 'p50_ms'):.3f}",
                    f"{cell(t, cfg, test, 'p99_ms'):.3f}"]
        body.append(row)
    hdr = ["target"]
    for test in TESTS:
        hdr += [f"{test} rps", f"{test} p50 ms", f"{test} p99 ms"]
    perf_tables.append((cfg, table(hdr, body)))

# --- throughput ratios, in-round ------------------------------------------------
pairs = [("tcp", "direct"), ("epoll", "direct"), ("resp", "direct"), ("haproxy", "direct"),
         ("tcp", "haproxy"), ("epoll", "haproxy"), ("resp", "haproxy"), ("epoll", "tcp"), ("resp", "tcp")]
ratio_body = []
goal_rows = []  # for the summary
for cfg in configs:
    present = targets_in(cfg)
    for test in TESTS:
        row = [f"{test} {cfg_name(cfg)}"]
        for a, b in pairs:
            if a in present and b in present:
                row.append(with_range(per_round_ratio(a, b, cfg, test), ".3f"))
            else:
                row.append("—")
        rt = per_round_ratio("resp", "tcp", cfg, test)
        if cfg[0] == main_clients and cfg[1] in RATIO_GOAL and rt:
            goal = RATIO_GOAL[cfg[1]]
            v = verdict_min(rt, goal)
            row += [f"≥ {goal:.2f}", v]
            cross = [1 / x for x in per_round_cpu_ratio("resp", "tcp", cfg) if x]
            goal_rows.append([f"resp / tcp throughput, {test} {cfg_name(cfg)}", f"≥ {goal:.2f}",
                              with_range(rt, ".3f"), v,
                              f"tcp ÷ resp CPU µs/req (SET+GET): {with_range(cross, '.2f')}"])
        else:
            row += ["—", "—"]
        ratio_body.append(row)
        if cfg[0] == main_clients:
            for t in ("tcp", "epoll"):
                rh = per_round_ratio(t, "haproxy", cfg, test)
                if rh:
                    label = {"tcp": "tcp (splice engine)", "epoll": "epoll (default engine)"}[t]
                    goal_rows.append([f"{label} / haproxy throughput, {test} {cfg_name(cfg)}", f"≥ {HAPROXY_GOAL:.2f}",
                                      with_range(rh, ".3f"), verdict_min(rh, HAPROXY_GOAL),
                                      f"{t} ÷ haproxy CPU µs/req (SET+GET): "
                                      f"{with_range(per_round_cpu_ratio(t, 'haproxy', cfg), '.2f')}"])
ratio_table = table(["test", "tcp / direct", "epoll / direct", "resp / direct", "haproxy / direct", "tcp / haproxy",
                     "epoll / haproxy", "resp / haproxy", "epoll / tcp", "resp / tcp", "goal (resp / tcp)",
                     "goal met?"], ratio_body)

# --- added latency: proxy p50/p99 minus direct's, in-round, µs ------------------
lat_body = []
for cfg in configs:
    present = targets_in(cfg)
    moderate = cfg[0] != main_clients
    for test in TESTS:
        row = [f"{test} {cfg_name(cfg)}"]
        for t in PROXIES:
            for field in ("p50_ms", "p99_ms"):
                row.append(with_range(per_round_added_us(t, cfg, test, field), ".0f") if t in present else "—")
        if moderate and "resp" in present:
            vals = per_round_added_us("resp", cfg, test, "p99_ms")
            v = verdict_max(vals, LAT_GOAL_US)
            row += [f"< {LAT_GOAL_US:.0f} µs", v]
            goal_rows.append([f"resp added p99 latency, {test} {cfg_name(cfg)}", f"< {LAT_GOAL_US:.0f} µs",
                              with_range(vals, ".0f") + " µs", v,
                              f"tcp added p99: {with_range(per_round_added_us('tcp', cfg, test, 'p99_ms'), '.0f')} µs"])
        else:
            row += ["—", "—"]
        lat_body.append(row)
lat_table = table(["test", "tcp +p50", "tcp +p99", "epoll +p50", "epoll +p99", "resp +p50", "resp +p99",
                   "haproxy +p50", "haproxy +p99",
                   "goal (resp +p99, moderate load)", "goal met?"], lat_body)

# --- CPU per request ----------------------------------------------------------------
cpu_body = []
for cfg in configs:
    present = targets_in(cfg)
    row = [cfg_name(cfg)]
    for t in PROXIES:
        row.append(with_range(per_round_cpu(t, cfg), ".2f") if t in present else "—")
    for a, b in [("resp", "tcp"), ("tcp", "haproxy"), ("epoll", "haproxy"), ("resp", "haproxy")]:
        row.append(with_range(per_round_cpu_ratio(a, b, cfg), ".2f") if a in present and b in present else "—")
    cpu_body.append(row)
cpu_table = table(["config", "tcp µs/req", "epoll µs/req", "resp µs/req", "haproxy µs/req",
                   "resp / tcp", "tcp / haproxy", "epoll / haproxy", "resp / haproxy"], cpu_body)

mcpu_body = []
for cfg in configs:
    present = targets_in(cfg)
    mcpu_body.append([cfg_name(cfg)] + [with_range(per_round_cpu(t, cfg, "master_cpu_ticks"), ".2f")
                                         if t in present else "—" for t in TARGETS])
mcpu_table = table(["config"] + [f"via {t}" for t in TARGETS], mcpu_body)

# --- goals at a glance ------------------------------------------------------------------
goal_table = table(["goal", "target", "measured: median (range)", "verdict", "for comparison"], goal_rows)

# --- noise: spread across rounds of rps vs proxy CPU per request ------------------------
def spread(vals):
    return max(vals) / min(vals) - 1 if len(vals) > 1 and min(vals) > 0 else 0.0


rps_spreads, cpu_spreads = [], []
for cfg in configs:
    for t in targets_in(cfg):
        for test in TESTS:
            vals = [by[(rd, t) + cfg + (test,)]["rps"] for rd in rounds if (rd, t) + cfg + (test,) in by]
            if len(vals) > 1:
                rps_spreads.append((spread(vals), t, cfg, test))
        if t in PROXIES:
            vals = per_round_cpu(t, cfg)
            if len(vals) > 1:
                cpu_spreads.append((spread(vals), t, cfg))
loads = [r["load1"] for r in rows]


def pct(x):
    return f"{x * 100:.0f}%"


if nr > 1 and rps_spreads and cpu_spreads:
    rmax = max(rps_spreads)
    cmax = max(cpu_spreads)
    noise = (f"Across the {nr} rounds, one target's throughput in one configuration moved by up to "
             f"{pct(rmax[0])} (max/min − 1; {NAMES[rmax[1]]}, {rmax[3]} {cfg_name(rmax[2])}), median "
             f"{pct(med([s[0] for s in rps_spreads]))}; a proxy's CPU per request moved by up to "
             f"{pct(cmax[0])} ({NAMES[cmax[1]]}, {cfg_name(cmax[2])}), median "
             f"{pct(med([s[0] for s in cpu_spreads]))}. ")
else:
    noise = "With a single round there is no spread to report; treat every figure as anecdotal. "
noise += (f"The 1-minute load average at the start of each measurement ranged from {min(loads):.2f} to "
          f"{max(loads):.2f} on {env('BENCH_NPROC', '?')} CPUs (see the last column of the full table).")

reading = f"""{noise}

The machine is shared and small: redis-server, redis-benchmark and the proxy
under test all compete for the same {env('BENCH_NPROC', '?')} CPUs, and other
people's builds and tests run beside them. So throughput through a proxy is
mostly a measure of how much CPU the proxy takes away from redis-server and
redis-benchmark, and single rounds swing by tens of percent. That is why the
ratios are taken within a round (neighbouring measurements) and shown with their
range: where a range straddles a goal, the verdict is not settled by this run.
Proxy CPU time per request (from /proc/PID/stat, whole process, all threads) is
the steadier figure — it depends much less on how fast a given round ran (see
the spreads above) — and is the first number to look at when comparing the two
sentproxy modes with each other or with HAProxy; on this CPU-bound box the
inverse CPU ratio ("for comparison" in the goals table) is a cross-check on a
throughput ratio. Its resolution is one clock tick (1/{clk_tck} s) per
invocation, small next to the seconds of CPU an invocation uses.

Latency: redis-benchmark is a closed loop (each client sends its next request
as soon as the reply arrives), so at c={main_clients} p50/p99 are mostly queueing and
the added latency is largely the throughput loss seen from the other side
(about clients / rps). The c={configs[-1][0]} runs are the "moderate load" of the
goal, but they are still a closed loop (each client sends again as soon as its
reply arrives), not a fixed request rate — redis-benchmark 7 has no rate limit —
and the proxy, redis-server and redis-benchmark still share {env('BENCH_NPROC', '?')} CPUs, so any
scheduling delay of one of them lands directly in p99. Latencies come from
redis-benchmark's CSV (ms, three decimals; its histogram keeps three significant
digits), and added latency is a difference of two such figures from the same
round."""

# --- every measurement --------------------------------------------------------------------
raw_body = []
for r in sorted(rows, key=lambda r: (r["round"], r["seq"], TESTS.index(r["test"]))):
    cfg = (r["clients"], r["pipe"])
    pc = "" if r["target"] == "direct" else f"{us_per_req(r['round'], r['target'], cfg, 'proxy_cpu_ticks'):.2f}"
    raw_body.append([str(r["round"]), str(r["seq"]), r["target"], str(r["clients"]), str(r["pipe"]), r["test"],
                     fmt_rps(r["rps"]), f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", str(r["requests"]), pc,
                     f"{r['load1']:.2f}"])
raw_table = table(["round", "order", "target", "c", "P", "test", "rps", "p50 ms", "p99 ms", "requests",
                   "proxy µs/req", "load1"], raw_body)

summary = []
summary.append("### Goals at a glance\n\n" + goal_table)
for cfg, t in perf_tables:
    label = "moderate load" if cfg[0] != main_clients else ("no pipelining" if cfg[1] == 1 else "pipelined")
    summary.append(f"### {cfg_name(cfg)} — {label} (median of {nr} rounds)\n\n{t}")
summary.append("### Throughput ratios (per-round ratio of rps, median over rounds; range in parentheses)\n\n"
               + ratio_table)
summary.append("### Added latency: proxy minus direct, µs (per-round difference, median over rounds; range in "
               "parentheses)\n\n" + lat_table)
summary.append("### Proxy CPU time per request, µs (utime+stime from /proc/PID/stat over one SET+GET invocation "
               "÷ its requests; median over rounds, range in parentheses)\n\n" + cpu_table)
summary.append("redis-server's own CPU per request, µs, for context (same measure, by the route the requests "
               "took):\n\n" + mcpu_table)
summary_md = "\n\n".join(summary)

cmds = open(cmds_path).read().rstrip()
hacfg = open(hacfg_path).read().rstrip()
quick = env("BENCH_QUICK", "0") == "1"

# Carry over the sections other programs own (failover, drill, scale, ...).
failover = ""
try:
    old = open(out_path).read()
    for m in re.finditer(r"<!-- ([a-z-]+):begin -->.*?<!-- \1:end -->", old, re.S):
        failover += "\n" + m.group(0) + "\n"
except FileNotFoundError:
    pass

md = f"""# sentproxy throughput benchmark

Generated by `{env('BENCH_INVOCATION', 'bash bench/run.sh')}` (from the repository root){' — a `QUICK=1` smoke run: one round, small request counts, not a measurement' if quick else ''}.
Re-run with `bash bench/run.sh` from anywhere (env `ROUNDS`, `REQUESTS_P1`,
`REQUESTS_P16`, `REQUESTS_LOW`, `CLIENTS`, `CLIENTS_LOW`, `RESULTS`, `KEEP_RAW`,
`QUICK=1`); `QUICK=1 bash bench/run.sh` is a smoke run of well under a minute
that writes to `$TMPDIR/sentproxy-bench-quick.md`, not here.

- Date: {env('BENCH_DATE')}
- Machine: {env('BENCH_NPROC')} CPUs ({env('BENCH_CPU')}), kernel {env('BENCH_KERNEL')}; everything
  (redis-server, Sentinel, the three proxies, redis-benchmark) shares these CPUs, and the machine is
  shared with other work.
- redis-server: {env('BENCH_REDIS')}
- redis-benchmark: {env('BENCH_BENCHMARK')}
- HAProxy: {env('BENCH_HAPROXY')}
- sentproxy: {env('BENCH_SENTPROXY')}; built with {env('BENCH_GO')}
- Load average (1/5/15 min, whole machine, other work included): {env('BENCH_LOAD')}
- Rounds: {env('BENCH_ROUNDS')}; clients: {env('BENCH_CLIENTS')} (moderate load: {env('BENCH_CLIENTS_LOW')});
  requests per test: {env('BENCH_REQUESTS')}; benchmark time: {env('BENCH_ELAPSED')} s
- Ports (chosen at run time): {env('BENCH_PORTS')}

Targets: **direct** = redis-server itself; **tcp** = sentproxy with
`--proxy.mode=tcp` and `--proxy.engine=splice` (io.Copy, which splices
bytes; the default off Linux); **epoll** = a second sentproxy process in tcp
mode with `--proxy.engine=epoll` (the default on Linux; the default
`--proxy.event-loops=auto`, which here ran {env('BENCH_EPOLL_LOOPS')}; read and write); **resp** = a third sentproxy process with
`--proxy.mode=resp` (frames commands and replies, forwards the raw bytes), on
its own ports and following the same Sentinel; **haproxy** = HAProxy `mode tcp`,
one thread, pointed straight at the master.

Method: each round measures three configurations — c={main_clients} P=1 and
c={main_clients} P=16 on all five targets, then c={configs[-1][0]} P=1 ("moderate load") on
direct, tcp, epoll and resp. Within a configuration the targets run back to back, in
an order rotated by one each round, so that drift hits all targets alike and
in-round comparisons are between neighbours. One redis-benchmark invocation runs
SET then GET with `-n` requests each. Latencies are redis-benchmark's p50/p99.
Ratios and added latencies are computed within a round (the machine is noisy)
and the median of those per-round figures is shown, with their range. Proxy CPU
is the proxy process's utime+stime (clock ticks, CLK_TCK={clk_tck}) read before
and after each invocation, divided by the 2n requests of that invocation. A
warm-up of 10000 SET+GET per target (not recorded) runs first.

## Results

{summary_md}

### Reading the numbers

{reading}
{failover}
## Every measurement

In the order run within each round ("order"); load1 is the 1-minute load
average when the invocation started.

{raw_table}

## Commands

Master (`redis-server redis.conf`): `bind 127.0.0.1`, `port MPORT`, `save ""`,
`appendonly no`, `daemonize no`. Sentinel (`redis-sentinel sentinel.conf`, in
a temp dir since Sentinel rewrites it): `sentinel monitor mymaster 127.0.0.1 MPORT 1`.

sentproxy (`go build -o "$OUT/sentproxy" ./cmd/sentproxy`; each ready once
`curl -fs http://127.0.0.1:WEBPORT/readyz` returns 200), tcp, epoll and resp:

```
{env('BENCH_SP_TCP_CMD')}
{env('BENCH_SP_EPOLL_CMD')}
{env('BENCH_SP_RESP_CMD')}
```

HAProxy (`haproxy -f haproxy.cfg -db`):

```
{hacfg}
```

redis-benchmark, once per target and configuration per round:

```
{cmds}
```
"""
with open(out_path, "w") as f:
    f.write(md)
print(summary_md)
