package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// --proxy.idle-timeout reaches both modes from the command line, in front
// of a real master and Sentinel: a client that sent one PING and then
// nothing is closed once the timeout has passed, and the close is counted
// with reason "idle". Tried in tcp mode (the epoll engine, which watches
// the timeout in its loop) and in resp mode (which ignored the flag
// before).
func TestIdleTimeoutFlag(t *testing.T) {
	testredis.Require(t)
	master := testredis.StartServer(t, redisproc.Options{})
	sentinel := testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: master.Port})
	for _, mode := range []string{"tcp", "resp"} {
		t.Run(mode, func(t *testing.T) {
			a := startFromFlags(t, "--sentinel.addrs="+sentinel.Addr, "--proxy.mode="+mode,
				"--proxy.idle-timeout=300ms", "--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0")
			eventually(t, "routed to the master", 10*time.Second, func() bool { return a.routes[0].server.Master() == master.Addr })
			c, err := net.DialTimeout("tcp", a.routes[0].ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			if _, err := io.WriteString(c, "PING\r\n"); err != nil {
				t.Fatal(err)
			}
			if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
				t.Fatalf("PING through sentproxy: %q, %v", line, err)
			}
			sent := time.Now()
			b, err := r.ReadByte()
			switch {
			case err == nil:
				t.Fatalf("read %q from an idle connection; want it closed", b)
			case errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatal("idle connection still open after 10 s; want it closed after 300 ms")
			}
			if waited := time.Since(sent); waited < 150*time.Millisecond {
				t.Fatalf("closed %v after the last reply; want about the 300 ms timeout", waited)
			}
			web := &harness{t: t, web: a.webLn.Addr().String()} // for its metric()
			eventually(t, "the idle close counted", 5*time.Second, func() bool {
				return web.metric(`sentproxy_proxy_closed_connections_total{master_name="mymaster",reason="idle"}`) == 1
			})
		})
	}
}
