package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/discovery"
	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/proxy"
)

// DemoCmd is `sentproxy demo`: the first thing a newcomer runs. Everything
// it starts lives on loopback ports chosen at run time and is stopped, by
// PID, when it ends or on Ctrl-C.
type DemoCmd struct {
	DownAfter time.Duration `name:"down-after" env:"SENTPROXY_DEMO_DOWN_AFTER" default:"2s" help:"The Sentinels' down-after-milliseconds: how long the killed master must be silent before the Sentinels fail over."`
	Keep      bool          `name:"keep" env:"SENTPROXY_DEMO_KEEP" help:"Keep the processes' directory (configs and logs) instead of removing it."`
}

// Run starts the topology, proxies a writer through sentproxy, kills the
// master and prints the cutover as it happens.
func (c *DemoCmd) Run(g *globals) error {
	if _, _, err := redisproc.FindBinaries(); err != nil {
		return fmt.Errorf("the demo runs a real master, replica and Sentinels from the local Redis binaries: %w", err)
	}
	if c.DownAfter < 100*time.Millisecond {
		return usageError{errors.New("--down-after must be at least 100ms")}
	}
	ctx, stop := signalContext()
	defer stop()
	out := g.stdout
	t0 := time.Now()
	sayAt := func(at time.Time, format string, args ...any) {
		fmt.Fprintf(out, "%8.3fs  %s\n", at.Sub(t0).Seconds(), fmt.Sprintf(format, args...))
	}
	say := func(format string, args ...any) { sayAt(time.Now(), format, args...) }

	dir, err := os.MkdirTemp("", "sentproxy-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if c.Keep {
		defer fmt.Fprintf(out, "configs and logs kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	say("starting a master, a replica and three Sentinels on loopback (down-after %s)", c.DownAfter)
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	topo, err := redisproc.StartTopology(startCtx, redisproc.TopologyOptions{
		Dir: dir, Replicas: 1, Sentinels: 3, Quorum: 2,
		DownAfter: c.DownAfter, FailoverTimeout: 10 * time.Second,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("demo: start Redis: %w", err)
	}
	defer func() {
		topo.Close()
		say("stopped every process the demo started")
	}()
	say("master %s (pid %d), replica %s, Sentinels %s", topo.Master.Addr, topo.Master.PID(),
		topo.Replicas[0].Addr, strings.Join(topo.SentinelAddrs(), " "))

	events := make(chan demoEvent, 16)
	eventsDone := make(chan struct{})
	stopTimeline := sync.OnceFunc(func() { close(eventsDone) })
	defer stopTimeline()
	// post never blocks its caller (the proxy's update loop among them)
	// once the timeline has stopped reading; it reports whether the
	// timeline took the event.
	post := func(ev demoEvent) bool {
		select {
		case events <- ev:
			return true
		case <-eventsDone:
			return false
		}
	}
	a, err := newApp(appConfig{
		routes:        []route{{name: topo.MasterName, listen: "127.0.0.1:0"}},
		discovery:     discovery.Config{Sentinels: topo.SentinelAddrs()},
		proxy:         proxy.Config{HoldTimeout: 30 * time.Second},
		webAddr:       "127.0.0.1:0",
		telemetryPath: "/metrics",
		drainTimeout:  time.Second,
		logger:        slog.New(timelineLog{next: g.logger.Handler(), post: post}),
		onRoute: func(_, addr string) {
			if addr == "" {
				post(demoEvent{at: time.Now(), msg: "sentproxy: no verified master; new commands are held"})
			} else {
				post(demoEvent{at: time.Now(), msg: "sentproxy: routing to " + addr, routed: addr})
			}
		},
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	proxyAddr := a.routes[0].ln.Addr().String()
	say("sentproxy listening on %s, metrics on http://%s/metrics", proxyAddr, a.webLn.Addr())
	appCtx, stopApp := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() { appDone <- a.run(appCtx) }()
	defer func() {
		// The timeline first, so that what the app logs while it stops
		// goes to stderr instead of waiting for a reader that has gone.
		stopTimeline()
		stopApp()
		<-appDone
	}()

	// Watch the Sentinels' +switch-master directly, to show when Sentinel
	// itself announced the new master and measure the cutover from it.
	for _, addr := range topo.SentinelAddrs() {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
		defer sc.Close()
		sub := sc.Subscribe(ctx, "+switch-master")
		defer sub.Close()
		go func() {
			for msg := range sub.Channel() {
				post(demoEvent{at: time.Now(), msg: "Sentinel " + addr + " published +switch-master " + msg.Payload, switchMsg: true})
			}
		}()
	}

	res := runDemoWriter(ctx, proxyAddr, topo, events, sayAt)
	if ctx.Err() != nil {
		say("interrupted")
		return nil
	}
	if res.err != nil {
		return res.err
	}
	fmt.Fprintf(out, "\nSummary: %d INCRs acknowledged, %d failed; writes were blocked for %s.\n"+
		"First success on the new master: %s after the first +switch-master, %s after sentproxy switched to it.\n",
		res.ok, res.failed, res.gap.Round(time.Millisecond),
		res.afterSwitchMsg.Round(time.Microsecond), res.afterSwitch.Round(time.Microsecond))
	fmt.Fprintln(out, "The app only ever knew one address:", proxyAddr)
	return nil
}

type demoResult struct {
	ok, failed  int
	gap         time.Duration // from the last success before the kill to the first after
	afterSwitch time.Duration // from the proxy's switch to the first success on the new master
	// afterSwitchMsg is from the first +switch-master any Sentinel
	// published to the first success on the new master.
	afterSwitchMsg time.Duration
	err            error
}

type demoEvent struct {
	at  time.Time
	msg string
	// routed is the address sentproxy switched to, for switch events.
	routed string
	// switchMsg marks a Sentinel's +switch-master.
	switchMsg bool
}

type demoWrite struct {
	start, end time.Time
	value      int64
	err        error
}

// runDemoWriter INCRs a counter through the proxy every 10ms, kills the
// master after a steady start, and reports what the writer saw. The writer
// runs on its own goroutine: an INCR held through the failover must not
// delay the timeline.
func runDemoWriter(ctx context.Context, proxyAddr string, topo *redisproc.Topology, events <-chan demoEvent, say func(time.Time, string, ...any)) demoResult {
	client := redis.NewClient(&redis.Options{Addr: proxyAddr, MaxRetries: -1, ReadTimeout: 30 * time.Second, PoolSize: 1})
	defer client.Close()
	wctx, stopWriter := context.WithCancel(ctx)
	writes := make(chan demoWrite)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for wctx.Err() == nil {
			start := time.Now()
			v, err := client.Incr(wctx, "demo:counter").Result()
			select {
			case writes <- demoWrite{start: start, end: time.Now(), value: v, err: err}:
			case <-wctx.Done():
				return
			}
			select {
			case <-time.After(10 * time.Millisecond): // the writer's pace
			case <-wctx.Done():
				return
			}
		}
	}()
	defer func() {
		stopWriter()
		<-writerDone
	}()

	var (
		res        demoResult
		lastOK     time.Time
		killedAt   time.Time
		switchedAt time.Time
		switchMsg  time.Time
		failing    bool
		oldMaster  = topo.Master
		timeout    = time.After(90 * time.Second)
		finish     <-chan time.Time
	)
	for {
		select {
		case <-ctx.Done():
			return res
		case <-timeout:
			res.err = errors.New("demo: no failover within 90s; see the Sentinel logs (run with --keep)")
			return res
		case <-finish:
			return res
		case ev := <-events:
			if ev.routed != "" && !killedAt.IsZero() && switchedAt.IsZero() {
				switchedAt = ev.at
			}
			if ev.switchMsg && switchMsg.IsZero() {
				switchMsg = ev.at
			}
			say(ev.at, "%s", ev.msg)
		case w := <-writes:
			if w.err != nil {
				res.failed++
				if !failing {
					say(w.end, "writer: INCR failed after %s: %v", w.end.Sub(w.start).Round(time.Millisecond), w.err)
				}
				failing = true
				continue
			}
			res.ok++
			switch {
			case lastOK.IsZero():
				say(w.end, "writer: INCR ok (counter=%d); writing every 10ms", w.value)
			case !killedAt.IsZero() && w.start.Before(switchedAt) || failing:
				say(w.end, "writer: INCR ok (counter=%d) after waiting %s", w.value, w.end.Sub(w.start).Round(time.Millisecond))
			}
			failing = false
			if !killedAt.IsZero() && res.gap == 0 && !switchedAt.IsZero() {
				res.gap = w.end.Sub(lastOK)
				res.afterSwitch = w.end.Sub(switchedAt)
				res.afterSwitchMsg = w.end.Sub(switchMsg)
				say(w.end, "writer: first INCR answered by the new master, %s after sentproxy switched", res.afterSwitch.Round(time.Microsecond))
				// Let it run a little longer on the new master, then stop.
				finish = time.After(time.Second)
			}
			lastOK = w.end
			if killedAt.IsZero() && res.ok >= 150 {
				say(time.Now(), "killing the master %s (pid %d) with SIGKILL", oldMaster.Addr, oldMaster.PID())
				if err := oldMaster.Kill(); err != nil {
					res.err = fmt.Errorf("demo: kill master: %w", err)
					return res
				}
				killedAt = time.Now()
			}
		}
	}
}

// timelineLog puts sentproxy's own log records into the demo's timeline,
// in order with the events around them and timed like them, instead of as
// raw lines on stderr between the timeline's. It keeps the level that
// --log.level set; once the timeline has ended, records go to next.
type timelineLog struct {
	next  slog.Handler
	attrs []slog.Attr
	group string // prefix of the keys of attributes added from here on
	post  func(demoEvent) bool
}

func (h timelineLog) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h timelineLog) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "sentproxy log %s: %s", r.Level, r.Message)
	add := func(a slog.Attr) bool {
		v := a.Value.Resolve().String()
		if v == "" || strings.ContainsAny(v, " =\"") {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool {
		a.Key = h.group + a.Key
		return add(a)
	})
	if h.post(demoEvent{at: r.Time, msg: b.String()}) {
		return nil
	}
	return h.next.WithAttrs(h.attrs).Handle(ctx, r)
}

func (h timelineLog) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], as...)
	for i := len(h.attrs) - len(as); i < len(h.attrs); i++ {
		h.attrs[i].Key = h.group + h.attrs[i].Key
	}
	return h
}

func (h timelineLog) WithGroup(name string) slog.Handler {
	if name != "" {
		h.group += name + "."
	}
	return h
}
