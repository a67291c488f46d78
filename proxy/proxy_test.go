package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a loopback TCP server standing in for a master in the tests
// that exercise connection handling; tests with real Redis live in
// redis_test.go.
type backend struct {
	ln       net.Listener
	received atomic.Int64 // bytes read from all clients
	accepted atomic.Int64
	mode     string // "echo": write back what is read; "drain": read to EOF, then write "done:<n>"
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newBackend(t *testing.T, mode string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, mode: mode}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer c.Close()
			buf := make([]byte, 4096)
			var n int64
			for {
				k, err := c.Read(buf)
				if k > 0 {
					b.received.Add(int64(k))
					n += int64(k)
					if b.mode == "echo" {
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
					}
				}
				if err != nil {
					if b.mode == "drain" && errors.Is(err, io.EOF) {
						io.WriteString(c, "done:"+itoa(n))
					}
					return
				}
			}
		}()
	}
}

func (b *backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu       sync.Mutex
	accepted int
	closed   map[string]int
	dialErrs int
}

func (r *recorder) ConnectionAccepted(string) {
	r.mu.Lock()
	r.accepted++
	r.mu.Unlock()
}

func (r *recorder) ConnectionClosed(_ string, reason string, _ time.Duration, _, _ int64) {
	r.mu.Lock()
	if r.closed == nil {
		r.closed = map[string]int{}
	}
	r.closed[reason]++
	r.mu.Unlock()
}

func (r *recorder) UpstreamDialed(_ string, _ time.Duration, err error) {
	if err != nil {
		r.mu.Lock()
		r.dialErrs++
		r.mu.Unlock()
	}
}

func (r *recorder) closedFor(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed[reason]
}

func (r *recorder) acceptedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

var eventually = testutil.Eventually

// testEngine is the tcp-mode engine the tests run on:
// SENTPROXY_PROXY_ENGINE, the variable sentproxy itself reads, so that one
// setting runs this package's and cmd/sentproxy's tests on the same engine.
func testEngine(t *testing.T) string {
	switch e := os.Getenv("SENTPROXY_PROXY_ENGINE"); e {
	case "":
		return DefaultEngine
	case EngineSplice:
		return EngineSplice
	case EngineEpoll:
		if !EngineEpollSupported {
			t.Fatalf("SENTPROXY_PROXY_ENGINE=%s: not supported on this system", e)
		}
		return e
	default:
		t.Fatalf("SENTPROXY_PROXY_ENGINE=%q: want %s or %s", e, EngineSplice, EngineEpoll)
		return ""
	}
}

// startServer runs a Server on a loopback listener and shuts it down at the
// end of the test.
func startServer(t *testing.T, cfg Config) (*Server, string, *recorder) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, rec := startServerOn(t, cfg, ln)
	return s, ln.Addr().String(), rec
}

// startServerOn is startServer on a listener of the test's own.
func startServerOn(t *testing.T, cfg Config, ln net.Listener) (*Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	if cfg.Observer == nil {
		cfg.Observer = rec
	}
	if cfg.Name == "" {
		cfg.Name = "mymaster"
	}
	if cfg.Engine == "" {
		cfg.Engine = testEngine(t)
	}
	s := New(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v; want ErrServerClosed", err)
		}
	})
	return s, rec
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("got %q; want %q", buf, msg)
	}
}

func TestForwardsBothWays(t *testing.T) {
	b := newBackend(t, "echo")
	s, addr, _ := startServer(t, Config{})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	roundTrip(t, c, "*1\r\n$4\r\nPING\r\n")
	big := strings.Repeat("x", 1<<20)
	roundTrip(t, c, big)
}

// A client that sends its commands and half-closes must still get every
// reply (redis-cli < file does this).
func TestHalfCloseStillDeliversReplies(t *testing.T) {
	b := newBackend(t, "drain")
	s, addr, rec := startServer(t, Config{})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	io.WriteString(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "done:5" {
		t.Fatalf("got %q; want %q", got, "done:5")
	}
	eventually(t, "close recorded", time.Second, func() bool { return rec.closedFor(ReasonClient) == 1 })
}

func TestMasterSwitchCutsOldConnections(t *testing.T) {
	oldM, newM := newBackend(t, "echo"), newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{})
	s.SetMaster(oldM.addr())
	var clients []net.Conn
	for range 5 {
		c := dial(t, addr)
		roundTrip(t, c, "before")
		clients = append(clients, c)
	}
	before := oldM.received.Load()

	s.SetMaster(newM.addr())

	// Every old connection is gone, both legs: the client sees EOF or a
	// reset, and nothing it writes now reaches the old master.
	for i, c := range clients {
		io.WriteString(c, "after")
		buf := make([]byte, 16)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		var ne net.Error
		switch {
		case err == nil:
			t.Fatalf("client %d: read %q after the switch; want the connection closed", i, buf[:n])
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("client %d: connection still open after the switch", i)
		}
	}
	if got := oldM.received.Load(); got != before {
		t.Fatalf("old master received %d bytes after the switch", got-before)
	}
	eventually(t, "5 master_switch closes", time.Second, func() bool { return rec.closedFor(ReasonMasterSwitch) == 5 })
	c := dial(t, addr)
	roundTrip(t, c, "new")
	if newM.accepted.Load() != 1 {
		t.Fatalf("new master accepted %d connections; want 1", newM.accepted.Load())
	}
	if oldM.received.Load() != before {
		t.Fatal("old master received bytes from a connection opened after the switch")
	}
}

func TestClientHeldUntilMasterKnown(t *testing.T) {
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{HoldTimeout: 10 * time.Second})
	c := dial(t, addr)
	if _, err := io.WriteString(c, "held"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "client accepted", time.Second, func() bool { return rec.acceptedCount() == 1 })
	if b.accepted.Load() != 0 {
		t.Fatal("dialled a master before one was set")
	}
	s.SetMaster(b.addr())
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "held" {
		t.Fatalf("got %q, %v; want %q", buf, err, "held")
	}
}

func TestHoldTimeoutAnswersRESPError(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reason func() string // Config.NoMasterReason
		setup  func(*Server)
		want   string
	}{
		{"never discovered", nil, func(*Server) {},
			"-ERR sentproxy: no master for 'mymaster': not discovered yet\r\n"},
		{"withdrawn with a reason that has a newline", nil, func(s *Server) { s.ClearMaster("Sentinels disagree\r\nsecond line") },
			"-ERR sentproxy: no master for 'mymaster': Sentinels disagree  second line\r\n"},
		// The reason as it stands at the hold timeout wins over the one
		// given at the last change, even before any change.
		{"current reason before any change", func() string { return "no Sentinel reachable" }, func(*Server) {},
			"-ERR sentproxy: no master for 'mymaster': no Sentinel reachable\r\n"},
		{"current reason after a withdrawal", func() string { return "no Sentinel reachable" }, func(s *Server) { s.ClearMaster("Sentinels disagree") },
			"-ERR sentproxy: no master for 'mymaster': no Sentinel reachable\r\n"},
		{"no current reason: the withdrawal's", func() string { return "" }, func(s *Server) { s.ClearMaster("Sentinels disagree") },
			"-ERR sentproxy: no master for 'mymaster': Sentinels disagree\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr, rec := startServer(t, Config{HoldTimeout: 50 * time.Millisecond, NoMasterReason: tc.reason})
			tc.setup(s)
			c := dial(t, addr)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
			eventually(t, "no_master close", time.Second, func() bool { return rec.closedFor(ReasonNoMaster) == 1 })
		})
	}
}

func TestDialFailureReportedAndRetried(t *testing.T) {
	// A port nobody listens on: take one and close it.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	var reported atomic.Int64
	s, addr, rec := startServer(t, Config{
		HoldTimeout: 350 * time.Millisecond,
		OnDialError: func(a string, err error) {
			if a == dead && err != nil {
				reported.Add(1)
			}
		},
	})
	s.SetMaster(dead)
	c := dial(t, addr)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "-ERR sentproxy: cannot reach master for 'mymaster' at "+dead) {
		t.Fatalf("got %q; want a cannot-reach error", line)
	}
	if n := reported.Load(); n < 2 {
		t.Fatalf("OnDialError called %d times; want retries within the hold timeout", n)
	}
	eventually(t, "dial_error close", time.Second, func() bool { return rec.closedFor(ReasonDialError) == 1 })
}

// A dial that fails while the master moves must land on the new master.
func TestDialFailureThenSwitchSucceeds(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	b := newBackend(t, "echo")
	var s *Server
	s, addr, _ := startServer(t, Config{
		HoldTimeout: 5 * time.Second,
		OnDialError: func(string, error) { go s.SetMaster(b.addr()) },
	})
	s.SetMaster(dead)
	c := dial(t, addr)
	roundTrip(t, c, "ok")
}

func TestMaxConnections(t *testing.T) {
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{MaxConnections: 1})
	s.SetMaster(b.addr())
	first := dial(t, addr)
	roundTrip(t, first, "one")
	second := dial(t, addr)
	got, _ := io.ReadAll(second)
	if want := "-ERR max number of clients reached\r\n"; string(got) != want {
		t.Fatalf("got %q; want %q", got, want)
	}
	roundTrip(t, first, "still fine")
	// The close is reported just after the socket closes; wait for it.
	eventually(t, "a max_connections close", time.Second, func() bool { return rec.closedFor(ReasonMaxConnections) == 1 })
	first.Close()
	// The slot frees up once the first connection is gone.
	eventually(t, "slot freed", 2*time.Second, func() bool { return s.active.Load() == 0 })
	third := dial(t, addr)
	roundTrip(t, third, "three")
}

func TestShutdownDrainsThenForces(t *testing.T) {
	b := newBackend(t, "echo")
	rec := &recorder{}
	s := New(Config{Name: "mymaster", Observer: rec, Engine: testEngine(t)})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	s.SetMaster(b.addr())
	c := dial(t, ln.Addr().String())
	roundTrip(t, c, "x")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v; want a drain timeout", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v; want ErrServerClosed", err)
	}
	if rec.closedFor(ReasonShutdown) != 1 {
		t.Fatalf("shutdown closes = %d; want 1", rec.closedFor(ReasonShutdown))
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond); err == nil {
		t.Fatal("listener still accepts after Shutdown")
	}
}

func TestShutdownWaitsForClientsThatFinish(t *testing.T) {
	b := newBackend(t, "echo")
	s := New(Config{Name: "mymaster", Engine: testEngine(t)})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	s.SetMaster(b.addr())
	c := dial(t, ln.Addr().String())
	roundTrip(t, c, "x")
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The open connection still works during the drain.
	roundTrip(t, c, "during drain")
	c.Close()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v; want nil once the client left", err)
	}
	<-served
}

func TestIdleTimeout(t *testing.T) {
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{IdleTimeout: 150 * time.Millisecond})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	// Traffic more often than the timeout keeps it open.
	for range 4 {
		roundTrip(t, c, "busy")
		time.Sleep(50 * time.Millisecond) // the activity pattern under test, not synchronisation
	}
	_, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "idle close", time.Second, func() bool { return rec.closedFor(ReasonIdle) == 1 })
}

// sessionsForTest lists the Server's open sessions.
func (s *Server) sessionsForTest() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for ss := range s.sessions {
		out = append(out, ss)
	}
	return out
}

// withOnlyResp reports f of the server's one resp-mode session, with its
// lock held; false while there is not exactly one session.
func (s *Server) withOnlyResp(f func(rc *respConn) bool) bool {
	ss := s.sessionsForTest()
	if len(ss) != 1 {
		return false
	}
	rc := ss[0].rc
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return f(rc)
}

// A connection that Serve accepted just as Shutdown began is refused in
// Serve with the shutdown error, and is accounted for once Serve and
// Shutdown have returned. Before, it went to a handler added to the
// WaitGroup after Shutdown's wait could have begun (the race detector
// caught it once in TestUnixSocketListener): Shutdown then returned before
// the handler had closed it, and this test failed in 7 runs of 10.
func TestConnectionAcceptedDuringShutdownIsRefused(t *testing.T) {
	b := newBackend(t, "echo")
	s := New(Config{Name: "mymaster", Observer: &recorder{}})
	rec := s.obs.(*recorder)
	s.SetMaster(b.addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	shutdownDone := make(chan error, 1)
	acceptedHook = func() {
		// Shutdown from here, and go on once it has marked the server
		// closing, as when the accept returned just before it.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shutdownDone <- s.Shutdown(ctx)
		}()
		eventually(t, "Shutdown under way", 5*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.closing
		})
	}
	t.Cleanup(func() { acceptedHook = func() {} })
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()

	got, err := io.ReadAll(dial(t, ln.Addr().String()))
	if err != nil || string(got) != "-ERR sentproxy: shutting down\r\n" {
		t.Fatalf("client accepted during Shutdown got %q, %v; want the shutdown error", got, err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v; want ErrServerClosed", err)
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := rec.closedFor(ReasonShutdown); n != 1 {
		t.Fatalf("%d closes as shutdown once Serve and Shutdown returned; want 1", n)
	}
	if n := s.ActiveConnections(); n != 0 {
		t.Fatalf("%d active connections after Shutdown; want 0", n)
	}
}
