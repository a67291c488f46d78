package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/internal/testutil"
)

// A CA file follows its changes: a renewed bundle is what the next
// handshake verifies against; a file caught half written keeps the CAs
// read last, with one warning; the next good file is taken again.
func TestCAFileFollowsRenewal(t *testing.T) {
	a := testutil.NewTLSFiles(t, t.TempDir())
	b := testutil.NewTLSFiles(t, t.TempDir())
	path := filepath.Join(t.TempDir(), "ca.crt")
	now := time.Now()
	copyFile(t, a.CA, path, now)
	ca, err := loadCAFile(path, "--tls.ca-file")
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	ca.setLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	// trusts reports which of a's and b's certificates the pool verifies.
	trusts := func(what string, wantA, wantB bool) {
		t.Helper()
		for _, c := range []struct {
			name  string
			files testutil.TLSFiles
			want  bool
		}{{"a", a, wantA}, {"b", b, wantB}} {
			pair, _ := c.files.Load(t)
			_, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: ca.get(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if got := err == nil; got != c.want {
				t.Fatalf("%s: %s's certificate verified: %v (%v); want %v", what, c.name, got, err, c.want)
			}
		}
	}
	trusts("unchanged", true, false)
	if logs.String() != "" {
		t.Fatalf("logged without a change: %s", logs.String())
	}
	copyFile(t, b.CA, path, now.Add(time.Minute))
	trusts("renewed", false, true)
	if !strings.Contains(logs.String(), "CA file read again") {
		t.Fatalf("the renewal was not logged: %s", logs.String())
	}
	writeAtomically(t, path, "-----BEGIN CERTIFICATE-----\nMIIB") // caught half written
	trusts("half written", false, true)
	trusts("half written, asked again", false, true)
	if n := strings.Count(logs.String(), "CA file not usable as it is now"); n != 1 {
		t.Fatalf("%d warnings for the half-written file; want 1:\n%s", n, logs.String())
	}
	copyFile(t, a.CA, path, now.Add(2*time.Minute))
	trusts("renewal completed", true, false)
}

// --tls.ca-file follows its file towards real TLS Sentinels and master:
// sentproxy started with a CA that did not sign their certificates routes
// nowhere and says why; once the file holds the right CA (as a renewal
// writes it), it verifies them, routes to the master and a client's
// command runs there, though the tls.Config it started with still holds
// the wrong CA: the Sentinels' dials, the ROLE check and the proxy's dials
// to the master all take the CAs as the file is now.
func TestTLSCAFileFollowed(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	other := testutil.NewTLSFiles(t, t.TempDir())
	mTLS, sTLS := tlsPort(t), tlsPort(t)
	master := testredis.StartServer(t, redisproc.Options{ExtraConfig: tlsLines(files, mTLS)})
	testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: mTLS, ExtraConfig: tlsLines(files, sTLS)})
	caPath := filepath.Join(t.TempDir(), "ca.crt")
	now := time.Now()
	copyFile(t, other.CA, caPath, now)

	a := startFromFlags(t, fmt.Sprintf("--sentinel.addrs=127.0.0.1:%d", sTLS), "--sentinel.tls", "--master.tls",
		"--tls.ca-file="+caPath, "--tls.cert-file="+files.Cert, "--tls.key-file="+files.Key,
		"--sentinel.poll-interval=200ms", "--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0")
	w := a.routes[0].watcher
	eventually(t, "the Sentinel refused for its certificate", 10*time.Second, func() bool {
		return strings.Contains(w.Status().Reason, "certificate")
	})
	if m := a.routes[0].server.Master(); m != "" {
		t.Fatalf("routed to %s with a CA that signed no certificate there", m)
	}

	copyFile(t, files.CA, caPath, now.Add(time.Minute))
	masterTLS := fmt.Sprintf("127.0.0.1:%d", mTLS)
	eventually(t, "routed to the master's TLS port after the CA file changed", 10*time.Second, func() bool {
		return a.routes[0].server.Master() == masterTLS
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: a.routes[0].ln.Addr().String(), MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "ca-followed", "yes", 0).Err(); err != nil {
		t.Fatalf("SET through sentproxy after the CA file changed: %v", err)
	}
	if v, err := master.Do(ctx, "GET", "ca-followed"); err != nil || v != "yes" {
		t.Fatalf("GET on the master = %v, %v", v, err)
	}
}

// --proxy.tls-client-ca-file follows its file: a client whose certificate
// another CA signed is refused; once that CA is added to the file, its next
// connection is taken, and the first CA's clients still are; once the
// first CA is dropped from the file, its clients are refused.
func TestClientTLSCAFileFollowed(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	other := testutil.NewTLSFiles(t, t.TempDir())
	master := testredis.StartServer(t, redisproc.Options{})
	sentinel := testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: master.Port})
	caPath := filepath.Join(t.TempDir(), "clients-ca.crt")
	now := time.Now()
	copyFile(t, files.CA, caPath, now)
	a := startFromFlags(t, "--sentinel.addrs="+sentinel.Addr,
		"--proxy.tls-cert-file="+files.Cert, "--proxy.tls-key-file="+files.Key, "--proxy.tls-client-ca-file="+caPath,
		"--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0")
	eventually(t, "routed to the master", 10*time.Second, func() bool { return a.routes[0].server.Master() == master.Addr })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, roots := files.Load(t) // the served certificate's CA
	// set writes key through sentproxy as a client with f's certificate, on
	// a new connection each time (no session to resume).
	set := func(f testutil.TLSFiles, key string) error {
		pair, _ := f.Load(t)
		c := redis.NewClient(&redis.Options{Addr: a.routes[0].ln.Addr().String(), MaxRetries: -1, DialTimeout: 5 * time.Second,
			TLSConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}})
		defer c.Close()
		return c.Set(ctx, key, "yes", 0).Err()
	}
	check := func(what string, f testutil.TLSFiles, key string, want bool) {
		t.Helper()
		err := set(f, key)
		if (err == nil) != want {
			t.Fatalf("%s: SET = %v; want taken: %v", what, err, want)
		}
		wantN := int64(0)
		if want {
			wantN = 1
		}
		if n, err := master.Do(ctx, "EXISTS", key); err != nil || n != wantN {
			t.Fatalf("%s: EXISTS %s on the master = %v, %v; want %d", what, key, n, err, wantN)
		}
	}
	check("the file's CA", files, "first-ca", true)
	check("another CA", other, "other-ca-before", false)

	bundle := filepath.Join(t.TempDir(), "bundle.crt")
	writeAtomically(t, bundle, readFile(t, files.CA)+readFile(t, other.CA))
	copyFile(t, bundle, caPath, now.Add(time.Minute))
	check("another CA, added to the file", other, "other-ca-added", true)
	check("the first CA, still in the file", files, "first-ca-kept", true)

	copyFile(t, other.CA, caPath, now.Add(2*time.Minute))
	check("the first CA, dropped from the file", files, "first-ca-dropped", false)
	check("the CA left in the file", other, "other-ca-left", true)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
