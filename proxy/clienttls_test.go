package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/internal/testutil"
)

// serverTLS is the listener's side: f's certificate, and clients'
// certificates required and checked against f's CA.
func serverTLS(t *testing.T, f testutil.TLSFiles) *tls.Config {
	t.Helper()
	pair, pool := f.Load(t)
	return &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

// sendLine sends one inline command on c and reads one reply line.
func sendLine(c net.Conn, r *bufio.Reader, cmd string) (string, error) {
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	return strings.TrimSpace(line), err
}

// With Config.ClientTLS, clients connect in TLS (mutual: their certificate
// is checked) to plain-text masters, in both modes. Clients that cannot
// complete that handshake are closed with reason tls_handshake and reach no
// master: plain text on the TLS port, no certificate, a certificate from
// another CA. The client that did connect is not disturbed by them, and a
// switch acts as it does without TLS: tcp mode cuts the connection to the
// old master, resp mode moves it.
func TestClientTLS(t *testing.T) {
	testredis.Require(t)
	files := testutil.NewTLSFiles(t, t.TempDir())
	other := testutil.NewTLSFiles(t, t.TempDir())
	a := testredis.StartServer(t, redisproc.Options{})
	b := testredis.StartServer(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, mode := range []string{ModeTCP, ModeRESP} {
		t.Run(mode, func(t *testing.T) {
			s, addr, rec := startServer(t, Config{Mode: mode, ClientTLS: serverTLS(t, files)})
			if mode == ModeTCP && s.Engine() != EngineSplice {
				t.Errorf("engine %s; want %s, the copying engine, under TLS", s.Engine(), EngineSplice)
			}
			s.SetMaster(a.Addr)
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, clientTLS(t, files))
			if err != nil {
				t.Fatalf("TLS client with a good certificate: %v", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			if got, err := sendLine(c, r, "SET before-"+mode+" "+mode); err != nil || got != "+OK" {
				t.Fatalf("SET through the proxy in TLS = %q, %v", got, err)
			}
			if v, err := a.Do(ctx, "GET", "before-"+mode); err != nil || v != mode {
				t.Fatalf("GET on the master = %v, %v", v, err)
			}

			// Each of these is refused during the handshake; none gets a
			// reply, and none of their commands reaches the master.
			bad := []struct {
				name string
				cfg  *tls.Config // nil: plain text
			}{
				{"plain text", nil},
				{"no client certificate", &tls.Config{RootCAs: clientTLS(t, files).RootCAs, MinVersion: tls.VersionTLS12}},
				{"certificate from another CA", func() *tls.Config {
					cfg := clientTLS(t, other)
					cfg.RootCAs = clientTLS(t, files).RootCAs // it trusts the proxy, the proxy does not trust it
					return cfg
				}()},
			}
			for i, tc := range bad {
				raw := dial(t, addr)
				var conn net.Conn = raw
				if tc.cfg != nil {
					tc.cfg.ServerName = "127.0.0.1"
					conn = tls.Client(raw, tc.cfg)
				}
				// TLS 1.3 lets the client finish its side before the server
				// has checked its certificate: the refusal shows at the
				// first read, as it does for the plain-text client.
				got, err := sendLine(conn, bufio.NewReader(conn), "SET bad-"+mode+" x")
				if err == nil {
					t.Fatalf("%s: got reply %q; want the connection refused", tc.name, got)
				}
				eventually(t, tc.name+": closed as tls_handshake", 5*time.Second, func() bool { return rec.closedFor(ReasonTLSHandshake) == i+1 })
			}
			if v, err := a.Do(ctx, "EXISTS", "bad-"+mode); err != nil || v != int64(0) {
				t.Fatalf("EXISTS on the master = %v, %v; want no refused client's command run", v, err)
			}
			if got, err := sendLine(c, r, "INCR counter-"+mode); err != nil || got != ":1" {
				t.Fatalf("INCR on the good client after the refusals = %q, %v", got, err)
			}

			s.SetMaster(b.Addr)
			got, err := sendLine(c, r, "SET after-"+mode+" "+mode)
			checkAfterSwitch(t, mode, "after-"+mode, got, err, rec, a, b)
		})
	}
}

// A client that connects and never starts its handshake is closed after
// Config.ClientHandshakeTimeout, as tls_handshake; one that is handshaking
// when Shutdown starts is closed then (as shutdown, like a held client),
// rather than holding the drain for the rest of its timeout.
func TestClientTLSHandshakeBounded(t *testing.T) {
	files := testutil.NewTLSFiles(t, t.TempDir())
	b := newBackend(t, "echo")

	s, addr, rec := startServer(t, Config{ClientTLS: serverTLS(t, files), ClientHandshakeTimeout: 200 * time.Millisecond})
	s.SetMaster(b.addr())
	got, err := io.ReadAll(dial(t, addr)) // says nothing; dial's deadline is 5 s
	if err != nil || len(got) != 0 {
		t.Fatalf("a silent client: read %q, %v; want it closed (EOF) at the handshake timeout", got, err)
	}
	eventually(t, "the close counted as tls_handshake", 5*time.Second, func() bool { return rec.closedFor(ReasonTLSHandshake) == 1 })

	s, addr, rec = startServer(t, Config{ClientTLS: serverTLS(t, files), ClientHandshakeTimeout: time.Hour})
	s.SetMaster(b.addr())
	silent := dial(t, addr)
	eventually(t, "the silent client accepted", 5*time.Second, func() bool { return rec.acceptedCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a client in its handshake: %v; want it drained at once", err)
	}
	if got, err := io.ReadAll(silent); err != nil || len(got) != 0 {
		t.Fatalf("the handshaking client: read %q, %v; want it closed", got, err)
	}
	if n := rec.closedFor(ReasonShutdown); n != 1 {
		t.Fatalf("%d closes as shutdown; want 1", n)
	}
}

// At the connection limit a TLS listener closes the extra client without
// a RESP error: writing one would take a handshake, paid for by the flood
// the limit stops.
func TestClientTLSMaxConnections(t *testing.T) {
	files := testutil.NewTLSFiles(t, t.TempDir())
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{ClientTLS: serverTLS(t, files), MaxConnections: 1})
	s.SetMaster(b.addr())
	first, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, clientTLS(t, files))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	roundTrip(t, first, "ping\r\n")
	got, err := io.ReadAll(dial(t, addr))
	if err != nil || len(got) != 0 {
		t.Fatalf("the client over the limit: read %q, %v; want it closed without a byte", got, err)
	}
	eventually(t, "the close counted as max_connections", 5*time.Second, func() bool { return rec.closedFor(ReasonMaxConnections) == 1 })
	roundTrip(t, first, "still here\r\n")
}

// abortConn closes a TLS connection without the close_notify alert that
// tls.Conn.Close writes, which waits up to 5 s for a peer that does not
// read; cut runs it for every connection to the old master, and must not
// wait. net.Pipe has no buffer, so any write waits for the peer's read.
func TestAbortConnDoesNotWaitForThePeer(t *testing.T) {
	files := testutil.NewTLSFiles(t, t.TempDir())
	sc, cc := net.Pipe()
	defer cc.Close()
	deadline := time.Now().Add(10 * time.Second) // the handshake's, should it go wrong
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	scfg := serverTLS(t, files)
	// Session tickets would follow the handshake, and with no buffer in
	// the pipe and no reader on the client's side, block it.
	scfg.SessionTicketsDisabled = true
	ccfg := clientTLS(t, files)
	ccfg.ServerName = "127.0.0.1"
	srv := tls.Server(sc, scfg)
	cli := tls.Client(cc, ccfg)
	hs := make(chan error, 1)
	go func() { hs <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	// The client now reads nothing more.
	sc.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		abortConn(srv)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second): // well short of the alert's 5 s
		t.Fatal("abortConn waited for a peer that does not read")
	}
	if _, err := sc.Write([]byte{0}); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write on the TCP side after abortConn: %v; want it closed", err)
	}
}

// Failed client handshakes are warned about at most once per
// handshakeWarnEvery, so that an app with the wrong CA shows at the
// default log level while a scanner cannot flood the log; the warning
// says how many failures went unlogged since the one before.
func TestClientTLSHandshakeFailuresWarnedAtARate(t *testing.T) {
	var r rateLimit
	t0 := time.Unix(1_000_000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		wantMissed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{9 * time.Second, false, 0},
		{10 * time.Second, true, 2},
		{11 * time.Second, false, 0},
		{25 * time.Second, true, 1},
	}
	for _, st := range steps {
		ok, missed := r.allow(t0.Add(st.at), 10*time.Second)
		if ok != st.ok || missed != st.wantMissed {
			t.Fatalf("at +%v: allow = %v, %d; want %v, %d", st.at, ok, missed, st.ok, st.wantMissed)
		}
	}

	// Through a server: three plain-text clients on its TLS port, one
	// warning.
	files := testutil.NewTLSFiles(t, t.TempDir())
	var logs testutil.Buffer
	s, addr, rec := startServer(t, Config{ClientTLS: serverTLS(t, files),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	s.SetMaster(newBackend(t, "echo").addr())
	for i := range 3 {
		c := dial(t, addr)
		io.WriteString(c, "PING\r\n")
		if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
			t.Fatalf("plain-text client %d: read %q, %v; want it closed", i+1, got, err)
		}
	}
	eventually(t, "three tls_handshake closes", 5*time.Second, func() bool { return rec.closedFor(ReasonTLSHandshake) == 3 })
	if n := strings.Count(logs.String(), `level=WARN msg="client TLS handshake failed"`); n != 1 {
		t.Fatalf("%d warnings for 3 failed handshakes within %v; want 1:\n%s", n, handshakeWarnEvery, logs.String())
	}
}
