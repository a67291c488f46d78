package main

import (
	"bufio"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

func TestPercentiles(t *testing.T) {
	var xs []time.Duration
	for i := 1000; i >= 1; i-- { // 1..1000 µs, shuffled order does not matter
		xs = append(xs, time.Duration(i)*time.Microsecond)
	}
	p := percentiles(xs)
	want := Percentiles{P50: 500 * time.Microsecond, P90: 900 * time.Microsecond, P99: 990 * time.Microsecond,
		P999: 999 * time.Microsecond, Max: 1000 * time.Microsecond}
	if p != want {
		t.Fatalf("percentiles = %+v, want %+v", p, want)
	}
	// Nearest rank: with 10 samples p99 and p99.9 are the largest.
	small := []time.Duration{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	p = percentiles(small)
	if p.P50 != 5 || p.P90 != 9 || p.P99 != 10 || p.P999 != 10 || p.Max != 10 {
		t.Fatalf("percentiles of 10 = %+v", p)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Fatalf("percentile of nothing = %v", got)
	}
	if got := percentile([]time.Duration{7}, 0); got != 7 {
		t.Fatalf("percentile(q=0) = %v", got)
	}
}

func TestSpread(t *testing.T) {
	s := newSpread([]float64{30, 10, 20})
	if s.Median != 20 || s.Min != 10 || s.Max != 30 || s.N != 3 {
		t.Fatalf("spread = %+v", s)
	}
	if got := s.String(); got != "20 (10–30)" {
		t.Fatalf("String = %q", got)
	}
	if m := newSpread([]float64{4, 1, 2, 3}).Median; m != 2.5 {
		t.Fatalf("even median = %v", m)
	}
	if got := newSpread([]float64{-12.4}).String(); got != "-12" {
		t.Fatalf("one figure = %q", got)
	}
	if got := newSpread(nil).String(); got != "—" {
		t.Fatalf("no figure = %q", got)
	}
	if !math.IsNaN(newSpread(nil).Median) {
		t.Fatal("median of nothing is not NaN")
	}
	if got := newSpread([]float64{1.25, 2.5}).format("%.1f"); got != "1.9 (1.2–2.5)" && got != "1.9 (1.3–2.5)" {
		t.Fatalf("format = %q", got)
	}
}

func TestScheduleNext(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := schedule{start: t0, phase: 3 * time.Millisecond, interval: 10 * time.Millisecond}
	if got := s.at(2); !got.Equal(t0.Add(23 * time.Millisecond)) {
		t.Fatalf("at(2) = %v", got.Sub(t0))
	}
	for _, tc := range []struct {
		k       int64
		now     time.Duration // since t0
		slot    int64
		skipped int64
	}{
		{0, 4 * time.Millisecond, 1, 0},    // reply before the next slot (13 ms): send at slot 1
		{0, 13 * time.Millisecond, 1, 0},   // exactly at slot 1: not past, no skip
		{0, 14 * time.Millisecond, 2, 1},   // slot 1 past: send at slot 2 (23 ms), skip 1
		{0, 33 * time.Millisecond, 3, 2},   // slot 3 is now
		{5, 40 * time.Millisecond, 6, 0},   // far ahead of the clock: just the next slot
		{1, 100 * time.Millisecond, 10, 8}, // slots 2..9 past
	} {
		slot, skipped := s.next(tc.k, t0.Add(tc.now))
		if slot != tc.slot || skipped != tc.skipped {
			t.Errorf("next(%d, +%v) = %d, %d; want %d, %d", tc.k, tc.now, slot, skipped, tc.slot, tc.skipped)
		}
		if s.at(slot).Before(t0.Add(tc.now)) {
			t.Errorf("next(%d, +%v) returned a past slot", tc.k, tc.now)
		}
	}
	if n := s.slotsBefore(t0.Add(3 * time.Millisecond)); n != 0 {
		t.Fatalf("slotsBefore(phase) = %d", n)
	}
	if n := s.slotsBefore(t0.Add(3*time.Millisecond + 1)); n != 1 {
		t.Fatalf("slotsBefore(phase+1ns) = %d", n)
	}
	if n := s.slotsBefore(t0); n != 0 {
		t.Fatalf("slotsBefore(start) = %d", n)
	}
}

func TestNewSchedule(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(0, 0)
	for range 100 {
		s := newSchedule(t0, 5000, 10, rng)
		if s.interval != 2*time.Millisecond {
			t.Fatalf("interval = %v, want 2ms (10 connections share 5000/s)", s.interval)
		}
		if s.phase < 0 || s.phase >= s.interval {
			t.Fatalf("phase %v outside [0, %v)", s.phase, s.interval)
		}
	}
	if s := newSchedule(t0, 1000, 10, rng); s.interval != 10*time.Millisecond {
		t.Fatalf("interval = %v", s.interval)
	}
}

// fakeRedis answers SET with +OK and GET with the stored value, on one
// end of a pipe.
func fakeRedis(t *testing.T, c net.Conn, getReply string) {
	t.Helper()
	go func() {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if !strings.HasPrefix(line, "*") {
				continue
			}
			n := int(line[1] - '0')
			var args []string
			for range n {
				if _, err := r.ReadString('\n'); err != nil { // $len
					return
				}
				a, err := r.ReadString('\n')
				if err != nil {
					return
				}
				args = append(args, strings.TrimSuffix(a, "\r\n"))
			}
			reply := "+OK\r\n"
			if args[0] == "GET" {
				reply = getReply
			}
			if _, err := c.Write([]byte(reply)); err != nil {
				return
			}
		}
	}()
}

func TestClientDo(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	fakeRedis(t, b, "$3\r\nxxx\r\n")
	c := newClient(a, 7)
	if string(c.set) != "*3\r\n$3\r\nSET\r\n$5\r\nkey:7\r\n$3\r\nxxx\r\n" || string(c.get) != "*2\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n" {
		t.Fatalf("commands %q %q", c.set, c.get)
	}
	for n := range int64(4) {
		if err := c.do(n); err != nil {
			t.Fatalf("do(%d): %v", n, err)
		}
	}

	a2, b2 := net.Pipe()
	defer a2.Close()
	fakeRedis(t, b2, "-ERR nope\r\n")
	c2 := newClient(a2, 1)
	if err := c2.do(0); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if err := c2.do(1); err == nil || !strings.Contains(err.Error(), "ERR nope") {
		t.Fatalf("GET of an error reply: %v", err)
	}
}

func TestParseCPUCounters(t *testing.T) {
	c, err := parseCPUCounters("cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.total != 980 || c.busy != 160 {
		t.Fatalf("counters = %+v", c)
	}
	if f := busyFraction(cpuCounters{0, 0}, cpuCounters{25, 100}); f != 0.25 {
		t.Fatalf("busy = %v", f)
	}
	if !math.IsNaN(busyFraction(c, c)) {
		t.Fatal("no time passed but a busy share came out")
	}
	if _, err := parseCPUCounters("intr 1 2 3\n"); err == nil {
		t.Fatal("accepted a /proc/stat without a cpu line")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if len(c.Rates) != 2 || c.Rates[0] != 1000 || c.Rates[1] != 5000 || c.Conns != 10 || c.Rounds != 5 ||
		c.Duration != 10*time.Second || o.results != "bench/RESULTS.md" {
		t.Fatalf("defaults: %+v %q", c, o.results)
	}
	o, err = parseFlags([]string{"-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Rounds != 1 || len(o.cfg.Rates) != 1 || o.cfg.Rates[0] != 1000 || o.cfg.Duration != 3*time.Second ||
		strings.Contains(o.results, "bench/RESULTS.md") {
		t.Fatalf("quick: %+v %q", o.cfg, o.results)
	}
	o, err = parseFlags([]string{"-quick", "-results=x.md", "-rounds=2", "-rates=200, 300,200"})
	if err != nil {
		t.Fatal(err)
	}
	if o.results != "x.md" || o.cfg.Rounds != 2 || len(o.cfg.Rates) != 2 || o.cfg.Rates[1] != 300 {
		t.Fatalf("quick with flags: %+v %q", o.cfg, o.results)
	}
	for _, bad := range [][]string{
		{"-rates=0"}, {"-rates=abc"}, {"-rates=,"}, {"-rates=300000"},
		{"-conns=0"}, {"-rounds=0"}, {"-duration=500ms"}, {"-duration=x"},
		{"-results="}, {"-nosuch"}, {"extra"},
	} {
		_, err := parseFlags(bad)
		var ue lab.UsageError
		if !errors.As(err, &ue) {
			t.Errorf("parseFlags(%q) = %v, want a usage error", bad, err)
		}
	}
}

func TestRotate(t *testing.T) {
	if got := strings.Join(rotate(allTargets, 1), ","); got != "tcp,epoll,resp,haproxy,direct" {
		t.Fatalf("rotate = %q", got)
	}
	if got := strings.Join(rotate(allTargets, 5), ","); got != "direct,tcp,epoll,resp,haproxy" {
		t.Fatalf("rotate = %q", got)
	}
}

func fakeRun(round, rate int, target string, p50, p99 time.Duration) Run {
	return Run{Round: round, Rate: rate, Target: target, Requests: 10000, Achieved: 1000,
		Pct: Percentiles{P50: p50, P90: p50 + 10*time.Microsecond, P99: p99, P999: p99 + 100*time.Microsecond, Max: 2 * time.Millisecond},
		CPU: 300 * time.Millisecond, GenCPU: 100 * time.Millisecond, Busy: 0.2, Before: 0.05}
}

func TestReport(t *testing.T) {
	// The fake runs cover these targets only; epoll is left out.
	cfg := Config{Rates: []int{1000, 5000}, Conns: 10, Rounds: 3, Duration: 10 * time.Second, Targets: []string{"direct", "tcp", "resp", "haproxy"}}
	µ := time.Microsecond
	var runs []Run
	for round := range 3 {
		extra := time.Duration(round) * 30 * µ // rounds 0, 1, 2: resp added p99 80, 110, 140 µs at 1000/s
		runs = append(runs,
			fakeRun(round, 1000, "direct", 50*µ, 100*µ),
			fakeRun(round, 1000, "tcp", 80*µ, 160*µ),
			fakeRun(round, 1000, "resp", 90*µ, 180*µ+extra),
			fakeRun(round, 1000, "haproxy", 60*µ, 130*µ),
			fakeRun(round, 5000, "direct", 50*µ, 100*µ),
			fakeRun(round, 5000, "tcp", 80*µ, 300*µ),
			fakeRun(round, 5000, "resp", 90*µ, 350*µ),
			fakeRun(round, 5000, "haproxy", 60*µ, 140*µ),
		)
	}
	out := Report(lab.Env{Command: "go run ./bench/latency", NProc: "2"}, cfg, runs)
	for _, want := range []string{
		"## Latency at moderate load: open-loop fixed rate",
		"1000, 5000 requests/s spread over 10 connections",
		"| resp added p99 at moderate load < 100 µs | 1000 req/s | 110 (80–140) | **missed by 10 µs** (1/3 rounds under 100 µs) | 40 | 60 | 30 | 50 / 100 |",
		"| resp added p99 at moderate load < 100 µs | 5000 req/s | 250 | **missed by 150 µs** (0/3 rounds under 100 µs) | 40 | 200 | 40 | 50 / 100 |",
		"| 1000 | sentproxy resp | 40 | 40 | 110 (80–140) | 110 (80–140) | 0 | 30.0 |",
		"| 5000 | HAProxy | 10 | 10 | 40 | 40 | 0 | 30.0 |",
		"#### 5000 req/s over 10 connections",
		"| direct (Redis) | 10000 | 50 | 60 | 100 | 200 | 2000 | 0 | 30.0 | 20% |",
		"| 3 | 5000 | 1 | haproxy | 10000 | 1000 | 0 | 60 | 70 | 140 | 240 | 2000 | 0 | 30.0 | 10.0 | 20% | 5% |",
		"At 1000 req/s the machine's CPUs were busy (median over rounds, range): direct 20%, tcp 20%, resp 20%, haproxy 20%; in the half second before each measurement, without this program's load: 5%, 5%, 5%, 5%.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	sum := Summary(cfg, runs)
	for _, want := range []string{
		"1000 req/s: direct p50 50 p99 100; added p99: tcp 60, resp 110 (80–140), haproxy 30; resp goal < 100 µs: missed by 10 µs (1/3 rounds under 100 µs)",
		"CPU µs/req: tcp 30.0, resp 30.0, haproxy 30.0",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}

func TestGoalVerdict(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want string
	}{
		{[]float64{40, 60, 150}, "not settled: the median is 40 µs under, but only 2/3 rounds under 100 µs"},
		{[]float64{40, 60, 90}, "met, by 40 µs (3/3 rounds under 100 µs)"},
		{[]float64{140, 160}, "**missed by 50 µs** (0/2 rounds under 100 µs)"},
		{[]float64{99}, "met, by 1 µs (1/1 rounds under 100 µs)"},
		{nil, "not measured"},
	} {
		if got := goalVerdict(tc.in, []float64{10}, 100*time.Microsecond); got != tc.want {
			t.Errorf("goalVerdict(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReportNotesAddedP50OverGoal(t *testing.T) {
	cfg := Config{Rates: []int{1000}, Conns: 10, Rounds: 1, Duration: time.Second, Targets: allTargets}
	µ := time.Microsecond
	runs := []Run{
		fakeRun(0, 1000, "direct", 50*µ, 900*µ),
		fakeRun(0, 1000, "tcp", 180*µ, 800*µ),
		fakeRun(0, 1000, "resp", 200*µ, 850*µ), // p99 difference -50 µs: tail noise
		fakeRun(0, 1000, "haproxy", 100*µ, 950*µ),
	}
	out := Report(lab.Env{}, cfg, runs)
	for _, want := range []string{
		"| 1000 req/s | -50 | **missed**: the added p50 alone is 150 µs, 50 µs over; the p99 difference is tail noise (1/1 rounds under 100 µs) | 150 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
