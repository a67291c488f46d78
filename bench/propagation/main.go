// Command propagation measures how a new master spreads among the Sentinels
// themselves, with no proxy involved: how long after the failover leader
// promotes a replica a majority of the Sentinels report the new master.
//
// sentproxy routes to a master only once a majority of the Sentinels that
// answer agree on it at the newest config-epoch (discovery.decide), so this
// moment, not the first +switch-master, is the earliest it can switch. Each
// run starts a master, replicas and three Sentinels (internal/redisproc),
// subscribes to +promoted-slave and +switch-master on every Sentinel, kills
// the master with SIGKILL and records when each Sentinel announced the
// switch. The leader normally forces its new configuration onto its peers
// at once (a "hello" message right after the promotion), and they switch
// within about 100 ms, before the leader itself, which announces
// +switch-master only when the failover ends. A follower that misses that
// message takes the configuration from the next periodic hello, up to two
// seconds later.
//
// It writes the "propagation" section of bench/RESULTS.md.
//
//	go run ./bench/propagation              # 12 failovers, about 2 minutes
//	go run ./bench/propagation -quick       # 2 failovers; results go to a temp file
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
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
	"github.com/sentproxy/sentproxy/internal/redisproc"
)

func main() { lab.Main("propagation", run) }

// Config is what to measure.
type Config struct {
	Runs      int
	Replicas  int
	DownAfter time.Duration
	// Pollers clients each ask every Sentinel SENTINEL MASTER every Poll,
	// from before the kill to the end of the run: the load sentproxy
	// processes put on the Sentinels while they disagree (transitionInterval
	// in discovery), to see whether it slows the Sentinels themselves.
	Pollers int
	Poll    time.Duration
	Log     *slog.Logger
}

type options struct {
	cfg     Config
	results string
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("propagation", flag.ContinueOnError)
	runs := fs.Int("runs", 12, "SIGKILL failovers to measure, each on a fresh topology")
	replicas := fs.Int("replicas", 2, "replicas of the master (the drill runs 2)")
	downAfter := fs.Duration("down-after", time.Second, "the Sentinels' down-after-milliseconds")
	pollers := fs.Int("pollers", 0, "clients asking every Sentinel SENTINEL MASTER every -poll during each run, as sentproxy processes do while the Sentinels disagree")
	poll := fs.Duration("poll", 20*time.Millisecond, "interval of each poller")
	resultsFile := lab.ResultsFlag(fs, "propagation")
	quick := fs.Bool("quick", false, "smoke run: 2 failovers")
	set, err := lab.ParseFlags(fs, args)
	if err != nil {
		return options{}, err
	}
	o := options{}
	if o.results, err = resultsFile(set, *quick); err != nil {
		return o, err
	}
	if *quick && !set["runs"] {
		*runs = 2
	}
	switch {
	case *runs < 1 || *runs > 1000:
		return o, lab.UsageError{Msg: "-runs must be 1 to 1000"}
	case *replicas < 1 || *replicas > 5:
		return o, lab.UsageError{Msg: "-replicas must be 1 to 5"}
	case *downAfter < 100*time.Millisecond:
		return o, lab.UsageError{Msg: "-down-after must be at least 100ms"}
	case *pollers < 0 || *pollers > 100:
		return o, lab.UsageError{Msg: "-pollers must be 0 to 100"}
	case *poll < time.Millisecond:
		return o, lab.UsageError{Msg: "-poll must be at least 1ms"}
	}
	o.cfg = Config{Runs: *runs, Replicas: *replicas, DownAfter: *downAfter, Pollers: *pollers, Poll: *poll}
	return o, nil
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if _, _, err := redisproc.FindBinaries(); err != nil {
		return err
	}
	root, err := lab.ModuleRoot()
	if err != nil {
		return err
	}
	resultsPath := lab.InRoot(root, o.results)
	cfg := o.cfg
	cfg.Log = log
	env := lab.Environment(ctx, root, "go run ./bench/propagation", args)
	var runs []Run
	for i := range cfg.Runs {
		r, err := failover(ctx, cfg)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		log.Info("failover", "run", i+1, "majority_after_promotion", r.MajorityAfterPromotion(), "majority_after_first_switch", r.MajorityAfterFirstSwitch())
		runs = append(runs, r)
	}
	report := Report(env, cfg, runs)
	if err := lab.ReplaceSection(resultsPath, "propagation", report); err != nil {
		return err
	}
	fmt.Println(report)
	log.Info("results written", "file", resultsPath)
	return nil
}

// event is one message a Sentinel published.
type event struct {
	sentinel int // index into the topology's Sentinels
	channel  string
	at       time.Time
}

// failover runs one SIGKILL failover on a fresh topology and returns when
// every Sentinel has announced the new master.
func failover(ctx context.Context, cfg Config) (Run, error) {
	dir, err := os.MkdirTemp("", "sentproxy-propagation-")
	if err != nil {
		return Run{}, fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	topo, err := redisproc.StartTopology(startCtx, redisproc.TopologyOptions{
		Dir: dir, Replicas: cfg.Replicas, Sentinels: 3, Quorum: 2,
		DownAfter: cfg.DownAfter, FailoverTimeout: 10 * time.Second,
	})
	cancel()
	if err != nil {
		return Run{}, err
	}
	defer topo.Close()

	events := make(chan event, 64)
	var readers sync.WaitGroup
	defer readers.Wait() // after the subscriptions below are closed
	subCtx, stopSubs := context.WithCancel(ctx)
	defer stopSubs()
	for i, addr := range topo.SentinelAddrs() {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
		defer sc.Close()
		sub := sc.Subscribe(subCtx, "+promoted-slave", "+switch-master")
		defer sub.Close()
		// Both subscriptions confirmed before the kill, or an early
		// message could be missed.
		for range 2 {
			if _, err := sub.Receive(subCtx); err != nil {
				return Run{}, fmt.Errorf("subscribe to Sentinel %s: %w", addr, err)
			}
		}
		readers.Go(func() {
			for {
				msg, err := sub.ReceiveMessage(subCtx)
				if err != nil {
					return // closed or cancelled
				}
				select {
				case events <- event{sentinel: i, channel: msg.Channel, at: time.Now()}:
				case <-subCtx.Done():
					return
				}
			}
		})
	}

	for range cfg.Pollers {
		for _, addr := range topo.SentinelAddrs() {
			sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
			defer sc.Close()
			readers.Go(func() {
				tick := time.NewTicker(cfg.Poll)
				defer tick.Stop()
				for {
					select {
					case <-subCtx.Done():
						return
					case <-tick.C:
						sc.Master(subCtx, topo.MasterName) // only the load matters, not the answer
					}
				}
			})
		}
	}

	killedAt := time.Now()
	if err := topo.Master.Kill(); err != nil {
		return Run{}, err
	}
	var got []event
	timeout := time.NewTimer(cfg.DownAfter + 30*time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-events:
			got = append(got, ev)
			if r, err := analyze(killedAt, got, len(topo.Sentinels)); err == nil {
				return r, nil
			}
		case <-timeout.C:
			_, err := analyze(killedAt, got, len(topo.Sentinels))
			return Run{}, fmt.Errorf("no complete failover within %s of the kill: %w", cfg.DownAfter+30*time.Second, err)
		case <-ctx.Done():
			return Run{}, ctx.Err()
		}
	}
}
