package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// These tests run real clients through the proxy to a real redis-server,
// in both modes.

var modes = []string{ModeTCP, ModeRESP}

func startRedisProxy(t *testing.T, mode string) (proxyAddr, redisAddr string) {
	t.Helper()
	r := testredis.StartServer(t, redisproc.Options{})
	s, addr, _ := startServer(t, Config{Mode: mode})
	s.SetMaster(r.Addr)
	return addr, r.Addr
}

func client(t *testing.T, addr string, protocol int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: protocol, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisClientsThroughProxy(t *testing.T) {
	for _, mode := range modes {
		for _, proto := range []int{2, 3} {
			t.Run(mode+"/RESP"+string(rune('0'+proto)), func(t *testing.T) {
				addr, _ := startRedisProxy(t, mode)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				c := client(t, addr, proto)

				if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
					t.Fatal(err)
				}
				if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
					t.Fatalf("GET = %q, %v", got, err)
				}
				// A pipeline of many commands in one write.
				pipe := c.Pipeline()
				for i := range 500 {
					pipe.Incr(ctx, "counter")
					_ = i
				}
				cmds, err := pipe.Exec(ctx)
				if err != nil || len(cmds) != 500 {
					t.Fatalf("pipeline: %d cmds, %v", len(cmds), err)
				}
				if n, _ := cmds[499].(*redis.IntCmd).Result(); n != 500 {
					t.Fatalf("last INCR = %d; want 500", n)
				}
				// MULTI/EXEC.
				res, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, "a", "1", 0)
					p.Incr(ctx, "a")
					return nil
				})
				if err != nil || res[1].(*redis.IntCmd).Val() != 2 {
					t.Fatalf("MULTI/EXEC: %v %v", res, err)
				}
				// Lua and functions.
				if n, err := c.Eval(ctx, "return redis.call('INCR', KEYS[1])", []string{"e"}).Int(); err != nil || n != 1 {
					t.Fatalf("EVAL = %d, %v", n, err)
				}
				if err := c.FunctionLoadReplace(ctx, "#!lua name=lib\nredis.register_function('answer', function(keys, args) return 42 end)").Err(); err != nil {
					t.Fatal(err)
				}
				if n, err := c.FCall(ctx, "answer", nil).Int(); err != nil || n != 42 {
					t.Fatalf("FCALL = %d, %v", n, err)
				}
				// A value much larger than any buffer, both ways.
				big := strings.Repeat("0123456789abcdef", 5<<16) // 5 MiB
				if err := c.Set(ctx, "big", big, 0).Err(); err != nil {
					t.Fatal(err)
				}
				if got, err := c.Get(ctx, "big").Result(); err != nil || got != big {
					t.Fatalf("GET big: %d bytes, %v", len(got), err)
				}
				// Blocking command.
				go func() {
					time.Sleep(50 * time.Millisecond) // the other client's delay is the scenario
					client(t, addr, proto).RPush(context.Background(), "q", "job")
				}()
				if got, err := c.BLPop(ctx, 5*time.Second, "q").Result(); err != nil || got[1] != "job" {
					t.Fatalf("BLPOP = %v, %v", got, err)
				}
				// Pub/sub: a subscriber gets what is published after it subscribed.
				sub := c.Subscribe(ctx, "news")
				defer sub.Close()
				if _, err := sub.Receive(ctx); err != nil {
					t.Fatalf("subscribe: %v", err)
				}
				if err := client(t, addr, proto).Publish(ctx, "news", "hello").Err(); err != nil {
					t.Fatal(err)
				}
				msg, err := sub.ReceiveMessage(ctx)
				if err != nil || msg.Payload != "hello" {
					t.Fatalf("message = %v, %v", msg, err)
				}
				if err := sub.Ping(ctx); err != nil {
					t.Fatalf("PING while subscribed: %v", err)
				}
			})
		}
	}
}

// raw sends b on a new connection and reads until the server closes or the
// deadline passes.
func raw(t *testing.T, addr string, b string, until func(got string) bool) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, b); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	r := bufio.NewReader(c)
	for until == nil || !until(got.String()) {
		line, err := r.ReadString('\n')
		got.WriteString(line)
		if err != nil {
			break
		}
	}
	return got.String()
}

// A client sending malformed RESP gets from the resp-mode proxy the error
// Redis itself gives, after the replies to what came before, and the close;
// other clients are untouched.
func TestMalformedCommandsGetRedisErrors(t *testing.T) {
	addr, redisAddr := startRedisProxy(t, ModeRESP)
	other := client(t, addr, 2)
	ctx := context.Background()
	if err := other.Set(ctx, "x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, in string
		fails    bool
	}{
		{"multibulk length not a number", "*x\r\n", true},
		{"argument not a bulk", "*1\r\n:5\r\n", true},
		{"negative bulk length", "*1\r\n$-2\r\n", true},
		{"bulk longer than Redis allows", "*1\r\n$536870913\r\n", true},
		{"unbalanced quotes", "SET \"k v\r\n", true},
		{"good command, then garbage", "*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n", true},
		// Redis does not check the CRLF after a payload; neither may we,
		// or the two parsers would disagree on where commands end.
		{"payload followed by junk instead of CRLF", "*1\r\n$4\r\nPINGxx\r\nPING\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			until := func(got string) bool { return !tc.fails && strings.Count(got, "\r\n") == 2 }
			direct := raw(t, redisAddr, tc.in, until)
			via := raw(t, addr, tc.in, until)
			if via != direct {
				t.Fatalf("through the proxy %q; Redis itself answers %q", via, direct)
			}
			if tc.fails != strings.Contains(via, "-ERR Protocol error") {
				t.Fatalf("got %q; protocol error expected: %v", via, tc.fails)
			}
		})
	}
	if got, err := other.Get(ctx, "x").Result(); err != nil || got != "1" {
		t.Fatalf("other client after the bad ones: %q, %v", got, err)
	}
}

// A protocol error that comes while the reply to the command before it is
// matched but not yet written waits for that reply: the client gets +PONG
// and then the error, as from Redis. (CI once saw the error alone.)
func TestRESPProtocolErrorAfterAReplyInFlight(t *testing.T) {
	addr, _ := startRedisProxy(t, ModeRESP)
	settled, failed := make(chan struct{}), make(chan struct{})
	var once, failOnce sync.Once
	replySettled = func() {
		once.Do(func() {
			close(settled)
			select { // the test writes the garbage now; bounded, not a sleep
			case <-failed:
			case <-time.After(5 * time.Second):
			}
		})
	}
	protocolFailed = func() { failOnce.Do(func() { close(failed) }) }
	t.Cleanup(func() { replySettled, protocolFailed = func() {}, func() {} })

	c := dial(t, addr)
	if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-settled:
	case <-time.After(5 * time.Second):
		t.Fatal("the reply to PING was never matched")
	}
	if _, err := io.WriteString(c, "*1\r\n$x\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"; string(got) != want {
		t.Fatalf("got %q; want %q", got, want)
	}
}

// Inline commands (telnet) and CLIENT REPLY, which changes how many replies
// come back, keep the stream in step.
func TestInlineAndClientReply(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			addr, _ := startRedisProxy(t, mode)
			got := raw(t, addr, "PING\r\nSET a 1\r\nCLIENT REPLY OFF\r\nSET b 2\r\nCLIENT REPLY ON\r\nCLIENT REPLY SKIP\r\nGET a\r\nGET b\r\nQUIT\r\n", nil)
			want := "+PONG\r\n+OK\r\n+OK\r\n$1\r\n2\r\n+OK\r\n"
			if got != want {
				t.Fatalf("got %q; want %q", got, want)
			}
		})
	}
}

func TestMonitorThroughProxy(t *testing.T) {
	addr, _ := startRedisProxy(t, ModeRESP)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "MONITOR\r\n")
	r := bufio.NewReader(c)
	if line, _ := r.ReadString('\n'); line != "+OK\r\n" {
		t.Fatalf("MONITOR = %q", line)
	}
	if err := client(t, addr, 2).Set(context.Background(), "watched", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no SET seen by MONITOR: %v", err)
		}
		if strings.Contains(line, `"watched"`) {
			return
		}
	}
}
