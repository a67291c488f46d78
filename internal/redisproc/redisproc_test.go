package redisproc

import (
	"bufio"
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireBinaries mirrors testredis.Require, which this package cannot
// import (testredis imports redisproc).
func requireBinaries(t *testing.T) {
	t.Helper()
	if _, _, err := FindBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v", err)
		}
		t.Skipf("%v", err)
	}
}

func dumpLogsOnFailure(t *testing.T, procs ...*Process) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range procs {
			t.Logf("--- %s (%s):\n%s", p.Addr, p.LogPath(), p.LogTail(30))
		}
	})
}

// assertGone checks that pid no longer exists: not running, and reaped.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("bad pid %d", pid)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists after Close: kill(pid, 0) = %v", pid, err)
	}
}

func ping(ctx context.Context, p *Process) error {
	_, err := do(ctx, p.Addr, p.password, "PING")
	return err
}

func TestReadReply(t *testing.T) {
	in := "+OK\r\n-ERR bad\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$2\r\nab\r\n*1\r\n:1\r\n$0\r\n\r\n"
	want := []any{"OK", replyError("ERR bad"), int64(42), "hello", nil, []any{"ab", []any{int64(1)}}, ""}
	br := bufio.NewReader(strings.NewReader(in))
	for i, w := range want {
		got, err := readReply(br)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("reply %d = %#v, want %#v", i, got, w)
		}
	}
	for _, bad := range []string{"?x\r\n", "$3\r\nab\r\n", ":x\r\n", "+OK\n"} {
		if _, err := readReply(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("readReply(%q) succeeded", bad)
		}
	}
}

func TestQuoteConf(t *testing.T) {
	if got, want := quoteConf(`/tmp/a b/"c"\d`), `"/tmp/a b/\"c\"\\d"`; got != want {
		t.Errorf("quoteConf = %s, want %s", got, want)
	}
}

func TestServerSignalsAndRestart(t *testing.T) {
	requireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := StartServer(ctx, Options{Dir: t.TempDir(), Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dumpLogsOnFailure(t, p)

	if err := ping(ctx, p); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if _, err := do(ctx, p.Addr, "", "GET", "k"); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("GET without password: err = %v, want NOAUTH", err)
	}

	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, p); err == nil {
		t.Error("PING answered while stopped")
	}
	if err := p.Cont(); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, p); err != nil {
		t.Errorf("PING after Cont: %v", err)
	}

	first := p.PID()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, first)
	if err := p.Stop(); err == nil {
		t.Error("Stop of a killed process succeeded")
	}
	addr := p.Addr
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Addr != addr || p.PID() == first {
		t.Errorf("after Restart: addr %s pid %d, want addr %s and a new pid", p.Addr, p.PID(), addr)
	}
	if err := ping(ctx, p); err != nil {
		t.Errorf("PING after Restart: %v", err)
	}

	second := p.PID()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	assertGone(t, second)
	if err := p.Restart(ctx); err == nil {
		t.Error("Restart after Close succeeded")
	}
}

func TestStartServerReportsLog(t *testing.T) {
	requireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := StartServer(ctx, Options{Dir: t.TempDir(), ExtraConfig: []string{"no-such-directive 1"}})
	if err == nil {
		t.Fatal("StartServer with a bad directive succeeded")
	}
	// The config error goes to stderr before Redis opens its log file, so
	// this checks that stderr lands in the log and the log in the error.
	if !strings.Contains(err.Error(), "no-such-directive") {
		t.Errorf("error does not quote the log: %v", err)
	}
}

func TestTopologyFailover(t *testing.T) {
	requireBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	start := time.Now()
	topo, err := StartTopology(ctx, TopologyOptions{Dir: t.TempDir(), DownAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer topo.Close()
	all := append(append([]*Process{topo.Master}, topo.Replicas...), topo.Sentinels...)
	dumpLogsOnFailure(t, all...)
	t.Logf("topology up and converged in %v", time.Since(start).Round(time.Millisecond))
	if len(topo.Replicas) != 1 || len(topo.Sentinels) != 3 {
		t.Fatalf("got %d replicas, %d Sentinels; want 1, 3", len(topo.Replicas), len(topo.Sentinels))
	}

	cur, err := topo.CurrentMaster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur != topo.Master.Addr {
		t.Fatalf("CurrentMaster = %s, want %s", cur, topo.Master.Addr)
	}
	if topo.ByAddr(topo.Replicas[0].Addr) != topo.Replicas[0] || topo.ByAddr("127.0.0.1:1") != nil {
		t.Error("ByAddr does not find the data nodes")
	}

	// Forced failover: the old master stays up and must be demoted.
	oldMaster := topo.Master.Addr
	start = time.Now()
	if err := topo.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	newMaster, err := topo.WaitMaster(ctx, oldMaster)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SENTINEL FAILOVER -> majority agrees on %s in %v", newMaster, time.Since(start).Round(time.Millisecond))
	if newMaster != topo.Replicas[0].Addr {
		t.Fatalf("new master %s, want the replica %s", newMaster, topo.Replicas[0].Addr)
	}
	if err := topo.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover -> all Sentinels agree, old master replicating: %v", time.Since(start).Round(time.Millisecond))

	// Crash: kill the new master; the old one is the only candidate left.
	start = time.Now()
	if err := topo.ByAddr(newMaster).Kill(); err != nil {
		t.Fatal(err)
	}
	third, err := topo.WaitMaster(ctx, newMaster)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -> majority agrees on %s in %v", third, time.Since(start).Round(time.Millisecond))
	if third != oldMaster {
		t.Fatalf("master after kill %s, want the old master %s", third, oldMaster)
	}

	var pids []int
	for _, p := range all {
		pids = append(pids, p.PID())
	}
	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		assertGone(t, pid)
	}
	if err := topo.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
