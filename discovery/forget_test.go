package discovery

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// forgetRecorder records SentinelForgotten calls.
type forgetRecorder struct {
	nopObserver
	mu     sync.Mutex
	forgot []string
}

func (r *forgetRecorder) SentinelForgotten(_, sentinel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgot = append(r.forgot, sentinel)
}

func (r *forgetRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.forgot...)
}

func knows(w *Watcher, addr string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.sentinels {
		if s.addr == addr {
			return true
		}
	}
	return false
}

// A learnt Sentinel that is down and that its peers no longer name (it was
// taken out with SENTINEL RESET) is forgotten: its subscription ends and
// its series go. One that is down but still named (restarting, say) is
// kept, and so is a seed, whatever its peers say.
func TestRemovedSentinelIsForgotten(t *testing.T) {
	m := newFakeMaster(t)
	seed, removed, restarting := newFakeSentinel(t), newFakeSentinel(t), newFakeSentinel(t)
	master := fakeReply{raw: respFields(masterFields("mymaster", m.host(), strconv.Itoa(m.port()), "3"))}
	for _, s := range []*fakeServer{seed, removed, restarting} {
		s.always("SENTINEL MASTER", master)
	}
	peer := func(s *fakeServer) string {
		return respFields([]string{"name", s.addr, "ip", s.host(), "port", strconv.Itoa(s.port()), "runid", ""})
	}
	var mu sync.Mutex
	listRemoved := true
	seed.on("SENTINEL SENTINELS", func(int) fakeReply {
		mu.Lock()
		defer mu.Unlock()
		if listRemoved {
			return fakeReply{raw: "*2\r\n" + peer(removed) + peer(restarting)}
		}
		return fakeReply{raw: "*1\r\n" + peer(restarting)}
	})
	rec := &forgetRecorder{}
	w, updates := startWatcher(t, Config{Sentinels: []string{seed.addr}, MasterName: "mymaster", PollInterval: 20 * time.Millisecond, Observer: rec},
		func(w *Watcher) { w.peerEvery = 30 * time.Millisecond })
	nextMaster(t, updates, 5*time.Second)
	testutil.Eventually(t, "both peers learnt and subscribed", 5*time.Second, func() bool {
		return knows(w, removed.addr) && knows(w, restarting.addr) &&
			removed.subscribers(switchChannel) == 1 && restarting.subscribers(switchChannel) == 1
	})

	down := fakeReply{raw: "-ERR down for the test\r\n"}
	removed.always("SENTINEL MASTER", down)
	restarting.always("SENTINEL MASTER", down)
	mu.Lock()
	listRemoved = false
	mu.Unlock()
	testutil.Eventually(t, "the removed Sentinel forgotten", 5*time.Second, func() bool { return !knows(w, removed.addr) })
	if got := rec.list(); len(got) != 1 || got[0] != removed.addr {
		t.Fatalf("SentinelForgotten calls %q; want just %q", got, removed.addr)
	}
	testutil.Eventually(t, "its subscription ended", 5*time.Second, func() bool { return removed.subscribers(switchChannel) == 0 })

	// Several more peer refreshes: the Sentinel still named stays, down.
	n := seed.count("SENTINEL SENTINELS")
	testutil.Eventually(t, "three more peer refreshes", 5*time.Second, func() bool { return seed.count("SENTINEL SENTINELS") >= n+3 })
	if !knows(w, restarting.addr) || !knows(w, seed.addr) {
		t.Fatalf("forgot a Sentinel that is still named (%v) or the seed (%v)", !knows(w, restarting.addr), !knows(w, seed.addr))
	}
}
