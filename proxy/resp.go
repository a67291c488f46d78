package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/sentproxy/sentproxy/internal/resp"
)

// Modes of a route.
const (
	// ModeTCP splices bytes both ways without looking at them.
	ModeTCP = "tcp"
	// ModeRESP parses commands and replies (without re-encoding them) so
	// that a failover looks to the client like a pause.
	ModeRESP = "resp"
)

const (
	respReadBuf = 64 << 10
	// respMinBuf is where both read buffers of a connection start: an idle
	// connection (a BLPOP waiter, a subscriber) should cost little. A read
	// that fills a buffer doubles it, up to respReadBuf.
	respMinBuf = 4 << 10
	// streamAbove: a write command longer than this is forwarded as it
	// arrives instead of being held whole, so a 500 MiB SET costs the proxy
	// one read buffer. Such a command cannot be sent again after a
	// failover, which a write never is anyway.
	streamAbove = respReadBuf
	// maxCommandBytes bounds one client command held in memory: the
	// commands that are never streamed (read-only ones, kept for a retry,
	// and those whose bytes set connection state), also when the per-client
	// limit is set higher. A longer one is answered with an error and not
	// run. Replies of any size stream through.
	maxCommandBytes = 64 << 20
	// defaultMaxClientBuffer bounds the bytes of one client's commands
	// awaiting replies; past it the client is not read until they drain.
	defaultMaxClientBuffer = 16 << 20
	// defaultMaxBuffer bounds that for all clients of a route together;
	// past it commands are answered with errProxyFull.
	defaultMaxBuffer = 512 << 20
	// replayTimeout bounds restoring a connection's state on a new master.
	replayTimeout = 5 * time.Second
)

// Replies sentproxy gives itself during a failover.
var (
	errUnknownOutcome = []byte("-ERR sentproxy: the master failed while this write was in flight; its outcome is unknown\r\n")
	errCommandCut     = []byte("-ERR sentproxy: the master failed while this command was being sent; it did not run\r\n")
	errNoMasterHold   = []byte("-ERR sentproxy: no master within the failover hold; command not run\r\n")
	errMultiAborted   = []byte("-ERR sentproxy: the master failed over inside MULTI; the transaction will be discarded\r\n")
	errExecAbort      = []byte("-EXECABORT Transaction discarded because of previous errors.\r\n")
	errReplayFailed   = []byte("-ERR sentproxy: could not restore this connection's state on the new master\r\n")
	errCommandTooLong = []byte("-ERR sentproxy: command longer than this proxy holds for a retry (see --proxy.max-client-buffer); command not run\r\n")
	errTrackingLost   = []byte("-ERR sentproxy: the master failed over and CLIENT TRACKING with REDIRECT cannot be moved to the new one; reconnect\r\n")
	// pushInvalidateAll tells a RESP3 client with CLIENT TRACKING to drop
	// its whole cache, as Redis does on FLUSHALL: invalidations the old
	// master owed it are lost with it.
	pushInvalidateAll = []byte(">2\r\n$10\r\ninvalidate\r\n_\r\n")
	errProxyFull      = []byte("-ERR sentproxy: the proxy's buffer for commands awaiting replies is full; command not run\r\n")
	replyOK           = []byte("+OK\r\n")
	replyQueued       = []byte("+QUEUED\r\n")
	replyNilArray2    = []byte("*-1\r\n")
	replyNull3        = []byte("_\r\n")
	noReply           = []byte{}
)

// Kinds of command whose success changes what a failover must do.
const (
	kindPlain uint8 = iota
	kindMulti
	kindExec
	kindDiscard
	kindWatch
	kindUnwatch
	kindSelect
	kindAuth
	kindHello
	kindSetname
	kindTracking
)

// entry is one queued command: its bytes in the retained stream, the
// replies still owed, and, when local is set, the reply sentproxy gives
// itself once the entry reaches the head of the queue (noReply: none).
type entry struct {
	start, end int64 // the command's bytes in the retained stream
	replies    int32 // top-level replies still owed; 0: none expected
	kind       uint8
	retry      bool // read-only: safe to send again after a failover
	// streaming: the command is being forwarded as it arrives and is not
	// complete yet; it is always the newest entry. Its bytes are never
	// retained (start == end).
	streaming bool
	local     []byte
}

// respConn is the command-aware half of a session. Two goroutines run per
// client, as in TCP mode: one reads commands and writes them to the master,
// one reads replies and writes them to the client, each forwarding what it
// read as it came. The queue of commands awaiting replies is the only shared
// state.
//
// When the master goes away (a switch, a reset, or a -READONLY, -LOADING or
// -MASTERDOWN saying this server cannot serve the command), the reply reader
// holds the session: read-only commands in flight are sent again to the new
// master, writes in flight get an error saying their outcome is unknown
// (never a silent replay), commands not yet sent wait, and the connection's
// state (HELLO/AUTH, SELECT, CLIENT SETNAME, CLIENT TRACKING, subscriptions, MONITOR) is
// replayed on the new master first.
type respConn struct {
	ss  *session
	srv *Server

	mu         sync.Mutex
	resumed    *sync.Cond // broadcast when a recovery ends, the queue drains or the session ends
	up         net.Conn
	upAddr     string
	recovering bool
	moves      int // masterMoved calls, so a recovery does not clear a newer one's hold
	closed     bool
	// clientDone: the client sent QUIT or closed its side; the master
	// closing after that ends the session instead of starting a recovery.
	clientDone bool
	q          []entry // ring buffer
	qHead      int
	qLen       int
	sent       []byte // retained command bytes, sent[0] at stream offset sentBase
	sentBase   int64
	sentEnd    int64
	writtenTo  int64 // stream offset up to which bytes went to the current master
	counted    int64 // len(sent) as added to the Server's buffered total
	// streaming: the client reader is forwarding a long write command as it
	// arrives (see streamAbove). streamCut: that command will not run (a
	// failover cut it, or it is answered locally); the reader drops the
	// rest of its bytes.
	streaming, streamCut bool
	// multiQueued: a MULTI was queued and its EXEC or DISCARD not yet.
	// Commands inside a transaction are never resent on their own (a
	// failover aborts the transaction), so none is held for a retry.
	multiQueued bool

	stream    bool // RESP2 subscribed mode or MONITOR: replies are not counted
	monitor   bool
	resp3     bool
	replyOff  bool
	skipNext  bool
	inMulti   bool // MULTI answered, EXEC/DISCARD not yet
	watching  bool // WATCH answered, not yet consumed
	multiLost bool // the transaction died in a failover: answer for it until EXEC/DISCARD
	watchLost bool // WATCHed keys cannot be vouched for after a failover: EXEC answers nil
	protoErr  []byte
	// unsent is set when the reply reader has matched a reply but not yet
	// written it to the client; a protocol error then waits for it, so that
	// the client gets the replies to its good commands first, as from Redis.
	unsent bool

	// State replayed on a new master, as the raw commands that set it.
	hello, auth, sel, setname []byte
	// tracking is the CLIENT TRACKING ON command in force, if any;
	// trackingRedirect says it sends invalidations to another connection,
	// whose id means nothing on a new master.
	tracking         []byte
	trackingRedirect bool
	// subs holds the channels, patterns and shard channels subscribed to
	// now: the set, not the commands, so that a client subscribing and
	// unsubscribing in a loop holds no more than it listens to.
	subs [3]map[string]struct{}

	wmu sync.Mutex // serialises writes to the client
}

func newRespConn(ss *session) *respConn {
	rc := &respConn{ss: ss, srv: ss.server, up: ss.up, upAddr: ss.upAddr, q: make([]entry, 8)}
	rc.resumed = sync.NewCond(&rc.mu)
	ss.stampIO()
	return rc
}

// idleFor is how long the session has been idle at now (since the
// Server's epoch), counted as Redis's own timeout counts it: a client
// waiting for a reply (a BLPOP, commands held through a failover),
// subscribed or in MONITOR is never idle, however long nothing moves. A
// long command still arriving awaits no reply yet: a client that stops
// in the middle of one is idle.
func (rc *respConn) idleFor(now time.Duration) time.Duration {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	awaiting := rc.qLen
	if rc.streaming && awaiting > 0 {
		awaiting--
	}
	subscribed := len(rc.subs[0])+len(rc.subs[1])+len(rc.subs[2]) > 0
	if rc.closed || awaiting > 0 || rc.stream || rc.monitor || subscribed || rc.recovering {
		return 0
	}
	return rc.ss.sinceIO(now)
}

// sweepIdleRESP cuts, for ReasonIdle, the resp-mode sessions idle for
// Config.IdleTimeout, until Shutdown starts.
func (s *Server) sweepIdleRESP() {
	t := time.NewTicker(sweepEvery(s.cfg.IdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-s.stopping.Done():
			return
		case <-t.C:
		}
		now := time.Since(s.epoch)
		s.mu.Lock()
		all := make([]*session, 0, len(s.sessions))
		for ss := range s.sessions {
			all = append(all, ss)
		}
		s.mu.Unlock()
		for _, ss := range all {
			if ss.rc.idleFor(now) >= s.cfg.IdleTimeout {
				ss.cut(ReasonIdle)
			}
		}
	}
}

// masterMoved resets the master leg so that not one more byte reaches the
// old master; the reply reader then recovers onto the new one. The Server
// calls it when the master changed away from this connection's.
func (rc *respConn) masterMoved() {
	rc.mu.Lock()
	up := rc.up
	// Hold new commands from now on: written to the reset connection they
	// would be lost, and counted as writes of unknown outcome.
	if !rc.closed {
		rc.recovering = true
		rc.moves++
	}
	rc.mu.Unlock()
	resetConn(up)
}

// end closes the master leg for good and wakes every waiter.
func (rc *respConn) end() {
	rc.mu.Lock()
	rc.closed = true
	rc.recount()
	up := rc.up
	rc.resumed.Broadcast()
	rc.mu.Unlock()
	resetConn(up)
}

// resetConn closes c with a reset, so that what its socket still holds is
// dropped rather than delivered. Under TLS the TCP connection is closed
// first, so that not even a close_notify alert goes out.
func resetConn(c net.Conn) {
	if tc, ok := tcpOf(c); ok {
		tc.SetLinger(0)
		tc.Close()
	}
	c.Close()
}

// runRESP is run() for ModeRESP.
func (ss *session) runRESP() {
	rc := ss.rc
	done := make(chan direction, 2)
	go respClientToMaster(rc, done)
	go respMasterToClient(rc, done)
	first := <-done
	if first == masterToClient {
		ss.client.Close()
		rc.end()
	}
	<-done
	ss.client.Close()
	rc.end()
	ss.setReason(first)
}

// --- queue ---

func (rc *respConn) push(e entry) {
	if rc.qLen == len(rc.q) {
		q := make([]entry, 2*len(rc.q))
		for i := 0; i < rc.qLen; i++ {
			q[i] = *rc.at(i)
		}
		rc.q, rc.qHead = q, 0
	}
	rc.q[(rc.qHead+rc.qLen)%len(rc.q)] = e
	rc.qLen++
}

func (rc *respConn) at(i int) *entry { return &rc.q[(rc.qHead+i)%len(rc.q)] }

func (rc *respConn) pop() {
	rc.q[rc.qHead] = entry{}
	rc.qHead = (rc.qHead + 1) % len(rc.q)
	rc.qLen--
}

// bytesOf returns an entry's retained bytes.
func (rc *respConn) bytesOf(e *entry) []byte {
	return rc.sent[e.start-rc.sentBase : e.end-rc.sentBase]
}

// trim drops retained bytes that no queued entry needs and that were
// written; it copies only when that frees at least half the buffer.
func (rc *respConn) trim() {
	keep := rc.writtenTo
	if rc.qLen > 0 && rc.at(0).start < keep {
		keep = rc.at(0).start
	}
	drop := keep - rc.sentBase
	switch {
	case drop <= 0:
		return
	case drop == int64(len(rc.sent)):
		rc.sent = rc.sent[:0]
	case drop >= int64(len(rc.sent))/2:
		rc.sent = append(rc.sent[:0], rc.sent[drop:]...)
	default:
		return
	}
	rc.sentBase = keep
	if rc.srv != nil {
		rc.recount()
	}
}

// settleHead pops entries at the head that need nothing from the master:
// local replies (returned, to be written in order) and silent commands.
func (rc *respConn) settleHead(out []byte) []byte {
	for rc.qLen > 0 {
		e := rc.at(0)
		switch {
		case e.local != nil:
			out = append(out, e.local...)
		case e.replies == 0 && e.end <= rc.writtenTo && !e.streaming:
		default:
			rc.trim()
			return out
		}
		rc.pop()
	}
	rc.trim()
	return out
}

// --- client to master ---

// respClientToMaster reads client commands, checks their framing with
// Redis's rules, queues them, and forwards each batch in one write. A long
// write command is forwarded piece by piece as it arrives (streamAbove).
func respClientToMaster(rc *respConn, done chan<- direction) {
	ss := rc.ss
	defer func() { done <- clientToMaster }()
	cs := resp.NewCommandScanner(0)
	buf := make([]byte, respMinBuf)
	var batch []byte
	// buf[start:end] is read but not yet queued or forwarded;
	// buf[start:scanned] is the part of an unfinished command the scanner
	// has already seen.
	start, scanned, end := 0, 0, 0
	var rerr error
	for {
		if end == len(buf) && len(buf) < respReadBuf {
			// Filled: the client sends more than this at a time.
			buf = append(buf, make([]byte, len(buf))...)
		}
		if end == len(buf) && start > 0 {
			end = copy(buf, buf[start:end])
			scanned -= start
			start = 0
		}
		if end == len(buf) {
			// One unfinished command fills the buffer and is not streamed.
			if int64(len(buf)) >= min(rc.srv.cfg.MaxClientBuffer, maxCommandBytes) {
				// Too long to hold: answered, the rest of it dropped,
				// and the connection goes on, as after any error reply.
				rc.mu.Lock()
				rc.queueStreaming(cs.Command())
				rc.cutStreaming(errCommandTooLong)
				out := rc.settleHead(nil)
				rc.mu.Unlock()
				if len(out) > 0 {
					rc.writeClient(out)
				}
				start, scanned, end = 0, 0, 0
			} else {
				buf = append(buf, make([]byte, len(buf))...)
			}
		}
		if scanned == end && rerr == nil {
			var n int
			n, rerr = ss.client.Read(buf[end:])
			end += n
			if n > 0 {
				rc.ss.stampIO()
			}
		}
		var perr error
		streamDone := false
		rc.mu.Lock()
		for scanned < end {
			k, complete, err := cs.Next(buf[scanned:end])
			scanned += k
			if err != nil {
				perr = err
				break
			}
			if complete {
				if rc.streaming {
					// Its last bytes are buf[start:scanned]; forward them
					// before scanning on, so that what follows is queued
					// behind it.
					streamDone = true
					break
				}
				rc.queue(cs.Command(), buf[start:scanned])
				start = scanned
			}
		}
		switch {
		case perr != nil && rc.streaming:
			// Not one byte of the broken command more to the master.
			rc.cutStreaming(noReply)
		case perr == nil && !rc.streaming && cs.InProgress() && scanned-start >= streamAbove && rc.streamable(cs.Command()):
			rc.queueStreaming(cs.Command())
		}
		// Hold while the reply reader recovers, and while too much is
		// waiting for replies: the kernel's socket buffer then holds the
		// client, not our memory.
		for (rc.recovering || int64(len(rc.sent)) > rc.srv.cfg.MaxClientBuffer) && !rc.closed {
			rc.resumed.Wait()
		}
		if rc.closed {
			rc.mu.Unlock()
			return
		}
		batch = append(batch[:0], rc.sent[rc.writtenTo-rc.sentBase:]...)
		rc.writtenTo = rc.sentEnd
		var piece []byte
		if rc.streaming {
			if !rc.streamCut {
				piece = buf[start:scanned]
			}
			start = scanned
			if streamDone {
				rc.endStreaming()
			}
		}
		local := rc.settleHead(nil)
		up := rc.up
		rc.mu.Unlock()
		if len(local) > 0 {
			rc.writeClient(local)
		}
		// A failed write means the master went away; the reply reader
		// sees it too and recovers.
		switch {
		case len(batch) > 0 && len(piece) > 0:
			bufs := net.Buffers{batch, piece}
			w, _ := bufs.WriteTo(up)
			ss.c2m += w
		case len(batch) > 0:
			w, _ := up.Write(batch)
			ss.c2m += int64(w)
		case len(piece) > 0:
			w, _ := up.Write(piece)
			ss.c2m += int64(w)
		}
		if start == end {
			start, scanned, end = 0, 0, 0
			if len(buf) > respReadBuf {
				// A long held command grew it: give the memory back.
				buf = make([]byte, respMinBuf)
			}
		}
		if perr != nil {
			rc.failProtocol(perr.Error())
			return
		}
		if rerr != nil && scanned == end {
			ss.markEnded(clientToMaster)
			rc.mu.Lock()
			rc.clientDone = true
			if rc.streaming {
				// The client left in the middle of a command: Redis
				// never runs it, and no reply will come.
				rc.cutStreaming(noReply)
			}
			up := rc.up
			rc.mu.Unlock()
			closeWrite(up)
			return
		}
	}
}

// streamable reports whether a command that does not fit the read buffer
// may be forwarded as it arrives rather than held whole: not a read-only
// command (held, so that it can be sent again after a failover), nor one
// whose bytes are kept as connection state or change how replies are
// counted. rc.mu is held.
func (rc *respConn) streamable(c *resp.Command) bool {
	name := c.Name()
	switch string(name) {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe",
		"monitor", "client", "hello", "auth", "select", "multi", "exec", "discard", "watch", "unwatch",
		"quit", "reset":
		return false
	}
	return rc.multiQueued || !rc.srv.readOnlyFor(name)
}

// queueStreaming queues the command being streamed; rc.mu is held.
func (rc *respConn) queueStreaming(c *resp.Command) {
	e := entry{replies: 1, streaming: true}
	rc.countReplies(&e, c.Name())
	rc.streaming, rc.streamCut = true, false
	if (rc.multiLost || rc.watchLost) && rc.answerLostTransaction(&e) {
		// Answered here; its bytes must not reach the master.
		e.streaming, rc.streamCut = false, true
	}
	e.start, e.end = rc.sentEnd, rc.sentEnd
	rc.push(e)
}

// endStreaming marks the streamed command complete; rc.mu is held.
func (rc *respConn) endStreaming() {
	if rc.qLen > 0 {
		rc.at(rc.qLen - 1).streaming = false
	}
	rc.streaming, rc.streamCut = false, false
}

// cutStreaming answers the command being streamed with reply (which may be
// noReply) and has the client reader drop the rest of it; rc.mu is held.
func (rc *respConn) cutStreaming(reply []byte) {
	if rc.qLen > 0 {
		if e := rc.at(rc.qLen - 1); e.streaming {
			e.streaming = false
			e.local = reply
			if e.replies == 0 {
				e.local = noReply
			}
		}
	}
	rc.streamCut = true
}

// queue records one complete command; rc.mu is held.
func (rc *respConn) queue(c *resp.Command, raw []byte) {
	if c.Argc == 0 {
		// Redis skips empty commands without a reply.
		return
	}
	e := entry{replies: 1}
	name := c.Name()
	switch string(name) {
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
		rc.trackSubscription(string(name), raw)
		if !rc.resp3 {
			rc.stream = true
		}
		// Confirmations come in the stream (RESP2) or as pushes (RESP3).
		e.replies = 0
	case "monitor":
		rc.stream, rc.monitor = true, true
		e.replies = 0
	case "client":
		sub, _ := c.Arg(1)
		switch {
		case equalFold(sub, "reply") && c.Argc == 3:
			mode, _ := c.Arg(2)
			switch {
			case equalFold(mode, "off"):
				rc.replyOff = true
				e.replies = 0
			case equalFold(mode, "skip"):
				rc.skipNext = true
				e.replies = 0
			case equalFold(mode, "on"):
				rc.replyOff, rc.skipNext = false, false
			}
			rc.appendEntry(e, raw)
			return
		case equalFold(sub, "setname"):
			e.kind = kindSetname
		case equalFold(sub, "tracking"):
			e.kind = kindTracking
		}
	case "hello":
		e.kind = kindHello
	case "auth":
		e.kind = kindAuth
	case "select":
		e.kind = kindSelect
	case "multi":
		e.kind = kindMulti
		rc.multiQueued = true
	case "exec":
		e.kind = kindExec
		rc.multiQueued = false
	case "discard":
		e.kind = kindDiscard
		rc.multiQueued = false
	case "watch":
		e.kind = kindWatch
	case "unwatch":
		e.kind = kindUnwatch
	case "quit":
		rc.clientDone = true
	case "reset":
		rc.stream, rc.monitor, rc.replyOff, rc.skipNext = false, false, false, false
		rc.inMulti, rc.watching, rc.multiLost, rc.watchLost, rc.multiQueued = false, false, false, false, false
		rc.hello, rc.auth, rc.sel, rc.setname = nil, nil, nil, nil
		rc.tracking, rc.trackingRedirect = nil, false
		rc.subs = [3]map[string]struct{}{}
		rc.resp3 = false
	default:
		e.retry = rc.srv.readOnlyFor(name)
	}
	rc.countReplies(&e, name)
	if rc.multiLost || rc.watchLost {
		if rc.answerLostTransaction(&e) {
			rc.push(e)
			return
		}
	}
	rc.appendEntry(e, raw)
}

// countReplies applies CLIENT REPLY and subscribed mode to the number of
// replies a command gets; rc.mu is held.
func (rc *respConn) countReplies(e *entry, name []byte) {
	switch {
	case rc.replyOff:
		e.replies = 0
	case rc.skipNext:
		rc.skipNext = false
		e.replies = 0
	case rc.stream && string(name) != "reset":
		// In RESP2 subscribed mode and MONITOR, replies come in the stream.
		e.replies = 0
	}
}

// answerLostTransaction gives a local answer to a command of a
// transaction that a failover broke, as Redis would answer a transaction
// that cannot commit. It reports whether e was answered locally.
func (rc *respConn) answerLostTransaction(e *entry) bool {
	switch {
	case rc.multiLost:
		switch e.kind {
		case kindExec:
			e.local = errExecAbort
			rc.multiLost, rc.watchLost = false, false
		case kindDiscard:
			e.local = replyOK
			rc.multiLost, rc.watchLost = false, false
		default:
			e.local = errMultiAborted
		}
	case rc.watchLost:
		// A WATCH before the failover cannot be honoured: whatever the
		// client queues, EXEC answers the nil of "a watched key changed",
		// which clients already handle by retrying.
		switch e.kind {
		case kindMulti:
			rc.inMulti = true
			e.local = replyOK
		case kindExec:
			e.local = rc.nilArray()
			rc.watchLost, rc.inMulti = false, false
		case kindDiscard, kindUnwatch:
			e.local = replyOK
			rc.watchLost, rc.inMulti = false, false
		case kindWatch:
			return false // WATCHing again is fine; still lost until EXEC
		default:
			if !rc.inMulti {
				return false
			}
			e.local = replyQueued
		}
	}
	if e.replies == 0 {
		e.local = noReply
	}
	return true
}

func (rc *respConn) nilArray() []byte {
	if rc.resp3 {
		return replyNull3
	}
	return replyNilArray2
}

// recount brings the Server's total of buffered bytes in line with
// len(rc.sent); rc.mu is held.
func (rc *respConn) recount() {
	if rc.closed {
		// An ended session gives all of it back, whatever its reader is
		// still doing with the queue.
		rc.srv.buffered.Add(-rc.counted)
		rc.counted = 0
		return
	}
	if d := int64(len(rc.sent)) - rc.counted; d != 0 {
		rc.counted += d
		rc.srv.buffered.Add(d)
	}
}

func (rc *respConn) appendEntry(e entry, raw []byte) {
	if rc.srv != nil && !rc.multiQueued && rc.srv.buffered.Load()+int64(len(raw)) > rc.srv.cfg.MaxBuffer {
		// Past the proxy-wide limit the command is answered, in order,
		// and not run: the proxy does not grow, and no other client waits
		// for this one. Not inside MULTI: Redis would abort the whole
		// transaction for a command that failed to queue, which a local
		// answer cannot do; the per-client limit bounds what it holds.
		e.local = errProxyFull
		if e.replies == 0 {
			e.local = noReply
		}
		rc.push(e)
		return
	}
	e.start = rc.sentEnd
	rc.sent = append(rc.sent, raw...)
	rc.sentEnd += int64(len(raw))
	e.end = rc.sentEnd
	rc.push(e)
	if rc.srv != nil {
		rc.recount()
	}
}

// Test hooks, no-ops otherwise: replySettled runs in the reply reader
// between matching a reply and writing it; protocolFailed after
// failProtocol. A test uses them to put a protocol error in that window.
var (
	replySettled   = func() {}
	protocolFailed = func() {}
)

// failProtocol answers a malformed command as Redis does: after the replies
// to the commands before it, the error, then the close.
func (rc *respConn) failProtocol(msg string) {
	defer protocolFailed()
	line := []byte("-ERR " + msg + "\r\n")
	rc.mu.Lock()
	if rc.streaming {
		// The master holds part of a command that will never end: no
		// reply comes for it.
		rc.cutStreaming(noReply)
	}
	out := rc.settleHead(nil)
	if (rc.qLen > 0 || rc.unsent) && !rc.stream {
		rc.protoErr = line // the reply reader sends it when the queue drains
		rc.mu.Unlock()
		if len(out) > 0 {
			rc.writeClient(out)
		}
		return
	}
	rc.mu.Unlock()
	rc.writeClient(append(out, line...))
	rc.ss.client.Close()
	rc.end()
}

func (rc *respConn) writeClient(b []byte) (int, error) {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	n, err := rc.ss.client.Write(b)
	rc.ss.m2c += int64(n)
	return n, err
}

// --- master to client ---

// retryable reports whether an error reply means the command did not run
// because this server cannot serve it now (it is a replica, loading, or
// cut off from its master), so it can go to the right master instead.
func retryable(head []byte) bool {
	for _, p := range []string{"READONLY", "LOADING", "MASTERDOWN"} {
		if len(head) >= len(p) && string(head[:len(p)]) == p {
			return true
		}
	}
	return false
}

// respMasterToClient reads replies, settles them against the queue and
// forwards what it read, so that a reply of any size streams through. It
// recovers onto a new master when the current one goes away.
func respMasterToClient(rc *respConn, done chan<- direction) {
	ss := rc.ss
	defer func() {
		ss.markEnded(masterToClient)
		done <- masterToClient
	}()
	sc := resp.NewScanner(resp.Limits{})
	buf := make([]byte, respMinBuf)
	grow := false // the last read filled buf
	var out []byte
	for {
		rc.mu.Lock()
		up, upAddr := rc.up, rc.upAddr
		rc.mu.Unlock()
		if len(buf) < respReadBuf && grow {
			// Every read is forwarded before the next, so nothing in buf
			// needs keeping.
			buf = make([]byte, 2*len(buf))
		}
		n, err := up.Read(buf)
		grow = n == len(buf)
		if n > 0 {
			rc.ss.stampIO()
		}
		suspect := false
		// midValue: the client has been sent part of a reply.
		midValue := sc.InValue()
		if n > 0 {
			from, pos := 0, 0
			valueStart, startedHere := 0, true
			for pos < n {
				if !sc.InValue() {
					valueStart, startedHere = pos, true
				}
				k, complete, serr := sc.Next(buf[pos:n])
				pos += k
				if serr != nil {
					// The master broke framing: nothing after this can be
					// matched to a command.
					ss.server.log.Warn("master sent malformed RESP", "upstream", upAddr, "err", serr)
					rc.writeClient(buf[from:valueStart])
					from, pos = n, n
					suspect = true
					break
				}
				if !complete {
					startedHere = false
					continue
				}
				rc.mu.Lock()
				act := rc.settleReply(sc.Type(), sc.Head(), startedHere)
				rc.unsent = true
				if act == replySuppress {
					rc.mu.Unlock()
					rc.writeClient(buf[from:valueStart])
					from, pos = n, n
					suspect = true
					break
				}
				out = rc.settleHead(out[:0])
				var protoErr []byte
				if rc.qLen == 0 && rc.protoErr != nil {
					protoErr, rc.protoErr = rc.protoErr, nil
				}
				rc.mu.Unlock()
				replySettled()
				if len(out) > 0 || protoErr != nil {
					rc.writeClient(buf[from:pos])
					from = pos
					rc.writeClient(out)
				}
				if protoErr != nil {
					rc.writeClient(protoErr)
					ss.client.Close()
					return
				}
			}
			if from < pos {
				if _, werr := rc.writeClient(buf[from:pos]); werr != nil {
					return
				}
			}
			// Everything matched is written: a protocol error that waited
			// for it goes now, if nothing else is awaited.
			rc.mu.Lock()
			rc.unsent = false
			var protoErr []byte
			if rc.qLen == 0 && rc.protoErr != nil {
				protoErr, rc.protoErr = rc.protoErr, nil
			}
			rc.mu.Unlock()
			if protoErr != nil {
				rc.writeClient(protoErr)
				ss.client.Close()
				return
			}
			midValue = sc.InValue()
			if suspect {
				midValue = !startedHere
			}
		}
		if err == nil && !suspect {
			continue
		}
		if midValue {
			// Part of a reply is with the client and the rest died with
			// the master: no reply from another server can complete it,
			// so the connection ends, as in tcp mode.
			ss.server.log.Warn("master connection failed in the middle of a reply; closing the client connection", "upstream", upAddr, "err", err)
			ss.client.Close()
			return
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			ss.server.log.Debug("master read failed", "upstream", upAddr, "err", err)
		}
		if !rc.recover(suspect) {
			return
		}
		sc.Reset()
	}
}

// Outcomes of settling a reply.
const (
	replyForward = iota
	replySuppress
)

// settleReply matches one complete top-level value from the master to the
// queue; rc.mu is held.
func (rc *respConn) settleReply(typ byte, head []byte, whole bool) int {
	if typ == '>' {
		return replyForward // RESP3 push: never a reply to a command
	}
	if rc.stream {
		if typ == '+' && string(head) == "RESET" {
			rc.stream, rc.monitor = false, false
		}
		return replyForward
	}
	if rc.qLen == 0 {
		return replyForward // nothing owed: forward, as a plain proxy would
	}
	e := rc.at(0)
	if e.local != nil || e.replies == 0 {
		return replyForward
	}
	if typ == '-' && whole && retryable(head) {
		// The command did not run: keep it queued, safe to send to the
		// right master whatever it does.
		e.retry = true
		return replySuppress
	}
	e.replies--
	if e.replies > 0 {
		return replyForward
	}
	if typ != '-' {
		rc.recordState(e)
	}
	rc.pop()
	return replyForward
}

// recordState remembers what a successful command changed about the
// connection, for replay on a new master.
func (rc *respConn) recordState(e *entry) {
	switch e.kind {
	case kindSelect:
		rc.sel = append(rc.sel[:0], rc.bytesOf(e)...)
	case kindAuth:
		rc.auth = append(rc.auth[:0], rc.bytesOf(e)...)
	case kindHello:
		rc.hello = append(rc.hello[:0], rc.bytesOf(e)...)
		rc.resp3 = helloVersion(rc.hello) == '3'
	case kindSetname:
		rc.setname = append(rc.setname[:0], rc.bytesOf(e)...)
	case kindTracking:
		rc.recordTracking(rc.bytesOf(e))
	case kindMulti:
		rc.inMulti = true
	case kindExec, kindDiscard:
		rc.inMulti, rc.watching = false, false
	case kindWatch:
		rc.watching = true
	case kindUnwatch:
		rc.watching = false
	}
}

// recordTracking keeps a successful CLIENT TRACKING command for replay, or
// forgets tracking when it turned it off. The command is rare and small, so
// redcon splits it (allocating).
func (rc *respConn) recordTracking(raw []byte) {
	_, args, _, _, err := redcon.ReadNextCommand(raw, nil)
	if err != nil || len(args) < 3 {
		return
	}
	if !equalFold(args[2], "on") {
		rc.tracking, rc.trackingRedirect = nil, false
		return
	}
	rc.tracking = append(rc.tracking[:0], raw...)
	rc.trackingRedirect = false
	for _, a := range args[3:] {
		if equalFold(a, "redirect") {
			rc.trackingRedirect = true
		}
	}
}

// helloVersion returns the protocol digit of a raw HELLO command, 0 if none.
func helloVersion(raw []byte) byte {
	sc := resp.NewCommandScanner(0)
	if _, done, err := sc.Next(raw); err != nil || !done {
		return 0
	}
	if v, _ := sc.Command().Arg(1); len(v) == 1 {
		return v[0]
	}
	return 0
}

// --- recovery ---

// recover moves the session to a new master. It returns false when the
// session must end.
func (rc *respConn) recover(suspect bool) bool {
	s := rc.srv
	rc.mu.Lock()
	if rc.closed || rc.clientDone || rc.ss.cutReason.Load() != nil {
		rc.mu.Unlock()
		return false
	}
	rc.recovering = true
	old, oldAddr := rc.up, rc.upAddr
	if rc.trackingRedirect {
		// The connection that receives this one's invalidations is
		// known to the old master by an id the new one never issued:
		// tracking cannot be restored, and a client cache left without
		// invalidations would serve stale data. End the connection; the
		// client's library reconnects and sets tracking up again.
		rc.mu.Unlock()
		resetConn(old)
		s.log.Info("closing a client connection at failover: CLIENT TRACKING with REDIRECT cannot be moved", "upstream", oldAddr)
		rc.failAll(errTrackingLost)
		return false
	}
	rc.planLocked()
	// Answers already decided (writes of unknown outcome at the head) go
	// out now, not after the wait for a master.
	out := rc.settleHead(nil)
	rc.mu.Unlock()
	resetConn(old)
	if len(out) > 0 {
		rc.writeClient(out)
	}
	if suspect && s.cfg.OnDialError != nil {
		// The master said it cannot serve: have the Sentinels checked now.
		s.cfg.OnDialError(oldAddr, errors.New("master refused a command (READONLY, LOADING or MASTERDOWN) or broke the protocol"))
	}

	deadline := time.Now().Add(max(s.cfg.HoldTimeout, 0))
	for {
		s.mu.Lock()
		addr, changed, closing := s.master, s.changed, s.closing
		s.mu.Unlock()
		if closing || rc.isClosed() {
			rc.failAll(errNoMasterHold)
			return false
		}
		if addr == "" || (suspect && addr == oldAddr) {
			if !waitUntil(changed, deadline) {
				rc.failAll(errNoMasterHold)
				return false
			}
			continue
		}
		up, err := s.dial(addr, deadline)
		if err != nil {
			if s.cfg.OnDialError != nil {
				s.cfg.OnDialError(addr, err)
			}
			retry := time.Now().Add(dialRetryBackoff)
			if retry.After(deadline) {
				rc.failAll(errNoMasterHold)
				return false
			}
			waitUntil(changed, retry)
			continue
		}
		if err := rc.replay(up); err != nil {
			up.Close()
			var refused replayRefused
			if errors.As(err, &refused) {
				s.log.Warn("could not restore a connection's state on the new master", "upstream", addr, "err", err)
				rc.failAll(errReplayFailed)
				return false
			}
			// The connection broke under the replay (a master dying as we
			// dialled it): like a failed dial, re-check and wait.
			if s.cfg.OnDialError != nil {
				s.cfg.OnDialError(addr, err)
			}
			retry := time.Now().Add(dialRetryBackoff)
			if retry.After(deadline) {
				rc.failAll(errNoMasterHold)
				return false
			}
			waitUntil(changed, retry)
			continue
		}
		// Register under the Server's lock, checked against the current
		// master, as connect does: a switch racing with this one must
		// find the new connection.
		s.mu.Lock()
		if s.master != addr {
			s.mu.Unlock()
			up.Close()
			continue
		}
		rc.ss.upAddr = addr
		rc.mu.Lock()
		rc.up, rc.upAddr = up, addr
		s.mu.Unlock()
		batch := append([]byte(nil), rc.sent[rc.writtenTo-rc.sentBase:]...)
		rc.writtenTo = rc.sentEnd
		moves := rc.moves
		invalidate := rc.tracking != nil && rc.resp3
		rc.mu.Unlock()
		if invalidate {
			rc.writeClient(pushInvalidateAll)
		}
		// Resent and held commands go first: the client reader stays
		// parked (recovering) until they are written, so nothing newer
		// can overtake them.
		if len(batch) > 0 {
			up.Write(batch)
		}
		rc.mu.Lock()
		out := rc.settleHead(nil)
		if rc.moves == moves {
			// Else the master moved again meanwhile: stay held; the
			// reader's next read fails and recovers again.
			rc.recovering = false
		}
		rc.resumed.Broadcast()
		rc.mu.Unlock()
		if len(out) > 0 {
			rc.writeClient(out)
		}
		s.log.Debug("connection moved to the new master", "upstream", addr, "previous", oldAddr)
		return true
	}
}

func (rc *respConn) isClosed() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.closed
}

// planLocked decides, for every queued command, what a failover does with
// it, and rebuilds the retained stream so that only what must go to the new
// master is in it, unwritten. Read-only commands in flight go again; writes
// in flight get errUnknownOutcome; commands never written wait; a broken
// transaction is answered as Redis answers one that cannot commit.
func (rc *respConn) planLocked() {
	var sent []byte
	lostMulti := rc.inMulti // the old master held a transaction under way
	lostWatch := rc.watching
	// A MULTI not yet answered after a WATCH that cannot be honoured is
	// answered here with its transaction, as queue answers one the client
	// sends later: it never reaches the new master, whose connection would
	// otherwise stay in MULTI after the local EXEC and queue the client's
	// next commands.
	watchOnly := lostWatch && !lostMulti
	rc.multiLost, rc.watchLost, rc.inMulti = false, watchOnly, false
	for i := 0; i < rc.qLen; i++ {
		e := rc.at(i)
		if e.local != nil {
			continue
		}
		if rc.watchLost && (rc.inMulti || e.kind == kindMulti) && !e.streaming && rc.answerLostTransaction(e) {
			continue
		}
		if e.streaming {
			// Cut in the middle: Redis runs only whole commands, so this
			// one did not run. The client reader drops the rest of it.
			reply := errCommandCut
			if lostMulti {
				reply = errMultiAborted
			}
			rc.cutStreaming(reply)
			continue
		}
		written := e.end <= rc.writtenTo
		switch {
		case e.kind == kindMulti:
			// MULTI never answered (else inMulti): the transaction
			// starts over on the new master with this MULTI.
			lostMulti = false
		case lostMulti:
			switch e.kind {
			case kindExec:
				e.local = errExecAbort
				if written {
					// EXEC reached the old master: the transaction may
					// have run there.
					e.local = errUnknownOutcome
				}
				lostMulti, lostWatch = false, false
			case kindDiscard:
				e.local = replyOK
				lostMulti, lostWatch = false, false
			default:
				e.local = errMultiAborted
			}
			continue
		case written && e.replies == 0:
			e.local = noReply // a silent write; nothing to tell the client
			continue
		case written && !e.retry:
			e.local = errUnknownOutcome
			continue
		}
		start := int64(len(sent))
		sent = append(sent, rc.bytesOf(e)...)
		e.start, e.end = start, int64(len(sent))
	}
	// A transaction still open after the queue was planned is answered by
	// queue() as the client goes on.
	rc.multiLost = lostMulti
	if !watchOnly {
		rc.watchLost = lostWatch
	} // else as the answers above left it: an EXEC or DISCARD ended it
	rc.watching = false // inMulti: a transaction answered above still open
	rc.sent, rc.sentBase, rc.sentEnd, rc.writtenTo = sent, 0, int64(len(sent)), 0
	rc.recount()
	// Entries answered locally keep offsets into the old stream; they are
	// never read again.
	for i := 0; i < rc.qLen; i++ {
		if e := rc.at(i); e.local != nil {
			e.start, e.end = 0, 0
		}
	}
}

// failAll answers every queued command with msg and ends the session.
func (rc *respConn) failAll(msg []byte) {
	rc.mu.Lock()
	var out []byte
	for rc.qLen > 0 {
		e := rc.at(0)
		switch {
		case e.local != nil:
			out = append(out, e.local...)
		case e.replies > 0:
			out = append(out, msg...)
		}
		rc.pop()
	}
	rc.closed = true
	rc.recovering = false
	rc.recount()
	rc.resumed.Broadcast()
	rc.mu.Unlock()
	rc.writeClient(out)
	rc.ss.client.Close()
}

// replay restores the connection's state on a new master: HELLO (or AUTH),
// SELECT and CLIENT SETNAME are sent and their replies checked; then
// subscriptions and MONITOR are re-issued, their confirmations reaching the
// client through the usual path.
func (rc *respConn) replay(up net.Conn) error {
	rc.mu.Lock()
	var cmds [][]byte
	for _, c := range [][]byte{rc.hello, rc.auth, rc.sel, rc.setname, rc.tracking} {
		if c != nil {
			cmds = append(cmds, c)
		}
	}
	var tail []byte
	for i, set := range rc.subs {
		if len(set) == 0 {
			continue
		}
		tail = redcon.AppendArray(tail, len(set)+1)
		tail = redcon.AppendBulkString(tail, subscribeCommands[i])
		for ch := range set {
			tail = redcon.AppendBulkString(tail, ch)
		}
	}
	if rc.monitor {
		tail = append(tail, "*1\r\n$7\r\nMONITOR\r\n"...)
	}
	rc.mu.Unlock()
	if len(cmds) > 0 {
		var b []byte
		for _, c := range cmds {
			b = append(b, c...)
		}
		up.SetDeadline(time.Now().Add(replayTimeout))
		if _, err := up.Write(b); err != nil {
			return fmt.Errorf("proxy: replay: %w", err)
		}
		if err := expectReplies(up, len(cmds)); err != nil {
			return err
		}
		up.SetDeadline(time.Time{})
	}
	if len(tail) > 0 {
		if _, err := up.Write(tail); err != nil {
			return fmt.Errorf("proxy: replay subscriptions: %w", err)
		}
	}
	return nil
}

// subscribeCommands re-issue each kind of subscription in rc.subs.
var subscribeCommands = [3]string{"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"}

// trackSubscription applies a (P|S)(UN)SUBSCRIBE to the set replayed on a
// new master; rc.mu is held. The command is complete and already checked by
// the command scanner, so redcon can split it (it allocates, but these
// commands are rare).
func (rc *respConn) trackSubscription(name string, raw []byte) {
	kind := 0
	switch strings.TrimPrefix(name, "un") {
	case "psubscribe":
		kind = 1
	case "ssubscribe":
		kind = 2
	}
	_, args, _, _, err := redcon.ReadNextCommand(raw, nil)
	if err != nil || len(args) == 0 {
		return
	}
	if strings.HasPrefix(name, "un") {
		if len(args) == 1 {
			rc.subs[kind] = nil // no arguments: all of this kind
		}
		for _, a := range args[1:] {
			delete(rc.subs[kind], string(a))
		}
		return
	}
	if rc.subs[kind] == nil {
		rc.subs[kind] = map[string]struct{}{}
	}
	for _, a := range args[1:] {
		rc.subs[kind][string(a)] = struct{}{}
	}
}

// replayRefused is the new master answering a replayed command with an
// error (wrong password, say): retrying cannot help.
type replayRefused struct{ msg string }

func (e replayRefused) Error() string { return e.msg }

// expectReplies reads n replies and fails on the first error reply.
func expectReplies(c net.Conn, n int) error {
	sc := resp.NewScanner(resp.Limits{MaxValue: 1 << 20})
	buf := make([]byte, 4096)
	got := 0
	for got < n {
		k, err := c.Read(buf)
		chunk := buf[:k]
		for len(chunk) > 0 {
			m, complete, serr := sc.Next(chunk)
			chunk = chunk[m:]
			if serr != nil {
				return fmt.Errorf("proxy: replay reply: %w", serr)
			}
			if complete {
				if sc.Type() == '-' {
					return replayRefused{fmt.Sprintf("proxy: replay refused: %s", sc.Head())}
				}
				got++
			}
		}
		if err != nil && got < n {
			return fmt.Errorf("proxy: replay reply: %w", err)
		}
	}
	return nil
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
