package main

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/internal/testutil"
)

func TestAnalyzeWaitsForEverySentinel(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	events := []event{
		{sentinel: 2, channel: "+promoted-slave", at: at(1000)},
		{sentinel: 0, channel: "+switch-master", at: at(1060)},
	}
	if _, err := analyze(t0, events, 3); err == nil || !strings.Contains(err.Error(), "1 of 3") {
		t.Fatalf("two Sentinels still to switch: got %v, want an error naming 1 of 3", err)
	}
	// The same Sentinel twice (a later failover) does not make a third.
	events = append(events, event{sentinel: 0, channel: "+switch-master", at: at(1070)},
		event{sentinel: 2, channel: "+switch-master", at: at(2100)})
	if _, err := analyze(t0, events, 3); err == nil {
		t.Fatal("a Sentinel counted twice completed the run")
	}
	// The last follower switches late, from the next periodic hello.
	events = append(events, event{sentinel: 1, channel: "+switch-master", at: at(3000)})
	r, err := analyze(t0, events, 3)
	if err != nil {
		t.Fatal(err)
	}
	if r.Leader != 2 || !r.LeaderSwitch.Equal(at(2100)) {
		t.Errorf("leader %d switching at %v; want Sentinel 2 at %v", r.Leader, r.LeaderSwitch, at(2100))
	}
	// Majority is the second of three: the leader, 1.1 s after the first.
	if got, want := r.MajorityAfterPromotion(), 1100*time.Millisecond; got != want {
		t.Errorf("majority after promotion %v, want %v", got, want)
	}
	if got, want := r.MajorityAfterFirstSwitch(), 1040*time.Millisecond; got != want {
		t.Errorf("majority after first switch %v, want %v", got, want)
	}
	report := Report(lab.Env{Command: "go run ./bench/propagation", NProc: "2"}, Config{Replicas: 2, DownAfter: time.Second}, []Run{r})
	if !strings.Contains(report, "| 1 | 1000 | 60 / 1100 / 2000 | 1100 | 1040 |") || !strings.Contains(report, "In 1 of 1 runs") {
		t.Errorf("report does not show the run:\n%s", report)
	}
}

func TestAnalyzeWithoutPromotion(t *testing.T) {
	t0 := time.Now()
	events := []event{{sentinel: 0, channel: "+switch-master", at: t0}, {sentinel: 1, channel: "+switch-master", at: t0}}
	if _, err := analyze(t0, events, 2); err == nil || !strings.Contains(err.Error(), "promoted") {
		t.Fatalf("got %v, want an error saying no replica was promoted", err)
	}
}

func TestParseFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-runs", "0"},
		{"-replicas", "9"},
		{"-down-after", "10ms"},
		{"-pollers", "-1"},
		{"-poll", "0s"},
		{"-runs", "many"},
		{"stray"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	o, err := parseFlags([]string{"-quick"})
	if err != nil || o.cfg.Runs != 2 || !strings.Contains(o.results, "quick") {
		t.Errorf("-quick: got %+v, %v", o, err)
	}
}

// TestFailoverSmoke runs one real SIGKILL failover, with a poller, end to
// end: real Redis and Sentinels, subscriptions confirmed before the kill.
func TestFailoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a topology")
	}
	testredis.Require(t)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := failover(ctx, Config{Runs: 1, Replicas: 1, DownAfter: 500 * time.Millisecond, Pollers: 1, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Switches) != 3 || r.Leader < 0 || r.LeaderSwitch.IsZero() {
		t.Fatalf("run %+v: want a leader and 3 switches", r)
	}
	if d := r.MajorityAfterPromotion(); d < 0 || d > 10*time.Second {
		t.Errorf("majority %v after the promotion; want within the 2 s hello period plus slack", d)
	}
	if d := r.Promoted.Sub(r.Killed); d < 500*time.Millisecond {
		t.Errorf("promoted %v after the kill, before down-after (500ms) could pass", d)
	}
	// The subscribers and pollers are gone once failover returns.
	testutil.Eventually(t, "goroutines back to where they were", 5*time.Second, func() bool {
		return runtime.NumGoroutine() <= before
	})
}
