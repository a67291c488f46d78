package proxy

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/resp"
)

// readValue reads one whole RESP value (a reply or a push) and returns its
// bytes.
func (rc *rawClient) readValue() string {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	sc := resp.NewScanner(resp.Limits{})
	var b []byte
	for {
		c, err := rc.r.ReadByte()
		if err != nil {
			rc.t.Fatalf("after %q: %v", b, err)
		}
		b = append(b, c)
		if _, done, err := sc.Next([]byte{c}); err != nil {
			rc.t.Fatalf("after %q: %v", b, err)
		} else if done {
			return string(b)
		}
	}
}

// A RESP3 client with CLIENT TRACKING keeps tracking across a failover: it
// is told to drop its whole cache (the old master's invalidations are lost
// with it), and keys it reads on the new master are invalidated as usual.
func TestRESPTrackingMovesWithTheConnection(t *testing.T) {
	s, addr, _, b := twoMasters(t, Config{})
	c := dialRaw(t, addr)
	c.send("HELLO 3")
	c.readValue()
	c.send("CLIENT TRACKING ON")
	c.expect("+OK\r\n")
	c.send("GET k")
	c.expect("_\r\n")

	s.SetMaster(b.Addr)
	c.send("GET k")
	if got := c.readValue(); got != string(pushInvalidateAll) {
		t.Fatalf("first after the switch: %q; want the invalidate-everything push %q", got, pushInvalidateAll)
	}
	c.expect("_\r\n")

	direct := redis.NewClient(&redis.Options{Addr: b.Addr})
	defer direct.Close()
	if err := direct.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.readValue(), ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"; got != want {
		t.Fatalf("after a write on the new master: %q; want the invalidation %q (tracking replayed)", got, want)
	}
	c.send("CLIENT TRACKING OFF")
	c.expect("+OK\r\n")
	rcState := s.sessionsForTest()
	for _, ss := range rcState {
		ss.rc.mu.Lock()
		on := ss.rc.tracking != nil
		ss.rc.mu.Unlock()
		if on {
			t.Fatal("tracking still recorded for replay after CLIENT TRACKING OFF")
		}
	}
}

// Tracking with REDIRECT names another connection by an id the new master
// never issued, so it cannot be moved: that connection is closed at the
// failover (the client library reconnects and sets tracking up again),
// rather than left with a cache nobody invalidates.
func TestRESPTrackingRedirectClosedAtFailover(t *testing.T) {
	s, addr, _, b := twoMasters(t, Config{})
	sub := dialRaw(t, addr)
	sub.send("CLIENT ID")
	id := strings.TrimSuffix(strings.TrimPrefix(sub.readValue(), ":"), "\r\n")
	c := dialRaw(t, addr)
	c.send("CLIENT TRACKING ON REDIRECT " + id)
	c.expect("+OK\r\n")

	s.SetMaster(b.Addr)
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c.r)
	if err != nil || (len(got) > 0 && string(got) != string(errTrackingLost)) {
		t.Fatalf("after the switch: read %q, %v; want the connection closed", got, err)
	}
	// The other connection, without tracking, moves as usual.
	sub.send("PING")
	sub.expect("+PONG\r\n")
}
