package discovery

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// A scripted stand-in for redis-sentinel and redis-server, for the replies a
// real one never sends: wrong types, absurd lengths, truncated or endless
// streams, silence. It listens on a free loopback port and is closed, with
// every goroutine it started, when the test ends.

// fakeReply is what a fake sends back for one command.
type fakeReply struct {
	raw    string // written verbatim: valid RESP or not
	close  bool   // close the connection once raw is written
	silent bool   // write nothing, so that the client runs into its timeout
	// trickle, when set, writes raw one byte per trickle: a peer slow
	// enough that no single read times out.
	trickle time.Duration
}

type fakeServer struct {
	t    testing.TB
	addr string
	ln   net.Listener

	mu      sync.Mutex
	script  map[string]func(call int) fakeReply
	seen    map[string][]time.Time // when each command was received
	subs    map[*fakeSub]bool
	closing bool
	// detached are the connections taken over from redcon (subscriptions,
	// tricklers); redcon no longer closes them, so the fake does.
	detached map[net.Conn]bool
	stop     chan struct{} // closed when the fake closes; ends tricklers

	// goroutines counts redcon's connection goroutines and the fake's own
	// (subscription readers, tricklers), so that cleanup can wait for them.
	goroutines sync.WaitGroup
	served     chan struct{}
}

// fakeSub is a connection that entered subscribed mode. It is detached from
// redcon's loop because messages are pushed to it from the test goroutine.
type fakeSub struct {
	mu       sync.Mutex // serialises writes: publish and the reader both write
	dc       redcon.DetachedConn
	channels map[string]bool
}

// newFakeServer starts a fake that answers only what the test scripts (and
// SUBSCRIBE); anything else gets an unknown-command error like Redis gives.
func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{
		t:        t,
		addr:     ln.Addr().String(),
		ln:       ln,
		script:   map[string]func(int) fakeReply{},
		seen:     map[string][]time.Time{},
		subs:     map[*fakeSub]bool{},
		detached: map[net.Conn]bool{},
		stop:     make(chan struct{}),
		served:   make(chan struct{}),
	}
	accept := func(redcon.Conn) bool {
		s.goroutines.Add(1)
		return true
	}
	// redcon calls this once per accepted connection, from the connection's
	// goroutine as it ends, and also when the connection is detached.
	closed := func(redcon.Conn, error) { s.goroutines.Done() }
	go func() {
		defer close(s.served)
		_ = redcon.Serve(ln, s.handle, accept, closed)
	}()
	t.Cleanup(s.close)
	return s
}

// newFakeSentinel starts a fake Sentinel that knows no peers, answers INFO
// with a run_id of its own and PING, and says "no such master" until the
// test scripts SENTINEL MASTER.
func newFakeSentinel(t testing.TB) *fakeServer {
	t.Helper()
	s := newFakeServer(t)
	runID := fmt.Sprintf("%040x", s.port())
	s.always("PING", fakeReply{raw: "+PONG\r\n"})
	s.always("INFO", fakeReply{raw: bulk("# Server\r\nredis_mode:sentinel\r\nrun_id:" + runID + "\r\n")})
	s.always("SENTINEL SENTINELS", fakeReply{raw: "*0\r\n"})
	s.always("SENTINEL MASTER", fakeReply{raw: "-ERR No such master with that name\r\n"})
	return s
}

// newFakeMaster starts a fake Redis that answers ROLE as a master with no
// replicas.
func newFakeMaster(t testing.TB) *fakeServer {
	t.Helper()
	s := newFakeServer(t)
	s.always("PING", fakeReply{raw: "+PONG\r\n"})
	s.always("ROLE", fakeReply{raw: respArray(bulk("master"), ":0\r\n", "*0\r\n")})
	return s
}

func (s *fakeServer) host() string {
	h, _, _ := net.SplitHostPort(s.addr)
	return h
}

func (s *fakeServer) port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// on scripts a command; fn gets how many times it was received before
// (0 the first time). cmd is upper case, "SENTINEL MASTER" for subcommands.
func (s *fakeServer) on(cmd string, fn func(call int) fakeReply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[cmd] = fn
}

func (s *fakeServer) always(cmd string, r fakeReply) {
	s.on(cmd, func(int) fakeReply { return r })
}

// count says how many times cmd was received.
func (s *fakeServer) count(cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen[cmd])
}

// receivedAfter returns when cmd was first received after t.
func (s *fakeServer) receivedAfter(cmd string, t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.seen[cmd] {
		if at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

func (s *fakeServer) subscribers(channel string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sub := range s.subs {
		sub.mu.Lock()
		if sub.channels[channel] {
			n++
		}
		sub.mu.Unlock()
	}
	return n
}

// publish sends a pub/sub message to the fake's subscribers of channel and
// says how many got it.
func (s *fakeServer) publish(channel, payload string) int {
	s.mu.Lock()
	subs := make([]*fakeSub, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	n := 0
	for _, sub := range subs {
		sub.mu.Lock()
		if sub.channels[channel] {
			sub.dc.WriteRaw([]byte(respArray(bulk("message"), bulk(channel), bulk(payload))))
			if sub.dc.Flush() == nil {
				n++
			}
		}
		sub.mu.Unlock()
	}
	return n
}

func commandKey(args [][]byte) string {
	if len(args) == 0 {
		return ""
	}
	key := strings.ToUpper(string(args[0]))
	if key == "SENTINEL" && len(args) > 1 {
		key += " " + strings.ToUpper(string(args[1]))
	}
	return key
}

func (s *fakeServer) handle(conn redcon.Conn, cmd redcon.Command) {
	key := commandKey(cmd.Args)
	s.mu.Lock()
	call := len(s.seen[key])
	s.seen[key] = append(s.seen[key], time.Now())
	fn := s.script[key]
	s.mu.Unlock()
	switch {
	case fn != nil:
		r := fn(call)
		if r.silent {
			return
		}
		if r.trickle > 0 {
			s.trickle(conn, r)
			return
		}
		conn.WriteRaw([]byte(r.raw))
		if r.close {
			conn.Close()
		}
	case key == "SUBSCRIBE":
		s.subscribe(conn, cmd)
	default:
		conn.WriteError(fmt.Sprintf("ERR unknown command '%s'", key))
	}
}

func (s *fakeServer) subscribe(conn redcon.Conn, first redcon.Command) {
	sub := &fakeSub{dc: conn.Detach(), channels: map[string]bool{}}
	if !s.adopt(sub.dc) {
		return
	}
	s.mu.Lock()
	s.subs[sub] = true
	s.mu.Unlock()
	sub.command(first)
	go func() {
		defer s.goroutines.Done()
		defer func() {
			s.mu.Lock()
			delete(s.subs, sub)
			delete(s.detached, sub.dc.NetConn())
			s.mu.Unlock()
			sub.mu.Lock()
			sub.dc.Close()
			sub.mu.Unlock()
		}()
		for {
			cmd, err := sub.dc.ReadCommand()
			if err != nil {
				return
			}
			s.mu.Lock()
			key := commandKey(cmd.Args)
			s.seen[key] = append(s.seen[key], time.Now())
			s.mu.Unlock()
			sub.command(cmd)
		}
	}()
}

// adopt registers a detached connection and counts the goroutine that the
// caller then starts for it; it reports false, having closed the
// connection, if the fake is closing.
func (s *fakeServer) adopt(dc redcon.DetachedConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		dc.Close()
		return false
	}
	s.detached[dc.NetConn()] = true
	s.goroutines.Add(1)
	return true
}

// trickle writes r.raw byte by byte at r.trickle intervals, until done, the
// client hangs up, or the fake closes.
func (s *fakeServer) trickle(conn redcon.Conn, r fakeReply) {
	dc := conn.Detach()
	if !s.adopt(dc) {
		return
	}
	go func() {
		defer s.goroutines.Done()
		defer func() {
			s.mu.Lock()
			delete(s.detached, dc.NetConn())
			s.mu.Unlock()
			dc.Close()
		}()
		tick := time.NewTicker(r.trickle)
		defer tick.Stop()
		for i := 0; i < len(r.raw); i++ {
			dc.WriteRaw([]byte{r.raw[i]})
			if dc.Flush() != nil {
				return
			}
			select {
			case <-tick.C:
			case <-s.stop:
				return
			}
		}
		if r.close {
			return
		}
		// Hold the connection open, as a stalled peer would.
		<-s.stop
	}()
}

// command answers what Redis allows in subscribed mode, as Redis does.
func (sub *fakeSub) command(cmd redcon.Command) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	switch commandKey(cmd.Args) {
	case "SUBSCRIBE":
		for _, ch := range cmd.Args[1:] {
			sub.channels[string(ch)] = true
			sub.dc.WriteRaw([]byte(respArray(bulk("subscribe"), bulk(string(ch)), ":"+strconv.Itoa(len(sub.channels))+"\r\n")))
		}
	case "UNSUBSCRIBE":
		for _, ch := range cmd.Args[1:] {
			delete(sub.channels, string(ch))
			sub.dc.WriteRaw([]byte(respArray(bulk("unsubscribe"), bulk(string(ch)), ":"+strconv.Itoa(len(sub.channels))+"\r\n")))
		}
	case "PING":
		payload := ""
		if len(cmd.Args) > 1 {
			payload = string(cmd.Args[1])
		}
		sub.dc.WriteRaw([]byte(respArray(bulk("pong"), bulk(payload))))
	default:
		sub.dc.WriteError(fmt.Sprintf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", cmd.Args[0]))
	}
	_ = sub.dc.Flush()
}

func (s *fakeServer) close() {
	s.ln.Close()
	// Serve closes every connection still attached to redcon as it returns;
	// the detached subscriptions are ours to close.
	if !waitTimeout(s.served, 5*time.Second) {
		s.t.Errorf("fake %s: redcon.Serve did not return", s.addr)
		return
	}
	s.mu.Lock()
	s.closing = true
	close(s.stop)
	detached := make([]net.Conn, 0, len(s.detached))
	for c := range s.detached {
		detached = append(detached, c)
	}
	s.mu.Unlock()
	for _, c := range detached {
		// The socket, not the redcon conn: its writer belongs to the
		// goroutine serving it, which closes the redcon conn itself.
		c.Close()
	}
	done := make(chan struct{})
	go func() {
		s.goroutines.Wait()
		close(done)
	}()
	if !waitTimeout(done, 5*time.Second) {
		s.t.Errorf("fake %s: connection goroutines still running 5s after close", s.addr)
	}
}

func waitTimeout(ch <-chan struct{}, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	}
}

// RESP2 builders for the scripts.

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

// respArray wraps already encoded elements in an array header.
func respArray(elems ...string) string {
	return "*" + strconv.Itoa(len(elems)) + "\r\n" + strings.Join(elems, "")
}

// respFields encodes key/value pairs the way SENTINEL MASTER sends them in
// RESP2: a flat array of bulk strings.
func respFields(kv []string) string {
	elems := make([]string, len(kv))
	for i, s := range kv {
		elems[i] = bulk(s)
	}
	return respArray(elems...)
}

// masterFields is a realistic SENTINEL MASTER reply's content, in the order
// Redis 7 sends it.
func masterFields(name, ip, port, epoch string) []string {
	return []string{
		"name", name,
		"ip", ip,
		"port", port,
		"runid", "9c8e1f2a3b4c5d6e7f8091a2b3c4d5e6f7081920",
		"flags", "master",
		"link-pending-commands", "0",
		"link-refcount", "1",
		"last-ping-sent", "0",
		"last-ok-ping-reply", "512",
		"last-ping-reply", "512",
		"down-after-milliseconds", "5000",
		"info-refresh", "3145",
		"role-reported", "master",
		"role-reported-time", "1203456",
		"config-epoch", epoch,
		"num-slaves", "2",
		"num-other-sentinels", "2",
		"quorum", "2",
		"failover-timeout", "60000",
		"parallel-syncs", "1",
	}
}

// withField returns a copy of kv with key set to value.
func withField(kv []string, key, value string) []string {
	out := append([]string(nil), kv...)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i] == key {
			out[i+1] = value
			return out
		}
	}
	return append(out, key, value)
}

// withoutField returns a copy of kv without key.
func withoutField(kv []string, key string) []string {
	out := make([]string, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] != key {
			out = append(out, kv[i], kv[i+1])
		}
	}
	return out
}

// goodMasterReply is what a healthy Sentinel says about master m.
func goodMasterReply(m *fakeServer, epoch int) fakeReply {
	return fakeReply{raw: respFields(masterFields("mymaster", m.host(), strconv.Itoa(m.port()), strconv.Itoa(epoch)))}
}
