package proxy

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// expectClosed fails unless the proxy closes rc's connection within 5 s.
func (rc *rawClient) expectClosed(what string) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := rc.r.ReadByte()
	switch {
	case err == nil:
		rc.t.Fatalf("%s read %q; want its connection closed as idle", what, b)
	case errors.Is(err, os.ErrDeadlineExceeded):
		rc.t.Fatalf("%s: connection still open 5 s on; want it closed as idle", what)
	}
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

	blocked := dialRaw(t, addr)
	blocked.send("BLPOP idle-test-list 0")
	sub := dialRaw(t, addr)
	sub.send("SUBSCRIBE idle-test-channel")
	sub.expect("*3\r\n$9\r\nsubscribe\r\n$17\r\nidle-test-channel\r\n:1\r\n")
	busy := dialRaw(t, addr)
	silent := dialRaw(t, addr)
	silent.send("PING")
	silent.expect("+PONG\r\n")

	// The busy client pings every quarter of the timeout until the silent
	// one has been cut, and for one timeout more.
	var cutAt time.Time
	deadline := time.Now().Add(5 * time.Second)
	for cutAt.IsZero() || time.Since(cutAt) < idle {
		if time.Now().After(deadline) {
			t.Fatal("the silent client was not closed as idle within 5 s")
		}
		time.Sleep(idle / 4) // the activity pattern under test, not synchronisation
		busy.send("PING")
		busy.expect("+PONG\r\n")
		if cutAt.IsZero() && rec.closedFor(ReasonIdle) > 0 {
			cutAt = time.Now()
		}
	}
	if n := rec.closedFor(ReasonIdle); n != 1 {
		t.Fatalf("%d sessions closed as idle; want only the silent one (BLPOP, SUBSCRIBE and the busy client are not idle)", n)
	}
	silent.expectClosed("the silent client")

	if _, err := r.Do(ctx, "LPUSH", "idle-test-list", "v"); err != nil {
		t.Fatal(err)
	}
	blocked.expect("*2\r\n$14\r\nidle-test-list\r\n$1\r\nv\r\n")
	if _, err := r.Do(ctx, "PUBLISH", "idle-test-channel", "hello"); err != nil {
		t.Fatal(err)
	}
	sub.expect("*3\r\n$7\r\nmessage\r\n$17\r\nidle-test-channel\r\n$5\r\nhello\r\n")

	// The BLPOP client, silent once its reply came, is closed; the busy
	// client, silent since its last PING, goes the same way, and the
	// subscriber stays.
	blocked.expectClosed("the BLPOP client, silent after its reply,")
	eventually(t, "the BLPOP and busy clients closed as idle", 5*time.Second, func() bool {
		return rec.closedFor(ReasonIdle) == 3
	})
	if _, err := r.Do(ctx, "PUBLISH", "idle-test-channel", "again"); err != nil {
		t.Fatal(err)
	}
	sub.expect("*3\r\n$7\r\nmessage\r\n$17\r\nidle-test-channel\r\n$5\r\nagain\r\n")
}
