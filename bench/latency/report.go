package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// rateSummary is the medians over rounds of one rate.
type rateSummary struct {
	rate   int
	rounds int // rounds with a direct run
	// per target: absolute percentiles in µs, CPU µs/request, requests,
	// skipped slots, machine busy share
	pct      map[string]map[string]spread
	cpu      map[string]spread
	requests map[string]spread
	skipped  map[string]spread
	busy     map[string]spread
	before   map[string]spread // machine busy share before the warm-up, in %
	// per proxy: added percentiles in µs (proxy − direct in the same round)
	added map[string]map[string]spread
	// per proxy: the per-round added p99 and p50, for the goal's verdict
	addedP99 map[string][]float64
	addedP50 map[string][]float64
}

func summarize(runs []Run, cfg Config) []rateSummary {
	type key struct{ rate, round int }
	byRound := map[key]map[string]Run{}
	for _, r := range runs {
		k := key{r.Rate, r.Round}
		if byRound[k] == nil {
			byRound[k] = map[string]Run{}
		}
		byRound[k][r.Target] = r
	}
	var out []rateSummary
	for _, rate := range cfg.Rates {
		pct := map[string]map[string][]float64{}
		added := map[string]map[string][]float64{}
		cpu, reqs, skipped, busy, before := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
		s := rateSummary{rate: rate, addedP99: map[string][]float64{}, addedP50: map[string][]float64{}}
		found := false
		for round := range cfg.Rounds {
			m := byRound[key{rate, round}]
			if m == nil {
				continue
			}
			found = true
			for t, r := range m {
				if pct[t] == nil {
					pct[t] = map[string][]float64{}
				}
				for _, p := range pctNames {
					pct[t][p] = append(pct[t][p], us(r.Pct.get(p)))
				}
				cpu[t] = append(cpu[t], r.CPUPerReq())
				reqs[t] = append(reqs[t], float64(r.Requests))
				skipped[t] = append(skipped[t], float64(r.Skipped))
				busy[t] = append(busy[t], 100*r.Busy)
				before[t] = append(before[t], 100*r.Before)
			}
			d, ok := m["direct"]
			if !ok {
				continue
			}
			s.rounds++
			for _, t := range proxies {
				r, ok := m[t]
				if !ok {
					continue
				}
				if added[t] == nil {
					added[t] = map[string][]float64{}
				}
				for _, p := range pctNames {
					added[t][p] = append(added[t][p], us(r.Pct.get(p))-us(d.Pct.get(p)))
				}
				s.addedP99[t] = append(s.addedP99[t], us(r.Pct.P99)-us(d.Pct.P99))
				s.addedP50[t] = append(s.addedP50[t], us(r.Pct.P50)-us(d.Pct.P50))
			}
		}
		if !found {
			continue
		}
		s.pct, s.added = spreads2(pct), spreads2(added)
		s.cpu, s.requests, s.skipped, s.busy, s.before = spreads(cpu), spreads(reqs), spreads(skipped), spreads(busy), spreads(before)
		out = append(out, s)
	}
	return out
}

func spreads(m map[string][]float64) map[string]spread {
	out := map[string]spread{}
	for k, xs := range m {
		out[k] = newSpread(xs)
	}
	return out
}

func spreads2(m map[string]map[string][]float64) map[string]map[string]spread {
	out := map[string]map[string]spread{}
	for k, v := range m {
		out[k] = spreads(v)
	}
	return out
}

// get returns the spread or an empty one when it was not measured.
func get(m map[string]spread, k string) spread { return m[k] }

func get2(m map[string]map[string]spread, k1, k2 string) spread { return m[k1][k2] }

// goalVerdict judges the median of the per-round added p99 against the
// goal, and says in how many rounds it held; a median under the goal with
// rounds over it is "not settled", not met. An added p50 over the goal
// (median of addedP50) is a miss whatever the p99 difference says: the
// proxy's hop is on every request, and a p99 difference smaller than the
// p50 one is the tail's run-to-run noise.
func goalVerdict(addedP99, addedP50 []float64, goal time.Duration) string {
	if len(addedP99) == 0 {
		return "not measured"
	}
	s := newSpread(addedP99)
	limit := us(goal)
	under := 0
	for _, x := range addedP99 {
		if x < limit {
			under++
		}
	}
	rounds := fmt.Sprintf("%d/%d rounds under %.0f µs", under, len(addedP99), limit)
	p50 := newSpread(addedP50)
	switch {
	case s.Median >= limit:
		return fmt.Sprintf("**missed by %.0f µs** (%s)", s.Median-limit, rounds)
	case p50.N > 0 && p50.Median >= limit:
		return fmt.Sprintf("**missed**: the added p50 alone is %.0f µs, %.0f µs over; the p99 difference is tail noise (%s)", p50.Median, p50.Median-limit, rounds)
	case under < len(addedP99):
		return fmt.Sprintf("not settled: the median is %.0f µs under, but only %s", limit-s.Median, rounds)
	}
	return fmt.Sprintf("met, by %.0f µs (%s)", limit-s.Median, rounds)
}

func fnum(x float64, format string) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf(format, x)
}

func targetLabel(t string) string {
	switch t {
	case "direct":
		return "direct (Redis)"
	case "tcp":
		return "sentproxy tcp"
	case "epoll":
		return "sentproxy tcp, epoll engine"
	case "resp":
		return "sentproxy resp"
	case "haproxy":
		return "HAProxy"
	case "tcp-1p":
		return "sentproxy tcp, GOMAXPROCS=1"
	case "resp-1p":
		return "sentproxy resp, GOMAXPROCS=1"
	}
	return t
}

func rateList(rates []int) string {
	var s []string
	for _, r := range rates {
		s = append(s, strconv.Itoa(r))
	}
	return strings.Join(s, ", ")
}

// Report renders the "latency" section of the results file.
func Report(env lab.Env, cfg Config, runs []Run) string {
	rows := summarize(runs, cfg)
	var b strings.Builder
	b.WriteString("## Latency at moderate load: open-loop fixed rate\n\n")
	fmt.Fprintf(&b, "Command: `%s` (%s)\n\n", env.Command, env.Date)
	fmt.Fprintf(&b, "Machine: %s CPUs, shared by Redis, the proxies and the load generator (and other work on the machine); %s; %s; sentproxy %s built with %s. "+
		"Everything on loopback. Targets: **direct** = the master redis-server; **tcp**, **epoll** and **resp** = sentproxy `--proxy.mode=tcp --proxy.engine=splice`, `--proxy.mode=tcp --proxy.engine=epoll` (the default on Linux) and `--proxy.mode=resp`, other flags at their defaults, following a master, one replica and three Sentinels (quorum 2); "+
		"**haproxy** = HAProxy `mode tcp`, `nbthread 1`, a single server (the master, no role check).\n\n",
		env.NProc, env.Redis, env.HAProxy, env.Revision, env.GoVersion)
	if env.Note != "" {
		b.WriteString(env.Note + "\n\n")
	}
	fmt.Fprintf(&b, "Method: an open-loop load generator (this program; raw RESP over `net.Conn` and `bufio`, no client library; Go with GOMAXPROCS=1, one event loop like redis-benchmark's) loads one target at a time "+
		"at a fixed total rate of %s requests/s spread over %d connections. Each connection sends on its own fixed schedule, one request every %d/rate s from a random phase, "+
		"alternating `SET key:<conn> xxx` and `GET key:<conn>` (3-byte value) with one request outstanding; when a reply comes after the next slot, "+
		"the connection sends at the first slot not yet past and counts the slots it skipped. "+
		"A request's latency runs from just before its `write` to the moment its whole reply has been read (Go's monotonic clock); every sample is kept and percentiles are nearest-rank. "+
		"Each measurement opens fresh connections, runs a %s warm-up that is not recorded, then records %s. "+
		"%d round(s); in each round, for each rate, the targets run one after the other in an order rotated by one each round. "+
		"Added latency is a proxy's percentile minus direct's, in the same round and at the same rate; tables show the median over rounds with the range in parentheses. "+
		"CPU µs/req is the target process's utime+stime from /proc/PID/stat (10 ms ticks) over the recorded window divided by the requests recorded (for direct: redis-server's own). "+
		"Machine busy is the share of all CPUs' time that was not idle over the window (/proc/stat), the generator and anything else on the machine included.\n\n",
		rateList(cfg.Rates), cfg.Conns, cfg.Conns, warmup, cfg.Duration, cfg.Rounds)

	b.WriteString("### Goal\n\n")
	b.WriteString("| goal | rate | resp added p99, µs: median (range) | verdict | for comparison: resp added p50, µs | tcp added p99, µs | HAProxy added p99, µs | direct p50 / p99, µs |\n|---|---:|---:|---|---:|---:|---:|---:|\n")
	for _, s := range rows {
		fmt.Fprintf(&b, "| resp added p99 at moderate load < %.0f µs | %d req/s | %s | %s | %s | %s | %s | %s / %s |\n",
			us(goalP99), s.rate, get2(s.added, "resp", "p99"), goalVerdict(s.addedP99["resp"], s.addedP50["resp"], goalP99),
			get2(s.added, "resp", "p50"), get2(s.added, "tcp", "p99"), get2(s.added, "haproxy", "p99"),
			get2(s.pct, "direct", "p50"), get2(s.pct, "direct", "p99"))
	}
	b.WriteString("\n")
	for _, s := range rows {
		var busy, before []string
		for _, t := range cfg.Targets {
			busy = append(busy, fmt.Sprintf("%s %s", t, get(s.busy, t).format("%.0f%%")))
			before = append(before, get(s.before, t).format("%.0f%%"))
		}
		fmt.Fprintf(&b, "At %d req/s the machine's CPUs were busy (median over rounds, range): %s; in the half second before each measurement, without this program's load: %s.\n",
			s.rate, strings.Join(busy, ", "), strings.Join(before, ", "))
	}
	b.WriteString("\n")

	b.WriteString("### Added latency over direct, µs, and proxy CPU per request\n\n")
	b.WriteString("Per-round difference proxy − direct, median over rounds (range).\n\n")
	b.WriteString("| rate | target | +p50 | +p90 | +p99 | +p99.9 | +max | CPU µs/req |\n|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range rows {
		for _, t := range proxies {
			if s.added[t] == nil {
				continue
			}
			fmt.Fprintf(&b, "| %d | %s |", s.rate, targetLabel(t))
			for _, p := range pctNames {
				fmt.Fprintf(&b, " %s |", get2(s.added, t, p))
			}
			fmt.Fprintf(&b, " %s |\n", get(s.cpu, t).format("%.1f"))
		}
	}
	b.WriteString("\n")

	b.WriteString("### Latency per target, µs (median over rounds, range)\n\n")
	for _, s := range rows {
		fmt.Fprintf(&b, "#### %d req/s over %d connections\n\n", s.rate, cfg.Conns)
		b.WriteString("| target | requests/run | p50 | p90 | p99 | p99.9 | max | skipped slots | CPU µs/req | machine busy |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range cfg.Targets {
			if s.pct[t] == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s |", targetLabel(t), fnum(get(s.requests, t).Median, "%.0f"))
			for _, p := range pctNames {
				fmt.Fprintf(&b, " %s |", get2(s.pct, t, p))
			}
			fmt.Fprintf(&b, " %s | %s | %s |\n", get(s.skipped, t), get(s.cpu, t).format("%.1f"), get(s.busy, t).format("%.0f%%"))
		}
		b.WriteString("\n")
	}

	b.WriteString("### Every run\n\n")
	b.WriteString("Latencies in µs. \"order\" is the target's position in its round (1 = first); \"send lag p99\" is how late the generator's sends went out after their slots (its own scheduling delay; it is not part of the latency); " +
		"\"gen CPU\" is the generator's own CPU µs per request; \"busy before\" is the machine's busy share over the half second before the warm-up, with none of this program's load: other work on the machine.\n\n")
	b.WriteString("| round | rate | order | target | requests | req/s | skipped | p50 | p90 | p99 | p99.9 | max | send lag p99 | CPU µs/req | gen CPU µs/req | machine busy | busy before |\n")
	b.WriteString("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "| %d | %d | %d | %s | %d | %.0f | %d |", r.Round+1, r.Rate, r.Order+1, r.Target, r.Requests, r.Achieved, r.Skipped)
		for _, p := range pctNames {
			fmt.Fprintf(&b, " %.0f |", us(r.Pct.get(p)))
		}
		fmt.Fprintf(&b, " %.0f | %s | %s | %s | %s |\n", us(r.LagP99), fnum(r.CPUPerReq(), "%.1f"), fnum(r.GenCPUPerReq(), "%.1f"),
			fnum(100*r.Busy, "%.0f%%"), fnum(100*r.Before, "%.0f%%"))
	}
	return b.String()
}

// Summary is the few lines printed at the end of a run.
func Summary(cfg Config, runs []Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "latency: open loop, %d connections, %d round(s) of %s per target (medians over rounds, µs)\n", cfg.Conns, cfg.Rounds, cfg.Duration)
	for _, s := range summarize(runs, cfg) {
		fmt.Fprintf(&b, "  %d req/s: direct p50 %s p99 %s; added p99: tcp %s, resp %s, haproxy %s; resp goal < %.0f µs: %s\n",
			s.rate, get2(s.pct, "direct", "p50"), get2(s.pct, "direct", "p99"),
			get2(s.added, "tcp", "p99"), get2(s.added, "resp", "p99"), get2(s.added, "haproxy", "p99"),
			us(goalP99), strings.ReplaceAll(goalVerdict(s.addedP99["resp"], s.addedP50["resp"], goalP99), "**", ""))
		fmt.Fprintf(&b, "  %d req/s: added p50: tcp %s, resp %s, haproxy %s; CPU µs/req: tcp %s, resp %s, haproxy %s\n",
			s.rate, get2(s.added, "tcp", "p50"), get2(s.added, "resp", "p50"), get2(s.added, "haproxy", "p50"),
			get(s.cpu, "tcp").format("%.1f"), get(s.cpu, "resp").format("%.1f"), get(s.cpu, "haproxy").format("%.1f"))
	}
	return b.String()
}
