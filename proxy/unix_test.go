package proxy

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// Clients on a unix socket, as an app next to its Redis often connects:
// each engine and mode carries their commands to a real master (the epoll
// engine in its loop, not falling back to io.Copy), and a switch cuts (tcp)
// or moves (resp) them as it does on TCP, with nothing on the old master.
func TestUnixSocketClients(t *testing.T) {
	testredis.Require(t)
	a := testredis.StartServer(t, redisproc.Options{})
	b := testredis.StartServer(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ mode, engine string }{
		{ModeTCP, EngineEpoll}, {ModeTCP, EngineSplice}, {ModeRESP, ""},
	} {
		t.Run(tc.mode+"-"+tc.engine, func(t *testing.T) {
			if tc.engine == EngineEpoll && !EngineEpollSupported {
				t.Skip("no epoll engine here")
			}
			ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "redis.sock"))
			if err != nil {
				t.Fatal(err)
			}
			s, rec := startServerOn(t, Config{Mode: tc.mode, Engine: tc.engine}, ln)
			if s.Engine() != tc.engine {
				t.Fatalf("engine %q; want %q", s.Engine(), tc.engine)
			}
			s.SetMaster(a.Addr)
			c, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			key := "unix-" + tc.mode + "-" + tc.engine
			if got, err := sendLine(c, r, "SET "+key+" "+tc.mode); err != nil || got != "+OK" {
				t.Fatalf("SET through the proxy on a unix socket = %q, %v", got, err)
			}
			if v, err := a.Do(ctx, "GET", key); err != nil || v != tc.mode {
				t.Fatalf("GET on the master = %v, %v", v, err)
			}
			if tc.engine == EngineEpoll {
				s.loopMu.Lock()
				inLoop := s.loops[0] != nil && s.loops[0].live == 1
				s.loopMu.Unlock()
				if !inLoop {
					t.Fatal("the connection is not in the epoll engine's loop")
				}
			}
			s.SetMaster(b.Addr)
			got, err := sendLine(c, r, "SET after-"+key+" "+tc.mode)
			checkAfterSwitch(t, tc.mode, "after-"+key, got, err, rec, a, b)
		})
	}
}
