// Command scale measures how sentproxy behaves as load and connection
// counts grow, next to a direct connection to Redis and to HAProxy:
//
//  1. GET throughput and proxy CPU per request with redis-benchmark, for
//     1 to 1000 clients and pipelines of 1 and 16, against direct, sentproxy
//     in tcp and resp mode, and HAProxy (rounds with rotated order; medians
//     and in-round ratios);
//  2. idle memory: the proxy's RSS growth per idle client connection;
//  3. cutover: what happens to those idle connections on SENTINEL FAILOVER
//     (tcp mode closes them, resp mode moves them to the new master).
//
// It writes the "scale" section of bench/RESULTS.md.
//
// Typical usage, from the repository root:
//
//	go run ./bench/scale            # full run, about 6 minutes
//	go run ./bench/scale -quick     # smoke run; results go to a temp file
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
	"strings"
	"syscall"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// epoll is sentproxy in tcp mode with --proxy.engine=epoll.
var allTargets = []string{"direct", "tcp", "epoll", "resp", "haproxy"}

func main() { lab.Main("scale", run) }

// Config is what to measure.
type Config struct {
	Clients   []int
	Pipelines []int
	Targets   []string
	Rounds    int
	Scale     float64 // multiplies the request counts of requests()
	Idle      int     // idle connections for the memory and cutover phases
	Modes     []string
	SkipTput  bool
	SkipIdle  bool

	Bin string
	Dir string
	Log *slog.Logger
}

type options struct {
	cfg     Config
	results string
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	clients := fs.String("clients", "1,10,100,1000", "comma-separated redis-benchmark client counts")
	pipelines := fs.String("pipelines", "1,16", "comma-separated redis-benchmark pipeline depths")
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma-separated targets: "+strings.Join(allTargets, ", "))
	modes := fs.String("modes", "tcp,epoll,resp", "sentproxy modes for the idle memory and cutover phases (epoll: tcp mode with --proxy.engine=epoll)")
	rounds := fs.Int("rounds", 3, "throughput rounds (target order rotated each round)")
	scale := fs.Float64("scale", 1, "multiplier for the number of requests per redis-benchmark run")
	idle := fs.Int("idle", 9900, "idle connections for the memory and cutover phases (the proxy needs 2 fds each)")
	skipTput := fs.Bool("skip-throughput", false, "skip the throughput phase")
	skipIdle := fs.Bool("skip-idle", false, "skip the idle memory and cutover phases")
	resultsFile := lab.ResultsFlag(fs, "scale")
	quick := fs.Bool("quick", false, "smoke run: 1 round, clients 1,100, 1/10 of the requests, 500 idle connections")
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
		if !set["clients"] {
			*clients = "1,100"
		}
		if !set["scale"] {
			*scale = 0.1
		}
		if !set["idle"] {
			*idle = 500
		}
	}
	if c.Clients, err = lab.IntList("clients", *clients, 1, 5000); err != nil {
		return o, err
	}
	if c.Pipelines, err = lab.IntList("pipelines", *pipelines, 1, 1000); err != nil {
		return o, err
	}
	if c.Targets, err = lab.PickList("targets", *targets, allTargets); err != nil {
		return o, err
	}
	if c.Modes, err = lab.PickList("modes", *modes, []string{"tcp", "epoll", "resp"}); err != nil {
		return o, err
	}
	c.Rounds, c.Scale, c.Idle, c.SkipTput, c.SkipIdle = *rounds, *scale, *idle, *skipTput, *skipIdle
	switch {
	case c.Rounds < 1:
		return o, lab.UsageError{Msg: "-rounds must be at least 1"}
	case c.Scale <= 0:
		return o, lab.UsageError{Msg: "-scale must be positive"}
	case c.Idle < 1 || c.Idle > 9900:
		return o, lab.UsageError{Msg: "-idle must be 1 to 9900 (RLIMIT_NOFILE)"}
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
	if err := raiseNoFile(); err != nil {
		return err
	}
	cfg := o.cfg
	cfg.Log = log
	dir, err := os.MkdirTemp("", "sentproxy-scale-")
	if err != nil {
		return fmt.Errorf("scale: scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg.Dir = dir

	env := environment(ctx, root, args)
	log.Info("building sentproxy", "revision", env.Revision)
	if cfg.Bin, err = lab.BuildSentproxy(ctx, root, dir); err != nil {
		return err
	}
	var res Results
	if !cfg.SkipTput {
		if res.Tput, err = Throughput(ctx, cfg); err != nil {
			return err
		}
	}
	if !cfg.SkipIdle {
		for _, mode := range cfg.Modes {
			r, err := IdleAndCutover(ctx, cfg, mode)
			if err != nil {
				return err
			}
			res.Idle = append(res.Idle, r)
		}
	}
	report := Report(env, cfg, res)
	if err := lab.ReplaceSection(resultsPath, "scale", report); err != nil {
		return err
	}
	fmt.Println(report)
	log.Info("results written", "file", resultsPath)
	return nil
}

// raiseNoFile sets the soft RLIMIT_NOFILE to the hard limit; the children
// (Redis, sentproxy, HAProxy, redis-benchmark) inherit it.
func raiseNoFile() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("scale: getrlimit: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("scale: setrlimit: %w", err)
	}
	return nil
}

// Env describes where and how the bench ran, for the report header.
type Env = lab.Env

func environment(ctx context.Context, root string, args []string) Env {
	return lab.Environment(ctx, root, "go run ./bench/scale", args)
}
