package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// One process serves two master names under one Sentinel set, each on its
// own address (here one in each mode); a failover of one leaves the
// other's connections alone.
func TestTwoRoutesUnderOneSentinelSet(t *testing.T) {
	topo := startTopology(t)
	queue := testredis.StartServer(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range topo.SentinelAddrs() {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr})
		err := sc.Monitor(ctx, "queue", "127.0.0.1", strconv.Itoa(queue.Port), "2").Err()
		sc.Close()
		if err != nil {
			t.Fatalf("SENTINEL MONITOR queue on %s: %v", addr, err)
		}
	}
	h := startHarness(t, topo, func(c *appConfig) {
		c.routes = []route{{name: "mymaster", listen: "127.0.0.1:0"}, {name: "queue", listen: "127.0.0.1:0", mode: "resp"}}
	})
	queueAddr := h.app.routes[1].ln.Addr().String()
	h.waitRouted(topo.Master.Addr, 10*time.Second)
	eventually(t, "queue routed", 10*time.Second, func() bool { return h.app.routes[1].server.Master() == queue.Addr })

	if got, err := rawCommand(h.addr, 5*time.Second, "SET", "which", "mymaster"); err != nil || got != "+OK" {
		t.Fatalf("SET via mymaster route: %q, %v", got, err)
	}
	if got, err := rawCommand(queueAddr, 5*time.Second, "SET", "which", "queue"); err != nil || got != "+OK" {
		t.Fatalf("SET via queue route: %q, %v", got, err)
	}
	for addr, want := range map[string]string{topo.Master.Addr: "mymaster", queue.Addr: "queue"} {
		c := redis.NewClient(&redis.Options{Addr: addr})
		got, err := c.Get(ctx, "which").Result()
		c.Close()
		if err != nil || got != want {
			t.Fatalf("GET which on %s = %q, %v; want %q", addr, got, err, want)
		}
	}

	// A long-lived queue connection survives mymaster's failover.
	qc, err := net.Dial("tcp", queueAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.Close()
	qr := bufio.NewReader(qc)
	ping := func() string {
		qc.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(qc, "PING\r\n")
		line, _ := qr.ReadString('\n')
		return line
	}
	if got := ping(); got != "+PONG\r\n" {
		t.Fatalf("PING on queue = %q", got)
	}
	old := topo.Master.Addr
	if err := topo.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	newAddr := waitNewMaster(t, topo, old)
	h.waitRouted(newAddr, 10*time.Second)
	if got := ping(); got != "+PONG\r\n" {
		t.Fatalf("PING on queue after mymaster's failover = %q; want the connection untouched", got)
	}
	code, body := h.httpGet("/readyz")
	if code != 200 || !strings.Contains(body, "queue: master "+queue.Addr) || !strings.Contains(body, "mymaster: master "+newAddr) {
		t.Fatalf("/readyz = %d %q; want both routes ready", code, body)
	}
}

// `sentproxy check` replaces `redis-cli SENTINEL get-master-addr-by-name`.
func TestCheckCommand(t *testing.T) {
	topo := startTopology(t)
	sentinels := "--sentinel.addrs=" + topo.SentinelAddrs()[0]

	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", sentinels, "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("check exit %d: %s", code, stderr.String())
	}
	var res []checkResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("check --json output %q: %v", stdout.String(), err)
	}
	if len(res) != 1 || res[0].Master != topo.Master.Addr || len(res[0].Sentinels) != 3 {
		t.Fatalf("check = %+v; want master %s seen through all 3 Sentinels (2 learnt)", res, topo.Master.Addr)
	}

	stdout.Reset()
	stderr.Reset()
	code := run([]string{"check", sentinels, "--sentinel.master-name=nosuchmaster"}, &stdout, &stderr)
	if code != exitFailure {
		t.Fatalf("check of an unknown master exit %d; want %d", code, exitFailure)
	}
	// A typo in the master name must read as what it is, not as a network
	// outage: the Sentinels are reachable and say they do not know it.
	const answer = `answered "ERR No such master with that name"`
	if out := stdout.String(); !strings.Contains(out, "nosuchmaster: NO verified master: no Sentinel gave a usable answer") || !strings.Contains(out, answer) {
		t.Fatalf("stdout %q; want no verified master, with the Sentinels' answer", out)
	}

	// `run` with that name says the same in /readyz and in the error a
	// held client gets.
	h := startHarness(t, topo, func(c *appConfig) {
		c.routes = []route{{name: "nosuchmaster", listen: "127.0.0.1:0"}}
		c.proxy.HoldTimeout = 200 * time.Millisecond
	})
	eventually(t, "/readyz with the Sentinels' answer", 10*time.Second, func() bool {
		code, body := h.httpGet("/readyz")
		return code == 503 && strings.Contains(body, answer)
	})
	got, err := rawCommand(h.addr, 5*time.Second, "PING")
	if err != nil || !strings.HasPrefix(got, "-ERR sentproxy: no master for 'nosuchmaster': no Sentinel gave a usable answer") || !strings.Contains(got, answer) {
		t.Fatalf("PING through the route = %q, %v; want the no-master error with the Sentinels' answer", got, err)
	}
}

// The demo is what README tells a newcomer to run first.
func TestDemo(t *testing.T) {
	testredis.Require(t)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo", "--log.level=warn", "--down-after=1500ms"}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"killing the master", "published +switch-master", "sentproxy: routing to", "Summary:", "stopped every process",
		// sentproxy's own warning, in the timeline rather than on stderr
		"s  sentproxy log WARN: no verified master; holding new clients route=mymaster"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(stderr.String(), "level=WARN") {
		t.Errorf("a warning went to stderr instead of the timeline:\n%s", stderr.String())
	}
}
