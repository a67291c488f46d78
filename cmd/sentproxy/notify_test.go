package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/notify"
)

// When the master dies, the script gets exactly the arguments Sentinel's
// client-reconfig-script gets, and the webhook the JSON of the switch.
// Nobody is told about the first master found at start.
func TestNotifyOnFailover(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	script := filepath.Join(dir, "reconfig.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$# $*\" >> '"+argsFile+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	payloads := make(chan notify.Payload, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p notify.Payload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil || r.URL.Path != "/hook" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		payloads <- p
	}))
	defer hook.Close()

	topo := startTopology(t)
	h := startHarness(t, topo, func(c *appConfig) {
		c.notify = notify.Config{Exec: script, Webhook: hook.URL + "/hook", RetryBackoff: 50 * time.Millisecond}
	})
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	if err := topo.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	newAddr := waitNewMaster(t, topo, old)
	h.waitRouted(newAddr, 10*time.Second)

	// The webhook: a withdrawal may come first (the proxy stops routing to
	// a dead master before the Sentinels agree on the next), then the switch.
	var got notify.Payload
	deadline := time.After(10 * time.Second)
	for got.NewAddress == "" {
		select {
		case p := <-payloads:
			switch {
			case p.OldAddress == "":
				t.Fatalf("notified about the first master at start: %+v", p)
			case p.NewAddress == "" && p.OldAddress == old:
				t.Logf("withdrawal notified: %s", p.Text)
			case p.NewAddress == newAddr:
				got = p
			default:
				t.Fatalf("unexpected notification %+v; want %s -> %s", p, old, newAddr)
			}
		case <-deadline:
			t.Fatalf("no webhook notification of the switch to %s within 10s", newAddr)
		}
	}
	if got.MasterName != "mymaster" || got.OldAddress != old || got.CutoverSeconds < 0 ||
		got.ObservedAt.IsZero() || got.SwitchedAt.Before(got.ObservedAt) ||
		!strings.Contains(got.Text, old+" to "+newAddr) || got.Reason == "" {
		t.Fatalf("webhook payload %+v; want the switch %s -> %s with its times and a text", got, old, newAddr)
	}
	t.Logf("webhook text: %s", got.Text)

	// The script: once, for the switch, with Sentinel's 7 arguments.
	_, oldPort, _ := net.SplitHostPort(old)
	_, newPort, _ := net.SplitHostPort(newAddr)
	want := "7 mymaster leader start 127.0.0.1 " + oldPort + " 127.0.0.1 " + newPort
	var lines []string
	eventually(t, "the script to run", 10*time.Second, func() bool {
		b, _ := os.ReadFile(argsFile)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(b) > 0
	})
	if lines[0] != want {
		t.Fatalf("script got %q; want %q", lines[0], want)
	}

	st := getStatus(t, h)
	if st.Notify == nil || strings.Join(st.Notify.Sinks, ",") != "exec,webhook" || st.Notify.Failures != 0 {
		t.Fatalf("/status notify = %+v; want both sinks and no failure", st.Notify)
	}
}

// Bad notification flags exit with status 2 before anything listens, and a
// webhook URL, which may hold a token, is never echoed.
func TestNotifyFlagsExitTwo(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	base := []string{"run", "--sentinel.addrs=127.0.0.1:26379", "--proxy.listen-address=" + held.Addr().String()}
	missing := filepath.Join(t.TempDir(), "no-such-script")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing program", []string{"--notify.exec=" + missing}, "--notify.exec"},
		{"webhook not http", []string{"--notify.webhook=ftp://hooks.example.com/T0SECRET"}, "--notify.webhook: notify: webhook URL must start with http:// or https://"},
		{"webhook without scheme", []string{"--notify.webhook=hooks.example.com/services/T0SECRET"}, "--notify.webhook"},
		{"zero webhook retries", []string{"--notify.webhook-retries=0"}, "--notify.webhook-retries"},
		{"zero exec timeout", []string{"--notify.exec-timeout=0s"}, "--notify.exec-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(append(base, tc.args...)...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d mentioning %q", code, errOut, exitUsage, tc.want)
			}
			if strings.Contains(errOut, "SECRET") {
				t.Fatalf("stderr %q repeats the webhook URL", errOut)
			}
		})
	}
}

// The flags reach the notifier, and the script does not inherit
// sentproxy's own SENTPROXY_* variables (passwords, the webhook's token).
func TestNotifyFlagsAndScriptEnv(t *testing.T) {
	t.Setenv("SENTPROXY_SENTINEL_ADDRS", "127.0.0.1:26379")
	t.Setenv("SENTPROXY_MASTER_PASSWORD", "s3cret")
	t.Setenv("SENTPROXY_NOTIFY_WEBHOOK", "https://hooks.example.com/services/T0/B0/XXXX")
	t.Setenv("SENTPROXY_NOTIFY_WEBHOOK_RETRIES", "5")
	t.Setenv("REDIS_SCRIPT_SETTING", "kept")
	var cli CLI
	parser, err := newParser(&cli, &strings.Builder{}, &strings.Builder{}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse([]string{"run", "--notify.exec=/bin/true", "--notify.exec-timeout=3s"}); err != nil {
		t.Fatalf("parse: %v", err)
	}
	n := cli.Run.cfg.notify
	if n.Exec != "/bin/true" || n.ExecTimeout != 3*time.Second || n.Webhook != "https://hooks.example.com/services/T0/B0/XXXX" ||
		n.WebhookTimeout != 5*time.Second || n.WebhookAttempts != 5 {
		t.Fatalf("notify config %+v; want the flags and env twins", n)
	}
	env := strings.Join(n.ExecEnv, "\n")
	if strings.Contains(env, "SENTPROXY_") || !strings.Contains(env, "REDIS_SCRIPT_SETTING=kept") {
		t.Fatalf("script environment:\n%s\nwant everything but SENTPROXY_*", env)
	}
}
