package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// TestDrillSmoke runs the sentinel-failover scenario once, small, end to
// end: real Redis, Sentinels, two sentproxy processes, go-redis, and
// HAProxy when it is installed.
func TestDrillSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a topology and proxies")
	}
	testredis.Require(t)
	contenders := []string{"tcp", "resp", "goredis"}
	if _, err := exec.LookPath("haproxy"); err == nil {
		contenders = []string{"tcp", "resp", "haproxy", "goredis"}
	} else {
		t.Log("haproxy not on PATH; running without that contender")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	root, err := lab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, err := lab.BuildSentproxy(ctx, root, dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Scenarios:  []string{"sentinel-failover"},
		Contenders: contenders,
		Clients:    2,
		Rate:       20,
		DownAfter:  time.Second,
		Runs:       1,
		Warmup:     1500 * time.Millisecond,
		Tail:       time.Second,
		Deadline:   20 * time.Second,
		Bin:        bin,
		Dir:        dir,
		Log:        slog.New(slog.DiscardHandler),
	}
	results, runs, err := Drill(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	assertNoChildren(t)
	if len(results) != 1 || len(results[0].Runs) != 1 {
		t.Fatalf("got %d scenarios, failures %v; want one completed run", len(results), results[0].Failures)
	}
	d, m := runs[0], results[0].Metrics[0]
	if d.Switch.IsZero() {
		t.Fatal("no +switch-master seen")
	}
	if len(d.Monitor) == 0 {
		t.Error("MONITOR on the old master saw no drill command")
	}
	for _, c := range contenders {
		if m[c].Requests == 0 {
			t.Errorf("%s: no requests recorded", c)
		}
	}
	for _, c := range []string{"tcp", "resp"} {
		x := m[c]
		if !x.HasFirstOK {
			t.Errorf("%s: no success after the switch", c)
		}
		if x.OldWritesAcked != 0 {
			t.Errorf("%s: %d acknowledged writes reached the old master after the switch; want 0", c, x.OldWritesAcked)
		}
		if !x.FinalKnown || x.LostAfter != 0 {
			t.Errorf("%s: lost after fault %d (final known %v); want 0", c, x.LostAfter, x.FinalKnown)
		}
	}
	report := Report(Env{Command: "test"}, cfg, results)
	if !strings.Contains(report, "### sentinel-failover") || !strings.Contains(report, "| sentproxy resp |") {
		t.Errorf("report lacks the scenario table:\n%s", report)
	}
}

// assertNoChildren fails if a process this test started is still running:
// every one must have been stopped by the drill itself.
func assertNoChildren(t *testing.T) {
	t.Helper()
	me := strconv.Itoa(os.Getpid())
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			s := string(b)
			i := strings.LastIndexByte(s, ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(s[i+1:])
			// f[0] is the state, f[1] the parent PID; zombies are reaped by
			// their Wait goroutine.
			if len(f) > 1 && f[1] == me && f[0] != "Z" {
				left = append(left, e.Name()+" "+s[:i+1])
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left running: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
