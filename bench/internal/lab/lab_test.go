package lab

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestCPUTimeAndRSSOfSelf(t *testing.T) {
	deadline := time.Now().Add(2 * time.Second)
	var cpu time.Duration
	// Burn a little CPU so that at least one clock tick is recorded.
	for x := 0; time.Now().Before(deadline); x++ {
		var err error
		if cpu, err = CPUTime(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if cpu > 0 {
			break
		}
	}
	if cpu <= 0 {
		t.Fatalf("CPU time of a busy process stayed %v", cpu)
	}
	rss, err := RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 {
		t.Fatalf("RSS of a Go test binary is %d bytes, expected at least 1 MiB", rss)
	}
}

func TestCPUTimeOfMissingProcess(t *testing.T) {
	// PID 0 has no /proc entry.
	if _, err := CPUTime(0); err == nil {
		t.Fatal("CPUTime(0) succeeded")
	}
}

func TestHAProxyRoleCheckConfig(t *testing.T) {
	cfg := HAProxyConfig(HAProxyOptions{Servers: []string{"127.0.0.1:1", "127.0.0.1:2"}, RoleCheck: true}, "127.0.0.1:3")
	for _, want := range []string{
		"tcp-check expect string role:master",
		"server redis1 127.0.0.1:1 check inter 1000ms on-marked-down shutdown-sessions",
		"server redis2 127.0.0.1:2 check inter 1000ms on-marked-down shutdown-sessions",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	path := t.TempDir() + "/R.md"
	if err := os.WriteFile(path, []byte("# R\n<!-- a:begin -->\nold\n<!-- a:end -->\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSection(path, "a", "new\n"); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSection(path, "b", "bee"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "# R\n<!-- a:begin -->\nnew\n<!-- a:end -->\ntail\n\n<!-- b:begin -->\nbee\n<!-- b:end -->\n"
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// A file with a begin marker but no end marker is refused, not mangled.
	if err := os.WriteFile(path, []byte("<!-- a:begin -->\nx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSection(path, "a", "y"); err == nil {
		t.Fatal("a section without its end marker was accepted")
	}
}

// CPUTimes splits what CPUTime reports: user and system, from the same
// fields, each never negative and together never more than a later total.
func TestCPUTimesSplitsCPUTime(t *testing.T) {
	pid := os.Getpid()
	user, system, err := CPUTimes(pid)
	if err != nil {
		t.Fatal(err)
	}
	total, err := CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if user < 0 || system < 0 || user+system > total {
		t.Fatalf("user %v + system %v, then total %v", user, system, total)
	}
	if _, _, err := CPUTimes(1 << 30); err == nil {
		t.Fatal("CPUTimes of a PID that does not exist: no error")
	}
}

func TestMedian(t *testing.T) {
	xs := []float64{4, 1, 3, 2}
	if m := Median(xs); m != 2.5 {
		t.Fatalf("Median(%v) = %v; want 2.5", xs, m)
	}
	if xs[0] != 4 {
		t.Fatal("Median sorted its argument in place")
	}
}
