package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// These tests move resp-mode connections between two real redis-servers
// with SetMaster, as the discovery loop does on a failover, and check what
// the client sees. (The same through real Sentinels is in cmd/sentproxy.)

type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawClient) send(line string) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(rc.c, line+"\r\n"); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) expect(want string) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got strings.Builder
	for got.Len() < len(want) {
		line, err := rc.r.ReadString('\n')
		got.WriteString(line)
		if err != nil {
			break
		}
	}
	if got.String() != want {
		rc.t.Fatalf("got %q; want %q", got.String(), want)
	}
}

func twoMasters(t *testing.T, cfg Config) (s *Server, addr string, a, b *redisproc.Process) {
	t.Helper()
	a = testredis.StartServer(t, redisproc.Options{})
	b = testredis.StartServer(t, redisproc.Options{})
	cfg.Mode = ModeRESP
	s, addr, _ = startServer(t, cfg)
	s.SetMaster(a.Addr)
	return s, addr, a, b
}

// stopped stops a Redis process (SIGSTOP) until the test ends, so that
// nothing sent to it from now on is answered.
func stopped(t *testing.T, p *redisproc.Process) {
	t.Helper()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Cont() })
}

// waitBlocked polls until addr reports n clients blocked in a command.
func waitBlocked(t *testing.T, addr string, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	eventually(t, "blocked clients", 5*time.Second, func() bool {
		info, _ := c.Info(context.Background(), "clients").Result()
		return strings.Contains(info, "blocked_clients:"+string(rune('0'+n)))
	})
}

// A connection keeps its SELECTed database and name across a switch and
// sees no error.
func TestRESPConnectionMovesWithItsState(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+string(rune('0'+proto)), func(t *testing.T) {
			s, addr, a, b := twoMasters(t, Config{})
			ctx := context.Background()
			c := redis.NewClient(&redis.Options{Addr: addr, DB: 2, ClientName: "app", PoolSize: 1, Protocol: proto, MaxRetries: -1})
			defer c.Close()
			if err := c.Set(ctx, "k", "on-a", 0).Err(); err != nil {
				t.Fatal(err)
			}
			s.SetMaster(b.Addr)
			if err := c.Set(ctx, "k", "on-b", 0).Err(); err != nil {
				t.Fatalf("SET after the switch: %v; want no error", err)
			}
			direct := redis.NewClient(&redis.Options{Addr: b.Addr, DB: 2})
			defer direct.Close()
			if got, _ := direct.Get(ctx, "k").Result(); got != "on-b" {
				t.Fatalf("new master's db 2 has k=%q; want %q (SELECT replayed)", got, "on-b")
			}
			list, _ := direct.ClientList(ctx).Result()
			if !strings.Contains(list, "name=app") {
				t.Fatalf("CLIENT LIST on the new master lacks name=app:\n%s", list)
			}
			old := redis.NewClient(&redis.Options{Addr: a.Addr, DB: 2})
			defer old.Close()
			if got, _ := old.Get(ctx, "k").Result(); got != "on-a" {
				t.Fatalf("old master has k=%q; want %q untouched", got, "on-a")
			}
		})
	}
}

// In flight at the switch: a read-only command is sent again to the new
// master; a write gets an error that says its outcome is unknown.
func TestRESPInFlightReadRetriedWriteAnswered(t *testing.T) {
	s, addr, a, b := twoMasters(t, Config{})
	reader, writer := dialRaw(t, addr), dialRaw(t, addr)
	reader.send("XREAD BLOCK 0 STREAMS s $")
	writer.send("BLPOP q 0")
	waitBlocked(t, a.Addr, 2)

	s.SetMaster(b.Addr)
	writer.expect(string(errUnknownOutcome))
	waitBlocked(t, b.Addr, 1) // the XREAD, sent again
	direct := redis.NewClient(&redis.Options{Addr: b.Addr})
	defer direct.Close()
	if err := direct.XAdd(context.Background(), &redis.XAddArgs{Stream: "s", ID: "1-1", Values: []string{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	reader.expect("*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n")
	// The writer's connection carries on, on the new master.
	writer.send("PING")
	writer.expect("+PONG\r\n")
}

// A -READONLY means the command did not run: it goes to the real master
// without the client noticing.
func TestRESPReadonlyRetriedOnTheMaster(t *testing.T) {
	var s *Server
	var bAddr string
	s, addr, a, b := twoMasters(t, Config{OnDialError: func(string, error) { go s.SetMaster(bAddr) }})
	bAddr = b.Addr
	ctx := context.Background()
	ac := redis.NewClient(&redis.Options{Addr: a.Addr})
	defer ac.Close()
	if err := ac.Do(ctx, "REPLICAOF", "127.0.0.1", b.Port).Err(); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, addr)
	c.send("SET k v")
	c.expect("+OK\r\n")
	bc := redis.NewClient(&redis.Options{Addr: b.Addr})
	defer bc.Close()
	if got, _ := bc.Get(ctx, "k").Result(); got != "v" {
		t.Fatalf("master has k=%q; want %q", got, "v")
	}
}

// A transaction cut by a failover is aborted as Redis aborts one; after a
// WATCH, EXEC answers the nil that means "a watched key changed".
func TestRESPTransactionsAcrossASwitch(t *testing.T) {
	t.Run("MULTI under way", func(t *testing.T) {
		s, addr, _, b := twoMasters(t, Config{})
		c := dialRaw(t, addr)
		c.send("MULTI")
		c.expect("+OK\r\n")
		c.send("SET x 1")
		c.expect("+QUEUED\r\n")
		s.SetMaster(b.Addr)
		c.send("SET y 2")
		c.expect(string(errMultiAborted))
		c.send("EXEC")
		c.expect(string(errExecAbort))
		c.send("EXISTS x y")
		c.expect(":0\r\n")
	})
	// The MULTI is still unanswered when the switch comes: it is answered
	// here like the rest of that transaction, and opens none on the new
	// master that the local EXEC would leave open (the client's next
	// command then got +QUEUED). Tried: the old master stopped (SIGSTOP)
	// with the MULTI queued for its reply.
	t.Run("WATCH, then MULTI in flight at the switch", func(t *testing.T) {
		s, addr, a, b := twoMasters(t, Config{})
		c := dialRaw(t, addr)
		c.send("WATCH x")
		c.expect("+OK\r\n")
		stopped(t, a)
		c.send("MULTI")
		eventually(t, "MULTI queued for the stopped master's reply", 5*time.Second, func() bool {
			return s.withOnlyResp(func(rc *respConn) bool { return rc.qLen == 1 })
		})
		s.SetMaster(b.Addr)
		c.expect("+OK\r\n")
		finishLostWatch(c)
	})
	t.Run("WATCH then switch", func(t *testing.T) {
		s, addr, _, b := twoMasters(t, Config{})
		c := dialRaw(t, addr)
		c.send("WATCH x")
		c.expect("+OK\r\n")
		s.SetMaster(b.Addr)
		c.send("MULTI")
		c.expect("+OK\r\n")
		finishLostWatch(c)
	})
}

// finishLostWatch goes on with a transaction opened after a WATCH that a
// switch broke: its command is queued, EXEC answers the nil of "a watched
// key changed", and nothing of it ran, nor is left open, on the new master.
func finishLostWatch(c *rawClient) {
	c.t.Helper()
	c.send("SET x 1")
	c.expect("+QUEUED\r\n")
	c.send("EXEC")
	c.expect("*-1\r\n")
	c.send("EXISTS x")
	c.expect(":0\r\n")
}

// A subscriber keeps its connection and its subscriptions.
func TestRESPSubscriberFollowsTheSwitch(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+string(rune('0'+proto)), func(t *testing.T) {
			s, addr, _, b := twoMasters(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, MaxRetries: -1})
			defer c.Close()
			sub := c.Subscribe(ctx, "news")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			s.SetMaster(b.Addr)
			direct := redis.NewClient(&redis.Options{Addr: b.Addr})
			defer direct.Close()
			eventually(t, "subscription on the new master", 5*time.Second, func() bool {
				n, _ := direct.PubSubNumSub(ctx, "news").Result()
				return n["news"] == 1
			})
			if err := direct.Publish(ctx, "news", "after").Err(); err != nil {
				t.Fatal(err)
			}
			msg, err := sub.ReceiveMessage(ctx)
			if err != nil || msg.Payload != "after" {
				t.Fatalf("message = %v, %v; want %q", msg, err, "after")
			}
		})
	}
}

// With no master within the hold, queued commands get a clear error.
func TestRESPHoldTimeout(t *testing.T) {
	s, addr, a, _ := twoMasters(t, Config{HoldTimeout: 300 * time.Millisecond})
	c := dialRaw(t, addr)
	c.send("BLPOP q 0")
	waitBlocked(t, a.Addr, 1)
	c.send("GET k") // held: no master to send it to
	s.ClearMaster("test")
	c.expect(string(errUnknownOutcome) + string(errNoMasterHold))
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("after the hold: %v; want the connection closed", err)
	}
}

// Past the proxy-wide buffer limit a command is answered with an error and
// not run; the client that holds the buffer is unaffected, and once its
// reply comes the limit frees up. Every session gives its bytes back.
func TestRESPBufferLimit(t *testing.T) {
	r := testredis.StartServer(t, redisproc.Options{})
	s, addr, _ := startServer(t, Config{Mode: ModeRESP, MaxBuffer: 64})
	s.SetMaster(r.Addr)
	holder, other := dialRaw(t, addr), dialRaw(t, addr)
	holder.send("BLPOP q 0") // 27 bytes held until answered
	waitBlocked(t, r.Addr, 1)
	big := strings.Repeat("v", 60)
	other.send("SET k " + big)
	other.expect(string(errProxyFull))
	other.send("GET k")
	other.expect("$-1\r\n") // the SET did not run
	direct := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer direct.Close()
	if err := direct.RPush(context.Background(), "q", "x").Err(); err != nil {
		t.Fatal(err)
	}
	holder.expect("*2\r\n$1\r\nq\r\n$1\r\nx\r\n")
	other.send("SET k " + big[:20])
	other.expect("+OK\r\n")
	holder.c.Close()
	other.c.Close()
	eventually(t, "every buffered byte given back", 5*time.Second, func() bool { return s.Buffered() == 0 })
}

// What is replayed is the set of subscriptions the client holds, however
// it got there: channels it left stay left, and patterns come back as
// patterns.
func TestRESPReplaysTheSubscriptionSet(t *testing.T) {
	s, addr, _, b := twoMasters(t, Config{})
	c := dialRaw(t, addr)
	for range 50 {
		c.send("SUBSCRIBE gone")
		c.expect("*3\r\n$9\r\nsubscribe\r\n$4\r\ngone\r\n:1\r\n")
		c.send("UNSUBSCRIBE gone")
		c.expect("*3\r\n$11\r\nunsubscribe\r\n$4\r\ngone\r\n:0\r\n")
	}
	c.send("SUBSCRIBE kept")
	c.expect("*3\r\n$9\r\nsubscribe\r\n$4\r\nkept\r\n:1\r\n")
	c.send("PSUBSCRIBE pat*")
	c.expect("*3\r\n$10\r\npsubscribe\r\n$4\r\npat*\r\n:2\r\n")
	rc := s.sessionsForTest()[0].rc
	rc.mu.Lock()
	got := len(rc.subs[0])
	rc.mu.Unlock()
	if got != 1 {
		t.Fatalf("%d channels kept for replay; want 1", got)
	}
	s.SetMaster(b.Addr)
	direct := redis.NewClient(&redis.Options{Addr: b.Addr})
	defer direct.Close()
	ctx := context.Background()
	eventually(t, "subscriptions on the new master", 5*time.Second, func() bool {
		n, _ := direct.PubSubNumSub(ctx, "kept", "gone").Result()
		p, _ := direct.PubSubNumPat(ctx).Result()
		return n["kept"] == 1 && p == 1
	})
	if n, _ := direct.PubSubNumSub(ctx, "gone").Result(); n["gone"] != 0 {
		t.Fatalf("a channel left before the switch was subscribed again")
	}
}
