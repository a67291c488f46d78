package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/internal/testutil"
)

// tlsServer is a real redis-server that takes clients in TLS on the
// returned address; its plain port is for the test's own checks.
func tlsServer(t *testing.T, f testutil.TLSFiles) (*redisproc.Process, string) {
	t.Helper()
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := testredis.StartServer(t, redisproc.Options{ExtraConfig: []string{
		"tls-port " + strconv.Itoa(port), "tls-cert-file " + f.Cert, "tls-key-file " + f.Key, "tls-ca-cert-file " + f.CA,
	}})
	return p, fmt.Sprintf("127.0.0.1:%d", port)
}

func clientTLS(t *testing.T, f testutil.TLSFiles) *tls.Config {
	t.Helper()
	pair, pool := f.Load(t)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// checkAfterSwitch checks the reply to "SET key mode", sent on a client's
// connection after the switch from old to new: tcp mode cut the connection
// (one master_switch close), resp mode moved it and the SET ran on new;
// either way nothing ran on old.
func checkAfterSwitch(t *testing.T, mode, key, got string, err error, rec *recorder, old, new *redisproc.Process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch mode {
	case ModeTCP:
		if err == nil {
			t.Fatalf("SET on the connection to the old master = %q; want it cut", got)
		}
		eventually(t, "the master_switch close", 5*time.Second, func() bool { return rec.closedFor(ReasonMasterSwitch) == 1 })
	case ModeRESP:
		if err != nil || got != "+OK" {
			t.Fatalf("SET on the moved connection = %q, %v", got, err)
		}
		if v, err := new.Do(ctx, "GET", key); err != nil || v != mode {
			t.Fatalf("GET on the new master = %v, %v", v, err)
		}
	}
	if v, err := old.Do(ctx, "EXISTS", key); err != nil || v != int64(0) {
		t.Fatalf("EXISTS on the old master = %v, %v; want nothing written there after the switch", v, err)
	}
}

// With Config.TLS, plain-text clients reach a master that takes TLS only,
// in both modes, and a switch acts as it does without TLS: tcp mode cuts
// the connection to the old master (through the TLS layer, by reset), resp
// mode moves it. resp mode's COMMAND table is fetched over TLS too.
func TestTLSToTheMaster(t *testing.T) {
	files := testutil.NewTLSFiles(t, t.TempDir())
	a, aTLS := tlsServer(t, files)
	b, bTLS := tlsServer(t, files)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, mode := range []string{ModeTCP, ModeRESP} {
		t.Run(mode, func(t *testing.T) {
			s, addr, rec := startServer(t, Config{Mode: mode, TLS: clientTLS(t, files)})
			if mode == ModeTCP && s.Engine() != EngineSplice {
				t.Errorf("engine %s; want %s, the copying engine, under TLS", s.Engine(), EngineSplice)
			}
			s.SetMaster(aTLS)
			c := dial(t, addr)
			r := bufio.NewReader(c)
			set := func(key string) (string, error) {
				if _, err := io.WriteString(c, "SET "+key+" "+mode+"\r\n"); err != nil {
					return "", err
				}
				line, err := r.ReadString('\n')
				return strings.TrimSpace(line), err
			}
			if got, err := set("before-" + mode); err != nil || got != "+OK" {
				t.Fatalf("SET through the proxy = %q, %v", got, err)
			}
			if v, err := a.Do(ctx, "GET", "before-"+mode); err != nil || v != mode {
				t.Fatalf("GET on the TLS master = %v, %v", v, err)
			}
			if mode == ModeRESP {
				eventually(t, "the command table over TLS", 5*time.Second, func() bool { return s.commands.Load() != nil })
			}

			s.SetMaster(bTLS)
			got, err := set("after-" + mode)
			checkAfterSwitch(t, mode, "after-"+mode, got, err, rec, a, b)
		})
	}
}

// A master whose certificate the proxy's CA did not sign: the client held
// for it gets an error that names the TLS failure, and the dial failure is
// reported so that the master can be re-checked.
func TestTLSUnknownAuthorityAtDial(t *testing.T) {
	files := testutil.NewTLSFiles(t, t.TempDir())
	other := testutil.NewTLSFiles(t, t.TempDir())
	_, aTLS := tlsServer(t, files)
	reported := make(chan error, 16)
	s, addr, _ := startServer(t, Config{TLS: clientTLS(t, other), HoldTimeout: 300 * time.Millisecond,
		OnDialError: func(_ string, err error) {
			select {
			case reported <- err:
			default:
			}
		}})
	s.SetMaster(aTLS)
	got, err := io.ReadAll(dial(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(got), "-ERR sentproxy: cannot reach master") || !strings.Contains(string(got), "TLS: ") || !strings.Contains(string(got), "certificate") {
		t.Fatalf("client got %q; want the TLS failure named", got)
	}
	select {
	case err := <-reported:
		if !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("dial error reported: %v", err)
		}
	default:
		t.Fatal("the failed dial was not reported")
	}
}
