package main

import (
	"bufio"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

func TestParseRPS(t *testing.T) {
	out := "GET: rps=12000.0 (overall: 11000.0) avg_msec=0.1\rGET: 98039.22 requests per second, p50=0.255 msec\n"
	got, err := parseRPS(out)
	if err != nil || got != 98039.22 {
		t.Fatalf("parseRPS = %v, %v", got, err)
	}
	if _, err := parseRPS("nothing"); err == nil {
		t.Fatal("parseRPS accepted output without a rate")
	}
}

func TestReadReply(t *testing.T) {
	in := "+PONG\r\n*2\r\n$4\r\nport\r\n$4\r\n6380\r\n-ERR no\r\n:3\r\n*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$3\r\na b\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	for _, want := range []string{"PONG", "port 6380", "-ERR no", "3", "message +switch-master a b"} {
		got, err := readReply(r)
		if err != nil || got != want {
			t.Fatalf("readReply = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := readReply(r); err == nil {
		t.Fatal("no error at EOF")
	}
}

func TestRespCommand(t *testing.T) {
	want := "*3\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$10\r\nmaxclients\r\n"
	if got := respCommand("CONFIG", "SET", "maxclients")[:len(want)]; got != want {
		t.Fatalf("respCommand = %q", got)
	}
}

func TestMedianRotateRequests(t *testing.T) {
	if m := lab.Median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median = %v", m)
	}
	if m := lab.Median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("median = %v", m)
	}
	if !math.IsNaN(lab.Median(nil)) {
		t.Fatal("median of nothing is not NaN")
	}
	if got := strings.Join(rotate([]string{"a", "b", "c"}, 4), ""); got != "bca" {
		t.Fatalf("rotate = %q", got)
	}
	if n := requests(1, 1, 1); n != 20000 {
		t.Fatalf("requests(1,1) = %d", n)
	}
	if n := requests(1000, 16, 1); n != 500000 {
		t.Fatalf("requests(1000,16,0.001) = %d", n)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Rounds != 1 || o.cfg.Idle != 500 || strings.Contains(o.results, "bench/RESULTS.md") {
		t.Fatalf("quick defaults: %+v %q", o.cfg, o.results)
	}
	for _, bad := range [][]string{{"-targets=nginx"}, {"-clients=0"}, {"-idle=20000"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestReport(t *testing.T) {
	cfg := Config{Clients: []int{1}, Pipelines: []int{1}, Targets: allTargets, Rounds: 2}
	var runs []TputRun
	for round := 0; round < 2; round++ {
		for _, tr := range []struct {
			t   string
			rps float64
		}{{"direct", 100}, {"tcp", 80}, {"epoll", 99}, {"resp", 60}, {"haproxy", 90}} {
			runs = append(runs, TputRun{Round: round, Target: tr.t, Clients: 1, Pipeline: 1, Requests: 1000, RPS: tr.rps, CPU: 10 * time.Millisecond})
		}
	}
	res := Results{Tput: runs, Idle: []IdleResult{
		{Mode: "tcp", Conns: 10, RSSBefore: 1 << 20, RSSAfter: 1<<20 + 10*4096, Closed: 10, FromSwitch: -time.Second},
		{Mode: "resp", Conns: 10, RSSBefore: 1 << 20, RSSAfter: 1<<20 + 10*8192, Moved: 9, Closed: 1},
	}}
	out := Report(Env{Command: "go run ./bench/scale"}, cfg, res)
	for _, want := range []string{
		"| 1 | 1 | 1000 | 100 | 80 | 99 | 60 | 90 |",
		"0.89 | 1.10 | 0.75 | 0.80 |",
		"epoll engine is slower than HAProxy in 0 of 1",
		"slower than HAProxy in 1 of 1 configurations: c=1 P=1 (0.89×)",
		"resp mode is slower than tcp mode in 1 of 1",
		"| tcp | 10 |",
		"4096 |",
		"closed 1 — behind its goal",
		"0 ms after SENTINEL FAILOVER (1000 ms before relative",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestIdleConns(t *testing.T) {
	if n := idleConns(9900, "tcp", 20000); n != 3250 {
		t.Fatalf("tcp: %d", n)
	}
	if n := idleConns(9900, "resp", 20000); n != 9900 {
		t.Fatalf("resp: %d", n)
	}
	if n := idleConns(500, "tcp", 20000); n != 500 {
		t.Fatalf("small: %d", n)
	}
}
