package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// A master, a replica and three Sentinels that speak TLS to each other and
// to clients: sentproxy, configured by its flags alone (--sentinel.tls,
// --master.tls, --tls.*) and given one Sentinel, learns the other two,
// routes a plain-text client to the master's TLS port and, after SENTINEL
// FAILOVER, to the promoted replica's.
func TestTLSSentinelsAndMaster(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	mTLS, rTLS := tlsPort(t), tlsPort(t)
	master := testredis.StartServer(t, redisproc.Options{ExtraConfig: append(tlsLines(files, mTLS), "repl-diskless-sync-delay 0")})
	replica := testredis.StartServer(t, redisproc.Options{ExtraConfig: append(tlsLines(files, rTLS),
		"repl-diskless-sync-delay 0", fmt.Sprintf("replicaof 127.0.0.1 %d", mTLS))})
	// Three Sentinels, quorum 2; sentproxy is given the first alone and
	// must learn the others (at their TLS ports, which tls-replication
	// makes them announce) and reach them in TLS.
	var sentinels []*redisproc.Process
	seedTLS := tlsPort(t)
	for i := range 3 {
		port := seedTLS
		if i > 0 {
			port = tlsPort(t)
		}
		sentinels = append(sentinels, testredis.StartSentinel(t, redisproc.SentinelOptions{
			MasterPort: mTLS, Quorum: 2, DownAfter: downAfter, ExtraConfig: tlsLines(files, port)}))
	}
	sentinel := sentinels[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	masterTLS, replicaTLS := fmt.Sprintf("127.0.0.1:%d", mTLS), fmt.Sprintf("127.0.0.1:%d", rTLS)
	eventually(t, "replication over TLS, and every Sentinel knowing the replica and its two peers", 30*time.Second, func() bool {
		info, err := replica.Do(ctx, "INFO", "replication")
		if err != nil || !strings.Contains(fmt.Sprint(info), "master_link_status:up") {
			return false
		}
		for _, s := range sentinels {
			reps, err := s.Do(ctx, "SENTINEL", "REPLICAS", "mymaster")
			if err != nil || !strings.Contains(fmt.Sprint(reps), strconv.Itoa(rTLS)) {
				return false
			}
			peers, err := s.Do(ctx, "SENTINEL", "SENTINELS", "mymaster")
			if list, _ := peers.([]any); err != nil || len(list) != 2 {
				return false
			}
		}
		return true
	})

	a := startFromFlags(t, fmt.Sprintf("--sentinel.addrs=127.0.0.1:%d", seedTLS), "--sentinel.tls", "--master.tls",
		"--tls.ca-file="+files.CA, "--tls.cert-file="+files.Cert, "--tls.key-file="+files.Key,
		"--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0", "--proxy.hold-timeout=20s")
	server := a.routes[0].server
	proxyAddr := a.routes[0].ln.Addr().String()
	eventually(t, "routed to the master's TLS port", 10*time.Second, func() bool { return server.Master() == masterTLS })
	eventually(t, "all three Sentinels learnt and answering in TLS", 20*time.Second, func() bool {
		st := a.routes[0].watcher.Status()
		if len(st.Views) != 3 {
			return false
		}
		for _, v := range st.Views {
			if v.Err != nil {
				return false
			}
		}
		return true
	})

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
	// The client certificate's expiry is exported, for an alert before it
	// lapses.
	leaf, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	web := &harness{t: t, web: a.webLn.Addr().String()} // for its metric()
	if got := web.metric(`sentproxy_tls_client_certificate_expiry_timestamp_seconds{master_name="mymaster"}`); got != float64(leaf.Leaf.NotAfter.Unix()) {
		t.Fatalf("certificate expiry exported as %v; want %d", got, leaf.Leaf.NotAfter.Unix())
	}

	set("before")
	if got := get(master); got != "before" {
		t.Fatalf("GET on the master = %q; want the value written through sentproxy", got)
	}

	// Until the Sentinel has pinged the new replica and read its INFO, it
	// answers NOGOODSLAVE; it is asked again until it takes the order.
	eventually(t, "SENTINEL FAILOVER accepted", 20*time.Second, func() bool {
		_, err := sentinel.Do(ctx, "SENTINEL", "FAILOVER", "mymaster")
		if err != nil && !strings.Contains(err.Error(), "NOGOODSLAVE") {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		return err == nil
	})
	eventually(t, "routed to the promoted replica's TLS port", 30*time.Second, func() bool { return server.Master() == replicaTLS })
	set("after")
	if got := get(replica); got != "after" {
		t.Fatalf("GET on the promoted replica = %q; want the value written through sentproxy after the failover", got)
	}
}

// startFromFlags configures sentproxy run from a command line, as main
// does, starts it, and stops it when the test ends, showing its log if the
// test failed.
func startFromFlags(t *testing.T, args ...string) *app {
	t.Helper()
	var cli CLI
	var stderr bytes.Buffer
	parser, err := newParser(&cli, &bytes.Buffer{}, &stderr, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(append([]string{"run"}, args...)); err != nil {
		t.Fatalf("parse: %v (%s)", err, stderr.String())
	}
	logs := &testutil.Buffer{}
	cfg := cli.Run.cfg
	cfg.logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, f := range cfg.followedFiles {
		f.setLogger(cfg.logger)
	}
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
	return a
}

// --proxy.tls-* make sentproxy serve its clients in TLS, with their
// certificates checked, in front of a plain-text master and Sentinel: a
// go-redis client with a certificate from the CA writes through to the
// master; one without a certificate is refused (counted as tls_handshake)
// and writes nothing; the served certificate's expiry is exported.
func TestClientTLSFlags(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	master := testredis.StartServer(t, redisproc.Options{})
	sentinel := testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: master.Port})
	a := startFromFlags(t, "--sentinel.addrs="+sentinel.Addr,
		"--proxy.tls-cert-file="+files.Cert, "--proxy.tls-key-file="+files.Key, "--proxy.tls-client-ca-file="+files.CA,
		"--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0")
	eventually(t, "routed to the master", 10*time.Second, func() bool { return a.routes[0].server.Master() == master.Addr })
	proxyAddr := a.routes[0].ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	pair, roots := files.Load(t)
	client := func(certs ...tls.Certificate) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: proxyAddr, MaxRetries: -1, DialTimeout: 5 * time.Second,
			TLSConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}})
		t.Cleanup(func() { c.Close() })
		return c
	}
	if err := client(pair).Set(ctx, "client-tls", "yes", 0).Err(); err != nil {
		t.Fatalf("SET through sentproxy in TLS with a client certificate: %v", err)
	}
	if v, err := master.Do(ctx, "GET", "client-tls"); err != nil || v != "yes" {
		t.Fatalf("GET on the master = %v, %v", v, err)
	}
	if err := client().Set(ctx, "no-cert", "yes", 0).Err(); err == nil {
		t.Fatal("SET through sentproxy without a client certificate succeeded; want it refused")
	}
	if v, err := master.Do(ctx, "EXISTS", "no-cert"); err != nil || v != int64(0) {
		t.Fatalf("EXISTS on the master = %v, %v; want the refused client's command not run", v, err)
	}
	web := &harness{t: t, web: a.webLn.Addr().String()} // for its metric()
	eventually(t, "the refusal counted", 5*time.Second, func() bool {
		return web.metric(`sentproxy_proxy_closed_connections_total{master_name="mymaster",reason="tls_handshake"}`) >= 1
	})
	if got := web.metric(`sentproxy_tls_server_certificate_expiry_timestamp_seconds{master_name="mymaster"}`); got != float64(pair.Leaf.NotAfter.Unix()) {
		t.Fatalf("served certificate expiry exported as %v; want %d", got, pair.Leaf.NotAfter.Unix())
	}
	if got := web.metric(`sentproxy_tls_client_certificate_expiry_timestamp_seconds{master_name="mymaster"}`); got != 0 {
		t.Fatalf("client certificate expiry exported as %v; want 0 without --tls.cert-file", got)
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

// The TLS configuration the flags build resumes sessions with a real
// Redis: the second connection to the master skips the full handshake that
// the first made, which matters because every client connection dials the
// master anew.
func TestTLSSessionResumption(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	port := tlsPort(t)
	testredis.StartServer(t, redisproc.Options{ExtraConfig: tlsLines(files, port)})
	cfg, _, err := TLSFlags{CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key}.config(false, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.Clone()
	cfg.ServerName = "127.0.0.1" // as the proxy sets it from the address
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i, wantResumed := range []bool{false, true} {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// A TLS 1.3 session ticket arrives after the handshake and is
		// taken in by a read: a reply, as the proxy reads them.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, werr := c.Write([]byte("PING\r\n"))
		reply := make([]byte, 7)
		n, rerr := io.ReadFull(c, reply)
		resumed := c.ConnectionState().DidResume
		c.Close()
		if werr != nil || rerr != nil || string(reply[:n]) != "+PONG\r\n" {
			t.Fatalf("connection %d: PING = %q, %v, %v", i+1, reply[:n], werr, rerr)
		}
		if resumed != wantResumed {
			t.Fatalf("connection %d resumed a session: %v; want %v", i+1, resumed, wantResumed)
		}
	}
}
