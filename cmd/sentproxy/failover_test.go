package main

import (
	"cmp"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/proxy"
)

// downAfter is the Sentinels' down-after-milliseconds in these tests:
// short enough for quick failovers, long enough that a Sentinel's first
// ping to a freshly promoted master is answered before it could be judged
// down (at 1s we saw spurious +sdown right after a switch).
const downAfter = 2 * time.Second

func startTopology(t *testing.T) *redisproc.Topology {
	t.Helper()
	return testredis.StartTopology(t, redisproc.TopologyOptions{
		Replicas:        1,
		Sentinels:       3,
		Quorum:          2,
		DownAfter:       downAfter,
		FailoverTimeout: 10 * time.Second,
	})
}

func waitNewMaster(t *testing.T, topo *redisproc.Topology, old string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, err := topo.WaitMaster(ctx, old)
	if err != nil {
		t.Fatalf("no new master after %s: %v", old, err)
	}
	return addr
}

// checkSwitched asserts the end state every failover test shares: the proxy
// routes to the Sentinels' new master, writes through it succeed again,
// readiness is back and the switch was counted.
func checkSwitched(t *testing.T, h *harness, w *writers, oldAddr, newAddr string) {
	t.Helper()
	h.waitRouted(newAddr, 10*time.Second)
	cut := h.cutTime(oldAddr)
	eventually(t, "writes succeed on the new master", 10*time.Second, func() bool { return w.successesAfter(cut) >= 20 })
	if code, body := h.httpGet("/readyz"); code != 200 {
		t.Fatalf("/readyz = %d %q after the switch; want 200", code, body)
	}
	if got := h.metric(`sentproxy_master_switches_total{master_name="mymaster"}`); got < 1 {
		t.Fatalf("sentproxy_master_switches_total = %v; want >= 1", got)
	}
	ok, failed := w.summary()
	switched := h.routedAt(newAddr)
	t.Logf("writes: %d ok, %d failed; first success %s after the switch to %s",
		ok, failed, w.firstSuccessAfter(switched).Sub(switched).Round(time.Microsecond), newAddr)
}

func TestFailoverBySigkill(t *testing.T) {
	topo := startTopology(t)
	h := startHarness(t, topo, nil)
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	// The start-up log says which engine moves the bytes, so that an
	// operator (and this run of the tests) can tell.
	engine := cmp.Or(os.Getenv("SENTPROXY_PROXY_ENGINE"), proxy.DefaultEngine)
	eventually(t, "listening logged with engine="+engine, 5*time.Second, func() bool {
		logs := h.logBuf.String()
		return strings.Contains(logs, "msg=listening") && strings.Contains(logs, "engine="+engine)
	})
	w := startWriters(t, h.addr, 4)
	eventually(t, "writes flowing", 5*time.Second, func() bool { ok, _ := w.summary(); return ok > 20 })

	if err := topo.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Clients that connect while the failover is under way are held, and
	// succeed once the new master is verified.
	var wg sync.WaitGroup
	replies := make([]string, 5)
	errs := make([]error, 5)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = rawCommand(h.addr, 25*time.Second, "SET", "during:"+strconv.Itoa(i), "x")
		}()
	}
	newAddr := waitNewMaster(t, topo, old)
	checkSwitched(t, h, w, old, newAddr)
	wg.Wait()
	for i := range replies {
		if errs[i] != nil || replies[i] != "+OK" {
			t.Errorf("client %d connecting during the failover: %q, %v; want +OK", i, replies[i], errs[i])
		}
	}
	// And they ran on the new master.
	nc := redis.NewClient(&redis.Options{Addr: newAddr})
	defer nc.Close()
	if n, err := nc.Exists(context.Background(), "during:0", "during:4").Result(); err != nil || n != 2 {
		t.Fatalf("EXISTS on the new master = %d, %v; want 2", n, err)
	}
	t.Logf("master killed; proxy routed to %s %s later", newAddr, h.cutTime(old).Sub(killed).Round(time.Millisecond))
}

func TestFailoverBySentinelFailover(t *testing.T) {
	topo := startTopology(t)
	h := startHarness(t, topo, nil)
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	m := startMonitor(t, old)
	w := startWriters(t, h.addr, 4)
	eventually(t, "writes flowing", 5*time.Second, func() bool { ok, _ := w.summary(); return ok > 20 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topo.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	newAddr := waitNewMaster(t, topo, old)
	checkSwitched(t, h, w, old, newAddr)
	// The old master lives on as a replica; keep writing a while so that a
	// stray route to it would show up in its MONITOR.
	cut := h.cutTime(old)
	eventually(t, "more writes after the switch", 10*time.Second, func() bool { return w.successesAfter(cut) >= 200 })
	assertNothingAfterCut(t, h, w, m, old)
}

// The old master is frozen long enough for a failover, then thawed: it
// comes back still believing it is the master until the Sentinels demote
// it. Nothing the proxy sends after the cut may reach it.
func TestFailoverBySigstopThenSigcont(t *testing.T) {
	topo := startTopology(t)
	h := startHarness(t, topo, nil)
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	m := startMonitor(t, old)
	w := startWriters(t, h.addr, 4)
	eventually(t, "writes flowing", 5*time.Second, func() bool { ok, _ := w.summary(); return ok > 20 })

	if err := topo.Master.Stop(); err != nil {
		t.Fatal(err)
	}
	newAddr := waitNewMaster(t, topo, old)
	h.waitRouted(newAddr, 10*time.Second)
	if err := topo.Master.Cont(); err != nil {
		t.Fatal(err)
	}
	// Wait until the Sentinels have demoted it, writing all along.
	oc := redis.NewClient(&redis.Options{Addr: old, MaxRetries: -1})
	defer oc.Close()
	eventually(t, "old master demoted", 20*time.Second, func() bool {
		r, err := oc.Do(context.Background(), "ROLE").Slice()
		return err == nil && len(r) > 0 && r[0] == "slave"
	})
	checkSwitched(t, h, w, old, newAddr)
	assertNothingAfterCut(t, h, w, m, old)
}

func TestFailoverWithOneSentinelDown(t *testing.T) {
	topo := startTopology(t)
	h := startHarness(t, topo, nil)
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	if err := topo.Sentinels[0].Kill(); err != nil {
		t.Fatal(err)
	}
	w := startWriters(t, h.addr, 2)
	eventually(t, "writes flowing", 5*time.Second, func() bool { ok, _ := w.summary(); return ok > 20 })
	if err := topo.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	newAddr := waitNewMaster(t, topo, old)
	checkSwitched(t, h, w, old, newAddr)
	if got := h.metric(`sentproxy_sentinel_up{master_name="mymaster",sentinel="` + topo.Sentinels[0].Addr + `"}`); got != 0 {
		t.Fatalf("sentinel_up for the dead Sentinel = %v; want 0", got)
	}
}

// With every Sentinel gone the proxy keeps the last verified master while
// it answers ROLE as master, and stops routing once it does not.
func TestAllSentinelsDown(t *testing.T) {
	topo := startTopology(t)
	h := startHarness(t, topo, func(c *appConfig) {
		c.discovery.PollInterval = 200 * time.Millisecond
		c.proxy.HoldTimeout = 300 * time.Millisecond
	})
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	for _, s := range topo.Sentinels {
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every Sentinel reported down", 10*time.Second, func() bool {
		return h.metric(`sentproxy_sentinel_answered{master_name="mymaster"}`) == 0
	})
	if got, err := rawCommand(h.addr, 5*time.Second, "SET", "k", "v"); err != nil || got != "+OK" {
		t.Fatalf("SET with all Sentinels down = %q, %v; want +OK (the master still answers)", got, err)
	}
	if code, _ := h.httpGet("/readyz"); code != 200 {
		t.Fatalf("/readyz = %d with a verified master and no Sentinel; want 200", code)
	}

	if err := topo.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	h.waitRouted("", 10*time.Second)
	got, err := rawCommand(h.addr, 5*time.Second, "GET", "k")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "-ERR sentproxy: no master for 'mymaster': ") {
		t.Fatalf("GET with no master = %q; want a no-master error", got)
	}
	code, body := h.httpGet("/readyz")
	if code != 503 || !strings.Contains(body, "no verified master") {
		t.Fatalf("/readyz = %d %q; want 503 naming the reason", code, body)
	}
}
