package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/discovery"
	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testutil"
	"github.com/sentproxy/sentproxy/proxy"
)

// harness runs the whole sentproxy (the same app the CLI runs) in front of
// a real topology.
type harness struct {
	t      *testing.T
	topo   *redisproc.Topology
	app    *app
	addr   string // proxy listen address
	web    string // HTTP endpoints
	logBuf *testutil.Buffer

	mu     sync.Mutex
	events []routeEvent
}

// routeEvent is one change of the routed master, recorded after it took effect.
type routeEvent struct {
	addr string
	at   time.Time
}

func startHarness(t *testing.T, topo *redisproc.Topology, mutate func(*appConfig)) *harness {
	t.Helper()
	h := &harness{t: t, topo: topo, logBuf: &testutil.Buffer{}}
	// As many event loops as `sentproxy run` would run here by default
	// (two where both can hold), so that failovers are tried on them.
	plan, err := planProcs(eventLoopsAuto, 1, startProcs, envPinsProcs(), cpuQuota())
	if err != nil {
		t.Fatal(err)
	}
	cfg := appConfig{
		routes:    []route{{name: topo.MasterName, listen: "127.0.0.1:0"}},
		discovery: discovery.Config{Sentinels: topo.SentinelAddrs(), Timeout: 500 * time.Millisecond},
		// SENTPROXY_PROXY_ENGINE, as sentproxy itself reads it, picks the
		// tcp-mode engine (scripts/test.sh runs these tests on both).
		proxy:         proxy.Config{HoldTimeout: 20 * time.Second, Engine: os.Getenv("SENTPROXY_PROXY_ENGINE"), EventLoops: plan.loops},
		webAddr:       "127.0.0.1:0",
		telemetryPath: "/metrics",
		drainTimeout:  2 * time.Second,
		logger:        slog.New(slog.NewTextHandler(h.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		onRoute: func(_, addr string) {
			h.mu.Lock()
			h.events = append(h.events, routeEvent{addr: addr, at: time.Now()})
			h.mu.Unlock()
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := newApp(cfg)
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	h.app = a
	h.addr = a.routes[0].ln.Addr().String()
	h.web = a.webLn.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("app.run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("app did not stop within 15s")
		}
		if t.Failed() {
			t.Logf("sentproxy log:\n%s", tail(h.logBuf.String(), 400))
		}
	})
	return h
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// routed returns what the proxy routes to now.
func (h *harness) routed() string { return h.app.routes[0].server.Master() }

// waitRouted polls until the proxy routes to want.
func (h *harness) waitRouted(want string, timeout time.Duration) {
	h.t.Helper()
	eventually(h.t, "proxy routes to "+want, timeout, func() bool { return h.routed() == want })
}

// cutTime is when the proxy stopped routing to addr after having routed to
// it (a switch or a withdrawal); zero if it never did.
func (h *harness) cutTime(addr string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	routed := false
	for _, e := range h.events {
		if e.addr == addr {
			routed = true
		} else if routed {
			return e.at
		}
	}
	return time.Time{}
}

// routedAt is when the proxy first routed to addr; zero if it never did.
func (h *harness) routedAt(addr string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.addr == addr {
			return e.at
		}
	}
	return time.Time{}
}

// routedAfter reports whether addr was routed to again at or after t.
func (h *harness) routedAfter(addr string, t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.addr == addr && !e.at.Before(t) {
			return true
		}
	}
	return false
}

func (h *harness) httpGet(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get("http://" + h.web + path)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample whose line starts with prefix.
func (h *harness) metric(prefix string) float64 {
	h.t.Helper()
	_, body := h.httpGet("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, prefix+" "), 64)
			if err != nil {
				h.t.Fatalf("metric %s: %v", prefix, err)
			}
			return v
		}
	}
	h.t.Fatalf("metric %s not exported", prefix)
	return 0
}

var eventually = testutil.Eventually

// writers drive a SET workload through the proxy with plain, Sentinel-
// unaware go-redis clients, recording when each command was started and
// how it ended.
type writers struct {
	client *redis.Client
	seq    atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup

	mu   sync.Mutex
	recs map[int64]writeRec
}

type writeRec struct {
	start, end time.Time
	err        error
}

func startWriters(t *testing.T, addr string, n int) *writers {
	t.Helper()
	w := &writers{
		client: redis.NewClient(&redis.Options{
			Addr:         addr,
			PoolSize:     n,
			MaxRetries:   -1, // count every error the app would see
			DialTimeout:  2 * time.Second,
			ReadTimeout:  15 * time.Second, // the proxy holds commands through a failover
			WriteTimeout: 2 * time.Second,
		}),
		stop: make(chan struct{}),
		recs: map[int64]writeRec{},
	}
	for range n {
		w.wg.Add(1)
		go w.loop()
	}
	t.Cleanup(w.close)
	return w
}

func (w *writers) loop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		seq := w.seq.Add(1)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := w.client.Set(ctx, "w:"+strconv.FormatInt(seq, 10), seq, 0).Err()
		cancel()
		w.mu.Lock()
		w.recs[seq] = writeRec{start: start, end: time.Now(), err: err}
		w.mu.Unlock()
		// Pacing, not synchronisation: leave CPU to the Sentinels on a
		// two-core machine so their timing stays realistic.
		time.Sleep(2 * time.Millisecond)
	}
}

func (w *writers) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
	w.client.Close()
}

// successesAfter counts writes started after t that succeeded.
func (w *writers) successesAfter(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.recs {
		if r.err == nil && r.start.After(t) {
			n++
		}
	}
	return n
}

// firstSuccessAfter returns the end of the first successful write started
// after t.
func (w *writers) firstSuccessAfter(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, r := range w.recs {
		if r.err == nil && r.start.After(t) && (first.IsZero() || r.end.Before(first)) {
			first = r.end
		}
	}
	return first
}

func (w *writers) summary() (ok, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.recs {
		if r.err == nil {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}

func (w *writers) startOf(seq int64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.recs[seq]
	return r.start, ok
}

// monitor records the workload's SETs that a server executes, from a MONITOR
// connection opened directly to it (not through the proxy). It is how the
// tests see what reached the old master.
type monitor struct {
	conn net.Conn
	done chan struct{}
	mu   sync.Mutex
	seqs []int64
	// incrs are the server times (same clock as ours: loopback) at which
	// INCRs ran.
	incrs []time.Time
}

// incrsAfter counts INCRs the server ran after t.
func (m *monitor) incrsAfter(t time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, at := range m.incrs {
		if at.After(t) {
			n++
		}
	}
	return n
}

func startMonitor(t *testing.T, addr string) *monitor {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("monitor %s: %v", addr, err)
	}
	m := &monitor{conn: c, done: make(chan struct{})}
	if _, err := io.WriteString(c, "MONITOR\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("MONITOR on %s: %q, %v", addr, line, err)
	}
	c.SetReadDeadline(time.Time{})
	go func() {
		defer close(m.done)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			// +1700000000.123456 [0 127.0.0.1:5555] "set" "w:42" "42"
			stamp, args, ok := strings.Cut(line, "] ")
			if !ok {
				continue
			}
			f := strings.Fields(args)
			if len(f) >= 1 && strings.EqualFold(strings.Trim(f[0], `"`), "incr") {
				ts, _, _ := strings.Cut(strings.TrimPrefix(stamp, "+"), " ")
				if secs, err := strconv.ParseFloat(ts, 64); err == nil {
					m.mu.Lock()
					m.incrs = append(m.incrs, time.Unix(0, int64(secs*1e9)))
					m.mu.Unlock()
				}
			}
			if len(f) >= 2 && strings.EqualFold(strings.Trim(f[0], `"`), "set") && strings.HasPrefix(f[1], `"w:`) {
				if n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(f[1], `"w:`), `"`), 10, 64); err == nil {
					m.mu.Lock()
					m.seqs = append(m.seqs, n)
					m.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(m.close)
	return m
}

func (m *monitor) close() {
	m.conn.Close()
	<-m.done
}

func (m *monitor) seen() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int64(nil), m.seqs...)
}

// assertNothingAfterCut fails if the old master executed a write that the
// workload started after the proxy stopped routing to it.
func assertNothingAfterCut(t *testing.T, h *harness, w *writers, m *monitor, oldAddr string) {
	t.Helper()
	cut := h.cutTime(oldAddr)
	if cut.IsZero() {
		t.Fatalf("the proxy never stopped routing to %s", oldAddr)
	}
	late := 0
	for _, seq := range m.seen() {
		start, ok := w.startOf(seq)
		if ok && start.After(cut) {
			late++
			if late <= 5 {
				t.Errorf("old master %s executed write %d started %s after the cut", oldAddr, seq, start.Sub(cut))
			}
		}
	}
	if late > 0 {
		t.Fatalf("%d writes reached the old master after the cut", late)
	}
	if h.routedAfter(oldAddr, cut) {
		t.Fatalf("the proxy routed to the old master %s again after the cut", oldAddr)
	}
	t.Logf("old master executed %d workload writes, all started before the cut", len(m.seen()))
}

// rawCommand sends one RESP command on a new connection and returns the
// first reply line.
func rawCommand(addr string, timeout time.Duration, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	cmd := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		cmd += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return line, err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
