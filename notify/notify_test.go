package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// waitTimeout bounds every wait for something the notifier does in the
// background. It is a deadline for failure, not a measure: tests pass as
// soon as the condition holds.
const waitTimeout = 10 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, waitTimeout, cond)
}

// recorder is an Observer that keeps every outcome.
type recorder struct {
	mu   sync.Mutex
	errs map[string][]error
}

func (r *recorder) NotifyResult(sink string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs == nil {
		r.errs = map[string][]error{}
	}
	r.errs[sink] = append(r.errs[sink], err)
}

func (r *recorder) results(sink string) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs[sink]...)
}

func start(t *testing.T, cfg Config) (*Notifier, *recorder, *testutil.Buffer) {
	t.Helper()
	rec, logs := &recorder{}, &testutil.Buffer{}
	cfg.Observer = rec
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		n.Run(ctx)
	}()
	t.Cleanup(func() {
		n.Close()
		cancel()
		<-ran
		if t.Failed() {
			t.Logf("notifier log:\n%s", logs.String())
		}
	})
	return n, rec, logs
}

func switchEvent(oldAddr, newAddr string) Event {
	observed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return Event{
		MasterName: "mymaster",
		OldAddr:    oldAddr,
		NewAddr:    newAddr,
		Reason:     "+switch-master: 3 of 3 Sentinels agree at config-epoch 2; ROLE is master",
		Observed:   observed,
		Switched:   observed.Add(3 * time.Millisecond),
		Cutover:    3 * time.Millisecond,
	}
}

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func TestReconfigArgs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string
		want     string
		wantErr  bool
	}{
		{"IPv4", "10.0.0.1:6379", "10.0.0.2:6380", "mymaster leader start 10.0.0.1 6379 10.0.0.2 6380", false},
		{"IPv6 without brackets", "[fd00::1]:6379", "[::1]:6380", "mymaster leader start fd00::1 6379 ::1 6380", false},
		{"hostname", "redis-0.redis:6379", "redis-1.redis:6379", "mymaster leader start redis-0.redis 6379 redis-1.redis 6379", false},
		{"no new master", "10.0.0.1:6379", "", "", true},
		{"no port", "10.0.0.1", "10.0.0.2:6379", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args, err := ReconfigArgs(switchEvent(tc.old, tc.new))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %q; want an error", args)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(args) != 7 {
				t.Fatalf("got %d arguments %q; want 7", len(args), args)
			}
			if got := strings.Join(args, " "); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
		})
	}
}

// The program gets exactly the 7 arguments of a client-reconfig-script,
// each as one argv element (no shell splits them).
func TestExecArguments(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "args")
	script := writeScript(t, dir, "reconfig.sh", `{ echo "$#"; for a in "$@"; do echo "$a"; done; } > "`+out+`.tmp" && mv "`+out+`.tmp" "`+out+`"`+"\n")
	n, rec, _ := start(t, Config{Exec: script})

	n.Notify(switchEvent("127.0.0.1:6379", "[::1]:6380"))
	eventually(t, "the script to run", func() bool { return len(rec.results(SinkExec)) == 1 })
	if err := rec.results(SinkExec)[0]; err != nil {
		t.Fatalf("exec failed: %v", err)
	}
	want := []string{"7", "mymaster", "leader", "start", "127.0.0.1", "6379", "::1", "6380"}
	if got := readLines(out); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("script saw %q; want %q", got, want)
	}
	if n.Failures() != 0 {
		t.Fatalf("Failures() = %d; want 0", n.Failures())
	}
}

// Like Sentinel, the script runs only when the master moved to another
// address: not for a withdrawal, a first master, or the same one again.
func TestExecOnlyForSwitches(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "calls")
	script := writeScript(t, dir, "reconfig.sh", `echo "$*" >> "`+out+`"`+"\n")
	n, rec, _ := start(t, Config{Exec: script})

	n.Notify(switchEvent("", "127.0.0.1:1"))            // first master
	n.Notify(switchEvent("127.0.0.1:1", ""))            // withdrawn
	n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:1")) // same again
	n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2")) // a switch
	eventually(t, "the switch to be delivered", func() bool { return len(rec.results(SinkExec)) >= 1 })
	// Skipped events are never queued, so the one result is the switch's.
	if got := rec.results(SinkExec); len(got) != 1 || got[0] != nil {
		t.Fatalf("exec results %v; want one success", got)
	}
	if got := readLines(out); len(got) != 1 || got[0] != "mymaster leader start 127.0.0.1 1 127.0.0.1 2" {
		t.Fatalf("script calls %q; want only the switch", got)
	}
}

// processGone reports whether pid no longer runs (gone or a zombie).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// A script that hangs is killed at the timeout, with what it started, and
// counted as a failure; its stderr makes it into the error.
func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	script := writeScript(t, dir, "hang.sh", `echo "about to hang" >&2
sleep 1000 &
echo $! > "`+pidFile+`.tmp" && mv "`+pidFile+`.tmp" "`+pidFile+`"
wait
`)
	n, rec, _ := start(t, Config{Exec: script, ExecTimeout: 500 * time.Millisecond})

	n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2"))
	eventually(t, "the run to fail", func() bool { return len(rec.results(SinkExec)) == 1 })
	err := rec.results(SinkExec)[0]
	if err == nil || !strings.Contains(err.Error(), "killed after the 500ms timeout") || !strings.Contains(err.Error(), "about to hang") {
		t.Fatalf("err = %v; want a timeout naming the script's stderr", err)
	}
	if n.Failures() != 1 {
		t.Fatalf("Failures() = %d; want 1", n.Failures())
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	eventually(t, "the script's child to be killed too", func() bool { return processGone(pid) })
}

func TestExecFailures(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path, want string
	}{
		{"no such program", filepath.Join(dir, "does-not-exist"), "no such file"},
		{"not executable", writeNonExecutable(t, dir), "permission denied"},
		{"non-zero exit", writeScript(t, dir, "fail.sh", "echo boom >&2\nexit 3\n"), `exit status 3; stderr: "boom"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, rec, logs := start(t, Config{Exec: tc.path})
			n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2"))
			eventually(t, "the run to fail", func() bool { return len(rec.results(SinkExec)) == 1 })
			if err := rec.results(SinkExec)[0]; err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want it to contain %q", err, tc.want)
			}
			if n.Failures() != 1 {
				t.Fatalf("Failures() = %d; want 1", n.Failures())
			}
			// The outcome is reported before it is logged; wait for the line.
			eventually(t, "the failure logged", func() bool { return strings.Contains(logs.String(), "notification failed") })
		})
	}
}

func writeNonExecutable(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "not-executable.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The webhook body carries every field, and a Slack-style one-line text.
func TestWebhookPayload(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
	}))
	defer srv.Close()
	n, rec, _ := start(t, Config{Webhook: srv.URL + "/hook"})

	ev := switchEvent("127.0.0.1:6379", "127.0.0.1:6380")
	n.Notify(ev)
	r, body := <-got, <-bodies
	if r.Method != http.MethodPost || r.URL.Path != "/hook" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %s %s (%s); want POST /hook (application/json)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	for _, k := range []string{"master_name", "old_address", "new_address", "reason", "observed_at", "switched_at", "cutover_seconds", "text"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("body lacks %q: %s", k, body)
		}
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	want := Payload{
		MasterName: "mymaster", OldAddress: "127.0.0.1:6379", NewAddress: "127.0.0.1:6380",
		Reason: ev.Reason, ObservedAt: ev.Observed, SwitchedAt: ev.Switched, CutoverSeconds: 0.003,
		Text: "sentproxy: mymaster master switched from 127.0.0.1:6379 to 127.0.0.1:6380 (cutover 3ms): " + ev.Reason,
	}
	if p != want {
		t.Fatalf("got %+v;\nwant %+v", p, want)
	}
	eventually(t, "the result", func() bool { return len(rec.results(SinkWebhook)) == 1 })
	if err := rec.results(SinkWebhook)[0]; err != nil || n.Failures() != 0 {
		t.Fatalf("result %v, Failures() = %d; want success", err, n.Failures())
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		old, new, want string
	}{
		{"a:1", "", "sentproxy: mymaster has no verified master (was a:1); new clients are held: why"},
		{"", "b:2", "sentproxy: mymaster master is b:2: why"},
		{"a:1", "a:1", "sentproxy: mymaster master a:1 is verified again: why"},
		{"a:1", "b:2", "sentproxy: mymaster master switched from a:1 to b:2 (cutover 1.5ms): why"},
	} {
		ev := Event{MasterName: "mymaster", OldAddr: tc.old, NewAddr: tc.new, Reason: "why\n", Cutover: 1500 * time.Microsecond}
		if got := Text(ev); got != tc.want {
			t.Errorf("Text(%q -> %q) = %q; want %q", tc.old, tc.new, got, tc.want)
		}
	}
}

// counter is a webhook handler answering from a script of status codes.
type counter struct {
	calls atomic.Int64
	codes []int // the last one repeats
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(c.calls.Add(1)) - 1
	code := c.codes[min(i, len(c.codes)-1)]
	w.WriteHeader(code)
	fmt.Fprintf(w, "answer %d", code)
}

func TestWebhookRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		codes     []int
		attempts  int
		wantCalls int64
		wantErr   string
	}{
		{"500 then success", []int{500, 503, 204}, 3, 3, ""},
		{"gives up after N", []int{500}, 3, 3, `3 attempt(s): answered 500 Internal Server Error: "answer 500"`},
		{"one attempt only", []int{500}, 1, 1, "1 attempt(s)"},
		{"no retry on 404", []int{404, 200}, 3, 1, "answered 404"},
		{"retry on 429", []int{429, 200}, 3, 2, ""},
		{"redirect not followed nor retried", []int{302, 200}, 3, 1, "answered 302"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &counter{codes: tc.codes}
			srv := httptest.NewServer(h)
			defer srv.Close()
			n, rec, _ := start(t, Config{Webhook: srv.URL, WebhookAttempts: tc.attempts, RetryBackoff: time.Millisecond})
			n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2"))
			eventually(t, "the outcome", func() bool { return len(rec.results(SinkWebhook)) == 1 })
			err := rec.results(SinkWebhook)[0]
			if got := h.calls.Load(); got != tc.wantCalls {
				t.Fatalf("%d requests; want %d", got, tc.wantCalls)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v; want success", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v; want it to contain %q", err, tc.wantErr)
			}
			wantFailures := uint64(0)
			if tc.wantErr != "" {
				wantFailures = 1
			}
			if n.Failures() != wantFailures {
				t.Fatalf("Failures() = %d; want %d", n.Failures(), wantFailures)
			}
		})
	}
}

// A webhook that never answers times out, and neither the error nor the
// log shows more of its URL than the host: the path and query hold the
// token.
func TestWebhookTimeoutAndSecrecy(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	const token = "T000SECRET/B000SECRET/XXXXSECRET"
	hook := srv.URL + "/services/" + token + "?token=QUERYSECRET"
	n, rec, logs := start(t, Config{Webhook: hook, WebhookTimeout: 100 * time.Millisecond, WebhookAttempts: 2, RetryBackoff: time.Millisecond})

	n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2"))
	eventually(t, "the webhook to give up", func() bool { return len(rec.results(SinkWebhook)) == 1 })
	err := rec.results(SinkWebhook)[0]
	if err == nil || !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Fatalf("err = %v; want a timeout", err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	eventually(t, "the failure logged", func() bool { return strings.Contains(logs.String(), "notification failed") })
	if !strings.Contains(err.Error(), host) || !strings.Contains(logs.String(), "host="+host) {
		t.Fatalf("err %v / log %s; want the host %s named", err, logs.String(), host)
	}
	if strings.Contains(err.Error()+logs.String(), "SECRET") {
		t.Fatalf("the token leaked:\nerr: %v\nlog:\n%s", err, logs.String())
	}

	// An unreachable host is the other path that quotes URLs (*url.Error).
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	closed := ln.Addr().String()
	ln.Close()
	n2, rec2, logs2 := start(t, Config{Webhook: "http://" + closed + "/services/" + token, WebhookAttempts: 1})
	n2.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2"))
	eventually(t, "the webhook to fail", func() bool { return len(rec2.results(SinkWebhook)) == 1 })
	err = rec2.results(SinkWebhook)[0]
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v; want connection refused", err)
	}
	if strings.Contains(err.Error()+logs2.String(), "SECRET") {
		t.Fatalf("the token leaked:\nerr: %v\nlog:\n%s", err, logs2.String())
	}
}

func TestValidateWebhookURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://hooks.slack.com/services/T/B/X", true},
		{"http://127.0.0.1:8080/hook", true},
		{"ftp://example.com/x", false},
		{"hooks.slack.com/services/T/B/X", false},
		{"https://", false},
		{"http://[::1", false},
	} {
		err := ValidateWebhookURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateWebhookURL(%q) = %v; want ok=%v", tc.url, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "X") {
			t.Errorf("error %q repeats the URL", err)
		}
	}
}

// With every sink stuck, Notify still returns at once: the queue keeps the
// newest events, drops the oldest, and counts what it dropped.
func TestNotifyNeverBlocks(t *testing.T) {
	inFlight := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case inFlight <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	hang := writeScript(t, dir, "hang.sh", "exec sleep 1000\n")
	const queue, events = 4, 100
	n, rec, _ := start(t, Config{
		Exec: hang, ExecTimeout: time.Hour,
		Webhook: srv.URL, WebhookTimeout: time.Hour,
		QueueSize: queue, DrainTimeout: 50 * time.Millisecond,
	})

	n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2"))
	<-inFlight // the webhook worker is now stuck on the first event
	eventually(t, "the exec worker to take the first event", func() bool { return queued(n, SinkExec) == 0 })

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range events {
			n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:"+strconv.Itoa(1000+i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatalf("Notify blocked: %d events not queued within %s", events, waitTimeout)
	}
	// Each sink: one event in flight, the last `queue` queued, the rest dropped.
	wantDropped := uint64(2 * (events - queue))
	if n.Dropped() != wantDropped || n.Failures() != wantDropped {
		t.Fatalf("Dropped() = %d, Failures() = %d; want %d", n.Dropped(), n.Failures(), wantDropped)
	}
	for _, sink := range []string{SinkExec, SinkWebhook} {
		if got := rec.results(sink); len(got) != events-queue || !errors.Is(got[0], ErrDropped) {
			t.Fatalf("%s: %d results (first %v); want %d ErrDropped", sink, len(got), got[0], events-queue)
		}
		if q := queued(n, sink); q != queue {
			t.Fatalf("%s: %d queued; want %d", sink, q, queue)
		}
	}
	// The newest events are the ones kept.
	w := workerOf(n, SinkWebhook)
	w.mu.Lock()
	last := w.queue[len(w.queue)-1].NewAddr
	w.mu.Unlock()
	if want := "127.0.0.1:" + strconv.Itoa(1000+events-1); last != want {
		t.Fatalf("last queued event is for %s; want %s", last, want)
	}

	// Close gives up after the drain timeout: the stuck deliveries are
	// cancelled and what was still queued is counted.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		n.Close()
	}()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatalf("Close did not return within %s with stuck sinks", waitTimeout)
	}
	total := uint64(2 * (events + 1))
	if n.Failures() != total {
		t.Fatalf("after Close, Failures() = %d; want every one of the %d events counted", n.Failures(), total)
	}
	n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:2"))
	if n.Failures() != total+2 {
		t.Fatalf("Notify after Close: Failures() = %d; want %d", n.Failures(), total+2)
	}
	close(release)
}

func workerOf(n *Notifier, sink string) *worker {
	for _, w := range n.workers {
		if w.name == sink {
			return w
		}
	}
	return nil
}

func queued(n *Notifier, sink string) int {
	w := workerOf(n, sink)
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// Close delivers what is queued before it returns.
func TestCloseDeliversQueued(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-release
		}
	}))
	defer srv.Close()
	rec := &recorder{}
	n := New(Config{Webhook: srv.URL, Observer: rec})
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		n.Run(context.Background())
	}()
	for i := range 3 {
		n.Notify(switchEvent("127.0.0.1:1", "127.0.0.1:"+strconv.Itoa(2+i)))
	}
	eventually(t, "the first request", func() bool { return calls.Load() == 1 })
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		n.Close()
	}()
	close(release)
	<-closed
	<-ran
	if got := rec.results(SinkWebhook); len(got) != 3 || got[0] != nil || got[1] != nil || got[2] != nil {
		t.Fatalf("results %v; want 3 deliveries", got)
	}
	if calls.Load() != 3 {
		t.Fatalf("%d requests; want 3", calls.Load())
	}
}

// A Notifier without sinks, a nil one, and one never run are all safe.
func TestZeroAndNil(t *testing.T) {
	var nilN *Notifier
	nilN.Notify(Event{})
	nilN.Run(context.Background())
	nilN.Close()
	if nilN.Failures() != 0 || nilN.Sinks() != nil {
		t.Fatal("nil Notifier reports something")
	}

	n := New(Config{})
	n.Notify(switchEvent("a:1", "b:2"))
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		n.Run(ctx)
	}()
	n.Close()
	<-ran
	cancel()

	// Never run: Close counts what was queued.
	rec := &recorder{}
	n = New(Config{Webhook: "http://127.0.0.1:1/", Observer: rec})
	n.Notify(switchEvent("a:1", "b:2"))
	n.Close()
	n.Close()
	if got := rec.results(SinkWebhook); len(got) != 1 || !errors.Is(got[0], ErrClosed) || n.Dropped() != 1 {
		t.Fatalf("results %v, Dropped() = %d; want one ErrClosed", got, n.Dropped())
	}
}

func ExampleReconfigArgs() {
	args, _ := ReconfigArgs(Event{MasterName: "mymaster", OldAddr: "10.0.0.1:6379", NewAddr: "[fd00::2]:6379"})
	fmt.Println(strings.Join(args, " "))
	// Output: mymaster leader start 10.0.0.1 6379 fd00::2 6379
}
