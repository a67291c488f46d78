package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// What a broken, misconfigured or hostile Sentinel can send, and what the
// watcher must make of it: a clear error (or "not ready") in that
// Sentinel's View, no master, no panic, no hang, no runaway allocation.

const (
	badTimeout = 300 * time.Millisecond
	// badDeadline is the CheckOnce context's deadline; every case must end
	// well before it, so that it is the watcher's own timeouts that stop it.
	badDeadline = 5 * time.Second
	// heapBudget is how much the heap may grow during one case. A reply
	// announcing 2^31 elements or a 4 GiB string would exceed it by orders
	// of magnitude if go-redis were let to allocate for it.
	heapBudget = 64 << 20
)

func badConfig(sentinels ...string) Config {
	return Config{
		MasterName:   "mymaster",
		Sentinels:    sentinels,
		Timeout:      badTimeout,
		PollInterval: 100 * time.Millisecond,
	}
}

func TestCheckOnceRejectsBadSentinelReplies(t *testing.T) {
	type tc struct {
		name string
		// reply builds SENTINEL MASTER's answer. Where the reply has an
		// address, it is the fake master's, which answers ROLE as master: a
		// watcher that wrongly accepted the reply would verify and route it.
		reply func(m *fakeServer) fakeReply
		// wantErr must occur in the View's error; empty when the Sentinel's
		// answer is valid but its address not usable (wantNotReady).
		wantErr      string
		wantNotReady string
		guard        bool // the RESP guard must be what refused the reply
		// cause is what View.cause must say, for logs and the reason a
		// client and /readyz get; "" means "unusable reply".
		cause      string
		maxElapsed time.Duration // 0: 2s
	}
	raw := func(s string) func(*fakeServer) fakeReply {
		return func(*fakeServer) fakeReply { return fakeReply{raw: s} }
	}
	fields := func(edit func(kv []string) []string) func(*fakeServer) fakeReply {
		return func(m *fakeServer) fakeReply {
			kv := masterFields("mymaster", m.host(), strconv.Itoa(m.port()), "3")
			return fakeReply{raw: respFields(edit(kv))}
		}
	}
	set := func(key, value string) func(*fakeServer) fakeReply {
		return fields(func(kv []string) []string { return withField(kv, key, value) })
	}
	drop := func(key string) func(*fakeServer) fakeReply {
		return fields(func(kv []string) []string { return withoutField(kv, key) })
	}

	cases := []tc{
		// Wrong reply types: Redis answers these to other commands, or a
		// proxy in between answers them.
		{name: "integer instead of a map", reply: raw(":1\r\n"), wantErr: "can't parse map reply"},
		{name: "simple string instead of a map", reply: raw("+OK\r\n"), wantErr: "can't parse map reply"},
		{name: "error reply: no such master", reply: raw("-ERR No such master with that name\r\n"), wantErr: "No such master with that name", cause: "ERR No such master with that name"},
		{name: "nil bulk string", reply: raw("$-1\r\n"), wantErr: "redis: nil"},
		{name: "nil array", reply: raw("*-1\r\n"), wantErr: "redis: nil"},
		{name: "empty array: no fields at all", reply: raw("*0\r\n"), wantErr: `names master ""`},
		{name: "odd number of elements: a key without its value", reply: raw(respFields([]string{"name", "mymaster", "ip"})), wantErr: "multiple of 2"},
		{name: "nested array where a value belongs", reply: raw(respArray(bulk("name"), respArray(bulk("mymaster")))), wantErr: "redis:"},

		// A well-formed reply about something else, or missing what we need.
		{name: "reply about another master name", reply: set("name", "othermaster"), wantErr: `names master "othermaster"`},
		// An absent ip is a malformed reply, which parseMaster's contract
		// makes an error; today it is read as an empty address, "not
		// ready". Either passes: what matters is that it neither votes nor
		// routes.
		{name: "no ip field", reply: drop("ip"), wantErr: "no ip", wantNotReady: "empty address"},
		{name: "no port field", reply: drop("port"), wantErr: `bad port ""`},
		{name: "no config-epoch field", reply: drop("config-epoch"), wantErr: `bad config-epoch ""`},
		{name: "port 0", reply: set("port", "0"), wantErr: `bad port "0"`},
		{name: "port 70000", reply: set("port", "70000"), wantErr: `bad port "70000"`},
		{name: "port abc", reply: set("port", "abc"), wantErr: `bad port "abc"`},
		{name: "negative port", reply: set("port", "-6379"), wantErr: `bad port "-6379"`},
		{name: "negative config-epoch", reply: set("config-epoch", "-1"), wantErr: `bad config-epoch "-1"`},
		{name: "non-numeric config-epoch", reply: set("config-epoch", "three"), wantErr: `bad config-epoch "three"`},
		{name: "fractional config-epoch", reply: set("config-epoch", "1.5"), wantErr: `bad config-epoch "1.5"`},
		{name: "config-epoch beyond int64", reply: set("config-epoch", "99999999999999999999"), wantErr: `bad config-epoch "99999999999999999999"`},

		// Valid answers whose address cannot be routed to yet: the
		// Sentinel counts as answering but votes for nobody. 0.0.0.0 with
		// the fake master's port would even reach it on Linux.
		{name: "placeholder ip 0.0.0.0", reply: set("ip", "0.0.0.0"), wantNotReady: "placeholder address 0.0.0.0"},
		{name: "placeholder ip ::", reply: set("ip", "::"), wantNotReady: "placeholder address ::"},
		{name: "hostname that does not resolve", reply: set("ip", "no-such-host.invalid"), wantNotReady: "does not resolve"},

		// Framing attacks: go-redis sizes its allocations from these
		// headers, so the guard must refuse them first.
		{name: "array header of 2^31-1 elements", reply: raw("*2147483647\r\n"), wantErr: "aggregate of 2147483647 elements", guard: true},
		{name: "bulk header of 4 GiB inside the map", reply: raw("*2\r\n" + bulk("name") + "$4294967296\r\n"), wantErr: "bulk length 4294967296 over", guard: true},
		{name: "top-level bulk header of 4 GiB", reply: raw("$4294967296\r\n"), wantErr: "bulk length 4294967296 over", guard: true},
		{name: "arrays nested 100 deep", reply: raw(strings.Repeat("*1\r\n", 100) + ":1\r\n"), wantErr: "nested deeper than", guard: true},
		{name: "1 MiB line without CRLF", reply: raw("+" + strings.Repeat("a", 1<<20)), wantErr: "line longer than", guard: true},
		{name: "binary garbage", reply: raw("\x00\xff\xfe\x80garbage\r\n"), wantErr: "unknown RESP type byte", guard: true},
		{name: "an HTTP server, not a Sentinel", reply: raw("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), wantErr: "unknown RESP type byte 'H'", guard: true},

		// Streams that end or stall mid-reply.
		{name: "array of 40 elements cut after the first pair", reply: func(*fakeServer) fakeReply {
			return fakeReply{raw: "*40\r\n" + bulk("name") + bulk("mymaster"), close: true}
		}, wantErr: "EOF", cause: "unreachable"},
		{name: "connection closed without a reply", reply: func(*fakeServer) fakeReply { return fakeReply{close: true} }, wantErr: "EOF", cause: "unreachable"},
		// One request is one Timeout: the CheckOnce must end about then.
		{name: "accepts and never answers", reply: func(*fakeServer) fakeReply { return fakeReply{silent: true} },
			wantErr: "i/o timeout", cause: "unreachable", maxElapsed: badTimeout + 700*time.Millisecond},
		// Each byte comes well within the timeout, the whole reply long
		// after it: Timeout must bound the request, not each read.
		{name: "valid reply trickled a byte every 20ms", reply: func(m *fakeServer) fakeReply {
			r := goodMasterReply(m, 3)
			r.trickle = 20 * time.Millisecond
			return r
		}, wantErr: "i/o timeout", cause: "unreachable", maxElapsed: badTimeout + 700*time.Millisecond},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			master := newFakeMaster(t)
			sentinel := newFakeSentinel(t)
			r := c.reply(master)
			sentinel.always("SENTINEL MASTER", r)

			w, err := New(badConfig(sentinel.addr))
			if err != nil {
				t.Fatal(err)
			}
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)

			st, elapsed, err := checkOnceBounded(t, w)

			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > heapBudget {
				t.Errorf("heap grew by %d MiB during the check", grew>>20)
			}
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > heapBudget {
				t.Errorf("the check allocated %d MiB", allocated>>20)
			}

			maxElapsed := c.maxElapsed
			if maxElapsed == 0 {
				maxElapsed = 2 * time.Second
			}
			if elapsed > maxElapsed {
				t.Errorf("CheckOnce took %s; want under %s", elapsed.Round(time.Millisecond), maxElapsed)
			}
			if err == nil || !strings.Contains(err.Error(), "no verified master") {
				t.Errorf("CheckOnce error %v; want no verified master", err)
			}
			if st.Addr != "" || w.Status().Addr != "" {
				t.Errorf("a master was verified: %q", st.Addr)
			}
			if n := master.count("ROLE"); n != 0 {
				t.Errorf("the watcher asked the announced address ROLE %d times; the reply should never have got that far", n)
			}
			if len(st.Views) != 1 {
				t.Fatalf("views %+v; want the one Sentinel's", st.Views)
			}
			v := st.Views[0]
			if v.Sentinel != sentinel.addr || v.Addr != "" {
				t.Errorf("view %+v; want Sentinel %s and no address", v, sentinel.addr)
			}
			if c.wantNotReady != "" && (c.wantErr == "" || v.Err == nil) {
				if v.Err != nil || !strings.Contains(v.NotReady, c.wantNotReady) {
					t.Errorf("view Err=%v NotReady=%q; want no error and NotReady containing %q", v.Err, v.NotReady, c.wantNotReady)
				}
				return
			}
			if v.Err == nil {
				t.Fatalf("view %+v has no error; want one containing %q", v, c.wantErr)
			}
			msg := v.Err.Error()
			for _, want := range []string{"SENTINEL MASTER", sentinel.addr, c.wantErr} {
				if !strings.Contains(msg, want) {
					t.Errorf("view error %q does not contain %q", msg, want)
				}
			}
			wantCause := c.cause
			if wantCause == "" {
				wantCause = "unusable reply"
			}
			if got := v.cause(); got != wantCause {
				t.Errorf("cause %q; want %q", got, wantCause)
			}
			if c.guard != errors.Is(v.Err, errGuard) {
				t.Errorf("errors.Is(%q, errGuard) = %v; want %v", msg, !c.guard, c.guard)
			}
		})
	}
}

// checkOnceBounded runs CheckOnce with a deadline of badDeadline and fails
// the test if it does not return by shortly after it, rather than hanging
// the test binary.
func checkOnceBounded(t *testing.T, w *Watcher) (Status, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), badDeadline)
	defer cancel()
	type result struct {
		st  Status
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		st, err := w.CheckOnce(ctx)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		elapsed := time.Since(start)
		if ctx.Err() != nil {
			t.Errorf("CheckOnce returned only after its context's deadline (%s)", elapsed)
		}
		return r.st, elapsed, r.err
	case <-time.After(badDeadline + 2*time.Second):
		t.Fatalf("CheckOnce still running %s after its context's deadline", 2*time.Second)
		return Status{}, 0, nil
	}
}

// A bad Sentinel among good ones is outvoted, not believed: the good
// majority's master is verified and the bad Sentinel's view explains itself.
func TestCheckOnceIgnoresOneBadSentinelAmongGood(t *testing.T) {
	master := newFakeMaster(t)
	good1, good2, bad := newFakeSentinel(t), newFakeSentinel(t), newFakeSentinel(t)
	good1.always("SENTINEL MASTER", goodMasterReply(master, 3))
	good2.always("SENTINEL MASTER", goodMasterReply(master, 3))
	bad.always("SENTINEL MASTER", fakeReply{raw: "*2147483647\r\n"})

	w, err := New(badConfig(good1.addr, bad.addr, good2.addr))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := checkOnceBounded(t, w)
	if err != nil {
		t.Fatal(err)
	}
	if st.Addr != master.addr || st.Epoch != 3 {
		t.Fatalf("verified %s@%d; want %s@3", st.Addr, st.Epoch, master.addr)
	}
	for _, v := range st.Views {
		if (v.Sentinel == bad.addr) != (v.Err != nil) {
			t.Errorf("view %+v: want an error exactly for the bad Sentinel %s", v, bad.addr)
		}
	}
}

// A Sentinel may list any peers it likes. Unusable entries are skipped,
// the set stays within maxSentinels, and peers that refuse connections
// neither slow the check down nor outvote the Sentinel that answers.
func TestCheckOnceBoundsPeersFromABadSentinel(t *testing.T) {
	master := newFakeMaster(t)
	seed := newFakeSentinel(t)
	seed.always("SENTINEL MASTER", goodMasterReply(master, 1))
	// A port nobody listens on, so that every listed peer refuses at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	peer := func(ip, port string, i int) string {
		return respFields([]string{"name", fmt.Sprintf("peer%d", i), "ip", ip, "port", port,
			"runid", fmt.Sprintf("%040d", i), "flags", "sentinel"})
	}
	var peers []string
	for i := range 100 {
		switch i % 5 {
		case 0:
			peers = append(peers, peer("0.0.0.0", closedPort, i))
		case 1:
			peers = append(peers, peer("127.0.0.1", "0", i))
		case 2:
			peers = append(peers, peer("", closedPort, i))
		default:
			peers = append(peers, peer(fmt.Sprintf("127.0.%d.%d", i/250, 2+i%250), closedPort, i))
		}
	}
	seed.always("SENTINEL SENTINELS", fakeReply{raw: respArray(peers...)})

	w, err := New(badConfig(seed.addr))
	if err != nil {
		t.Fatal(err)
	}
	st, elapsed, err := checkOnceBounded(t, w)
	if err != nil {
		t.Fatalf("%v; views %+v", err, st.Views)
	}
	if st.Addr != master.addr {
		t.Errorf("verified %q; want %s", st.Addr, master.addr)
	}
	if len(st.Views) != maxSentinels {
		t.Errorf("%d Sentinels asked; want the seed and peers up to maxSentinels (%d)", len(st.Views), maxSentinels)
	}
	for _, v := range st.Views {
		if v.Sentinel != seed.addr && !strings.HasSuffix(v.Sentinel, ":"+closedPort) {
			t.Errorf("asked %s, which no usable peer entry names", v.Sentinel)
		}
		if strings.HasPrefix(v.Sentinel, "0.0.0.0") || strings.HasSuffix(v.Sentinel, ":0") || strings.HasPrefix(v.Sentinel, ":") {
			t.Errorf("asked %s, an unusable peer entry", v.Sentinel)
		}
	}
	if elapsed > 2*time.Second {
		t.Errorf("CheckOnce took %s", elapsed)
	}
}

// runWatcher runs w until the test ends and returns a function that cancels
// it and waits, at most 2s, for Run to return.
func runWatcher(t *testing.T, w *Watcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v; want nil on cancel", err)
				}
			case <-time.After(2 * time.Second):
				t.Errorf("Run did not return within 2s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// garbageSentinel answers every command with something unusable in turn:
// replies that name a bogus address but are invalid, and broken framing.
func garbageSentinel(t *testing.T) *fakeServer {
	s := newFakeServer(t)
	bogus := masterFields("mymaster", "10.66.66.66", "6666", "9")
	garbage := []fakeReply{
		{raw: respFields(withField(bogus, "config-epoch", "nine"))},
		{raw: respFields(withField(bogus, "name", "othermaster"))},
		{raw: respFields(withField(bogus, "port", "66666"))},
		{raw: "*2147483647\r\n"},
		{raw: "\x00\x01\x02\r\n"},
		{raw: "*40\r\n" + bulk("name"), close: true},
	}
	cycle := func(call int) fakeReply { return garbage[call%len(garbage)] }
	for _, cmd := range []string{"SENTINEL MASTER", "SENTINEL SENTINELS", "INFO", "PING", "SUBSCRIBE"} {
		s.on(cmd, cycle)
	}
	return s
}

// silentSentinel accepts connections and commands and never answers.
func silentSentinel(t *testing.T) *fakeServer {
	s := newFakeServer(t)
	for _, cmd := range []string{"SENTINEL MASTER", "SENTINEL SENTINELS", "INFO", "PING", "SUBSCRIBE"} {
		s.always(cmd, fakeReply{silent: true})
	}
	return s
}

// Of three Sentinels, one sends garbage and one never answers; the third
// is the only one answering, so it is a majority of one. Its master is
// routed, nothing else ever is, and cancelling Run ends it promptly.
func TestRunWithGarbageAndSilentSentinels(t *testing.T) {
	goroutinesEnd(t)
	master := newFakeMaster(t)
	good := newFakeSentinel(t)
	good.always("SENTINEL MASTER", goodMasterReply(master, 4))
	garbage := garbageSentinel(t)
	silent := silentSentinel(t)

	w, err := New(badConfig(garbage.addr, silent.addr, good.addr))
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)

	var seen []Update
	check := func(u Update) {
		seen = append(seen, u)
		if u.Addr != "" && u.Addr != master.addr {
			t.Errorf("update names %q; the only master anyone verifiably reported is %s", u.Addr, master.addr)
		}
	}
	deadline := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case u := <-w.Updates():
			check(u)
			found = u.Addr == master.addr
		case <-deadline:
			t.Fatalf("no update naming %s within 5s; got %+v; status %+v", master.addr, seen, w.Status())
		}
	}
	if got := seen[len(seen)-1]; got.Epoch != 4 {
		t.Errorf("update %+v; want config-epoch 4", got)
	}
	// Let garbage keep arriving through a few more checks and resubscriptions.
	waitFor(t, 5*time.Second, "more checks", func() bool {
		return good.count("SENTINEL MASTER") >= 4 && garbage.count("SENTINEL MASTER") >= 4
	})

	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %s to return after cancel", d)
	}
	closeBy := time.After(2 * time.Second)
	for {
		select {
		case u, ok := <-w.Updates():
			if !ok {
				if st := w.Status(); st.Addr != master.addr {
					t.Errorf("final status names %q; want %s", st.Addr, master.addr)
				}
				return
			}
			check(u)
		case <-closeBy:
			t.Fatal("Updates not closed within 2s of Run returning")
		}
	}
}

// A query cut short by our own shutdown is not the Sentinel's failure:
// with SENTINEL MASTER in flight to a Sentinel that has not answered yet,
// cancelling Run must not log it as unreachable (a warning at every
// shutdown, which the demo used to print after its timeline had ended).
func TestShutdownIsNotASentinelFailure(t *testing.T) {
	goroutinesEnd(t)
	slow := newFakeSentinel(t)
	slow.always("SENTINEL SENTINELS", fakeReply{raw: "*0\r\n"})
	slow.always("SENTINEL MASTER", fakeReply{silent: true})
	slow.always("SUBSCRIBE", fakeReply{silent: true})
	var logs testutil.Buffer
	cfg := badConfig(slow.addr)
	// Long enough that the query is still in flight at the cancel; go-redis
	// does not cut a blocked read on cancel, so Run returns at this timeout.
	cfg.Timeout = 1500 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitFor(t, 5*time.Second, "SENTINEL MASTER in flight", func() bool { return slow.count("SENTINEL MASTER") >= 1 })
	stop()
	if strings.Contains(logs.String(), "Sentinel unreachable or unusable") {
		t.Fatalf("the cancelled query was logged as the Sentinel's failure:\n%s", logs.String())
	}
}

// goroutinesEnd fails the test if, once everything else registered for
// cleanup has run, more goroutines are left than there were at the start.
// Call it first so that its cleanup runs last.
func goroutinesEnd(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines left, %d before the test:\n%s",
					runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logRecorder keeps the watcher's log records so that a test can tell what
// the watcher reacted to.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]map[string]string
	attrs   []slog.Attr
}

func newLogRecorder() logRecorder {
	return logRecorder{mu: new(sync.Mutex), records: new([]map[string]string)}
}

func (l logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := map[string]string{"msg": r.Message, "time": r.Time.Format(time.RFC3339Nano)}
	for _, a := range l.attrs {
		rec[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec[a.Key] = a.Value.String()
		return true
	})
	l.mu.Lock()
	*l.records = append(*l.records, rec)
	l.mu.Unlock()
	return nil
}

func (l logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	l.attrs = append(slices.Clip(l.attrs), as...)
	return l
}

func (l logRecorder) WithGroup(string) slog.Handler { return l }

// find returns the records with message msg whose attribute key satisfies match.
func (l logRecorder) find(msg, key string, match func(string) bool) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range *l.records {
		if r["msg"] == msg && match(r[key]) {
			out = append(out, r)
		}
	}
	return out
}

// A +switch-master message only wakes the check. One about another master
// name is not even that; one about ours that names an address the
// Sentinels do not report changes nothing, even though that address is a
// live server answering ROLE as master.
func TestSwitchMessageDoesNotMoveTheMaster(t *testing.T) {
	current, lure := newFakeMaster(t), newFakeMaster(t)
	s1, s2 := newFakeSentinel(t), newFakeSentinel(t)
	s1.always("SENTINEL MASTER", goodMasterReply(current, 2))
	s2.always("SENTINEL MASTER", goodMasterReply(current, 2))

	logs := newLogRecorder()
	cfg := badConfig(s1.addr, s2.addr)
	// No poll tick during the test: every check after the first ones is
	// one a message caused.
	cfg.PollInterval = time.Hour
	cfg.Logger = slog.New(logs)
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)

	select {
	case u := <-w.Updates():
		if u.Addr != current.addr {
			t.Fatalf("first update %+v; want %s", u, current.addr)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no first update within 5s; status %+v", w.Status())
	}
	waitFor(t, 5*time.Second, "both subscriptions", func() bool {
		return s1.subscribers(switchChannel) == 1 && s2.subscribers(switchChannel) == 1
	})

	switchTo := func(name string, from, to *fakeServer) string {
		return fmt.Sprintf("%s %s %d %s %d", name, from.host(), from.port(), to.host(), to.port())
	}
	other := switchTo("othermaster", current, lure)
	ours := switchTo("mymaster", current, lure)
	if n := s1.publish(switchChannel, other); n != 1 {
		t.Fatalf("published to %d subscribers; want 1", n)
	}
	// Messages on one subscription are handled in order, so once ours is
	// seen, the other one has been handled (and must have been dropped).
	if n := s1.publish(switchChannel, ours); n != 1 {
		t.Fatalf("published to %d subscribers; want 1", n)
	}
	var received time.Time
	waitFor(t, 5*time.Second, "our +switch-master to be received", func() bool {
		recs := logs.find("+switch-master received", "payload", func(p string) bool { return p == ours })
		if len(recs) == 0 {
			return false
		}
		var err error
		received, err = time.Parse(time.RFC3339Nano, recs[0]["time"])
		return err == nil
	})
	if got := logs.find("+switch-master received", "payload", func(p string) bool { return p == other }); len(got) != 0 {
		t.Errorf("a +switch-master for another master name was acted on: %v", got)
	}
	// Triggers coalesce, so the check may carry an earlier trigger's
	// reason; what identifies it is a query sent after the message came.
	// Checks run one at a time, so once one ends after that query, the
	// check that made it is over.
	waitFor(t, 5*time.Second, "the check the message caused", func() bool {
		q, ok := s1.receivedAfter("SENTINEL MASTER", received)
		return ok && w.Status().Checked.After(q)
	})

	if st := w.Status(); st.Addr != current.addr || st.Epoch != 2 {
		t.Errorf("status %s@%d; want %s@2 still", st.Addr, st.Epoch, current.addr)
	}
	select {
	case u := <-w.Updates():
		t.Errorf("update %+v after a +switch-master the Sentinels do not back", u)
	default:
	}
	if n := lure.count("ROLE"); n != 0 {
		t.Errorf("the address in the message was asked ROLE %d times; only the Sentinels' choice should be", n)
	}
}

func TestDecide(t *testing.T) {
	ok := func(sentinel, addr string, epoch int64, flags ...string) View {
		return View{Sentinel: sentinel, Addr: addr, Epoch: epoch, Flags: append([]string{"master"}, flags...)}
	}
	notReady := func(sentinel string, epoch int64) View {
		return View{Sentinel: sentinel, Epoch: epoch, NotReady: "placeholder address 0.0.0.0"}
	}
	failed := func(sentinel string) View {
		return View{Sentinel: sentinel, Err: &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}}
	}
	refused := func(sentinel string) View {
		return View{Sentinel: sentinel, Err: fmt.Errorf("SENTINEL MASTER: %w", replyError("ERR No such master with that name"))}
	}
	for _, c := range []struct {
		name  string
		views []View
		want  verdict // why is matched as a substring
	}{
		{
			name:  "no views at all",
			views: nil,
			want:  verdict{why: "no Sentinel reachable"},
		},
		{
			name:  "every Sentinel failed",
			views: []View{failed("s1"), failed("s2")},
			want:  verdict{why: "no Sentinel reachable"},
		},
		{
			// A typo in the master name: reachable Sentinels that do not
			// know it must not read as a network outage.
			name:  "every Sentinel answered with an error",
			views: []View{refused("s1"), refused("s2")},
			want:  verdict{why: `no Sentinel gave a usable answer: s1 answered "ERR No such master with that name", s2 answered`},
		},
		{
			name:  "one unreachable, one answered with an error",
			views: []View{failed("s1"), refused("s2")},
			want:  verdict{why: `no Sentinel gave a usable answer: s2 answered "ERR No such master with that name"`},
		},
		{
			name:  "unanimous",
			views: []View{ok("s1", "a:1", 5), ok("s2", "a:1", 5), ok("s3", "a:1", 5)},
			want:  verdict{ok: true, addr: "a:1", epoch: 5, support: 3, answered: 3, maxEpoch: 5},
		},
		{
			name:  "majority at the newest epoch wins over a stale minority",
			views: []View{ok("s1", "b:1", 6), ok("s2", "a:1", 5), ok("s3", "b:1", 6)},
			want:  verdict{ok: true, addr: "b:1", epoch: 6, support: 2, answered: 3, maxEpoch: 6},
		},
		{
			name:  "stale majority, newer minority epoch: a failover is propagating",
			views: []View{ok("s1", "a:1", 5), ok("s2", "a:1", 5), ok("s3", "b:1", 6)},
			want:  verdict{addr: "a:1", epoch: 5, support: 2, answered: 3, maxEpoch: 6, why: "older than config-epoch 6"},
		},
		{
			name:  "two against two is no majority",
			views: []View{ok("s1", "a:1", 5), ok("s2", "b:1", 5), ok("s3", "a:1", 5), ok("s4", "b:1", 5)},
			want:  verdict{answered: 4, maxEpoch: 5, why: "no address has a majority of the 4"},
		},
		{
			name:  "one against one is no majority",
			views: []View{ok("s1", "a:1", 5), ok("s2", "b:1", 6)},
			want:  verdict{answered: 2, maxEpoch: 6, why: "no address has a majority of the 2"},
		},
		{
			name:  "placeholders answer but support nobody",
			views: []View{ok("s1", "a:1", 5), notReady("s2", 5), notReady("s3", 5)},
			want:  verdict{answered: 3, maxEpoch: 5, why: "no address has a majority of the 3"},
		},
		{
			name:  "a placeholder does not stop a majority",
			views: []View{ok("s1", "a:1", 5), ok("s2", "a:1", 5), notReady("s3", 5)},
			want:  verdict{ok: true, addr: "a:1", epoch: 5, support: 2, answered: 3, maxEpoch: 5},
		},
		{
			name:  "a placeholder at a newer epoch holds the older majority back",
			views: []View{ok("s1", "a:1", 5), ok("s2", "a:1", 5), notReady("s3", 6)},
			want:  verdict{addr: "a:1", epoch: 5, support: 2, answered: 3, maxEpoch: 6, why: "older than config-epoch 6"},
		},
		{
			name:  "failed Sentinels are not counted: one of one answering is a majority",
			views: []View{failed("s1"), ok("s2", "a:1", 5), failed("s3")},
			want:  verdict{ok: true, addr: "a:1", epoch: 5, support: 1, answered: 1, maxEpoch: 5},
		},
		{
			name:  "a failed Sentinel's silence cannot break a tie",
			views: []View{ok("s1", "a:1", 5), failed("s2"), ok("s3", "b:1", 5)},
			want:  verdict{answered: 2, maxEpoch: 5, why: "no address has a majority of the 2"},
		},
		{
			// The failover leader bumps the epoch while still reporting the
			// old address for a moment; its followers already report the
			// new one at the same epoch.
			name:  "same epoch, two addresses: the majority's address wins",
			views: []View{ok("s1", "old:1", 7), ok("s2", "new:1", 7), ok("s3", "new:1", 7)},
			want:  verdict{ok: true, addr: "new:1", epoch: 7, support: 2, answered: 3, maxEpoch: 7},
		},
		{
			name:  "a supporter flagging the master down is a hint",
			views: []View{ok("s1", "a:1", 5, "s_down"), ok("s2", "a:1", 5), ok("s3", "a:1", 5)},
			want:  verdict{ok: true, addr: "a:1", epoch: 5, support: 3, answered: 3, maxEpoch: 5, downHint: true},
		},
		{
			name:  "a dissenter flagging its own master down is no hint",
			views: []View{ok("s1", "b:1", 4, "o_down"), ok("s2", "a:1", 5), ok("s3", "a:1", 5)},
			want:  verdict{ok: true, addr: "a:1", epoch: 5, support: 2, answered: 3, maxEpoch: 5},
		},
		{
			name:  "epoch zero is a real epoch",
			views: []View{ok("s1", "a:1", 0), ok("s2", "a:1", 0)},
			want:  verdict{ok: true, addr: "a:1", epoch: 0, support: 2, answered: 2, maxEpoch: 0},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := decide(c.views)
			if !strings.Contains(got.why, c.want.why) || (c.want.why == "") != (got.why == "") {
				t.Errorf("why %q; want it to contain %q", got.why, c.want.why)
			}
			want := c.want
			want.why = got.why
			if !want.ok && want.addr == "" {
				// Without a majority the candidate fields are meaningless.
				got.addr, got.epoch, got.support = "", 0, 0
			}
			if got != want {
				t.Errorf("decide = %+v\nwant     %+v", got, want)
			}
		})
	}
}

// replyError is an error reply as go-redis returns it (its redis.Error).
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}
