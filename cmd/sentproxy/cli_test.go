package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// Bad command lines exit with status 2 and one clear message, before
// anything listens.
func TestBadFlagsExitTwo(t *testing.T) {
	// A port we hold: if sentproxy got as far as listening it would fail
	// differently (status 1, "address already in use").
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	listen := "--proxy.listen-address=" + held.Addr().String()
	missing := filepath.Join(t.TempDir(), "no-such-file")
	good := testutil.NewTLSFiles(t, t.TempDir())
	present := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(present, []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{}, "expected one of"},
		{"unknown flag", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--no-such-flag"}, "unknown flag"},
		{"no Sentinel", []string{"run", listen}, "--sentinel.addrs"},
		{"Sentinel without port", []string{"run", "--sentinel.addrs=127.0.0.1", listen}, "missing port"},
		{"Sentinel port not a number", []string{"run", "--sentinel.addrs=127.0.0.1:abc", listen}, "port must be"},
		{"bad listen address", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.listen-address=nonsense"}, "--proxy.listen-address"},
		{"bad duration", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.hold-timeout=soon"}, "hold-timeout"},
		{"negative duration", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.hold-timeout=-1s"}, "must not be negative"},
		{"zero poll interval", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--sentinel.poll-interval=0s"}, "poll-interval"},
		{"negative max connections", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.max-connections=-1"}, "max-connections"},
		{"bad log level", []string{"--log.level=loud", "run", "--sentinel.addrs=127.0.0.1:26379", listen}, "log.level"},
		{"password and password file", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--sentinel.password=a", "--sentinel.password-file=" + present}, "can't be used together"},
		{"unreadable password file", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--master.password-file=" + missing}, "password file"},
		{"route without address", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.route=cache"}, "NAME=HOST:PORT"},
		{"route with an unknown mode", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.route=a=127.0.0.1:1/http"}, "mode must be tcp or resp"},
		{"unknown mode", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.mode=http"}, "--proxy.mode"},
		{"unknown engine", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.engine=uring"}, "--proxy.engine"},
		{"negative event loops", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.engine=epoll", "--proxy.event-loops=-1"}, "--proxy.event-loops"},
		{"buffer limits the wrong way round", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.max-client-buffer=4096", "--proxy.max-buffer=2048"}, "max-buffer"},
		{"route name twice", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.route=a=127.0.0.1:1,a=127.0.0.1:2"}, "given twice"},
		{"master name with a space", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--sentinel.master-name=my master", listen}, "spaces"},
		{"unix socket without a path", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.listen-address=unix:"}, "needs a socket path"},
		{"unix socket path too long", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.listen-address=unix:/" + strings.Repeat("s", 107)}, "at most 107 bytes"},
		{"socket mode not octal", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.socket-mode=0999"}, "--proxy.socket-mode"},
		{"socket mode too wide", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.socket-mode=01777"}, "--proxy.socket-mode"},
		{"socket group unknown", []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.listen-address=unix:/run/sentproxy/redis.sock", "--proxy.socket-group=no-such-group-sentproxy"}, "--proxy.socket-group"},
		{"socket group without a socket", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.socket-group=0"}, "no effect"},
		{"telemetry path clash", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--web.telemetry-path=/readyz"}, "telemetry-path"},
		// TLS files are read and parsed before anything listens; "present"
		// holds a password, not PEM.
		{"TLS settings without TLS", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--tls.ca-file=" + present}, "no effect"},
		{"TLS CA file missing", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--master.tls", "--tls.ca-file=" + missing}, "--tls.ca-file"},
		{"TLS CA file not PEM", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--sentinel.tls", "--tls.ca-file=" + present}, "no PEM certificate"},
		{"TLS certificate without key", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--master.tls", "--tls.cert-file=" + present}, "go together"},
		{"TLS certificate and key not PEM", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--master.tls", "--tls.cert-file=" + present, "--tls.key-file=" + present}, "--tls.cert-file"},
		{"check: TLS CA file not PEM", []string{"check", "--sentinel.addrs=127.0.0.1:26379", "--sentinel.tls", "--tls.ca-file=" + present}, "no PEM certificate"},
		// The listener's TLS (--proxy.tls-*), read likewise.
		{"served certificate without key", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.tls-cert-file=" + good.Cert}, "go together"},
		{"client CA without a served certificate", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.tls-client-ca-file=" + good.CA}, "go together"},
		{"served certificate and key not PEM", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.tls-cert-file=" + present, "--proxy.tls-key-file=" + present}, "--proxy.tls-cert-file"},
		{"served key missing", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.tls-cert-file=" + good.Cert, "--proxy.tls-key-file=" + missing}, "--proxy.tls-key-file"},
		{"client CA file not PEM", []string{"run", "--sentinel.addrs=127.0.0.1:26379", listen, "--proxy.tls-cert-file=" + good.Cert, "--proxy.tls-key-file=" + good.Key, "--proxy.tls-client-ca-file=" + present}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != exitUsage {
				t.Fatalf("exit status %d; want %d (stderr %q)", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q; want it to mention %q", stderr.String(), tc.want)
			}
		})
	}
}

// Environment twins work, and a password file's trailing newline is not
// part of the password.
func TestEnvTwinsAndPasswordFile(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SENTPROXY_SENTINEL_ADDRS", "127.0.0.1:1,[::1]:2")
	t.Setenv("SENTPROXY_MASTER_PASSWORD_FILE", pw)
	t.Setenv("SENTPROXY_PROXY_HOLD_TIMEOUT", "0s")
	var cli CLI
	parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"run"}); err != nil {
		t.Fatalf("parse: %v", err)
	}
	c := cli.Run.cfg
	if got := strings.Join(c.discovery.Sentinels, " "); got != "127.0.0.1:1 [::1]:2" {
		t.Fatalf("Sentinels = %q; want both from the env", got)
	}
	if c.discovery.MasterPassword != "s3cret" {
		t.Fatalf("master password = %q; want %q", c.discovery.MasterPassword, "s3cret")
	}
	// resp mode's COMMAND fetch authenticates with the same credentials.
	if c.proxy.MasterPassword != "s3cret" {
		t.Fatalf("proxy's master password = %q; want %q", c.proxy.MasterPassword, "s3cret")
	}
	// Given by file, the password follows the file (rotation without a
	// restart), for the ROLE check and the COMMAND fetch alike; the
	// Sentinels' password, given by no file, is fixed.
	if err := os.WriteFile(pw, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.discovery.MasterPasswordFunc == nil || c.proxy.MasterPasswordFunc == nil {
		t.Fatal("master password given by file but not followed")
	}
	if got, got2 := c.discovery.MasterPasswordFunc(), c.proxy.MasterPasswordFunc(); got != "rotated" || got2 != "rotated" {
		t.Fatalf("after rewriting the file: discovery %q, proxy %q; want %q", got, got2, "rotated")
	}
	if c.discovery.SentinelPasswordFunc != nil {
		t.Fatal("a password func for the Sentinels, which were given no password file")
	}
	if c.proxy.HoldTimeout >= 0 {
		t.Fatalf("hold timeout %v; want negative (0 on the command line means refuse at once)", c.proxy.HoldTimeout)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "sentproxy ") {
		t.Fatalf("got %q; want it to start with %q", stdout.String(), "sentproxy ")
	}
}

// A route's /MODE suffix is read after a unix socket's path, which has
// slashes of its own; only a last /tcp or /resp is a mode.
func TestRoutesWithUnixSockets(t *testing.T) {
	f := ProxyFlags{Routes: []string{"cache=unix:/run/sentproxy/cache.sock/resp", "queue=unix:/run/sentproxy/queue.sock",
		"jobs=unix:relative/jobs.sock/tcp", "tcp=127.0.0.1:6380/resp"}}
	rs, err := f.routes("")
	if err != nil {
		t.Fatal(err)
	}
	want := []route{
		{name: "cache", listen: "unix:/run/sentproxy/cache.sock", mode: "resp"},
		{name: "queue", listen: "unix:/run/sentproxy/queue.sock"},
		{name: "jobs", listen: "unix:relative/jobs.sock", mode: "tcp"},
		{name: "tcp", listen: "127.0.0.1:6380", mode: "resp"},
	}
	if !slices.Equal(rs, want) {
		t.Fatalf("routes = %+v; want %+v", rs, want)
	}
}
