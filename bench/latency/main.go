// Command latency measures the latency sentproxy adds at moderate load:
// a fixed request rate that leaves the machine's CPUs mostly idle, so that
// the figures are the proxy's own hop and not queueing behind a saturated
// CPU (redis-benchmark, which bench/run.sh uses, is a closed loop with no
// rate limit).
//
// It starts one topology (a master, one replica, three Sentinels), sentproxy
// in tcp and in resp mode and a plain HAProxy in front of the master, then
// loads one target at a time — direct (the master itself), tcp, resp,
// haproxy — with its own open-loop generator: -conns raw RESP connections
// share a fixed total rate, each alternating SET key:<conn> xxx and
// GET key:<conn> on a fixed schedule with one request outstanding. Each
// request's latency runs from just before its write to the end of its reply.
// Every rate and target is measured -rounds times, the target order rotated
// each round; added latency is a proxy's percentile minus direct's in the
// same round, reported as the median over rounds with its range, next to
// the proxies' CPU time per request.
//
// It writes the "latency" section of bench/RESULTS.md.
//
// Typical usage, from the repository root:
//
//	go run ./bench/latency            # full run, about 8 minutes
//	go run ./bench/latency -quick     # smoke run; results go to a temp file
//
// Every process it starts is stopped by its PID when it ends, also on
// Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// allTargets is the measured targets in their first-round order; direct
// is the baseline the others are compared with.
// epoll is sentproxy in tcp mode with --proxy.engine=epoll.
var allTargets = []string{"direct", "tcp", "epoll", "resp", "haproxy"}

// proxies are the targets whose added latency and CPU are reported; the
// "-1p" ones (sentproxy with GOMAXPROCS=1) only with -one-p.
var proxies = []string{"tcp", "epoll", "resp", "haproxy", "tcp-1p", "resp-1p"}

// warmup runs before each measurement and is not recorded.
const warmup = time.Second

// goalP99 is the project's target for resp mode's added p99 at moderate
// load.
const goalP99 = 100 * time.Microsecond

func main() { lab.Main("latency", run) }

// Config is what to measure.
type Config struct {
	Rates    []int // total requests per second over all connections
	Conns    int
	Rounds   int
	Duration time.Duration // recorded time per target, rate and round
	Targets  []string

	Bin string
	Dir string
	Log *slog.Logger
}

type options struct {
	cfg     Config
	results string
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	rates := fs.String("rates", "1000,5000", "comma-separated total request rates, requests/s over all connections")
	conns := fs.Int("conns", 10, "connections sharing the rate, one request outstanding on each")
	rounds := fs.Int("rounds", 5, "rounds (target order rotated each round)")
	duration := fs.Duration("duration", 10*time.Second, "recorded time per target and rate in each round (after a 1s warm-up)")
	resultsFile := lab.ResultsFlag(fs, "latency")
	quick := fs.Bool("quick", false, "smoke run: 1 round, rate 1000, 3s per target")
	oneP := fs.Bool("one-p", false, "also measure sentproxy tcp and resp with GOMAXPROCS=1 (targets tcp-1p, resp-1p)")
	set, err := lab.ParseFlags(fs, args)
	if err != nil {
		return options{}, err
	}

	o := options{}
	if o.results, err = resultsFile(set, *quick); err != nil {
		return o, err
	}
	c := &o.cfg
	if *quick {
		if !set["rounds"] {
			*rounds = 1
		}
		if !set["rates"] {
			*rates = "1000"
		}
		if !set["duration"] {
			*duration = 3 * time.Second
		}
	}
	if c.Rates, err = lab.IntList("rates", *rates, 1, 200000); err != nil {
		return o, err
	}
	c.Conns, c.Rounds, c.Duration, c.Targets = *conns, *rounds, *duration, allTargets
	if *oneP {
		c.Targets = append(append([]string(nil), allTargets...), "tcp-1p", "resp-1p")
	}
	switch {
	case c.Conns < 1 || c.Conns > 1000:
		return o, lab.UsageError{Msg: "-conns must be 1 to 1000"}
	case c.Rounds < 1 || c.Rounds > 100:
		return o, lab.UsageError{Msg: "-rounds must be 1 to 100"}
	case c.Duration < time.Second || c.Duration > time.Hour:
		return o, lab.UsageError{Msg: "-duration must be 1s to 1h"}
	}
	return o, nil
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	root, err := lab.ModuleRoot()
	if err != nil {
		return err
	}
	resultsPath := lab.InRoot(root, o.results)
	// The generator runs on one P, like redis-benchmark's single event
	// loop: the thread waiting in epoll_wait then runs the goroutine whose
	// reply arrived, instead of handing it to another thread. On this
	// 2-vCPU VM that handoff (a futex wake-up of an idle vCPU) made the
	// generator's own latency noisier: with 2 Ps, direct p50/p99 at
	// 1000 req/s was 160–210 µs / 1.8–2.4 ms, with 1 P 95–110 µs /
	// 0.4–0.5 ms. Children do not inherit it (it is not GOMAXPROCS in the
	// environment).
	runtime.GOMAXPROCS(1)
	cfg := o.cfg
	cfg.Log = log
	dir, err := os.MkdirTemp("", "sentproxy-latency-")
	if err != nil {
		return fmt.Errorf("latency: scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg.Dir = dir

	env := lab.Environment(ctx, root, "go run ./bench/latency", args)
	log.Info("building sentproxy", "revision", env.Revision)
	if cfg.Bin, err = lab.BuildSentproxy(ctx, root, dir); err != nil {
		return err
	}
	runs, err := Measure(ctx, cfg)
	if err != nil {
		return err
	}
	report := Report(env, cfg, runs)
	if err := lab.ReplaceSection(resultsPath, "latency", report); err != nil {
		return err
	}
	fmt.Print(Summary(cfg, runs))
	log.Info("results written", "file", resultsPath)
	return nil
}
