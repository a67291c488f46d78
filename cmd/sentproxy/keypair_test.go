package main

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// copyFile replaces dst with src's content, renamed into place as a
// renewal tool does, and moves its modification time on so that the change
// shows even on a file system with coarse timestamps.
func copyFile(t *testing.T, src, dst string, mod time.Time) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, dst, string(b))
	if err := os.Chtimes(dst, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// The client key pair follows its files: a renewed pair is presented on the
// next handshake; a pair caught half written keeps the last good one, with
// one warning; the next good pair is taken again.
func TestKeyPairFileFollowsRenewal(t *testing.T) {
	a := testutil.NewTLSFiles(t, t.TempDir())
	b := testutil.NewTLSFiles(t, t.TempDir())
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	now := time.Now()
	copyFile(t, a.Cert, cert, now)
	copyFile(t, a.Key, key, now)
	k, err := loadKeyPairFile(cert, key, "--tls.cert-file", "--tls.key-file")
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	k.setLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	leaf := func(what string, want testutil.TLSFiles) {
		t.Helper()
		got, err := k.getClient(&tls.CertificateRequestInfo{})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		w, err := tls.LoadX509KeyPair(want.Cert, want.Key)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Certificate[0]) != string(w.Certificate[0]) {
			t.Fatalf("%s: presented a certificate other than %s", what, want.Cert)
		}
	}
	leaf("unchanged", a)
	if logs.String() != "" {
		t.Fatalf("logged without a change: %s", logs.String())
	}
	copyFile(t, b.Cert, cert, now.Add(time.Minute))
	copyFile(t, b.Key, key, now.Add(time.Minute))
	leaf("renewed", b)
	if !strings.Contains(logs.String(), "TLS certificate and key read again") {
		t.Fatalf("the renewal was not logged: %s", logs.String())
	}
	// The certificate renewed, its key not yet: they do not match.
	copyFile(t, a.Cert, cert, now.Add(2*time.Minute))
	leaf("half renewed", b)
	leaf("half renewed, asked again", b)
	if n := strings.Count(logs.String(), "not usable as they are now; keeping the pair read last"); n != 1 {
		t.Fatalf("%d warnings for the half-written pair; want 1:\n%s", n, logs.String())
	}
	copyFile(t, a.Key, key, now.Add(3*time.Minute))
	leaf("renewal completed", a)
}
