//go:build linux

package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// loopLive is how many sessions the epoll loops serve; -1 when none runs.
func (s *Server) loopLive() int {
	n := -1
	for _, live := range s.loopsLive() {
		if live >= 0 {
			n = max(n, 0) + live
		}
	}
	return n
}

// loopsLive is how many sessions each epoll loop slot serves, -1 for a
// loop not running.
func (s *Server) loopsLive() []int {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	var out []int
	for _, el := range s.loops {
		if el == nil {
			out = append(out, -1)
		} else {
			out = append(out, el.live)
		}
	}
	return out
}

// parkOnly keeps the loops out of hold for one test of the parking path.
func parkOnly(t *testing.T) {
	holdAllowed = false
	t.Cleanup(func() { holdAllowed = true })
}

// withProcs sets GOMAXPROCS for one test.
func withProcs(t *testing.T, n int) {
	orig := runtime.GOMAXPROCS(n)
	t.Cleanup(func() { runtime.GOMAXPROCS(orig) })
}

// holding gives one test at least two Ps, so that a loop may hold; with
// forever, a holding loop never parks for being idle either.
func holding(t *testing.T, forever bool) {
	withProcs(t, max(2, runtime.GOMAXPROCS(0)))
	if forever {
		orig := holdIdleMS
		holdIdleMS = 60_000
		t.Cleanup(func() { holdIdleMS = orig })
	}
}

// The epoll engine carries the connections (it is not silently falling
// back to io.Copy), and its loop is released once the last one ends.
func TestEpollEngineRunsAndReleasesLoop(t *testing.T) {
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	var cs []net.Conn
	for range 3 {
		c := dial(t, addr)
		roundTrip(t, c, "*1\r\n$4\r\nPING\r\n")
		cs = append(cs, c)
	}
	if got := s.loopLive(); got != 3 {
		t.Fatalf("epoll loop serves %d sessions; want 3", got)
	}
	for _, c := range cs {
		c.Close()
	}
	eventually(t, "loop released", 2*time.Second, func() bool { return s.loopLive() == -1 })
	eventually(t, "3 client closes", time.Second, func() bool { return rec.closedFor(ReasonClient) == 3 })

	// A new connection starts a new loop.
	c := dial(t, addr)
	roundTrip(t, c, "again")
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loop serves %d sessions; want 1", got)
	}
}

// Connections are spread over the route's loops, fewest sessions first; a
// switch closes the sessions of every loop, and each loop is released.
func TestEpollEngineSpreadsOverLoops(t *testing.T) {
	oldM, newM := newBackend(t, "echo"), newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll, EventLoops: 3})
	s.SetMaster(oldM.addr())
	var cs []net.Conn
	for range 7 {
		c := dial(t, addr)
		roundTrip(t, c, "*1\r\n$4\r\nPING\r\n")
		cs = append(cs, c)
	}
	if got := fmt.Sprint(s.loopsLive()); got != "[3 2 2]" {
		t.Fatalf("sessions per loop %s; want [3 2 2]", got)
	}
	// Each connection still reaches its own master connection.
	for i, c := range cs {
		roundTrip(t, c, fmt.Sprintf("conn %d", i))
	}

	s.SetMaster(newM.addr())
	if got := s.loopLive(); got > 0 {
		t.Fatalf("loops still serve %d sessions after the switch", got)
	}
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("connection %d: read after the switch gave %v; want the connection closed", i, err)
		}
	}
	eventually(t, "7 master_switch closes", time.Second, func() bool { return rec.closedFor(ReasonMasterSwitch) == 7 })
	eventually(t, "every loop released", 2*time.Second, func() bool { return fmt.Sprint(s.loopsLive()) == "[-1 -1 -1]" })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A client that writes a lot before it reads anything fills both sockets'
// buffers, so the loop must keep what a full socket did not take, stop
// reading the other side, and resume: every byte arrives, in order.
func TestEpollEngineBackpressureKeepsEveryByte(t *testing.T) {
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))

	want := make([]byte, 16<<20)
	rand.Read(want)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		c.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	// Let the writer run into the full buffers before reading.
	eventually(t, "master received some bytes", 5*time.Second, func() bool { return b.received.Load() > 0 })
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loop serves %d sessions; want 1 (else this tests io.Copy)", got)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back (equal prefix %d); want the %d sent", len(got), commonPrefix(got, want), len(want))
	}
	eventually(t, "close recorded", time.Second, func() bool { return rec.closedFor(ReasonClient) == 1 })
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// A switch while a connection is in the middle of a transfer (the loop
// may hold bytes for the master's full socket) ends the session at once:
// the client's leg is closed, the loop lets go of it, and new clients go
// to the new master.
func TestEpollEngineSwitchDuringTransfer(t *testing.T) {
	oldM, newM := newBackend(t, "echo"), newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(oldM.addr())
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		chunk := make([]byte, 64<<10)
		for range 1024 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	eventually(t, "transfer under way", 5*time.Second, func() bool { return oldM.received.Load() > 1<<20 })
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loop serves %d sessions; want 1 (else this tests io.Copy)", got)
	}

	s.SetMaster(newM.addr())
	<-writing // the client's writes fail once its leg is gone
	if got := s.loopLive(); got > 0 {
		t.Fatalf("loop still serves %d sessions after the switch", got)
	}
	buf := make([]byte, 1)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("client connection still open after the switch")
			}
			break
		}
	}
	eventually(t, "master_switch close recorded", time.Second, func() bool { return rec.closedFor(ReasonMasterSwitch) == 1 })
	c2 := dial(t, addr)
	roundTrip(t, c2, "new")
	if newM.accepted.Load() != 1 {
		t.Fatalf("new master accepted %d connections; want 1", newM.accepted.Load())
	}
}

// When the sockets cannot be handed to the loop (here: duplicating the
// master's descriptor fails, as it would at the descriptor limit), the
// connection is copied with io.Copy instead, and nothing is left open or
// watched.
func TestEpollEngineFallsBackToCopy(t *testing.T) {
	var calls atomic.Int32
	orig := dupFD
	dupFD = func(fd uintptr) (int, error) {
		if calls.Add(1) == 2 { // the master's leg; the client's was duplicated
			return -1, unix.EMFILE
		}
		return orig(fd)
	}
	t.Cleanup(func() { dupFD = orig })

	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	roundTrip(t, c, "*1\r\n$4\r\nPING\r\n")
	roundTrip(t, c, strings.Repeat("y", 1<<20))
	if n := calls.Load(); n != 2 {
		t.Fatalf("dup called %d times; want 2", n)
	}
	if got := s.loopLive(); got != -1 {
		t.Fatalf("a loop serves %d sessions; want none (the connection fell back to io.Copy)", got)
	}
	c.Close()
	eventually(t, "close recorded", time.Second, func() bool { return rec.closedFor(ReasonClient) == 1 })
}

// When the loop cannot watch the master's descriptor (epoll_ctl fails after
// the client's was added), the pair is taken out of the loop again, the
// loop is released, and the connection is copied with io.Copy instead.
func TestEpollEngineFallsBackWhenWatchFails(t *testing.T) {
	var adds atomic.Int32
	orig := epollCtl
	epollCtl = func(ep, op, fd int, ev unix.EpollEvent) error {
		if op == unix.EPOLL_CTL_ADD && adds.Add(1) == 2 {
			return unix.ENOSPC // as at fs.epoll.max_user_watches
		}
		return orig(ep, op, fd, ev)
	}
	t.Cleanup(func() { epollCtl = orig })

	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	roundTrip(t, c, "*1\r\n$4\r\nPING\r\n")
	roundTrip(t, c, strings.Repeat("z", 1<<20))
	if n := adds.Load(); n != 2 {
		t.Fatalf("epoll_ctl ADD called %d times; want 2", n)
	}
	eventually(t, "loop released", 2*time.Second, func() bool { return s.loopLive() == -1 })

	// The loop that is started next watches normally.
	c2 := dial(t, addr)
	roundTrip(t, c2, "next")
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loop serves %d sessions; want 1", got)
	}
	c.Close()
	c2.Close()
	eventually(t, "2 client closes", 2*time.Second, func() bool { return rec.closedFor(ReasonClient) == 2 })
}

// stubArmCtl replaces armCtl for one test, counting the loop's additions
// of its epoll descriptor to the netpoller's watch and removals from it;
// fail, when set, answers an addition instead of epoll_ctl.
func stubArmCtl(t *testing.T, fail error) (adds, dels *atomic.Int32) {
	adds, dels = new(atomic.Int32), new(atomic.Int32)
	orig := armCtl
	armCtl = func(ep, op, fd int, ev unix.EpollEvent) error {
		switch op {
		case unix.EPOLL_CTL_ADD:
			adds.Add(1)
			if fail != nil {
				return fail
			}
		case unix.EPOLL_CTL_DEL:
			dels.Add(1)
		}
		return orig(ep, op, fd, ev)
	}
	t.Cleanup(func() { armCtl = orig })
	return adds, dels
}

// Under continuous traffic the loop takes its epoll descriptor out of the
// netpoller's watch (which would otherwise wake the runtime for events
// the loop reads anyway), and adds it back before it parks again; every
// byte arrives either way.
func TestEpollEngineDisarmsWhenBusyAndRearmsToPark(t *testing.T) {
	parkOnly(t)
	adds, dels := stubArmCtl(t, nil)
	orig := disarmAfter
	disarmAfter = 2 // the default 16 needs more traffic than a test should make
	t.Cleanup(func() { disarmAfter = orig })

	b := newBackend(t, "echo")
	s, addr, _ := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	roundTrip(t, c, "*1\r\n$4\r\nPING\r\n")
	c.SetDeadline(time.Now().Add(15 * time.Second))

	// A writer streams while this goroutine reads, until the loop has
	// disarmed (bounded by a deadline).
	var stop atomic.Bool
	var written atomic.Int64
	werr := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for !stop.Load() {
			n, err := c.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	buf := make([]byte, 64<<10)
	var read int64
	readSome := func() {
		n, err := c.Read(buf)
		read += int64(n)
		if err != nil {
			t.Fatalf("read after %d of %d bytes: %v", read, written.Load(), err)
		}
		if bytes.IndexFunc(buf[:n], func(r rune) bool { return r != 'x' }) >= 0 {
			t.Fatal("echoed bytes differ from those sent")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for dels.Load() == 0 && time.Now().Before(deadline) {
		readSome()
	}
	stop.Store(true)
	for read < written.Load() || len(werr) == 0 {
		readSome()
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if read != written.Load() {
		t.Fatalf("read %d bytes; wrote %d", read, written.Load())
	}
	if dels.Load() == 0 {
		t.Fatalf("the loop never took its descriptor out of the netpoller's watch in 10 s of streaming (%d bytes)", read)
	}
	// Idle now, the loop must have armed again to park; a message after
	// the pause wakes it.
	eventually(t, "re-armed to park", 5*time.Second, func() bool { return adds.Load() > dels.Load() })
	roundTrip(t, c, "after the pause")
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loop serves %d sessions; want 1", got)
	}
}

// When the loop's descriptor cannot be added to the netpoller's watch
// (epoll_ctl fails, as at fs.epoll.max_user_watches), the loop waits in
// epoll_wait instead: it still serves its connections, and a nudge still
// releases it after the last one.
func TestEpollEngineWaitsInEpollWaitWhenParkFails(t *testing.T) {
	parkOnly(t)
	adds, _ := stubArmCtl(t, unix.ENOSPC)
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	c1, c2 := dial(t, addr), dial(t, addr)
	roundTrip(t, c1, "one")
	roundTrip(t, c2, "two")
	roundTrip(t, c1, "three")
	if adds.Load() == 0 {
		t.Fatal("the loop never tried to park")
	}
	if got := s.loopLive(); got != 2 {
		t.Fatalf("epoll loop serves %d sessions; want 2 (not an io.Copy fallback)", got)
	}
	c1.Close()
	c2.Close()
	eventually(t, "loop released", 2*time.Second, func() bool { return s.loopLive() == -1 })
	eventually(t, "2 client closes", time.Second, func() bool { return rec.closedFor(ReasonClient) == 2 })
}

// A loop whose epoll_wait fails (a bug: a bad descriptor) must not take the
// process or the route with it. Tried: epoll_wait returning EBADF while two
// clients are attached, in each of the loop's blocking waits (hold, and
// block when it cannot park). Their connections are cut with reason
// internal_error, the error is logged, and the next client is served by a
// new loop.
func TestEpollEngineLoopFailureCutsItsSessionsOnly(t *testing.T) {
	t.Run("hold", func(t *testing.T) {
		holding(t, true)
		var f failSwitch
		orig := holdWait
		holdWait = func(ep int, evs []unix.EpollEvent, msec int) (int, syscall.Errno) {
			if f.fail() {
				return 0, unix.EBADF
			}
			return orig(ep, evs, msec)
		}
		t.Cleanup(func() { holdWait = orig })
		testLoopFailure(t, &f)
	})
	t.Run("block", func(t *testing.T) {
		parkOnly(t)
		stubArmCtl(t, unix.ENOSPC) // the loop waits in block, through epollWait
		var f failSwitch
		orig := epollWait
		epollWait = func(ep int, evs []unix.EpollEvent, msec int) (int, error) {
			if f.fail() {
				return 0, unix.EBADF
			}
			return orig(ep, evs, msec)
		}
		t.Cleanup(func() { epollWait = orig })
		testLoopFailure(t, &f)
	})
}

// failSwitch makes a stubbed wait fail once on is set, and records that
// it did.
type failSwitch struct{ on, hit atomic.Bool }

func (f *failSwitch) fail() bool {
	if !f.on.Load() {
		return false
	}
	f.hit.Store(true)
	return true
}

// testLoopFailure makes the loop's blocking wait fail, through f, with
// two clients attached.
func testLoopFailure(t *testing.T, f *failSwitch) {
	var logs testutil.Buffer
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.SetMaster(b.addr())
	c1, c2 := dial(t, addr), dial(t, addr)
	roundTrip(t, c1, "one")
	roundTrip(t, c2, "two")

	// The loop is blocked in the real epoll_wait: a message wakes it, and
	// its next wait fails.
	f.on.Store(true)
	if _, err := io.WriteString(c1, "three"); err != nil {
		t.Fatal(err)
	}
	for i, c := range []net.Conn{c1, c2} {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, unix.ECONNRESET) {
			t.Fatalf("client %d: %v; want its connection closed", i+1, err)
		}
	}
	eventually(t, "2 internal_error closes", time.Second, func() bool { return rec.closedFor(ReasonInternalError) == 2 })
	if got := s.loopLive(); got != -1 {
		t.Fatalf("epoll loops serve %d sessions after the failure; want none running", got)
	}
	if !strings.Contains(logs.String(), "event loop failed") || !strings.Contains(logs.String(), "bad file descriptor") {
		t.Fatalf("log does not report the failure:\n%s", logs.String())
	}
	if !f.hit.Load() {
		t.Fatal("the loop failed, but not in the stubbed wait")
	}
	// fail gives the hold back after cutting the sessions, so the closes
	// counted above may come first.
	eventually(t, "no loop counted as holding a P after the failure", time.Second, func() bool { return holders.Load() == 0 })

	f.on.Store(false)
	c3 := dial(t, addr)
	roundTrip(t, c3, "four")
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loop serves %d sessions; want 1 (a new loop)", got)
	}
}

// A batch of events whose reads outgrow the loop's shared buffer is
// written on in parts (flush before a read with less than minRead left),
// and every connection still gets exactly its own bytes, in order. Tried:
// seven clients each sending 24 KiB while the loop is held inside another
// connection's event, so that the next poll finds all seven ready at once
// (168 KiB of reads for a 64 KiB buffer).
func TestEpollEngineBatchLargerThanBufferKeepsEachStream(t *testing.T) {
	b := newBackend(t, "echo")
	s, addr, _ := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	hold := dial(t, addr)
	roundTrip(t, hold, "hold")
	s.loopMu.Lock()
	el := s.loops[0]
	s.loopMu.Unlock()
	el.mu.Lock()
	var held *loopPair
	for _, e := range el.ends {
		held = e.pair // the only session so far
	}
	el.mu.Unlock()

	const n, size = 7, 24 << 10
	cs := make([]net.Conn, n)
	want := make([][]byte, n)
	for i := range cs {
		cs[i] = dial(t, addr)
		roundTrip(t, cs[i], "hi")
		want[i] = make([]byte, size)
		rand.Read(want[i])
	}
	held.mu.Lock()
	io.WriteString(hold, "x") // the loop wakes and blocks on held.mu
	for i, c := range cs {
		if _, err := c.Write(want[i]); err != nil {
			held.mu.Unlock()
			t.Fatalf("client %d: write: %v", i, err)
		}
	}
	held.mu.Unlock()
	for i, c := range cs {
		got := make([]byte, size)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("client %d: read: %v", i, err)
		}
		if !bytes.Equal(got, want[i]) {
			t.Fatalf("client %d: got bytes that differ from its own at %d", i, commonPrefix(got, want[i]))
		}
	}
	if got := s.loopLive(); got != n+1 {
		t.Fatalf("epoll loop serves %d sessions; want %d", got, n+1)
	}
	if el.partFlushes.Load() == 0 {
		t.Fatal("no batch outgrew the loop's buffer: the write in parts was not exercised")
	}
}

// A loop waiting in hold keeps its P in a raw epoll_wait, so the runtime
// cannot take that P back by itself: it must signal the thread. Tried:
// three garbage collections (each stops the world) while the loop holds,
// with holdIdleMS too long to rescue a stuck stop. Each finishes, and the
// loop still serves afterwards.
func TestEpollEngineHoldYieldsToTheRuntime(t *testing.T) {
	holding(t, true)
	b := newBackend(t, "echo")
	s, addr, _ := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	roundTrip(t, c, "before")
	// Once counted, the loop spends all but a few instructions of its
	// time blocked in epoll_wait.
	eventually(t, "loop holding", 2*time.Second, func() bool { return holders.Load() == 1 })
	for i := range 3 {
		done := make(chan struct{})
		go func() {
			runtime.GC()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("garbage collection %d did not finish in 10 s while a loop held its P", i+1)
		}
	}
	roundTrip(t, c, "after")
	c.Close()
	eventually(t, "loop released", 2*time.Second, func() bool { return s.loopLive() == -1 && holders.Load() == 0 })
}

// Holding loops leave at least one P to the rest of the process: a loop
// holds only while the holders, itself among them, are fewer than
// GOMAXPROCS. Tried on the claim itself (a goroutine watching holders
// needs a P of its own, so it could never see every P held), then with
// traffic: two busy loops under GOMAXPROCS=2, then 1. Every message is
// answered throughout.
func TestEpollEngineHoldLeavesAPToTheRest(t *testing.T) {
	withProcs(t, 2)
	if n := holders.Load(); n != 0 {
		t.Fatalf("%d loops of earlier tests still hold", n)
	}
	var one, two eventLoop
	if !one.claimHold() {
		t.Fatal("no loop may hold under GOMAXPROCS=2")
	}
	if two.claimHold() {
		t.Fatal("a second loop holds under GOMAXPROCS=2, leaving no P to the rest")
	}
	one.dropHold()
	if !two.claimHold() {
		t.Fatal("a loop may not hold once the other gave its P back")
	}
	two.dropHold()
	runtime.GOMAXPROCS(1)
	if one.claimHold() {
		t.Fatal("a loop holds the only P (GOMAXPROCS=1)")
	}
	if n := holders.Load(); n != 0 {
		t.Fatalf("holders is %d after every claim was dropped or refused", n)
	}

	runtime.GOMAXPROCS(2)
	b := newBackend(t, "echo")
	s, addr, _ := startServer(t, Config{Engine: EngineEpoll, EventLoops: 2})
	s.SetMaster(b.addr())
	c1, c2 := dial(t, addr), dial(t, addr)
	roundTrip(t, c1, "one")
	roundTrip(t, c2, "two")
	if got := s.loopsLive(); len(got) != 2 || got[0] != 1 || got[1] != 1 {
		t.Fatalf("sessions per loop %v; want one on each of two", got)
	}
	for i := range 200 {
		roundTrip(t, c1, fmt.Sprintf("one %d", i))
		roundTrip(t, c2, fmt.Sprintf("two %d", i))
	}
	runtime.GOMAXPROCS(1)
	eventually(t, "holder idle and parked", 2*time.Second, func() bool { return holders.Load() == 0 })
	for i := range 50 {
		roundTrip(t, c1, fmt.Sprintf("one %d", i))
		roundTrip(t, c2, fmt.Sprintf("two %d", i))
	}
	if n := holders.Load(); n != 0 {
		t.Fatalf("%d loops hold the only P (GOMAXPROCS=1)", n)
	}
}

// A loop idle for holdIdleMS gives its P back and parks on the netpoller;
// the next message wakes it through the netpoller, and it holds again.
func TestEpollEngineHoldParksWhenIdle(t *testing.T) {
	holding(t, false)
	adds, dels := stubArmCtl(t, nil)
	b := newBackend(t, "echo")
	s, addr, _ := startServer(t, Config{Engine: EngineEpoll})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	roundTrip(t, c, "first")
	eventually(t, "parked after holdIdleMS", 2*time.Second, func() bool {
		return holders.Load() == 0 && adds.Load() > 0
	})
	roundTrip(t, c, "wakes the parked loop")
	// Holding again takes ep out of the netpoller's watch.
	eventually(t, "holding again", 2*time.Second, func() bool { return dels.Load() > 0 })
	roundTrip(t, c, "third")
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loop serves %d sessions; want 1", got)
	}
}

// backendConn is the backend's side of its i-th accepted connection.
func (b *backend) backendConn(t *testing.T, i int) net.Conn {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.conns) <= i {
		t.Fatalf("backend accepted %d connections; want connection %d", len(b.conns), i)
	}
	return b.conns[i]
}

// With an idle timeout the epoll engine keeps serving in its loop and
// cuts, for ReasonIdle, only sessions in which no byte moved either way
// for the timeout. Tried, with a 300 ms timeout: requests and replies
// every 75 ms for 300 ms (kept); the master alone pushing every 75 ms, as
// to a subscriber (kept); then nothing (cut, and not before the timeout,
// while the loop has parked); and a client that stops reading while the
// master sends it 4 MiB, whose bytes wait in the loop without moving
// (cut).
func TestEpollEngineIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	b := newBackend(t, "echo")
	s, addr, rec := startServer(t, Config{Engine: EngineEpoll, IdleTimeout: idle})
	s.SetMaster(b.addr())
	c := dial(t, addr)
	roundTrip(t, c, "first")
	if got := s.loopLive(); got != 1 {
		t.Fatalf("epoll loops serve %d sessions; want 1: with an idle timeout the session left the loop", got)
	}

	for range 4 {
		time.Sleep(idle / 4) // the activity pattern under test, not synchronisation
		roundTrip(t, c, "busy")
	}
	up := b.backendConn(t, 0)
	buf := make([]byte, 4)
	for range 4 {
		time.Sleep(idle / 4) // the activity pattern under test
		if _, err := io.WriteString(up, "push"); err != nil {
			t.Fatalf("master's push: %v", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("client reading the master's push: %v (cut though bytes moved one way)", err)
		}
	}
	if n := rec.closedFor(ReasonIdle); n != 0 {
		t.Fatalf("%d sessions closed as idle while bytes moved every %v", n, idle/4)
	}

	last := time.Now()
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("client read %q; want the close of an idle session", buf[:n])
	}
	// The loop stamped the last byte before this goroutine read it, so
	// the close may come a little sooner than idle after last; half of it
	// leaves room for this goroutine's own scheduling delay.
	if waited := time.Since(last); waited < idle/2 {
		t.Fatalf("idle session closed %v after its last byte; want no sooner than the timeout, %v", waited, idle)
	}
	eventually(t, "idle close recorded", 2*time.Second, func() bool { return rec.closedFor(ReasonIdle) == 1 })

	stuck := dial(t, addr)
	roundTrip(t, stuck, "then stop reading")
	up2 := b.backendConn(t, 1)
	sent := make(chan error, 1)
	go func() {
		_, err := up2.Write(make([]byte, 4<<20))
		sent <- err
	}()
	eventually(t, "a client that stopped reading closed as idle", 5*time.Second, func() bool { return rec.closedFor(ReasonIdle) == 2 })
	up2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := up2.Read(buf); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("master's side of the idle session: read %v; want it closed", err)
	}
	select {
	case <-sent: // all of it went into socket buffers, or the close failed it
	case <-time.After(5 * time.Second):
		t.Fatal("the master's write still blocks after the session was cut")
	}
	if got := s.loopLive(); got != 0 && got != -1 {
		t.Fatalf("epoll loops serve %d sessions after both were cut; want none", got)
	}
}

func TestSweepEvery(t *testing.T) {
	for idle, want := range map[time.Duration]time.Duration{
		time.Millisecond:       10 * time.Millisecond,
		200 * time.Millisecond: 50 * time.Millisecond,
		time.Minute:            time.Second,
	} {
		if got := sweepEvery(idle); got != want {
			t.Errorf("sweepEvery(%v) = %v; want %v", idle, got, want)
		}
	}
}

// Bytes that move only out of a pending buffer (a client draining a large
// reply, while the loop reads nothing more from the master) are activity
// too: the write that makes progress stamps the pair. Tried: a pending
// reply written to a socket with room, at a batch time of 5 s.
func TestEpollEnginePendingWriteIsActivity(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	p := &loopPair{ss: &session{}}
	p.client = loopEnd{pair: p, peer: &p.up, fd: fds[0], dir: clientToMaster, pending: []byte("+a reply\r\n")}
	p.up = loopEnd{pair: p, peer: &p.client, fd: -1, dir: masterToClient}
	el := &eventLoop{now: 5 * time.Second}
	if end, n := el.move(&p.client, unix.EPOLLOUT); end || n != 0 {
		t.Fatalf("move = %v, %d; want the session going on and nothing read", end, n)
	}
	if len(p.client.pending) != 0 {
		t.Fatalf("pending %q after a write to a socket with room", p.client.pending)
	}
	if p.lastIO != 5*time.Second {
		t.Fatalf("lastIO = %v after pending bytes moved; want the batch's time, 5s", p.lastIO)
	}
}
