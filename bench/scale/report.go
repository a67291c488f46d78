package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

type cfgKey struct{ clients, pipeline int }

// tputRow is the medians of one clients × pipeline configuration.
type tputRow struct {
	key      cfgKey
	rps      map[string]float64 // median per target
	cpu      map[string]float64 // median µs per request per target
	tcpHA    float64            // median of in-round tcp/haproxy ratios
	epollHA  float64            // median of in-round epoll/haproxy ratios
	respTCP  float64            // median of in-round resp/tcp ratios
	tcpDir   float64            // median of in-round tcp/direct ratios
	rounds   int
	requests int
}

func summarize(runs []TputRun, cfg Config) []tputRow {
	type rk struct {
		cfgKey
		round int
	}
	byRound := map[rk]map[string]TputRun{}
	for _, r := range runs {
		k := rk{cfgKey{r.Clients, r.Pipeline}, r.Round}
		if byRound[k] == nil {
			byRound[k] = map[string]TputRun{}
		}
		byRound[k][r.Target] = r
	}
	var rows []tputRow
	for _, c := range cfg.Clients {
		for _, p := range cfg.Pipelines {
			row := tputRow{key: cfgKey{c, p}, rps: map[string]float64{}, cpu: map[string]float64{}}
			rps, cpu := map[string][]float64{}, map[string][]float64{}
			var tcpHA, epollHA, respTCP, tcpDir []float64
			for round := 0; round < cfg.Rounds; round++ {
				m := byRound[rk{row.key, round}]
				if m == nil {
					continue
				}
				row.rounds++
				for t, r := range m {
					rps[t] = append(rps[t], r.RPS)
					cpu[t] = append(cpu[t], r.CPUPerReq())
					row.requests = r.Requests
				}
				ratio := func(a, b string, into *[]float64) {
					ra, okA := m[a]
					rb, okB := m[b]
					if okA && okB && rb.RPS > 0 {
						*into = append(*into, ra.RPS/rb.RPS)
					}
				}
				ratio("tcp", "haproxy", &tcpHA)
				ratio("epoll", "haproxy", &epollHA)
				ratio("resp", "tcp", &respTCP)
				ratio("tcp", "direct", &tcpDir)
			}
			if row.rounds == 0 {
				continue
			}
			for t := range rps {
				row.rps[t] = lab.Median(rps[t])
				row.cpu[t] = lab.Median(cpu[t])
			}
			row.tcpHA, row.epollHA = lab.Median(tcpHA), lab.Median(epollHA)
			row.respTCP, row.tcpDir = lab.Median(respTCP), lab.Median(tcpDir)
			rows = append(rows, row)
		}
	}
	return rows
}

func fnum(x float64, format string) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf(format, x)
}

// behind is 5%: differences smaller than that are within run-to-run noise
// on a shared machine.
const behind = 0.95

// tputVerdict says, from the rows, where sentproxy is behind HAProxy and
// direct.
func tputVerdict(rows []tputRow) string {
	var haBehind, epollBehind, dirBehind, respBehind, cpuMore, epollCPUMore []string
	nHA, nEpoll, nDir, nResp, nCPU, nEpollCPU := 0, 0, 0, 0, 0, 0
	worstHA, worstHAAt := math.Inf(1), ""
	for _, r := range rows {
		at := fmt.Sprintf("c=%d P=%d", r.key.clients, r.key.pipeline)
		if !math.IsNaN(r.tcpHA) {
			nHA++
			if r.tcpHA < behind {
				haBehind = append(haBehind, fmt.Sprintf("%s (%.2f×)", at, r.tcpHA))
			}
			if r.tcpHA < worstHA {
				worstHA, worstHAAt = r.tcpHA, at
			}
		}
		if !math.IsNaN(r.epollHA) {
			nEpoll++
			if r.epollHA < behind {
				epollBehind = append(epollBehind, fmt.Sprintf("%s (%.2f×)", at, r.epollHA))
			}
		}
		if ec, ok := r.cpu["epoll"]; ok {
			if hc, ok := r.cpu["haproxy"]; ok {
				nEpollCPU++
				if hc > 0 && ec > hc/behind {
					epollCPUMore = append(epollCPUMore, fmt.Sprintf("%s (%.2f vs %.2f µs)", at, ec, hc))
				}
			}
		}
		if !math.IsNaN(r.tcpDir) {
			nDir++
			if r.tcpDir < behind {
				dirBehind = append(dirBehind, fmt.Sprintf("%s (%.2f×)", at, r.tcpDir))
			}
		}
		if !math.IsNaN(r.respTCP) {
			nResp++
			if r.respTCP < behind {
				respBehind = append(respBehind, fmt.Sprintf("%s (%.2f×)", at, r.respTCP))
			}
		}
		tc, okT := r.cpu["tcp"]
		hc, okH := r.cpu["haproxy"]
		if okT && okH {
			nCPU++
			if hc > 0 && tc > hc/behind {
				cpuMore = append(cpuMore, fmt.Sprintf("%s (%.2f vs %.2f µs)", at, tc, hc))
			}
		}
	}
	list := func(xs []string) string {
		if len(xs) == 0 {
			return "none"
		}
		return strings.Join(xs, ", ")
	}
	var b strings.Builder
	b.WriteString("**Where sentproxy is behind** (more than 5%, medians of in-round ratios): ")
	if nHA > 0 {
		fmt.Fprintf(&b, "tcp mode is slower than HAProxy in %d of %d configurations: %s", len(haBehind), nHA, list(haBehind))
		if worstHAAt != "" {
			fmt.Fprintf(&b, " (worst %s at %.2f×)", worstHAAt, worstHA)
		}
		b.WriteString("; ")
	}
	if nCPU > 0 {
		fmt.Fprintf(&b, "tcp mode uses more CPU per request than HAProxy in %d of %d: %s; ", len(cpuMore), nCPU, list(cpuMore))
	}
	if nEpoll > 0 {
		fmt.Fprintf(&b, "tcp mode with the epoll engine is slower than HAProxy in %d of %d: %s; ", len(epollBehind), nEpoll, list(epollBehind))
	}
	if nEpollCPU > 0 {
		fmt.Fprintf(&b, "and uses more CPU per request than HAProxy in %d of %d: %s; ", len(epollCPUMore), nEpollCPU, list(epollCPUMore))
	}
	if nDir > 0 {
		fmt.Fprintf(&b, "tcp mode is slower than direct in %d of %d: %s; ", len(dirBehind), nDir, list(dirBehind))
	}
	if nResp > 0 {
		fmt.Fprintf(&b, "resp mode is slower than tcp mode in %d of %d: %s.", len(respBehind), nResp, list(respBehind))
	}
	return strings.TrimSuffix(strings.TrimSpace(b.String()), ";") + "\n"
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", d.Seconds()*1000)
}

// sinceSwitch prints a time relative to +switch-master, saying "before"
// for negative ones (the proxy acted before the event reached the bench).
func sinceSwitch(d time.Duration) string {
	if d < 0 {
		return ms(-d) + " before"
	}
	return ms(d)
}

// Report renders the "scale" section of the results file.
func Report(env Env, cfg Config, res Results) string {
	var b strings.Builder
	b.WriteString("## Scale: throughput, CPU, idle memory and cutover\n\n")
	fmt.Fprintf(&b, "Command: `%s` (%s)\n\n", env.Command, env.Date)
	fmt.Fprintf(&b, "Machine: %s CPUs; %s; %s; sentproxy %s built with %s. Everything on loopback; sentproxy with `--proxy.max-connections=0`; HAProxy with `nbthread 1`, a single server (no role check).\n\n",
		env.NProc, env.Redis, env.HAProxy, env.Revision, env.GoVersion)

	if len(res.Tput) > 0 {
		rows := summarize(res.Tput, cfg)
		b.WriteString("### Throughput and CPU per request\n\n")
		fmt.Fprintf(&b, "`redis-benchmark -t get -q -c C -P P -n N` against each target; %d round(s), target order rotated each round; medians. "+
			"CPU is the target process's user+system time over the run (/proc, 10 ms resolution) divided by N: the proxy's, or Redis's for direct. "+
			"Ratios are medians of the in-round ratios.\n\n", cfg.Rounds)
		b.WriteString("| clients | pipeline | N |")
		for _, t := range cfg.Targets {
			fmt.Fprintf(&b, " %s req/s |", t)
		}
		for _, t := range cfg.Targets {
			fmt.Fprintf(&b, " %s CPU µs/req |", t)
		}
		b.WriteString(" tcp/haproxy | epoll/haproxy | resp/tcp | tcp/direct |\n|---:|---:|---:|")
		b.WriteString(strings.Repeat("---:|", 2*len(cfg.Targets)+4) + "\n")
		for _, r := range rows {
			fmt.Fprintf(&b, "| %d | %d | %d |", r.key.clients, r.key.pipeline, r.requests)
			for _, t := range cfg.Targets {
				v, ok := r.rps[t]
				if !ok {
					v = math.NaN()
				}
				fmt.Fprintf(&b, " %s |", fnum(v, "%.0f"))
			}
			for _, t := range cfg.Targets {
				v, ok := r.cpu[t]
				if !ok {
					v = math.NaN()
				}
				fmt.Fprintf(&b, " %s |", fnum(v, "%.2f"))
			}
			fmt.Fprintf(&b, " %s | %s | %s | %s |\n", fnum(r.tcpHA, "%.2f"), fnum(r.epollHA, "%.2f"), fnum(r.respTCP, "%.2f"), fnum(r.tcpDir, "%.2f"))
		}
		b.WriteString("\n" + tputVerdict(rows) + "\n")
	}

	if len(res.Idle) > 0 {
		b.WriteString("### Idle memory\n\n")
		b.WriteString("N idle client connections through sentproxy, each having sent PING and read +PONG; the proxy's RSS (VmRSS) growth divided by N. HAProxy was not measured here. " +
			"tcp mode holds 6 file descriptors per connection (two sockets, two splice pipes), resp mode and the epoll engine 2, so under the RLIMIT_NOFILE hard limit tcp mode gets fewer connections.\n\n")
		b.WriteString("| mode | connections | open time | RSS before | RSS after | bytes per connection |\n|---|---:|---:|---:|---:|---:|\n")
		for _, r := range res.Idle {
			fmt.Fprintf(&b, "| %s | %d | %s | %.1f MiB | %.1f MiB | %.0f |\n", r.Mode, r.Conns, ms(r.OpenTime),
				float64(r.RSSBefore)/(1<<20), float64(r.RSSAfter)/(1<<20), r.PerConn())
		}
		b.WriteString("\n" + idleVerdict(res.Idle) + "\n")

		b.WriteString("### Cutover of the idle connections\n\n")
		b.WriteString("After the memory measurement, SENTINEL FAILOVER with the same connections open. tcp mode: time until the last connection saw EOF or an error. " +
			"resp mode: after +switch-master each connection sends `CONFIG GET port` every ~20 ms until the new master answers; time until the last one moved. " +
			"\"stuck\" is neither closed nor moved within 60 s.\n\n")
		b.WriteString("| mode | connections | closed | moved | stuck | SENTINEL FAILOVER → last | +switch-master → last |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range res.Idle {
			if r.CutoverErr != "" {
				fmt.Fprintf(&b, "| %s | %d | failed: %s | | | | |\n", r.Mode, r.Conns, strings.ReplaceAll(r.CutoverErr, "|", "/"))
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %s |\n", r.Mode, r.Conns, r.Closed, r.Moved, r.Stuck, ms(r.FromFailover), sinceSwitch(r.FromSwitch))
		}
		b.WriteString("\n" + cutoverVerdict(res.Idle) + "\n")
	}
	return b.String()
}

func idleVerdict(rs []IdleResult) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s mode costs %.1f KiB per idle connection", r.Mode, r.PerConn()/1024))
	}
	return "**Memory:** " + strings.Join(parts, "; ") + ". There is no HAProxy or direct figure in this table to compare against.\n"
}

func cutoverVerdict(rs []IdleResult) string {
	var parts []string
	for _, r := range rs {
		switch {
		case r.CutoverErr != "":
			parts = append(parts, fmt.Sprintf("%s mode: not measured (%s)", r.Mode, r.CutoverErr))
		case r.Mode == "resp":
			s := fmt.Sprintf("resp mode moved %d of %d connections, the last %s after +switch-master (%s after SENTINEL FAILOVER), and closed %d", r.Moved, r.Conns, sinceSwitch(r.FromSwitch), ms(r.FromFailover), r.Closed)
			if r.Closed > 0 || r.Stuck > 0 {
				s += fmt.Sprintf(" — behind its goal of keeping every connection (%d closed, %d stuck)", r.Closed, r.Stuck)
			}
			parts = append(parts, s)
		default:
			s := fmt.Sprintf("%s mode closed %d of %d connections, the last %s after SENTINEL FAILOVER (%s relative to +switch-master)", r.Mode, r.Closed, r.Conns, ms(r.FromFailover), sinceSwitch(r.FromSwitch))
			if r.Stuck > 0 {
				s += fmt.Sprintf(" — %d were left open to the old master", r.Stuck)
			}
			parts = append(parts, s)
		}
	}
	return "**Cutover:** " + strings.Join(parts, "; ") + ".\n"
}
