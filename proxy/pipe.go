package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Engines of a ModeTCP route.
const (
	// EngineSplice copies ModeTCP bytes with io.Copy between the raw
	// *net.TCPConns (splice(2)), two goroutines per connection.
	EngineSplice = "splice"
	// EngineEpoll copies them in level-triggered epoll loops
	// (Config.EventLoops, one by default; Linux only): fewer system calls
	// and wake-ups per message.
	EngineEpoll = "epoll"
)

// session is one proxied client: the client leg, the master leg, and the
// address the master leg was dialled to.
type session struct {
	server *Server
	client net.Conn
	up     net.Conn
	upAddr string

	rc *respConn // set in ModeRESP

	// loop is set, under loopMu, when the epoll engine has taken the
	// connections over; cut then closes them through it.
	loopMu sync.Mutex
	loop   *loopPair

	cutOnce   sync.Once
	cutReason atomic.Pointer[string]
	// ended is the direction whose copy returned first (1+direction), set
	// before that side's close propagates to the other, so the close reason
	// cannot depend on which goroutine reports back first.
	ended atomic.Int32
	// lastIO is when a byte last moved either way, as time since the
	// Server's epoch (monotonic); kept only with Config.IdleTimeout, by the
	// buffered copy and by resp mode. The epoll loop keeps its own, in the
	// pair, which only the loop writes.
	lastIO atomic.Int64

	// Written by the copy goroutines before they signal done.
	c2m, m2c int64
	reason   string
}

type direction int

const (
	clientToMaster direction = iota
	masterToClient
)

// cut closes both legs at once, for a reason other than either peer closing.
// The master leg is reset rather than closed gracefully, so that anything
// still queued in its socket buffer is discarded, not delivered to a master
// we have stopped trusting.
func (ss *session) cut(reason string) {
	ss.cutOnce.Do(func() {
		ss.cutReason.Store(&reason)
		ss.loopMu.Lock()
		lp := ss.loop
		ss.loopMu.Unlock()
		if lp != nil {
			lp.abort()
			return
		}
		resetConn(ss.up)
		abortConn(ss.client)
		if ss.rc != nil {
			ss.rc.end()
		}
	})
}

// run pipes bytes both ways until both directions end.
//
// When the client finishes sending (QUIT, or a half-close), the master's
// remaining replies are still delivered: only the write side to the master
// is shut. When the master's side ends, the session is over: Redis never
// half-closes, so its FIN means the server is gone or has dropped us, and
// a client that keeps its socket open without reading must not pin a dead
// session.
func (ss *session) run() {
	ss.stampIO()
	done := make(chan direction, 2)
	go copyClientToMaster(ss, done)
	go copyMasterToClient(ss, done)
	first := <-done
	if first == masterToClient {
		ss.client.Close()
		ss.up.Close()
	}
	<-done
	ss.client.Close()
	ss.up.Close()
	ss.setReason(first)
}

func (ss *session) markEnded(d direction) { ss.ended.CompareAndSwap(0, int32(d)+1) }

// stampIO records that bytes moved now; a no-op without an idle timeout.
func (ss *session) stampIO() {
	if ss.server.cfg.IdleTimeout > 0 {
		ss.lastIO.Store(int64(time.Since(ss.server.epoch)))
	}
}

// sinceIO is how long ago bytes last moved, at now (since the Server's
// epoch).
func (ss *session) sinceIO(now time.Duration) time.Duration {
	return now - time.Duration(ss.lastIO.Load())
}

// setReason records why the session ended: the reason it was cut for, else
// the side that ended first.
func (ss *session) setReason(first direction) {
	if e := ss.ended.Load(); e != 0 {
		first = direction(e - 1)
	}
	switch {
	case ss.cutReason.Load() != nil:
		ss.reason = *ss.cutReason.Load()
	case first == clientToMaster:
		ss.reason = ReasonClient
	default:
		ss.reason = ReasonUpstream
	}
}

// copyClientToMaster and copyMasterToClient are named functions, not
// closures, so that goroutine dumps say which way a stuck copy runs.
func copyClientToMaster(ss *session, done chan<- direction) {
	ss.c2m = ss.copy(ss.up, ss.client)
	ss.markEnded(clientToMaster)
	closeWrite(ss.up)
	closeRead(ss.client)
	done <- clientToMaster
}

func copyMasterToClient(ss *session, done chan<- direction) {
	ss.m2c = ss.copy(ss.client, ss.up)
	ss.markEnded(masterToClient)
	closeWrite(ss.client)
	closeRead(ss.up)
	done <- masterToClient
}

// copy moves bytes from src to dst. Without an idle timeout it is io.Copy
// between the raw *net.TCPConns, which Go turns into splice(2): the bytes
// never enter user space. The returned count is how byte metrics are kept
// without wrapping the connections (a wrapper would defeat splice).
func (ss *session) copy(dst, src net.Conn) int64 {
	if ss.server.cfg.IdleTimeout <= 0 {
		n, _ := io.Copy(dst, src)
		return n
	}
	return ss.copyIdle(dst, src)
}

// copyIdle copies through a buffer so that it can watch for idleness; the
// idle clock is shared by both directions, so a subscriber that only
// receives is not idle.
func (ss *session) copyIdle(dst, src net.Conn) int64 {
	idle := ss.server.cfg.IdleTimeout
	buf := make([]byte, 32<<10)
	var total int64
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			ss.stampIO()
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if ss.sinceIO(time.Since(ss.server.epoch)) < idle {
				continue
			}
			ss.cut(ReasonIdle)
		}
		return total
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

func closeRead(c net.Conn) {
	if cr, ok := c.(interface{ CloseRead() error }); ok {
		cr.CloseRead()
	}
}

var _ interface {
	CloseWrite() error
	CloseRead() error
} = (*net.TCPConn)(nil)
