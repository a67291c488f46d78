package main

import (
	"context"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// --proxy.listen-address=unix:PATH serves clients on a unix socket, in
// front of a real master and Sentinel: a socket file left by a process that
// is gone is replaced, the file gets --proxy.socket-mode and
// --proxy.socket-group, a go-redis client
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

	gid := groupForSocket(t)
	var a *app
	t.Run("serving", func(t *testing.T) {
		a = startFromFlags(t, "--sentinel.addrs="+sentinel.Addr, "--proxy.listen-address=unix:"+path,
			"--proxy.socket-mode=0660", "--proxy.socket-group="+strconv.Itoa(gid), "--web.listen-address=127.0.0.1:0")
		eventually(t, "routed to the master", 10*time.Second, func() bool { return a.routes[0].server.Master() == master.Addr })
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
			t.Fatalf("socket file mode %v; want a socket with 0660", fi.Mode())
		}
		if got := fi.Sys().(*syscall.Stat_t).Gid; int(got) != gid {
			t.Fatalf("socket file group %d; want %d", got, gid)
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
		if ln, err := listenClients("unix:"+path, 0o666, -1); err == nil || !strings.Contains(err.Error(), "another process accepts") {
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

// groupForSocket is a group the test process may give a file to: other
// than its primary group where it can be (any, as root; a supplementary
// one otherwise), so that the file's group shows that the flag acted.
func groupForSocket(t *testing.T) int {
	own := os.Getgid()
	if os.Geteuid() == 0 {
		if own == 65534 {
			return 65533
		}
		return 65534
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if g != own {
			return g
		}
	}
	t.Logf("no supplementary group: --proxy.socket-group=%d is the process's own group, so the file's group cannot show the flag acted", own)
	return own
}

// --proxy.socket-group takes a group's name or number; what cannot be a
// group id is refused, with the flag named.
func TestSocketGroupFlag(t *testing.T) {
	own := os.Getgid()
	cases := map[string]int{"": -1, "65534": 65534, "0": 0, strconv.Itoa(own): own}
	if g, err := user.LookupGroupId(strconv.Itoa(own)); err == nil {
		cases[g.Name] = own
	} else {
		t.Logf("the process's group %d has no name here (%v): the name form is not checked", own, err)
	}
	for in, want := range cases {
		got, err := (&ProxyFlags{SocketGroup: in}).socketGroup()
		if err != nil || got != want {
			t.Errorf("--proxy.socket-group=%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"no-such-group-sentproxy", "4294967295", "4294967296", "-1", "12ab"} {
		if _, err := (&ProxyFlags{SocketGroup: in}).socketGroup(); err == nil || !strings.Contains(err.Error(), "--proxy.socket-group") {
			t.Errorf("--proxy.socket-group=%q: %v; want an error naming the flag", in, err)
		}
	}
}

// Under a umask of 0, as in many containers, the socket file must not be
// open to other users between the bind and the chmod of
// --proxy.socket-mode: a connection made in that moment would stay open
// after it. What was tried: the file's mode looked at in that moment,
// under umask 0, with a wanted mode of 0660 and the process's umask
// checked afterwards.
func TestUnixSocketPrivateUntilModeSet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "redis.sock")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	var between os.FileMode
	unixListened = func(p string) {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("socket file right after the bind: %v", err)
			return
		}
		between = fi.Mode().Perm()
	}
	defer func() { unixListened = nil }()

	ln, err := listenClients("unix:"+path, 0o660, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if between&0o077 != 0 {
		t.Errorf("socket file mode between the bind and the chmod: %v; want no permission for group or others", between)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file mode once listening: %v; want 0660", fi.Mode().Perm())
	}
	if u := syscall.Umask(0); u != 0 {
		t.Errorf("process umask after listenClients: %#o; want it given back (0)", u)
	}
}
