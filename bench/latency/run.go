package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
	"github.com/sentproxy/sentproxy/internal/redisproc"
)

// Run is one target measured at one rate in one round.
type Run struct {
	Round    int
	Order    int // position of the target within the round and rate, from 0
	Rate     int
	Target   string
	Requests int     // recorded requests
	Achieved float64 // recorded requests per second of the recorded window
	Skipped  int64   // slots skipped because a reply came after the next slot
	Pct      Percentiles
	LagP99   time.Duration // p99 of how late a send went out after its slot (client scheduling)
	CPU      time.Duration // CPU time of the target's process over the window (the proxy; Redis for direct)
	GenCPU   time.Duration // CPU time of this program (the load generator) over the window
	Busy     float64       // share of the machine's CPU time that was busy over the window
	Before   float64       // the same share over the half second before the warm-up, with no load from us
}

// GenCPUPerReq is the load generator's CPU time per request in µs.
func (r Run) GenCPUPerReq() float64 {
	if r.Requests == 0 {
		return math.NaN()
	}
	return us(r.GenCPU) / float64(r.Requests)
}

// CPUPerReq is the target process's CPU time per request in µs.
func (r Run) CPUPerReq() float64 {
	if r.Requests == 0 {
		return math.NaN()
	}
	return us(r.CPU) / float64(r.Requests)
}

// quietProbe is how long the machine's CPU use is sampled before each
// measurement, with none of our load running.
const quietProbe = 500 * time.Millisecond

type target struct {
	name string
	addr string
	pid  func() int
}

// Measure starts one topology, sentproxy in both modes and HAProxy in front
// of its master, and loads each target in turn at each rate, cfg.Rounds
// times, rotating the order of the targets each round.
func Measure(ctx context.Context, cfg Config) ([]Run, error) {
	log := cfg.Log
	tdir := filepath.Join(cfg.Dir, "topology")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	topo, err := redisproc.StartTopology(ctx, redisproc.TopologyOptions{Dir: tdir, Replicas: 1, Sentinels: 3, Quorum: 2})
	if err != nil {
		return nil, fmt.Errorf("latency: start topology: %w", err)
	}
	defer topo.Close()
	targets := map[string]target{"direct": {"direct", topo.Master.Addr, topo.Master.PID}}
	for _, t := range cfg.Targets {
		switch t {
		case "tcp", "epoll", "resp", "tcp-1p", "resp-1p":
			o := lab.ProxyOptions{Bin: cfg.Bin, Dir: tdir, Mode: t, Name: t, Sentinels: topo.SentinelAddrs()}
			if mode, ok := strings.CutSuffix(t, "-1p"); ok {
				// One P: the thread that polls runs the goroutine it woke
				// instead of waking another thread for it.
				o.Mode, o.Env = mode, []string{"GOMAXPROCS=1"}
			}
			sp, err := lab.StartSentproxy(ctx, o)
			if err != nil {
				return nil, fmt.Errorf("latency: start sentproxy %s: %w", t, err)
			}
			defer sp.Close()
			targets[t] = target{t, sp.Addr, sp.PID}
		case "haproxy":
			hp, err := lab.StartHAProxy(ctx, lab.HAProxyOptions{Dir: tdir, Servers: []string{topo.Master.Addr}})
			if err != nil {
				return nil, fmt.Errorf("latency: start haproxy: %w", err)
			}
			defer hp.Close()
			targets[t] = target{t, hp.Addr, hp.PID}
		}
	}
	log.Info("targets up", "direct", targets["direct"].addr, "tcp", targets["tcp"].addr,
		"resp", targets["resp"].addr, "haproxy", targets["haproxy"].addr)

	var runs []Run
	for round := range cfg.Rounds {
		order := rotate(cfg.Targets, round)
		for _, rate := range cfg.Rates {
			for i, name := range order {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				r, err := measureOne(ctx, cfg, targets[name], rate)
				if err != nil {
					return nil, fmt.Errorf("latency: round %d, %d req/s, %s: %w", round+1, rate, name, err)
				}
				r.Round, r.Order = round, i
				log.Info("measured", "round", round+1, "rate", rate, "target", name, "requests", r.Requests,
					"p50_us", int(us(r.Pct.P50)), "p99_us", int(us(r.Pct.P99)), "p999_us", int(us(r.Pct.P999)),
					"max_us", int(us(r.Pct.Max)), "skipped", r.Skipped,
					"cpu_us_per_req", fmt.Sprintf("%.1f", r.CPUPerReq()), "machine_busy", fmt.Sprintf("%.0f%%", 100*r.Busy), "busy_before", fmt.Sprintf("%.0f%%", 100*r.Before))
				runs = append(runs, r)
			}
		}
	}
	return runs, nil
}

// measureOne loads one target at one rate: a warm-up, then cfg.Duration
// recorded, with the target's CPU and the machine's read at the start and
// the end of the recorded window.
func measureOne(ctx context.Context, cfg Config, t target, rate int) (Run, error) {
	type reading struct {
		cpu, gen time.Duration
		machine  cpuCounters
		err      error
	}
	read := func() reading {
		var r reading
		if r.cpu, r.err = lab.CPUTime(t.pid()); r.err != nil {
			return r
		}
		if r.gen, r.err = lab.CPUTime(os.Getpid()); r.err != nil {
			return r
		}
		r.machine, r.err = readCPUCounters()
		return r
	}
	// What the machine does without us: other work on a shared machine
	// shows up here.
	quiet0 := read()
	select {
	case <-time.After(quietProbe):
	case <-ctx.Done():
		return Run{}, ctx.Err()
	}
	quiet1 := read()
	startCh := make(chan reading, 1)
	res, err := runLoad(ctx, t.addr, rate, cfg.Conns, warmup, cfg.Duration, func() { startCh <- read() })
	if err != nil {
		return Run{}, err
	}
	end := read()
	var begin reading
	select {
	case begin = <-startCh:
	default:
		return Run{}, fmt.Errorf("the recorded window never started")
	}
	for _, r := range []reading{quiet0, quiet1, begin, end} {
		if r.err != nil {
			return Run{}, r.err
		}
	}
	run := Run{
		Rate:     rate,
		Target:   t.name,
		Requests: len(res.samples),
		Skipped:  res.skipped,
		Pct:      percentiles(res.samples),
		LagP99:   percentiles(res.lags).P99,
		CPU:      end.cpu - begin.cpu,
		GenCPU:   end.gen - begin.gen,
		Busy:     busyFraction(begin.machine, end.machine),
		Before:   busyFraction(quiet0.machine, quiet1.machine),
	}
	run.Achieved = float64(run.Requests) / cfg.Duration.Seconds()
	if run.Requests == 0 {
		return run, fmt.Errorf("no request recorded")
	}
	return run, nil
}

func rotate(xs []string, k int) []string {
	out := make([]string, len(xs))
	for i := range xs {
		out[i] = xs[(i+k)%len(xs)]
	}
	return out
}
