package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
	"github.com/sentproxy/sentproxy/internal/redisproc"
)

// Client settings shared by every contender. MaxRetries is -1 because a
// retried INCR whose first attempt reached Redis would be applied twice,
// and because a hidden retry would hide exactly the errors the drill counts.
const (
	clientReadTimeout = 10 * time.Second
	clientDialTimeout = 5 * time.Second
	// maxLag bounds how far a client's schedule may fall behind: after a
	// stall, slots more than maxLag old are skipped (and counted), the rest
	// are sent back to back with their latency measured from their slot. A
	// 10 s hang thus costs one 10 s latency plus maxLag of catch-up, not a
	// burst of 500 requests.
	maxLag = time.Second
	// contDelay is how long after +switch-master the sigstop scenario
	// resumes the old master.
	contDelay = time.Second
	// windowAfterSwitch ends the failover window for the p99 column.
	windowAfterSwitch = 2 * time.Second
	masterName        = "mymaster"
)

// Config is one drill invocation.
type Config struct {
	Scenarios  []string
	Contenders []string
	Clients    int
	Rate       float64
	DownAfter  time.Duration
	Runs       int
	Warmup     time.Duration // workload before the fault
	Tail       time.Duration // workload after every contender recovered
	Deadline   time.Duration // longest time from the fault to the end of the workload
	Bin        string        // sentproxy binary
	Dir        string        // scratch directory for process dirs and logs
	Log        *slog.Logger
}

// Record is one request as a client saw it.
type Record struct {
	Contender string    `json:"contender"`
	Client    int       `json:"client"`
	Op        string    `json:"op"`
	Sched     time.Time `json:"sched"` // when the schedule wanted it sent; latency starts here
	Sent      time.Time `json:"sent"`  // when it was actually handed to the client
	Done      time.Time `json:"done"`
	Err       string    `json:"err,omitempty"`
	Value     int64     `json:"value,omitempty"` // INCR's reply
}

// Skip is a schedule slot the client skipped after a stall (see maxLag).
// Its request would have waited at least from Sched until Until.
type Skip struct {
	Contender string    `json:"contender"`
	Client    int       `json:"client"`
	Sched     time.Time `json:"sched"`
	Until     time.Time `json:"until"`
}

// MonitorLine is one command the old master's MONITOR reported with a drill
// key.
type MonitorLine struct {
	At        time.Time `json:"at"`
	Contender string    `json:"contender"`
	Client    int       `json:"client"`
	Op        string    `json:"op"`
	Src       string    `json:"src"`
}

// RunData is everything one scenario run recorded; the analysis works on
// this alone, so it can be tested with synthetic data.
type RunData struct {
	Scenario   string                   `json:"scenario"`
	Run        int                      `json:"run"`
	Contenders []string                 `json:"contenders"`
	Start      time.Time                `json:"start"`
	Fault      time.Time                `json:"fault"`
	Switch     time.Time                `json:"switch,omitzero"`
	Cont       time.Time                `json:"cont,omitzero"`
	End        time.Time                `json:"end"`
	OldMaster  string                   `json:"old_master"`
	NewMaster  string                   `json:"new_master,omitempty"`
	Records    []Record                 `json:"records"`
	Monitor    []MonitorLine            `json:"monitor"`
	Final      map[string]map[int]int64 `json:"final"` // contender → client → counter on the final master
	Skipped    []Skip                   `json:"skipped"`
	Notes      []string                 `json:"notes,omitempty"`
}

func counterKey(contender string, client int) string {
	return fmt.Sprintf("drill:%s:%d:ctr", contender, client)
}

func valueKey(contender string, client int) string {
	return fmt.Sprintf("drill:%s:%d:val", contender, client)
}

// parseKey returns the contender and client of a drill key.
func parseKey(key string) (string, int, bool) {
	parts := strings.Split(key, ":")
	if len(parts) != 4 || parts[0] != "drill" {
		return "", 0, false
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		return "", 0, false
	}
	return parts[1], n, true
}

func clientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:            addr,
		PoolSize:        1,
		MaxRetries:      -1,
		DialTimeout:     clientDialTimeout,
		ReadTimeout:     clientReadTimeout,
		WriteTimeout:    clientReadTimeout,
		DisableIdentity: true,
		// The maintenance handshake is a Redis Cloud feature; leaving it on
		// would add a command every proxy must pass on each reconnect.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// runOnce runs one scenario once on a fresh topology.
func runOnce(ctx context.Context, cfg Config, scenario string, run int) (_ *RunData, err error) {
	log := cfg.Log.With("scenario", scenario, "run", run)
	dir, err := os.MkdirTemp(cfg.Dir, fmt.Sprintf("%s-%d-", scenario, run))
	if err != nil {
		return nil, fmt.Errorf("drill: scratch dir: %w", err)
	}
	topo, err := redisproc.StartTopology(ctx, redisproc.TopologyOptions{
		Dir: dir, MasterName: masterName, Replicas: 2, Sentinels: 3, Quorum: 2,
		DownAfter: cfg.DownAfter, FailoverTimeout: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("drill: start topology: %w", err)
	}
	defer func() { err = errors.Join(err, topo.Close()) }()
	log.Info("topology up", "master", topo.Master.Addr, "sentinels", strings.Join(topo.SentinelAddrs(), ","))

	d := &RunData{
		Scenario: scenario, Run: run, Contenders: cfg.Contenders,
		OldMaster: topo.Master.Addr,
		Final:     map[string]map[int]int64{},
	}
	nodes := []string{topo.Master.Addr}
	for _, r := range topo.Replicas {
		nodes = append(nodes, r.Addr)
	}

	// Background watchers end with bgCtx; the deferred cancel and Wait run
	// before topo.Close (defers run in reverse), so none outlives the run.
	bgCtx, bgCancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer bgCancel()

	sw := &switchWatch{got: make(chan struct{})}
	for _, s := range topo.Sentinels {
		bg.Add(1)
		go func() { defer bg.Done(); sw.watch(bgCtx, s.Addr) }()
	}
	mon := &monitor{addr: topo.Master.Addr, exclude: nodes}
	bg.Add(1)
	go func() { defer bg.Done(); mon.run(bgCtx) }()
	if err := mon.waitStarted(ctx, 5*time.Second); err != nil {
		return nil, err
	}

	targets, closeTargets, err := startContenders(ctx, cfg, dir, topo, nodes, log)
	defer func() { err = errors.Join(err, closeTargets()) }()
	if err != nil {
		return nil, err
	}

	w := newWorkload(cfg, targets)
	d.Start = time.Now()
	w.start(ctx)
	log.Info("workload started", "contenders", strings.Join(cfg.Contenders, ","), "clients", cfg.Clients, "rate", cfg.Rate)
	if err := sleepCtx(ctx, cfg.Warmup); err != nil {
		w.stop()
		return nil, err
	}

	d.Fault = time.Now()
	log.Info("injecting fault")
	if err := inject(ctx, scenario, topo); err != nil {
		w.stop()
		return nil, err
	}
	deadline := d.Fault.Add(cfg.Deadline)
	expectSwitch := scenario != "sentinel-down"
	if scenario == "sigstop" {
		// The old master must come back while it still believes it is the
		// master: that is when a role-checking proxy may route to it.
		select {
		case <-sw.got:
		case <-time.After(time.Until(deadline)):
		case <-ctx.Done():
		}
		if t := sw.first(); !t.IsZero() {
			_ = sleepCtx(ctx, contDelay)
		}
		if err := topo.Master.Cont(); err != nil {
			log.Warn("SIGCONT failed", "err", err)
		}
		d.Cont = time.Now()
		log.Info("old master resumed (SIGCONT)")
	}

	// Run until every contender has succeeded after the switch (and after
	// the SIGCONT) and the old master no longer claims to be one, then Tail
	// more: a contender that still writes to the old master only learns
	// where it went wrong after that demotion. Without a switch, run long
	// enough that a spurious failover would have shown.
	endBy := deadline
	if !expectSwitch {
		endBy = d.Fault.Add(2*cfg.DownAfter + cfg.Tail + 2*time.Second)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	recovered := time.Time{}
	for recovered.IsZero() && time.Now().Before(endBy) && ctx.Err() == nil {
		<-tick.C
		if !expectSwitch {
			continue
		}
		t := sw.first()
		if t.IsZero() {
			continue
		}
		after := t
		if d.Cont.After(after) {
			after = d.Cont
		}
		if w.allSucceededAfter(after) && !stillMaster(ctx, d.OldMaster) {
			recovered = time.Now()
		}
	}
	tick.Stop()
	if !recovered.IsZero() {
		_ = sleepCtx(ctx, cfg.Tail)
	} else if expectSwitch {
		d.Notes = append(d.Notes, fmt.Sprintf("not every contender recovered within the %v deadline", cfg.Deadline))
		log.Warn("deadline reached before every contender recovered")
	}
	d.End = time.Now()
	if !w.stop() {
		d.Notes = append(d.Notes, "some clients were still blocked when the workload stopped")
	}
	log.Info("workload stopped", "requests", w.count())
	d.Switch = sw.first()
	d.NewMaster = sw.addr()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	final, err := readFinal(ctx, topo, cfg)
	if err != nil {
		d.Notes = append(d.Notes, "final counters unavailable: "+err.Error())
		log.Warn("final counters unavailable", "err", err)
	}
	d.Final = final
	bgCancel()
	bg.Wait()
	d.Records = w.records()
	d.Skipped = w.skipped()
	d.Monitor = mon.lines()
	if mon.reconnects > 0 { // read after bg.Wait: no lock needed
		d.Notes = append(d.Notes, fmt.Sprintf("MONITOR on the old master was reconnected %d time(s) (Sentinel kills normal clients of a master it demotes); commands in those gaps are not counted", mon.reconnects))
	}
	return d, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func inject(ctx context.Context, scenario string, topo *redisproc.Topology) error {
	var err error
	switch scenario {
	case "sigkill":
		err = topo.Master.Kill()
	case "sigstop":
		err = topo.Master.Stop()
	case "sentinel-failover":
		err = topo.Failover(ctx)
	case "sentinel-down":
		// The first Sentinel is the first seed of sentproxy and go-redis
		// alike, the one they most likely talk to.
		err = topo.Sentinels[0].Kill()
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		return fmt.Errorf("drill: inject %s: %w", scenario, err)
	}
	return nil
}

// target is one contender: a way to make its single-connection clients.
type target struct {
	name      string
	newClient func() *redis.Client
}

func startContenders(ctx context.Context, cfg Config, dir string, topo *redisproc.Topology, nodes []string, log *slog.Logger) ([]target, func() error, error) {
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	var targets []target
	for _, c := range cfg.Contenders {
		switch c {
		case "tcp", "epoll", "resp":
			sp, err := lab.StartSentproxy(ctx, lab.ProxyOptions{Bin: cfg.Bin, Dir: dir, Mode: c, Sentinels: topo.SentinelAddrs(), MasterName: masterName})
			if err != nil {
				return nil, closeAll, fmt.Errorf("drill: start sentproxy %s: %w", c, err)
			}
			closers = append(closers, sp.Close)
			addr := sp.Addr
			targets = append(targets, target{name: c, newClient: func() *redis.Client { return redis.NewClient(clientOptions(addr)) }})
			log.Info("sentproxy up", "mode", c, "addr", addr, "pid", sp.PID())
		case "haproxy":
			hp, err := lab.StartHAProxy(ctx, lab.HAProxyOptions{Dir: dir, Servers: nodes, RoleCheck: true})
			if err != nil {
				return nil, closeAll, fmt.Errorf("drill: start haproxy: %w", err)
			}
			closers = append(closers, hp.Close)
			if err := waitRoutesToMaster(ctx, hp.Addr); err != nil {
				return nil, closeAll, fmt.Errorf("drill: haproxy: %w", err)
			}
			addr := hp.Addr
			targets = append(targets, target{name: c, newClient: func() *redis.Client { return redis.NewClient(clientOptions(addr)) }})
			log.Info("haproxy up", "addr", addr, "pid", hp.PID())
		case "goredis":
			sentinels := topo.SentinelAddrs()
			targets = append(targets, target{name: c, newClient: func() *redis.Client {
				return redis.NewFailoverClient(&redis.FailoverOptions{
					MasterName:      masterName,
					SentinelAddrs:   sentinels,
					PoolSize:        1,
					MaxRetries:      -1,
					DialTimeout:     clientDialTimeout,
					ReadTimeout:     clientReadTimeout,
					WriteTimeout:    clientReadTimeout,
					DisableIdentity: true,
				})
			}})
		default:
			return nil, closeAll, fmt.Errorf("drill: unknown contender %q", c)
		}
	}
	return targets, closeAll, nil
}

// waitRoutesToMaster polls until HAProxy has marked the replicas down, so
// the warm-up does not count the -READONLY errors of its first second
// (HAProxy starts every server as up until its first check).
func waitRoutesToMaster(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	good := 0
	var last error
	for good < 9 {
		c := redis.NewClient(clientOptions(addr))
		role, err := c.Do(ctx, "ROLE").Slice()
		c.Close()
		switch {
		case err != nil:
			good, last = 0, err
		case len(role) > 0 && role[0] == "master":
			good++
		default:
			good, last = 0, fmt.Errorf("routed to a %v", role[0])
		}
		if good > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for every connection to reach the master: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// stillMaster reports whether the server at addr answers ROLE with
// "master". A server that does not answer (killed, stopped) is not one.
func stillMaster(ctx context.Context, addr string) bool {
	o := clientOptions(addr)
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	c := redis.NewClient(o)
	defer c.Close()
	role, err := c.Do(ctx, "ROLE").Slice()
	return err == nil && len(role) > 0 && role[0] == "master"
}

// readFinal reads every counter from the master the Sentinels agree on.
func readFinal(ctx context.Context, topo *redisproc.Topology, cfg Config) (map[string]map[int]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var addr string
	var err error
	for {
		addr, err = topo.CurrentMaster(ctx)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("final master: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	c := redis.NewClient(clientOptions(addr))
	defer c.Close()
	final := map[string]map[int]int64{}
	for _, name := range cfg.Contenders {
		final[name] = map[int]int64{}
		for i := range cfg.Clients {
			v, err := c.Get(ctx, counterKey(name, i)).Int64()
			if errors.Is(err, redis.Nil) {
				v, err = 0, nil
			}
			if err != nil {
				return nil, fmt.Errorf("final counter %s on %s: %w", counterKey(name, i), addr, err)
			}
			final[name][i] = v
		}
	}
	return final, nil
}

// switchWatch subscribes to +switch-master on every Sentinel and keeps the
// earliest announcement.
type switchWatch struct {
	mu      sync.Mutex
	at      time.Time
	newAddr string
	got     chan struct{}
}

func (s *switchWatch) first() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at
}

func (s *switchWatch) addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newAddr
}

func (s *switchWatch) note(at time.Time, payload string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() {
		return
	}
	s.at = at
	if f := strings.Fields(payload); len(f) == 5 {
		s.newAddr = net.JoinHostPort(f[3], f[4])
	}
	close(s.got)
}

// watch runs until ctx ends, resubscribing when the Sentinel goes away (the
// sentinel-down scenario kills one).
func (s *switchWatch) watch(ctx context.Context, addr string) {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	ps := c.Subscribe(ctx, "+switch-master")
	// go-redis does not watch ctx while a subscriber waits for a message;
	// closing the PubSub is what ends that read.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	defer ps.Close()
	for ctx.Err() == nil {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			_ = sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		if strings.HasPrefix(msg.Payload, masterName+" ") {
			s.note(time.Now(), msg.Payload)
		}
	}
}

// monitor keeps a MONITOR connection open on the old master and collects
// every command on a drill key. Redis stamps each line with its own clock,
// which on one machine is the drill's clock.
type monitor struct {
	addr    string
	exclude []string // data nodes: a replica's link to its master is not a client

	mu         sync.Mutex
	out        []MonitorLine
	started    atomic.Bool
	reconnects int
}

func (m *monitor) waitStarted(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !m.started.Load() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("drill: MONITOR on %s did not start: %w", m.addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (m *monitor) lines() []MonitorLine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out
}

func (m *monitor) run(ctx context.Context) {
	for ctx.Err() == nil {
		_ = m.session(ctx)
		_ = sleepCtx(ctx, 100*time.Millisecond)
	}
}

func (m *monitor) session(ctx context.Context) error {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	conn, err := d.DialContext(dctx, "tcp", m.addr)
	cancel()
	if err != nil {
		return err
	}
	// Closing the conn is what ends a read blocked on a stopped master.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		return err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "+OK" {
			if m.started.Swap(true) {
				m.mu.Lock()
				m.reconnects++
				m.mu.Unlock()
			}
			continue
		}
		if ml, ok := parseMonitorLine(line); ok && !containsStr(m.exclude, ml.Src) {
			m.mu.Lock()
			m.out = append(m.out, ml)
			m.mu.Unlock()
		}
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseMonitorLine reads `+1700000000.123456 [0 127.0.0.1:5000] "incr" "key"`.
func parseMonitorLine(line string) (MonitorLine, bool) {
	line, ok := strings.CutPrefix(line, "+")
	if !ok {
		return MonitorLine{}, false
	}
	ts, rest, ok := strings.Cut(line, " [")
	if !ok {
		return MonitorLine{}, false
	}
	src, rest, ok := strings.Cut(rest, "] ")
	if !ok {
		return MonitorLine{}, false
	}
	if _, a, ok := strings.Cut(src, " "); ok {
		src = a
	}
	sec, frac, _ := strings.Cut(ts, ".")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	us, err2 := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	if err1 != nil || err2 != nil {
		return MonitorLine{}, false
	}
	args := strings.SplitN(rest, " ", 3)
	if len(args) < 2 {
		return MonitorLine{}, false
	}
	op := strings.ToUpper(strings.Trim(args[0], `"`))
	contender, client, ok := parseKey(strings.Trim(args[1], `"`))
	if !ok {
		return MonitorLine{}, false
	}
	return MonitorLine{At: time.Unix(s, us*1000), Contender: contender, Client: client, Op: op, Src: src}, true
}

// workload drives every client of every contender on its own schedule.
type workload struct {
	cfg     Config
	targets []target
	quit    chan struct{}
	wg      sync.WaitGroup
	clients []*clientState
}

type clientState struct {
	contender string
	id        int
	c         *redis.Client
	recs      []Record // owned by the client's goroutine until wg.Wait
	skips     []Skip
	lastOK    atomic.Int64 // unix nanos of the latest success
}

func newWorkload(cfg Config, targets []target) *workload {
	w := &workload{cfg: cfg, targets: targets, quit: make(chan struct{})}
	for _, t := range targets {
		for i := range cfg.Clients {
			w.clients = append(w.clients, &clientState{contender: t.name, id: i, c: t.newClient()})
		}
	}
	return w
}

func (w *workload) start(ctx context.Context) {
	interval := time.Duration(float64(time.Second) / w.cfg.Rate)
	t0 := time.Now()
	for i, cs := range w.clients {
		// Spread the clients over one interval so that the load is even.
		first := t0.Add(interval * time.Duration(i) / time.Duration(len(w.clients)))
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			cs.loop(ctx, w.quit, first, interval)
		}()
	}
}

// stop ends the schedules, waits for requests in flight (bounded by the
// clients' read timeout) and closes the clients. It reports whether every
// client ended in time.
func (w *workload) stop() bool {
	close(w.quit)
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	ok := true
	select {
	case <-done:
	case <-time.After(clientReadTimeout + clientDialTimeout + 2*time.Second):
		ok = false
	}
	for _, cs := range w.clients {
		_ = cs.c.Close()
	}
	<-done
	return ok
}

func (w *workload) allSucceededAfter(t time.Time) bool {
	for _, tg := range w.targets {
		ok := false
		for _, cs := range w.clients {
			if cs.contender == tg.name && cs.lastOK.Load() > t.UnixNano() {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (w *workload) count() int {
	n := 0
	for _, cs := range w.clients {
		n += len(cs.recs)
	}
	return n
}

func (w *workload) records() []Record {
	var out []Record
	for _, cs := range w.clients {
		out = append(out, cs.recs...)
	}
	return out
}

func (w *workload) skipped() []Skip {
	var out []Skip
	for _, cs := range w.clients {
		out = append(out, cs.skips...)
	}
	return out
}

var ops = [...]string{"INCR", "SET", "GET"}

func (cs *clientState) loop(ctx context.Context, quit <-chan struct{}, next time.Time, interval time.Duration) {
	ctr, key := counterKey(cs.contender, cs.id), valueKey(cs.contender, cs.id)
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	for seq := 0; ; seq++ {
		if wait := time.Until(next); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-quit:
				return
			case <-ctx.Done():
				return
			}
		} else {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			default:
			}
		}
		r := Record{Contender: cs.contender, Client: cs.id, Op: ops[seq%len(ops)], Sched: next, Sent: time.Now()}
		var err error
		switch r.Op {
		case "INCR":
			r.Value, err = cs.c.Incr(ctx, ctr).Result()
		case "SET":
			err = cs.c.Set(ctx, key, strconv.Itoa(seq), 0).Err()
		case "GET":
			err = cs.c.Get(ctx, key).Err()
			if errors.Is(err, redis.Nil) {
				err = nil
			}
		}
		r.Done = time.Now()
		if ctx.Err() != nil {
			// Ctrl-C: the error is ours, not the contender's.
			return
		}
		if err != nil {
			r.Err = err.Error()
		} else {
			cs.lastOK.Store(r.Done.UnixNano())
		}
		cs.recs = append(cs.recs, r)
		next = next.Add(interval)
		if behind := r.Done.Sub(next); behind > maxLag {
			// A skipped slot's request would have waited at least until now;
			// that lower bound keeps the stall in the latency figures.
			n := int((behind-maxLag)/interval) + 1
			for range n {
				cs.skips = append(cs.skips, Skip{Contender: cs.contender, Client: cs.id, Sched: next, Until: r.Done})
				next = next.Add(interval)
			}
		}
	}
}

// scratchDir returns a directory for process dirs under the system temp.
func scratchDir() (string, error) {
	d, err := os.MkdirTemp("", "sentproxy-drill-")
	if err != nil {
		return "", fmt.Errorf("drill: scratch dir: %w", err)
	}
	return filepath.Clean(d), nil
}
