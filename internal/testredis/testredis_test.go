package testredis_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// send writes one raw RESP command and returns the first reply line, so
// this test checks the wire and not only redisproc's own client.
func send(t *testing.T, addr, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(cmd)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

func TestStartServer(t *testing.T) {
	p := testredis.StartServer(t, redisproc.Options{})
	if got := send(t, p.Addr, "*1\r\n$4\r\nPING\r\n"); got != "+PONG" {
		t.Errorf("PING = %q", got)
	}
}

// TestStartTopologyWithPassword covers the auth paths: masterauth for
// replication, auth-pass for the Sentinels, AUTH in redisproc's own checks.
// Cleanup must leave no process behind.
func TestStartTopologyWithPassword(t *testing.T) {
	var pids []int
	t.Run("topology", func(t *testing.T) {
		topo := testredis.StartTopology(t, redisproc.TopologyOptions{Password: "pw", Sentinels: 3, Replicas: 2})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := topo.CurrentMaster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != topo.Master.Addr {
			t.Errorf("CurrentMaster = %s, want %s", got, topo.Master.Addr)
		}
		if r := send(t, topo.Master.Addr, "*1\r\n$4\r\nPING\r\n"); !strings.HasPrefix(r, "-NOAUTH") {
			t.Errorf("PING without password = %q, want -NOAUTH", r)
		}
		if n := len(topo.SentinelAddrs()); n != 3 {
			t.Errorf("%d Sentinel addresses, want 3", n)
		}
		for _, p := range append(append([]*redisproc.Process{topo.Master}, topo.Replicas...), topo.Sentinels...) {
			pids = append(pids, p.PID())
		}
	})
	// The subtest's cleanups have run by now.
	if len(pids) != 6 {
		t.Fatalf("got %d PIDs, want 6", len(pids))
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d survived cleanup: kill(pid, 0) = %v", pid, err)
		}
	}
}
