//go:build linux

package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loopLive is how many sessions the epoll loop serves; -1 when none runs.
func (s *Server) loopLive() int {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	if s.loop == nil {
		return -1
	}
	return s.loop.live
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
