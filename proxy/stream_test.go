package proxy

import (
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// sendBulkCommand writes a multibulk command whose last argument is n bytes
// of a repeating a..z pattern, from a small reusable buffer, so that the
// test client itself never holds the value. tail is written right after it
// (more commands, say).
func sendBulkCommand(t *testing.T, c *rawClient, args []string, n int, tail string) {
	t.Helper()
	hdr := "*" + strconv.Itoa(len(args)+1) + "\r\n"
	for _, a := range args {
		hdr += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
	}
	hdr += "$" + strconv.Itoa(n) + "\r\n"
	writeAll(t, c, []byte(hdr))
	writePattern(t, c, 0, n)
	writeAll(t, c, []byte("\r\n"+tail))
}

// writePattern writes bytes [from, to) of the a..z pattern.
func writePattern(t *testing.T, c *rawClient, from, to int) {
	t.Helper()
	chunk := make([]byte, 256<<10)
	for off := from; off < to; {
		k := min(len(chunk), to-off)
		for i := range k {
			chunk[i] = byte('a' + (off+i)%26)
		}
		writeAll(t, c, chunk[:k])
		off += k
	}
}

func writeAll(t *testing.T, c *rawClient, b []byte) {
	t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// heapPeak samples the heap in use until stop is called and returns the
// highest value seen.
func heapPeak() (stop func() uint64) {
	var (
		mu   sync.Mutex
		peak uint64
	)
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// A write longer than the old 64 MiB limit on a held command goes through,
// pipelined between small commands and inside MULTI, in order, while the
// proxy's heap stays far below the value's size: it is forwarded as it
// arrives, not held whole.
func TestRESPStreamsLargeWrites(t *testing.T) {
	addr, redisAddr := startRedisProxy(t, ModeRESP)
	c := dialRaw(t, addr)
	const big = 72 << 20
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := heapPeak()

	writeAll(t, c, []byte("*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n"))
	sendBulkCommand(t, c, []string{"SET", "b"}, big, "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$6\r\nSTRLEN\r\n$1\r\nb\r\n")
	c.expect("+OK\r\n+OK\r\n$1\r\n1\r\n:" + strconv.Itoa(big) + "\r\n")
	c.send("MULTI")
	sendBulkCommand(t, c, []string{"APPEND", "b"}, 200<<10, "")
	c.send("EXEC")
	c.expect("+OK\r\n+QUEUED\r\n*1\r\n:" + strconv.Itoa(big+200<<10) + "\r\n")

	peak := stop()
	if grew := int64(peak) - int64(before.HeapInuse); grew > 16<<20 {
		t.Errorf("heap in use grew by %d MiB while a %d MiB value went through; want < 16 MiB (streamed, not held)", grew>>20, big>>20)
	}
	direct := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer direct.Close()
	ctx := context.Background()
	head, _ := direct.GetRange(ctx, "b", 0, 27).Result()
	tail, _ := direct.GetRange(ctx, "b", int64(big-3), int64(big-1)).Result()
	wantTail := string([]byte{byte('a' + (big-3)%26), byte('a' + (big-2)%26), byte('a' + (big-1)%26)})
	if head != "abcdefghijklmnopqrstuvwxyzab" || tail != wantTail {
		t.Fatalf("stored value starts %q and ends %q; want the pattern intact", head, tail)
	}
}

// A failover in the middle of a streamed write: Redis runs only whole
// commands, so the old master never ran it, the new one never sees a
// fragment of it, and the client is told it did not run. The connection
// then carries on, on the new master.
func TestRESPStreamCutByFailover(t *testing.T) {
	s, addr, a, b := twoMasters(t, Config{})
	c := dialRaw(t, addr)
	const n = 8 << 20
	writeAll(t, c, []byte("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$"+strconv.Itoa(n)+"\r\n"))
	writePattern(t, c, 0, 1<<20)
	eventually(t, "the proxy streaming the SET", 5*time.Second, func() bool {
		for _, ss := range s.sessionsForTest() {
			ss.rc.mu.Lock()
			streaming := ss.rc.streaming
			ss.rc.mu.Unlock()
			if streaming {
				return true
			}
		}
		return false
	})
	s.SetMaster(b.Addr)
	writePattern(t, c, 1<<20, n)
	writeAll(t, c, []byte("\r\n"))
	c.send("SET after 1")
	c.send("EXISTS big")
	c.expect(string(errCommandCut) + "+OK\r\n:0\r\n")

	ctx := context.Background()
	for _, p := range []*redisproc.Process{a, b} {
		direct := redis.NewClient(&redis.Options{Addr: p.Addr})
		n, err := direct.Exists(ctx, "big").Result()
		direct.Close()
		if err != nil || n != 0 {
			t.Fatalf("EXISTS big on %s = %d, %v; want 0: a cut command must not run", p.Addr, n, err)
		}
	}
}

// A streamed write that reached the master whole, which then failed
// before answering, has an unknown outcome, like any write in flight. The
// old master is stopped (SIGSTOP) so that the reply cannot come first.
func TestRESPStreamedWriteInFlightAtSwitch(t *testing.T) {
	s, addr, a, b := twoMasters(t, Config{})
	c := dialRaw(t, addr)
	c.send("PING")
	c.expect("+PONG\r\n")
	stopped(t, a)
	sendBulkCommand(t, c, []string{"SET", "big"}, 100<<10, "")
	eventually(t, "the streamed SET forwarded whole", 5*time.Second, func() bool {
		// Complete and queued for its reply (its last piece may still be
		// on its way to the stopped master: the outcome is as unknown).
		return s.withOnlyResp(func(rc *respConn) bool { return rc.qLen == 1 && !rc.streaming })
	})
	s.SetMaster(b.Addr)
	c.expect(string(errUnknownOutcome))
	c.send("PING")
	c.expect("+PONG\r\n")
}

// Malformed bytes after a streamed argument: the client gets Redis's
// protocol error after the replies it is owed, then the close; the master
// never runs the broken command and other clients are not touched.
func TestRESPProtocolErrorWhileStreaming(t *testing.T) {
	addr, redisAddr := startRedisProxy(t, ModeRESP)
	other := dialRaw(t, addr)
	c := dialRaw(t, addr)
	writeAll(t, c, []byte("*1\r\n$4\r\nPING\r\n*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n"))
	writePattern(t, c, 0, 100000)
	writeAll(t, c, []byte("\r\nXX\r\n"))
	c.expect("+PONG\r\n-ERR Protocol error: expected '$', got 'X'\r\n")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("after the protocol error: %v; want the connection closed", err)
	}
	other.send("EXISTS k")
	other.expect(":0\r\n")
	direct := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer direct.Close()
	if n, err := direct.Exists(context.Background(), "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k on the master = %d, %v; want 0", n, err)
	}
}

// The same long write through both modes gives the same stored value
// (resp mode must not alter a byte it streams).
func TestLargeValueSameInBothModes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			addr, _ := startRedisProxy(t, mode)
			c := dialRaw(t, addr)
			const n = 3<<20 + 7
			sendBulkCommand(t, c, []string{"SET", "v"}, n, "")
			c.expect("+OK\r\n")
			cl := client(t, addr, 2)
			got, err := cl.Get(context.Background(), "v").Result()
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(got); i++ {
				if got[i] != byte('a'+i%26) {
					t.Fatalf("byte %d is %q; want %q", i, got[i], byte('a'+i%26))
				}
			}
			if len(got) != n {
				t.Fatalf("length %d; want %d", len(got), n)
			}
		})
	}
}

// A read-only command cannot be streamed (it is held so that it can be
// resent after a failover); one longer than the per-client limit gets an
// error, is not run, and the connection goes on. Inside MULTI nothing is
// resent on its own, so the same command streams and the transaction runs.
func TestRESPCommandLongerThanTheClientLimit(t *testing.T) {
	r := testredis.StartServer(t, redisproc.Options{})
	s, addr, _ := startServer(t, Config{Mode: ModeRESP, MaxClientBuffer: 1 << 20})
	s.SetMaster(r.Addr)
	c := dialRaw(t, addr)
	sendBulkCommand(t, c, []string{"GET"}, 2<<20, "")
	c.send("PING")
	c.expect(string(errCommandTooLong) + "+PONG\r\n")

	c.send("MULTI")
	sendBulkCommand(t, c, []string{"GET"}, 2<<20, "")
	c.send("EXEC")
	c.expect("+OK\r\n+QUEUED\r\n*1\r\n$-1\r\n")
	if got := s.Buffered(); got > 1<<20 {
		t.Fatalf("%d bytes held after the replies; want at most the limit", got)
	}
}

// A master that dies in the middle of a reply leaves the client with part
// of it; nothing can complete it, so the connection is closed rather than
// carrying on with a resent command's reply glued to the fragment.
func TestRESPMasterDiesMidReply(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			c.Read(buf) // the GET
			c.Write([]byte("$10\r\nabc"))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-served })
	s, addr, _ := startServer(t, Config{Mode: ModeRESP, HoldTimeout: 5 * time.Second})
	s.SetMaster(ln.Addr().String())
	c := dialRaw(t, addr)
	c.send("GET k")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c.r)
	if string(got) != "$10\r\nabc" || err != nil {
		t.Fatalf("client read %d bytes starting %q, %v; want the fragment then the close", len(got), got[:min(len(got), 40)], err)
	}
}
