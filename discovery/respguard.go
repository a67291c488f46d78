package discovery

import (
	"errors"
	"fmt"
	"math"
	"net"
)

// Limits on what a Sentinel or a master may send on the connections this
// package opens. go-redis sizes its buffers from the lengths in a reply's
// headers, so a broken or hostile peer announcing "*9999999999" or a 4 GiB
// bulk string would make it allocate without bound and kill the process.
// Real SENTINEL and ROLE replies are a few KiB at most.
const (
	guardMaxLine      = 64 << 10 // longest header or simple-string line
	guardMaxBulk      = 1 << 20  // longest bulk string
	guardMaxElems     = 4096     // most elements in one aggregate
	guardMaxDepth     = 8        // deepest nesting of aggregates
	guardMaxReplySize = 4 << 20  // most bytes in one top-level reply
)

// errGuard marks a reply rejected by the guard; the connection is unusable
// afterwards and go-redis discards it.
var errGuard = errors.New("reply exceeds sentproxy's limits")

// guardedConn checks every byte a peer sends against the limits above before
// go-redis sees it. It parses just enough RESP (headers and bulk lengths) to
// keep its place in the stream; it never copies payloads.
type guardedConn struct {
	net.Conn
	scan respScanner
}

func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if gerr := c.scan.feed(p[:n]); gerr != nil {
			// Closing makes every later use fail fast instead of reading a
			// stream whose framing we no longer trust.
			c.Conn.Close()
			return 0, fmt.Errorf("discovery: peer %s: %w", c.RemoteAddr(), gerr)
		}
	}
	return n, err
}

// respScanner is a streaming RESP2/RESP3 framing checker.
type respScanner struct {
	line      []byte // header line collected so far (without CRLF)
	inLine    bool   // inside a header or simple line
	skip      int64  // payload bytes (plus CRLF) still to pass over
	stack     []int64
	replySize int64
}

func (s *respScanner) feed(b []byte) error {
	for len(b) > 0 {
		if s.skip > 0 {
			k := int64(len(b))
			if k > s.skip {
				k = s.skip
			}
			s.skip -= k
			s.replySize += k
			if s.replySize > guardMaxReplySize {
				return fmt.Errorf("%w: reply longer than %d bytes", errGuard, guardMaxReplySize)
			}
			b = b[k:]
			if s.skip == 0 {
				s.valueDone()
			}
			continue
		}
		c := b[0]
		b = b[1:]
		s.replySize++
		if s.replySize > guardMaxReplySize {
			return fmt.Errorf("%w: reply longer than %d bytes", errGuard, guardMaxReplySize)
		}
		if c == '\n' && s.inLine {
			if err := s.header(); err != nil {
				return err
			}
			continue
		}
		if c == '\r' && s.inLine {
			continue
		}
		if len(s.line) >= guardMaxLine {
			return fmt.Errorf("%w: line longer than %d bytes", errGuard, guardMaxLine)
		}
		s.inLine = true
		s.line = append(s.line, c)
	}
	return nil
}

func (s *respScanner) header() error {
	line := s.line
	s.line = s.line[:0]
	s.inLine = false
	if len(line) == 0 {
		return fmt.Errorf("%w: empty line", errGuard)
	}
	switch line[0] {
	case '+', '-', ':', ',', '#', '_', '(':
		s.valueDone()
		return nil
	case '$', '!', '=':
		n, err := parseLen(line[1:])
		if err != nil {
			return err
		}
		if n < 0 {
			s.valueDone()
			return nil
		}
		if n > guardMaxBulk {
			return fmt.Errorf("%w: bulk string of %d bytes", errGuard, n)
		}
		s.skip = n + 2
		return nil
	case '*', '~', '>', '%':
		n, err := parseLen(line[1:])
		if err != nil {
			return err
		}
		if n > guardMaxElems {
			return fmt.Errorf("%w: aggregate of %d elements", errGuard, n)
		}
		if line[0] == '%' {
			n *= 2
		}
		if n <= 0 {
			s.valueDone()
			return nil
		}
		if len(s.stack) >= guardMaxDepth {
			return fmt.Errorf("%w: nested deeper than %d", errGuard, guardMaxDepth)
		}
		s.stack = append(s.stack, n)
		return nil
	default:
		return fmt.Errorf("%w: unknown RESP type byte %q", errGuard, line[0])
	}
}

// valueDone closes a complete value and every aggregate it completes.
func (s *respScanner) valueDone() {
	for len(s.stack) > 0 {
		top := len(s.stack) - 1
		s.stack[top]--
		if s.stack[top] > 0 {
			return
		}
		s.stack = s.stack[:top]
	}
	s.replySize = 0
}

func parseLen(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, fmt.Errorf("%w: bad length %q", errGuard, b)
	}
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
		if len(b) == 0 {
			return 0, fmt.Errorf("%w: bad length", errGuard)
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad length %q", errGuard, b)
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, fmt.Errorf("%w: length %q overflows", errGuard, b)
		}
		n = n*10 + d
	}
	if neg {
		if n != 1 {
			return 0, fmt.Errorf("%w: negative length -%d", errGuard, n)
		}
		return -1, nil
	}
	return n, nil
}
