package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/proxy"
)

// incrs drives an INCR and GET workload through the proxy with plain,
// Sentinel-unaware go-redis clients (one command in flight per worker).
type incrs struct {
	client  *redis.Client
	stop    chan struct{}
	wg      sync.WaitGroup
	acked   atomic.Int64 // INCRs acknowledged
	reads   atomic.Int64
	mu      sync.Mutex
	errs    []string
	started atomic.Int64
}

func startIncrs(t *testing.T, addr string, workers int) *incrs {
	t.Helper()
	w := &incrs{
		client: redis.NewClient(&redis.Options{
			Addr: addr, PoolSize: workers, MaxRetries: -1,
			DialTimeout: 2 * time.Second, ReadTimeout: 20 * time.Second, WriteTimeout: 2 * time.Second,
		}),
		stop: make(chan struct{}),
	}
	for i := range workers {
		w.wg.Add(1)
		go w.loop(i%2 == 0)
	}
	t.Cleanup(w.close)
	return w
}

func (w *incrs) loop(reader bool) {
	defer w.wg.Done()
	ctx := context.Background()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		w.started.Add(1)
		var err error
		if reader {
			err = w.client.Get(ctx, "counter").Err()
			if err == redis.Nil {
				err = nil
			}
			if err == nil {
				w.reads.Add(1)
			}
		}
		if err == nil {
			err = w.client.Incr(ctx, "counter").Err()
			if err == nil {
				w.acked.Add(1)
			}
		}
		if err != nil {
			w.mu.Lock()
			w.errs = append(w.errs, err.Error())
			w.mu.Unlock()
		}
		time.Sleep(2 * time.Millisecond) // pacing, not synchronisation
	}
}

func (w *incrs) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
	w.client.Close()
}

func (w *incrs) errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

// The command-aware mode through real failovers: the workload sees no
// error but for writes in flight at the crash (at most one per worker, each
// saying its outcome is unknown), nothing reaches the old master after the
// cut, every acknowledged INCR is in the final counter except what Redis's
// own asynchronous replication lost (measured and reported apart), and a
// subscriber keeps its connection.
func TestRESPModeFailovers(t *testing.T) {
	const workers = 4
	for _, sc := range []struct {
		name  string
		cause func(t *testing.T, h *harness)
	}{
		{"SIGKILL", func(t *testing.T, h *harness) {
			if err := h.topo.Master.Kill(); err != nil {
				t.Fatal(err)
			}
		}},
		{"SENTINEL FAILOVER", func(t *testing.T, h *harness) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := h.topo.Failover(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"SIGSTOP then SIGCONT", func(t *testing.T, h *harness) {
			if err := h.topo.Master.Stop(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			topo := startTopology(t)
			h := startHarness(t, topo, func(c *appConfig) { c.proxy.Mode = proxy.ModeRESP })
			old := topo.Master.Addr
			h.waitRouted(old, 10*time.Second)
			var m *monitor
			if sc.name != "SIGKILL" {
				m = startMonitor(t, old)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			subc := redis.NewClient(&redis.Options{Addr: h.addr, MaxRetries: -1})
			defer subc.Close()
			sub := subc.Subscribe(ctx, "news")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			w := startIncrs(t, h.addr, workers)
			eventually(t, "INCRs flowing", 5*time.Second, func() bool { return w.acked.Load() > 50 })

			sc.cause(t, h)
			newAddr := waitNewMaster(t, topo, old)
			h.waitRouted(newAddr, 10*time.Second)
			if sc.name == "SIGSTOP then SIGCONT" {
				if err := topo.Master.Cont(); err != nil {
					t.Fatal(err)
				}
			}
			switched := h.routedAt(newAddr)
			before := w.acked.Load()
			eventually(t, "INCRs on the new master", 15*time.Second, func() bool { return w.acked.Load() > before+100 })

			// The subscriber kept its connection and hears the new master.
			nc := redis.NewClient(&redis.Options{Addr: newAddr})
			defer nc.Close()
			eventually(t, "subscription restored on the new master", 10*time.Second, func() bool {
				n, _ := nc.PubSubNumSub(ctx, "news").Result()
				return n["news"] == 1
			})
			if err := nc.Publish(ctx, "news", "after the failover").Err(); err != nil {
				t.Fatal(err)
			}
			msg, err := sub.ReceiveMessage(ctx)
			if err != nil || msg.Payload != "after the failover" {
				t.Fatalf("subscriber got %v, %v; want the message published after the failover", msg, err)
			}

			w.close()
			errs := w.errors()
			for _, e := range errs {
				if !strings.Contains(e, "outcome is unknown") {
					t.Errorf("client saw %q; the only errors allowed are writes of unknown outcome", e)
				}
			}
			if len(errs) > workers {
				t.Errorf("%d errors; want at most %d (one in flight per worker)", len(errs), workers)
			}
			final, err := nc.Get(ctx, "counter").Int64()
			if err != nil {
				t.Fatal(err)
			}
			acked := w.acked.Load()
			lost := acked - final
			if lost < 0 {
				lost = 0 // INCRs of unknown outcome that did run
			}
			if m != nil {
				// An INCR the old master ran after the cut must be one that
				// was already in flight, and so was answered as of unknown
				// outcome, never acknowledged. (A frozen master runs what
				// sat in its socket when it thaws.)
				cut := h.cutTime(old)
				if late := m.incrsAfter(cut); late > len(errs) {
					t.Errorf("the old master ran %d INCRs after the cut; only %d were in flight", late, len(errs))
				}
				if h.routedAfter(old, cut) {
					t.Errorf("routed to the old master again after the cut")
				}
			}
			if acked != final && lost == 0 && int(final-acked) > len(errs) {
				t.Errorf("final counter %d exceeds acknowledged %d by more than the %d INCRs of unknown outcome", final, acked, len(errs))
			}
			t.Logf("%s: %d INCRs acknowledged, %d reads, %d errors (unknown outcome); final counter %d; %d acknowledged INCRs lost (Redis's asynchronous replication); switched %s after the cut",
				sc.name, acked, w.reads.Load(), len(errs), final, lost, switched.Sub(h.cutTime(old)).Round(time.Millisecond))
		})
	}
}

// redis-cli, the other real client the issue names, through a SIGKILL
// failover in resp mode: one connection, INCR every 10 ms; it must see
// integers throughout, bar at most one write in flight at the crash.
func TestRESPModeRedisCLI(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed")
	}
	topo := startTopology(t)
	h := startHarness(t, topo, func(c *appConfig) { c.proxy.Mode = proxy.ModeRESP })
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	host, port, _ := net.SplitHostPort(h.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "-r", "600", "-i", "0.01", "INCR", "counter")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	nc := redis.NewClient(&redis.Options{Addr: old})
	eventually(t, "redis-cli INCRing", 10*time.Second, func() bool {
		n, _ := nc.Get(ctx, "counter").Int()
		return n > 50
	})
	nc.Close()
	if err := topo.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("redis-cli: %v\n%s", err, out.String())
	}
	ints, errs := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.TrimSpace(line) == "" {
			// redis-cli's raw output (stdout not a terminal) ends an
			// error reply with an extra newline; a blank line is that,
			// not a reply.
			continue
		}
		if _, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			ints++
			continue
		}
		errs++
		if !strings.Contains(line, "outcome is unknown") {
			t.Errorf("redis-cli printed %q", line)
		}
	}
	if ints+errs != 600 || errs > 1 {
		t.Fatalf("redis-cli: %d integers, %d errors; want 600 replies with at most 1 error", ints, errs)
	}
	t.Logf("redis-cli through a SIGKILL failover: %d INCRs answered, %d of unknown outcome", ints, errs)
}
