package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/internal/testutil"
)

// tlsLines make a real server or Sentinel speak TLS on tlsPort; its plain
// port stays for the test's own control commands.
func tlsLines(f testutil.TLSFiles, tlsPort int) []string {
	return []string{
		"tls-port " + strconv.Itoa(tlsPort),
		"tls-cert-file " + f.Cert,
		"tls-key-file " + f.Key,
		"tls-ca-cert-file " + f.CA,
		// Replication and Sentinel's links to the data nodes in TLS too;
		// replicas then announce their TLS port.
		"tls-replication yes",
	}
}

func tlsPort(t *testing.T) int {
	t.Helper()
	p, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A master, a replica and a Sentinel that speak TLS to each other and to
// clients: sentproxy, configured by its flags alone (--sentinel.tls,
// --master.tls, --tls.*), routes a plain-text client to the master's TLS
// port and, after SENTINEL FAILOVER, to the promoted replica's.
func TestTLSSentinelsAndMaster(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	mTLS, rTLS, sTLS := tlsPort(t), tlsPort(t), tlsPort(t)
	master := testredis.StartServer(t, redisproc.Options{ExtraConfig: append(tlsLines(files, mTLS), "repl-diskless-sync-delay 0")})
	replica := testredis.StartServer(t, redisproc.Options{ExtraConfig: append(tlsLines(files, rTLS),
		"repl-diskless-sync-delay 0", fmt.Sprintf("replicaof 127.0.0.1 %d", mTLS))})
	sentinel := testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: mTLS, DownAfter: downAfter, ExtraConfig: tlsLines(files, sTLS)})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	masterTLS, replicaTLS := fmt.Sprintf("127.0.0.1:%d", mTLS), fmt.Sprintf("127.0.0.1:%d", rTLS)
	eventually(t, "replication over TLS and the Sentinel knowing the replica", 20*time.Second, func() bool {
		info, err := replica.Do(ctx, "INFO", "replication")
		if err != nil || !strings.Contains(fmt.Sprint(info), "master_link_status:up") {
			return false
		}
		reps, err := sentinel.Do(ctx, "SENTINEL", "REPLICAS", "mymaster")
		return err == nil && strings.Contains(fmt.Sprint(reps), strconv.Itoa(rTLS))
	})

	var cli CLI
	var stderr bytes.Buffer
	parser, err := newParser(&cli, &bytes.Buffer{}, &stderr, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"run",
		fmt.Sprintf("--sentinel.addrs=127.0.0.1:%d", sTLS), "--sentinel.tls", "--master.tls",
		"--tls.ca-file=" + files.CA, "--tls.cert-file=" + files.Cert, "--tls.key-file=" + files.Key,
		"--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0", "--proxy.hold-timeout=20s",
	}); err != nil {
		t.Fatalf("parse: %v (%s)", err, stderr.String())
	}
	logs := &testutil.Buffer{}
	cfg := cli.Run.cfg
	cfg.logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := newApp(cfg)
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("app.run: %v", err)
		}
		if t.Failed() {
			t.Logf("sentproxy log:\n%s", tail(logs.String(), 200))
		}
	})
	server := a.routes[0].server
	proxyAddr := a.routes[0].ln.Addr().String()
	eventually(t, "routed to the master's TLS port", 10*time.Second, func() bool { return server.Master() == masterTLS })

	set := func(value string) {
		t.Helper()
		if got, err := rawCommand(proxyAddr, 5*time.Second, "SET", "tls-key", value); err != nil || got != "+OK" {
			t.Fatalf("SET through sentproxy = %q, %v", got, err)
		}
	}
	get := func(p *redisproc.Process) string {
		v, err := p.Do(ctx, "GET", "tls-key")
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprint(v)
	}
	set("before")
	if got := get(master); got != "before" {
		t.Fatalf("GET on the master = %q; want the value written through sentproxy", got)
	}

	// Until the Sentinel has pinged the new replica and read its INFO, it
	// answers NOGOODSLAVE; it is asked again until it takes the order.
	var lastErr error
	eventually(t, "SENTINEL FAILOVER accepted", 20*time.Second, func() bool {
		_, lastErr = sentinel.Do(ctx, "SENTINEL", "FAILOVER", "mymaster")
		if lastErr != nil && !strings.Contains(lastErr.Error(), "NOGOODSLAVE") {
			t.Fatalf("SENTINEL FAILOVER: %v", lastErr)
		}
		return lastErr == nil
	})
	eventually(t, "routed to the promoted replica's TLS port", 30*time.Second, func() bool { return server.Master() == replicaTLS })
	set("after")
	if got := get(replica); got != "after" {
		t.Fatalf("GET on the promoted replica = %q; want the value written through sentproxy after the failover", got)
	}
}

// A CA that did not sign the Sentinel's certificate: `check` fails and says
// why, naming the TLS failure rather than an unreachable Sentinel.
func TestTLSUnknownAuthority(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	other := testutil.NewTLSFiles(t, t.TempDir())
	mTLS, sTLS := tlsPort(t), tlsPort(t)
	testredis.StartServer(t, redisproc.Options{ExtraConfig: tlsLines(files, mTLS)})
	testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: mTLS, ExtraConfig: tlsLines(files, sTLS)})

	var stdout, stderr bytes.Buffer
	code := run([]string{"check", fmt.Sprintf("--sentinel.addrs=127.0.0.1:%d", sTLS), "--sentinel.tls", "--master.tls",
		"--tls.ca-file=" + other.CA, "--tls.cert-file=" + other.Cert, "--tls.key-file=" + other.Key}, &stdout, &stderr)
	if code != exitFailure {
		t.Fatalf("check with the wrong CA exit %d; want %d\n%s%s", code, exitFailure, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "no Sentinel gave a usable answer") || !strings.Contains(out, "TLS: ") || !strings.Contains(out, "certificate") {
		t.Fatalf("check output %q; want the TLS failure named", out)
	}
}
