package proxy

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/sentproxy/sentproxy/internal/resp"
)

// Modes of a route.
const (
	// ModeTCP splices bytes both ways without looking at them.
	ModeTCP = "tcp"
	// ModeRESP parses commands and replies (without re-encoding them) so
	// that it can keep count of what is in flight.
	ModeRESP = "resp"
)

const (
	respReadBuf = 64 << 10
	// maxCommandBytes bounds one client command held in memory; a longer
	// one is refused. Replies of any size stream through.
	maxCommandBytes = 64 << 20
)

// respConn is the command-aware half of a session: it keeps track of which
// commands are in flight so that replies can be matched to them.
//
// Two goroutines run per client, as in TCP mode: one reads commands and
// writes them to the master, one reads replies and writes them to the
// client. Both forward the bytes they read as they are, in one write per
// read, so the steady state costs two reads, two writes and a parse; the
// only shared state is the count of replies owed, under mu.
type respConn struct {
	ss *session

	mu       sync.Mutex
	owed     int    // top-level replies the master still owes the client
	stream   bool   // pub/sub (RESP2) or MONITOR: replies are not counted
	resp3    bool   // HELLO 3 succeeded; pushes are typed '>'
	protoErr []byte // a protocol error to send once owed reaches 0, then close
	replyOff bool   // CLIENT REPLY OFF in force
	skipNext bool   // CLIENT REPLY SKIP: the next command gets no reply

	wmu sync.Mutex // serialises writes to the client
}

// runRESP is run() for ModeRESP.
func (ss *session) runRESP() {
	rc := &respConn{ss: ss}
	done := make(chan direction, 2)
	go respClientToMaster(rc, done)
	go respMasterToClient(rc, done)
	first := <-done
	if first == masterToClient {
		ss.client.Close()
		ss.up.Close()
	}
	<-done
	ss.client.Close()
	ss.up.Close()
	switch {
	case ss.cutReason.Load() != nil:
		ss.reason = *ss.cutReason.Load()
	case first == clientToMaster:
		ss.reason = ReasonClient
	default:
		ss.reason = ReasonUpstream
	}
}

// respClientToMaster reads client commands, checks their framing with
// Redis's rules and forwards each batch of complete commands in one write.
func respClientToMaster(rc *respConn, done chan<- direction) {
	ss := rc.ss
	defer func() {
		closeWrite(ss.up)
		done <- clientToMaster
	}()
	cs := resp.NewCommandScanner(0)
	buf := make([]byte, respReadBuf)
	// buf[start:end] is read but not yet forwarded; buf[start:scanned] is
	// the part of an unfinished command the scanner has already seen.
	start, scanned, end := 0, 0, 0
	for {
		if end == len(buf) {
			if start > 0 {
				end = copy(buf, buf[start:end])
				scanned -= start
				start = 0
			} else if len(buf) < maxCommandBytes {
				buf = append(buf, make([]byte, len(buf))...)
			} else {
				rc.failProtocol("sentproxy: command longer than 64 MiB")
				return
			}
		}
		n, err := ss.client.Read(buf[end:])
		end += n
		fwdEnd := start // end of the last complete command
		for scanned < end {
			k, complete, perr := cs.Next(buf[scanned:end])
			scanned += k
			if perr != nil {
				ss.c2m += rc.forward(buf[start:fwdEnd])
				rc.failProtocol(perr.Error())
				return
			}
			if complete {
				rc.account(cs.Command())
				fwdEnd = scanned
			}
		}
		if fwdEnd > start {
			w := rc.forward(buf[start:fwdEnd])
			ss.c2m += w
			if w < int64(fwdEnd-start) {
				return
			}
			start = fwdEnd
		}
		if start == end {
			start, scanned, end = 0, 0, 0
		}
		if err != nil {
			return
		}
	}
}

func (rc *respConn) forward(b []byte) int64 {
	if len(b) == 0 {
		return 0
	}
	n, _ := rc.ss.up.Write(b)
	return int64(n)
}

// account records the replies a command will get. It runs before the
// command is written, so a reply can never arrive for a command not yet
// counted.
func (rc *respConn) account(c *resp.Command) {
	if c.Argc == 0 {
		return // Redis skips empty commands without a reply
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	name := c.Name()
	switch string(name) {
	case "subscribe", "psubscribe", "ssubscribe":
		if !rc.resp3 {
			// RESP2 subscribed mode: messages arrive unasked, so from
			// here on the replies are a stream, not counted.
			rc.stream = true
		}
		return
	case "monitor":
		rc.stream = true
		return
	case "client":
		if arg, _ := c.Arg(1); equalFold(arg, "reply") && c.Argc == 3 {
			mode, _ := c.Arg(2)
			switch {
			case equalFold(mode, "off"):
				rc.replyOff = true
				return
			case equalFold(mode, "skip"):
				rc.skipNext = true
				return
			case equalFold(mode, "on"):
				rc.replyOff, rc.skipNext = false, false
				rc.owed++
				return
			}
		}
	case "hello":
		if v, _ := c.Arg(1); len(v) == 1 && v[0] == '3' {
			rc.resp3 = true
		} else if len(v) == 1 && v[0] == '2' {
			rc.resp3 = false
		}
	case "reset":
		rc.stream, rc.replyOff, rc.skipNext = false, false, false
	}
	if rc.replyOff || rc.stream {
		return
	}
	if rc.skipNext {
		rc.skipNext = false
		return
	}
	rc.owed++
}

// failProtocol answers a malformed command as Redis does (an error after the
// replies to the commands before it, then the close).
func (rc *respConn) failProtocol(msg string) {
	rc.mu.Lock()
	line := []byte("-ERR " + msg + "\r\n")
	if rc.owed > 0 && !rc.stream {
		rc.protoErr = line // respMasterToClient sends it when the replies are in
		rc.mu.Unlock()
		return
	}
	rc.mu.Unlock()
	rc.writeClient(line)
	rc.ss.client.Close()
	rc.ss.up.Close()
}

func (rc *respConn) writeClient(b []byte) (int, error) {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	return rc.ss.client.Write(b)
}

// respMasterToClient reads replies, counts complete ones against what is
// owed, and forwards every read to the client as it came, so that a reply
// of any size streams through.
func respMasterToClient(rc *respConn, done chan<- direction) {
	ss := rc.ss
	defer func() { done <- masterToClient }()
	sc := resp.NewScanner(resp.Limits{})
	buf := make([]byte, respReadBuf)
	for {
		n, err := ss.up.Read(buf)
		if n > 0 {
			var protoErr []byte
			chunk := buf[:n]
			for len(chunk) > 0 {
				k, complete, serr := sc.Next(chunk)
				chunk = chunk[k:]
				if serr != nil {
					// The master broke framing: nothing after this can be
					// matched. End the session.
					return
				}
				if complete {
					protoErr = rc.replied(sc.Type(), sc.Head())
				}
			}
			w, werr := rc.writeClient(buf[:n])
			ss.m2c += int64(w)
			if werr != nil {
				return
			}
			if protoErr != nil {
				rc.writeClient(protoErr)
				ss.client.Close()
				ss.up.Close()
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				ss.server.log.Debug("master read failed", "err", err)
			}
			return
		}
	}
}

// replied settles one complete top-level value from the master. It returns
// a pending protocol error when this reply was the last one owed before it.
func (rc *respConn) replied(typ byte, head []byte) []byte {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if typ == '>' {
		return nil // RESP3 push: never a reply to a command
	}
	if rc.stream {
		if typ == '+' && string(head) == "RESET" {
			rc.stream = false
		}
		return nil
	}
	if rc.owed > 0 {
		rc.owed--
	}
	if rc.owed == 0 && rc.protoErr != nil {
		p := rc.protoErr
		rc.protoErr = nil
		return p
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
