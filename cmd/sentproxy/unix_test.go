package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// --proxy.listen-address=unix:PATH serves clients on a unix socket, in
// front of a real master and Sentinel: a socket file left by a process that
// is gone is replaced, the file gets --proxy.socket-mode, a go-redis client
// on the socket writes through to the master, a second listener on the
// same path is refused while sentproxy accepts there, and the file is
// removed when sentproxy stops.
func TestUnixSocketListener(t *testing.T) {
	testredis.Require(t)
	master := testredis.StartServer(t, redisproc.Options{})
	sentinel := testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: master.Port})
	path := filepath.Join(t.TempDir(), "redis.sock")

	// A stale socket file: bound, then closed without unlinking, as a
	// SIGKILLed process leaves it.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	var a *app
	t.Run("serving", func(t *testing.T) {
		a = startFromFlags(t, "--sentinel.addrs="+sentinel.Addr, "--proxy.listen-address=unix:"+path,
			"--proxy.socket-mode=0600", "--web.listen-address=127.0.0.1:0")
		eventually(t, "routed to the master", 10*time.Second, func() bool { return a.routes[0].server.Master() == master.Addr })
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket file mode %v; want a socket with 0600", fi.Mode())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := redis.NewClient(&redis.Options{Network: "unix", Addr: path, MaxRetries: -1})
		defer c.Close()
		if err := c.Set(ctx, "over-unix", "yes", 0).Err(); err != nil {
			t.Fatalf("SET through sentproxy's unix socket: %v", err)
		}
		if v, err := master.Do(ctx, "GET", "over-unix"); err != nil || v != "yes" {
			t.Fatalf("GET on the master = %v, %v", v, err)
		}
		if ln, err := listenClients("unix:"+path, 0o666); err == nil || !strings.Contains(err.Error(), "another process accepts") {
			if ln != nil {
				ln.Close()
			}
			t.Fatalf("a second listener on the live socket: %v; want it refused", err)
		}
	})
	// The subtest's cleanup stopped sentproxy.
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file after sentproxy stopped: %v; want it removed", err)
	}
}
