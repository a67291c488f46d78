package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// rawRESP is a client connection that writes inline commands and reads
// reply lines, so that a test controls exactly when bytes move.
type rawRESP struct {
	c net.Conn
	r *bufio.Reader
}

func dialRESP(t *testing.T, addr string) *rawRESP {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Time{}) // each send and line sets its own
	return &rawRESP{c: c, r: bufio.NewReader(c)}
}

func (rr *rawRESP) send(t *testing.T, cmd string) {
	t.Helper()
	rr.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(rr.c, cmd+"\r\n"); err != nil {
		t.Fatalf("%s: write: %v", cmd, err)
	}
}

// line reads one reply line within 5 s.
func (rr *rawRESP) line(t *testing.T, what string) string {
	t.Helper()
	rr.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := rr.r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: read: %v", what, err)
	}
	return strings.TrimRight(l, "\r\n")
}

// In resp mode --proxy.idle-timeout counts idleness as Redis's own timeout
// does, in front of a real redis-server. Tried, with a 300 ms timeout: a
// client that sent one PING and then nothing (cut); a client blocked in
// BLPOP and a subscriber, both silent for longer than the timeout (kept,
// and each still gets its reply or message afterwards); a client pinging
// every 75 ms (kept); and the BLPOP client once its reply came and it fell
// silent (cut), while the subscriber still gets a second message.
func TestRESPIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	testredis.Require(t)
	r := testredis.StartServer(t, redisproc.Options{})
	s, addr, rec := startServer(t, Config{Mode: ModeRESP, IdleTimeout: idle})
	s.SetMaster(r.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	blocked := dialRESP(t, addr)
	blocked.send(t, "BLPOP idle-test-list 0")
	sub := dialRESP(t, addr)
	sub.send(t, "SUBSCRIBE idle-test-channel")
	for range 6 { // *3, $9, subscribe, $17, idle-test-channel, :1
		sub.line(t, "subscribe confirmation")
	}
	busy := dialRESP(t, addr)
	silent := dialRESP(t, addr)
	silent.send(t, "PING")
	if got := silent.line(t, "PING"); got != "+PONG" {
		t.Fatalf("PING through resp mode = %q", got)
	}

	// The busy client pings every quarter of the timeout until the silent
	// one has been cut, and for one timeout more.
	var cutAt time.Time
	deadline := time.Now().Add(5 * time.Second)
	for cutAt.IsZero() || time.Since(cutAt) < idle {
		if time.Now().After(deadline) {
			t.Fatal("the silent client was not closed as idle within 5 s")
		}
		time.Sleep(idle / 4) // the activity pattern under test, not synchronisation
		busy.send(t, "PING")
		if got := busy.line(t, "busy PING"); got != "+PONG" {
			t.Fatalf("busy client's PING = %q", got)
		}
		if cutAt.IsZero() && rec.closedFor(ReasonIdle) > 0 {
			cutAt = time.Now()
		}
	}
	if n := rec.closedFor(ReasonIdle); n != 1 {
		t.Fatalf("%d sessions closed as idle; want only the silent one (BLPOP, SUBSCRIBE and the busy client are not idle)", n)
	}
	silent.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.r.ReadByte(); err == nil {
		t.Fatal("the silent client's connection is still open after its idle close")
	}

	if _, err := r.Do(ctx, "LPUSH", "idle-test-list", "v"); err != nil {
		t.Fatal(err)
	}
	if got := blocked.line(t, "BLPOP reply"); got != "*2" {
		t.Fatalf("BLPOP reply starts %q; want *2 (the client kept its connection while blocked)", got)
	}
	if _, err := r.Do(ctx, "PUBLISH", "idle-test-channel", "hello"); err != nil {
		t.Fatal(err)
	}
	if got := sub.line(t, "message"); got != "*3" {
		t.Fatalf("subscriber got %q; want a message (*3)", got)
	}
	for range 6 { // $7, message, $17, idle-test-channel, $5, hello
		sub.line(t, "message")
	}

	// The rest of the BLPOP reply, then the close once it fell silent; the
	// busy client, silent since its last PING, goes the same way, and the
	// subscriber stays.
	for range 4 {
		blocked.line(t, "BLPOP reply")
	}
	blocked.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := blocked.r.ReadByte(); err == nil {
		t.Fatalf("the BLPOP client, silent after its reply, read %q; want its idle close", b)
	}
	eventually(t, "the BLPOP and busy clients closed as idle", 5*time.Second, func() bool {
		return rec.closedFor(ReasonIdle) == 3
	})
	if _, err := r.Do(ctx, "PUBLISH", "idle-test-channel", "again"); err != nil {
		t.Fatal(err)
	}
	if got := sub.line(t, "second message"); got != "*3" {
		t.Fatalf("subscriber got %q; want a second message (*3)", got)
	}
}
