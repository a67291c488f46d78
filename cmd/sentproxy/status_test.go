package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func getStatus(t *testing.T, h *harness) statusResponse {
	t.Helper()
	code, body := h.httpGet("/status")
	if code != http.StatusOK {
		t.Fatalf("/status = %d %q", code, body)
	}
	var st statusResponse
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status %q: %v", body, err)
	}
	if len(st.Routes) != 1 {
		t.Fatalf("/status has %d routes; want 1: %s", len(st.Routes), body)
	}
	return st
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// /status and `sentproxy status` show the route, its master, the three
// Sentinels' views, open connections, and the switches as they happen.
func TestStatusEndpointAndCommand(t *testing.T) {
	topo := startTopology(t)
	h := startHarness(t, topo, nil)
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)
	eventually(t, "all 3 Sentinels reporting the master", 10*time.Second, func() bool {
		r := getStatus(t, h).Routes[0]
		if len(r.Sentinels) != 3 {
			return false
		}
		for _, v := range r.Sentinels {
			if v.Master != old || v.Error != "" {
				return false
			}
		}
		return true
	})

	// A client held open through the proxy is counted.
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PING\r\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING through the proxy: %q, %v", line, err)
	}

	r := getStatus(t, h).Routes[0]
	switch {
	case r.Name != "mymaster", r.ListenAddress != h.addr, r.Master != old:
		t.Fatalf("route %q on %s routed to %q; want mymaster on %s routed to %s", r.Name, r.ListenAddress, r.Master, h.addr, old)
	case r.Since.IsZero(), r.CheckedAt.IsZero(), !strings.Contains(r.Reason, "ROLE is master"):
		t.Fatalf("since %v, checked %v, reason %q; want both set and a verified reason", r.Since, r.CheckedAt, r.Reason)
	case r.ActiveConnections != 1:
		t.Fatalf("active_connections = %d; want 1", r.ActiveConnections)
	case r.Mode != "tcp" || r.Engine != h.app.routes[0].server.Engine() || (r.Engine == "epoll") != (r.EventLoops > 0):
		t.Fatalf("mode %q, engine %q, %d event loops; want tcp, the server's engine, loops with epoll only", r.Mode, r.Engine, r.EventLoops)
	case len(r.RecentSwitches) != 1 || r.RecentSwitches[0].Kind != "first" || r.RecentSwitches[0].NewAddress != old:
		t.Fatalf("recent_switches = %+v; want the first master %s", r.RecentSwitches, old)
	}

	code, out, errOut := runCLI("status", "--url=http://"+h.web)
	if code != 0 {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	wants := []string{"mymaster on " + h.addr, "master       " + old + " since ", "1 open", "first", "mode         tcp, " + r.Engine + " engine"}
	for _, s := range topo.SentinelAddrs() {
		wants = append(wants, s+"  "+old)
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Fatalf("status output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("sentproxy status:\n%s", out)

	// --json prints /status as it came.
	code, out, errOut = runCLI("status", "--json", "--url="+h.web)
	var st statusResponse
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Routes) != 1 || st.Routes[0].Master != old {
		t.Fatalf("status --json exit %d, output %q, stderr %q", code, out, errOut)
	}

	c.Close()
	eventually(t, "the closed client to be uncounted", 5*time.Second, func() bool {
		return getStatus(t, h).Routes[0].ActiveConnections == 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := topo.Failover(ctx); err != nil {
		t.Fatal(err)
	}
	newAddr := waitNewMaster(t, topo, old)
	h.waitRouted(newAddr, 10*time.Second)

	r = getStatus(t, h).Routes[0]
	latest := r.RecentSwitches[0]
	if r.Master != newAddr || latest.Kind != "switch" || latest.OldAddress != old || latest.NewAddress != newAddr || latest.CutoverSeconds <= 0 {
		t.Fatalf("after the failover: master %q, latest switch %+v; want a switch %s -> %s with its cutover", r.Master, latest, old, newAddr)
	}
	if last := r.RecentSwitches[len(r.RecentSwitches)-1]; last.Kind != "first" {
		t.Fatalf("oldest record %+v; want the first master (newest first)", last)
	}
	code, out, errOut = runCLI("status", "--url=http://"+h.web)
	if code != 0 {
		t.Fatalf("status exit %d after the failover: %s", code, errOut)
	}
	if !regexp.MustCompile(`switch\s+` + regexp.QuoteMeta(old) + `\s+` + regexp.QuoteMeta(newAddr) + `\s+\S+s\s`).MatchString(out) {
		t.Fatalf("status output lacks the switch %s -> %s:\n%s", old, newAddr, out)
	}
	t.Logf("sentproxy status after the failover:\n%s", out)
}

// `status` exits 1 when sentproxy cannot be asked or a route has no
// master, and says why.
func TestStatusCommandFailures(t *testing.T) {
	noMaster := statusResponse{Now: time.Now(), Routes: []routeStatus{
		{Name: "cache", ListenAddress: "127.0.0.1:6379", Master: "10.0.0.1:6379", Reason: "ok"},
		{Name: "queue", ListenAddress: "127.0.0.1:6380", Reason: "no Sentinel reachable",
			Sentinels: []checkView{{Sentinel: "10.0.0.9:26379", Error: "connection refused"}}},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status":
			json.NewEncoder(w).Encode(noMaster)
		case "/proxied/status":
			w.Write([]byte("not json"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{"route without master", []string{"status", "--url=" + srv.URL}, exitFailure, "master       NONE since never", "no master for queue"},
		{"json too", []string{"status", "--json", "--url=" + srv.URL}, exitFailure, `"name":"queue"`, "no master for queue"},
		{"unreachable", []string{"status", "--url=http://" + closed}, exitFailure, "", "connection refused"},
		{"not found", []string{"status", "--url=" + srv.URL + "/elsewhere"}, exitFailure, "", "404 Not Found"},
		{"not a status", []string{"status", "--url=" + srv.URL + "/proxied/status"}, exitFailure, "", "not a sentproxy status"},
		{"bad URL", []string{"status", "--url=http://[::1"}, exitUsage, "", "--url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, out, errOut, tc.wantCode, tc.wantOut, tc.wantStderr)
			}
		})
	}
}

// `status` and `healthcheck` ask where `run` listens by default.
func TestStatusDefaultsFollowWebAddress(t *testing.T) {
	var cli CLI
	parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]string{}
	for _, cmd := range parser.Model.Node.Children {
		for _, f := range cmd.Flags {
			defaults[cmd.Name+" --"+f.Name] = f.Default
		}
	}
	for key, want := range map[string]string{
		"run --web.listen-address": defaultWebAddress,
		"status --url":             "http://" + defaultWebAddress,
		"healthcheck --url":        "http://" + defaultWebAddress + "/readyz",
	} {
		if got := defaults[key]; got != want {
			t.Errorf("default of %s = %q; want %q", key, got, want)
		}
	}
}

// `healthcheck` exits 0 on 200 and 1 otherwise, printing the body.
func TestHealthcheckExitCodes(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			fmt.Fprintln(w, "mymaster: master 127.0.0.1:6380: 3 of 3 Sentinels agree")
		case "/notready":
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "mymaster: no verified master: no Sentinel reachable")
		case "/hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name       string
		url        string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{"200", srv.URL + "/readyz", 0, "3 of 3 Sentinels agree", ""},
		{"503", srv.URL + "/notready", exitFailure, "no verified master", "503 Service Unavailable"},
		{"unreachable", "http://" + closed + "/readyz", exitFailure, "", "connection refused"},
		{"no answer within 2s", srv.URL + "/hang", exitFailure, "", "Client.Timeout exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var (
				code        int
				out, errOut string
			)
			go func() {
				defer close(done)
				code, out, errOut = runCLI("healthcheck", "--url="+tc.url)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("healthcheck did not return within 10s")
			}
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
					code, out, errOut, tc.wantCode, tc.wantOut, tc.wantStderr)
			}
		})
	}
}
