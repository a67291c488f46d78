// Command drill runs the same failures against sentproxy (tcp and resp
// mode), HAProxy with a role check, and go-redis's FailoverClient at the
// same time, and reports what their clients saw: errors, how long they
// lasted, how soon the new master answered, tail latency during the
// failover, writes that reached the demoted master, and acknowledged
// writes that were lost.
//
// Each scenario run starts a fresh master, two replicas and three Sentinels
// from the local redis-server on loopback ports, starts the contenders in
// front of it, drives a fixed-rate INCR/SET/GET workload through all of
// them, injects the fault (SIGKILL, SIGSTOP then SIGCONT, SENTINEL
// FAILOVER, or the loss of a Sentinel) and keeps going until every
// contender has recovered. It writes the "drill" section of
// bench/RESULTS.md and a timeline picture per scenario.
//
// Typical usage, from the repository root:
//
//	go run ./bench/drill                 # 4 scenarios × 3 runs, several minutes
//	go run ./bench/drill -quick          # 1 short run per scenario
//	go run ./bench/drill -scenarios=sigstop -contenders=tcp,haproxy -raw=/tmp/drill.json
//	go run ./bench/drill -from-raw=/tmp/drill.json   # report again, no new runs
//
// Every process it starts is stopped by its PID when the drill ends, also
// on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// redisLogger sends go-redis's own log lines (one per FailoverClient
// master change) to slog at debug level: at info they would drown the
// drill's progress lines.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}

var (
	allScenarios = []string{"sigkill", "sigstop", "sentinel-failover", "sentinel-down"}
	// epoll is sentproxy in tcp mode with --proxy.engine=epoll.
	allContenders = []string{"tcp", "epoll", "resp", "haproxy", "goredis"}
)

func main() {
	lab.Main("drill", func(ctx context.Context, args []string, log *slog.Logger) error {
		redis.SetLogger(redisLogger{log.With("component", "go-redis")})
		return run(ctx, args, log)
	})
}

type options struct {
	cfg     Config
	results string
	img     string
	raw     string
	fromRaw string
	keep    bool // keep the scratch directory, to read the processes' logs afterwards
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	scenarios := fs.String("scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios: "+strings.Join(allScenarios, ", "))
	contenders := fs.String("contenders", strings.Join(allContenders, ","), "comma-separated contenders: "+strings.Join(allContenders, ", "))
	clients := fs.Int("clients", 10, "connections (clients) per contender")
	rate := fs.Float64("rate", 50, "requests per second per client")
	downAfter := fs.Duration("down-after", 2*time.Second, "Sentinel down-after-milliseconds")
	runs := fs.Int("runs", 3, "runs per scenario")
	results := fs.String("results", "bench/RESULTS.md", "results file whose \"drill\" section is replaced (relative to the module root)")
	img := fs.String("img", "bench/img", "directory for the timeline pictures (relative to the module root)")
	raw := fs.String("raw", "", "optional JSON file to dump every record of every run into")
	fromRaw := fs.String("from-raw", "", "run nothing: rebuild the report and pictures from a -raw dump of an earlier run (give the same -clients, -rate, -down-after, -quick)")
	quick := fs.Bool("quick", false, "smoke run: 1 run, short phases, 4 clients unless -clients is given")
	keep := fs.Bool("keep", false, "keep the scratch directory (every process's config and log, sentproxy's included) and print where it is")
	set, err := lab.ParseFlags(fs, args)
	if err != nil {
		return options{}, err
	}

	o := options{results: *results, img: *img, raw: *raw, fromRaw: *fromRaw, keep: *keep}
	c := &o.cfg
	if c.Scenarios, err = lab.PickList("scenarios", *scenarios, allScenarios); err != nil {
		return o, err
	}
	if c.Contenders, err = lab.PickList("contenders", *contenders, allContenders); err != nil {
		return o, err
	}
	c.Clients, c.Rate, c.DownAfter, c.Runs = *clients, *rate, *downAfter, *runs
	c.Warmup, c.Tail = 5*time.Second, 5*time.Second
	if *quick {
		if !set["runs"] {
			c.Runs = 1
		}
		if !set["clients"] {
			c.Clients = 4
		}
		c.Warmup, c.Tail = 3*time.Second, 3*time.Second
	}
	switch {
	case c.Clients < 1 || c.Clients > 1000:
		return o, lab.UsageError{Msg: fmt.Sprintf("-clients=%d: want 1 to 1000", c.Clients)}
	case !(c.Rate > 0 && c.Rate <= 10000):
		return o, lab.UsageError{Msg: fmt.Sprintf("-rate=%g: want more than 0 and at most 10000", c.Rate)}
	case c.DownAfter < 100*time.Millisecond || c.DownAfter > time.Minute:
		return o, lab.UsageError{Msg: fmt.Sprintf("-down-after=%v: want 100ms to 1m", c.DownAfter)}
	case c.Runs < 1 || c.Runs > 100:
		return o, lab.UsageError{Msg: fmt.Sprintf("-runs=%d: want 1 to 100", c.Runs)}
	case o.results == "":
		return o, lab.UsageError{Msg: "-results must not be empty"}
	case o.img == "":
		return o, lab.UsageError{Msg: "-img must not be empty"}
	}
	// A SIGSTOPped master costs down-after plus an election; a frozen
	// client's read timeout adds 10 s. Twenty seconds covers the rest.
	c.Deadline = 3*c.DownAfter + clientReadTimeout + 20*time.Second
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
	resultsPath, imgDir := lab.InRoot(root, o.results), lab.InRoot(root, o.img)
	cfg := o.cfg
	cfg.Log = log
	dir, err := scratchDir()
	if err != nil {
		return err
	}
	if o.keep {
		defer log.Info("scratch directory kept", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	cfg.Dir = dir

	env := environment(ctx, root, args)
	var results []*ScenarioResult
	var runs []*RunData
	if o.fromRaw != "" {
		results, runs, err = fromRaw(o.fromRaw, &cfg)
		env.Note = "The report and pictures were rebuilt from the `-raw` dump of an earlier run; the date is that run's."
	} else {
		log.Info("building sentproxy", "revision", env.Revision)
		if cfg.Bin, err = lab.BuildSentproxy(ctx, root, dir); err != nil {
			return err
		}
		results, runs, err = Drill(ctx, cfg)
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return fmt.Errorf("drill: pictures: %w", err)
	}
	for _, r := range results {
		if len(r.Runs) == 0 {
			continue
		}
		p := filepath.Join(imgDir, "drill-"+r.Name+".svg")
		if err := os.WriteFile(p, []byte(Timeline(r.Runs[0])), 0o644); err != nil {
			return fmt.Errorf("drill: picture: %w", err)
		}
		rel, err := filepath.Rel(filepath.Dir(resultsPath), p)
		if err != nil {
			rel = p
		}
		r.Image = filepath.ToSlash(rel)
	}
	if o.raw != "" {
		b, err := json.Marshal(runs)
		if err != nil {
			return fmt.Errorf("drill: raw dump: %w", err)
		}
		if err := os.WriteFile(o.raw, b, 0o644); err != nil {
			return fmt.Errorf("drill: raw dump: %w", err)
		}
	}
	if len(runs) > 0 {
		env.Date = runs[0].Start.UTC().Format(lab.DateFormat)
	}
	if err := lab.ReplaceSection(resultsPath, "drill", Report(env, cfg, results)); err != nil {
		return err
	}
	log.Info("results written", "file", resultsPath, "pictures", imgDir)
	return nil
}

// Drill runs every scenario cfg.Runs times and analyses the runs. A run
// that fails is reported in its scenario and the drill goes on; Ctrl-C ends
// it with ctx's error.
func Drill(ctx context.Context, cfg Config) ([]*ScenarioResult, []*RunData, error) {
	var results []*ScenarioResult
	var all []*RunData
	for _, sc := range cfg.Scenarios {
		r := &ScenarioResult{Name: sc}
		for i := 1; i <= cfg.Runs; i++ {
			d, err := runOnce(ctx, cfg, sc, i)
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("drill: interrupted: %w", ctx.Err())
			}
			if err != nil {
				cfg.Log.Error("run failed", "scenario", sc, "run", i, "err", err)
				r.Failures = append(r.Failures, fmt.Sprintf("run %d: %v", i, firstLine(err.Error())))
				continue
			}
			m := Analyze(d)
			for _, c := range cfg.Contenders {
				x := m[c]
				cfg.Log.Info("result", "scenario", sc, "run", i, "contender", c, "errors", x.Errors,
					"first_ok_after_switch", fmtDur(x.FirstOK), "p99_window", fmtDur(x.P99),
					"old_master_acked_writes", x.OldWritesAcked, "lost_before", x.LostBefore, "lost_after", x.LostAfter)
			}
			r.Runs = append(r.Runs, d)
			r.Metrics = append(r.Metrics, m)
			all = append(all, d)
		}
		results = append(results, r)
	}
	return results, all, nil
}

// fromRaw reads a -raw dump and analyses it as Drill would have; the
// scenarios, contenders and runs come from the dump.
func fromRaw(path string, cfg *Config) ([]*ScenarioResult, []*RunData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("drill: -from-raw: %w", err)
	}
	var runs []*RunData
	if err := json.Unmarshal(b, &runs); err != nil {
		return nil, nil, fmt.Errorf("drill: -from-raw %s: %w", path, err)
	}
	if len(runs) == 0 {
		return nil, nil, fmt.Errorf("drill: -from-raw %s: no runs", path)
	}
	cfg.Contenders = runs[0].Contenders
	cfg.Scenarios, cfg.Runs = nil, 0
	by := map[string]*ScenarioResult{}
	var results []*ScenarioResult
	for _, d := range runs {
		r := by[d.Scenario]
		if r == nil {
			r = &ScenarioResult{Name: d.Scenario}
			by[d.Scenario] = r
			results = append(results, r)
			cfg.Scenarios = append(cfg.Scenarios, d.Scenario)
		}
		r.Runs = append(r.Runs, d)
		r.Metrics = append(r.Metrics, Analyze(d))
		cfg.Runs = max(cfg.Runs, len(r.Runs))
	}
	return results, runs, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// environment describes the machine and the build for the report.
func environment(ctx context.Context, root string, args []string) Env {
	return lab.Environment(ctx, root, "go run ./bench/drill", args)
}
