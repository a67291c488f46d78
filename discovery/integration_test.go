package discovery

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/internal/testutil"
)

// These tests run real redis-server and redis-sentinel processes.

func startWatcher(t *testing.T, cfg Config, mutate func(*Watcher)) (*Watcher, <-chan Update) {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	})
	return w, w.Updates()
}

// nextMaster waits for an update that names a master (skipping withdrawals).
func nextMaster(t *testing.T, updates <-chan Update, timeout time.Duration) Update {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case u, ok := <-updates:
			if !ok {
				t.Fatal("updates closed")
			}
			if u.Addr != "" {
				return u
			}
		case <-deadline:
			t.Fatalf("no master update within %s", timeout)
		}
	}
}

func topology(t *testing.T, opts redisproc.TopologyOptions) *redisproc.Topology {
	t.Helper()
	if opts.DownAfter == 0 {
		opts.DownAfter = 2 * time.Second
	}
	if opts.FailoverTimeout == 0 {
		opts.FailoverTimeout = 10 * time.Second
	}
	return testredis.StartTopology(t, opts)
}

func failover(t *testing.T, topo *redisproc.Topology) string {
	t.Helper()
	old := topo.Master.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topo.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	addr, err := topo.WaitMaster(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// A +switch-message wakes the check at once: with a poll interval far
// longer than the test, the switch can only come from the subscription.
func TestSwitchMessageTriggersCheck(t *testing.T) {
	topo := topology(t, redisproc.TopologyOptions{})
	_, updates := startWatcher(t, Config{
		MasterName:   topo.MasterName,
		Sentinels:    topo.SentinelAddrs()[:1], // the others are learnt
		PollInterval: time.Hour,
		Timeout:      500 * time.Millisecond,
	}, nil)
	if u := nextMaster(t, updates, 10*time.Second); u.Addr != topo.Master.Addr {
		t.Fatalf("first master %s; want %s", u.Addr, topo.Master.Addr)
	}
	want := failover(t, topo)
	u := nextMaster(t, updates, 10*time.Second)
	if u.Addr != want || u.Previous != topo.Master.Addr {
		t.Fatalf("update %+v; want %s replacing %s", u, want, topo.Master.Addr)
	}
	if strings.HasPrefix(u.Reason, "poll") {
		t.Fatalf("reason %q; want the switch to come from a Sentinel event (+switch-master, +failover-end)", u.Reason)
	}
}

// Pub/sub messages get lost in real life; polling alone must converge.
func TestLostSwitchMessageConvergesByPolling(t *testing.T) {
	topo := topology(t, redisproc.TopologyOptions{})
	_, updates := startWatcher(t, Config{
		MasterName:   topo.MasterName,
		Sentinels:    topo.SentinelAddrs(),
		PollInterval: 300 * time.Millisecond,
		Timeout:      500 * time.Millisecond,
	}, func(w *Watcher) { w.dropEvents = true })
	nextMaster(t, updates, 10*time.Second)
	want := failover(t, topo)
	u := nextMaster(t, updates, 10*time.Second)
	if u.Addr != want {
		t.Fatalf("master %s; want %s", u.Addr, want)
	}
	if !strings.HasPrefix(u.Reason, "poll") {
		t.Fatalf("reason %q: a dropped message still drove the switch", u.Reason)
	}
}

// The ROLE check uses the master's credentials; wrong ones leave no
// verified master, and say why.
func TestRoleCheckUsesMasterCredentials(t *testing.T) {
	topo := topology(t, redisproc.TopologyOptions{Password: "s3cret", Sentinels: 1, Quorum: 1})
	for _, tc := range []struct {
		name, password, want string
	}{
		{"right password", "s3cret", topo.Master.Addr},
		{"wrong password", "nope", ""},
		{"no password", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(Config{
				MasterName:     topo.MasterName,
				Sentinels:      topo.SentinelAddrs(),
				MasterPassword: tc.password,
				Timeout:        500 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, err := w.CheckOnce(ctx)
			if st.Addr != tc.want {
				t.Fatalf("verified master %q (%v); want %q", st.Addr, err, tc.want)
			}
			if tc.want == "" && !strings.Contains(st.Reason, "ROLE failed") {
				t.Fatalf("reason %q; want it to say ROLE failed", st.Reason)
			}
			if strings.Contains(st.Reason, tc.password) && tc.password != "" {
				t.Fatalf("reason %q leaks the password", st.Reason)
			}
		})
	}
}

// A seed given by hostname is the same Sentinel its peers announce by IP:
// it must vote once, not twice.
func TestSentinelKnownByTwoNamesVotesOnce(t *testing.T) {
	topo := topology(t, redisproc.TopologyOptions{})
	first := topo.Sentinels[0]
	w, err := New(Config{
		MasterName: topo.MasterName,
		Sentinels:  []string{"localhost:" + strconv.Itoa(first.Port)},
		Timeout:    500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := w.CheckOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Views) != 3 {
		t.Fatalf("%d views (%s); want 3: one per Sentinel", len(st.Views), summarize(st.Views))
	}
	if st.Addr != topo.Master.Addr {
		t.Fatalf("master %q; want %q", st.Addr, topo.Master.Addr)
	}
}

// The master is asked ROLE on every poll over one kept connection, not a
// new dial each time; when that master dies, a fresh dial (refused) still
// withdraws it at the next check.
func TestRoleCheckKeepsOneConnection(t *testing.T) {
	m := testredis.StartServer(t, redisproc.Options{})
	host, port, _ := strings.Cut(m.Addr, ":")
	s := newFakeSentinel(t)
	s.always("SENTINEL MASTER", fakeReply{raw: respFields(masterFields("mymaster", host, port, "3"))})
	ctx := context.Background()
	stats := func() (roles, conns int) {
		t.Helper()
		info, err := m.Do(ctx, "INFO", "all")
		if err != nil {
			t.Fatal(err)
		}
		text, _ := info.(string)
		for _, line := range strings.Split(text, "\r\n") {
			if v, ok := strings.CutPrefix(line, "cmdstat_role:calls="); ok {
				v, _, _ = strings.Cut(v, ",")
				roles, _ = strconv.Atoi(v)
			}
			if v, ok := strings.CutPrefix(line, "total_connections_received:"); ok {
				conns, _ = strconv.Atoi(v)
			}
		}
		return roles, conns
	}
	_, conns0 := stats()
	_, updates := startWatcher(t, Config{Sentinels: []string{s.addr}, MasterName: "mymaster", PollInterval: 30 * time.Millisecond}, nil)
	if u := nextMaster(t, updates, 5*time.Second); u.Addr != m.Addr {
		t.Fatalf("routed to %q; want %q", u.Addr, m.Addr)
	}
	var roles, conns, calls int // stats() dials once per call
	testutil.Eventually(t, "10 ROLE checks", 10*time.Second, func() bool {
		roles, conns = stats()
		calls++
		return roles >= 10
	})
	if opened := conns - conns0 - calls; roles < 10 || opened > 1 {
		t.Fatalf("%d ROLE checks opened %d connections; want one kept connection", roles, opened)
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-updates:
		if u.Addr != "" {
			t.Fatalf("after the master died: update to %q; want a withdrawal", u.Addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no withdrawal within 5s of the master dying")
	}
}
