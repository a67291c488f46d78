package discovery

import (
	"errors"
	"fmt"
	"net"

	"github.com/sentproxy/sentproxy/internal/resp"
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

// guardLimits are the limits above, for the RESP framer the proxy's
// command-aware mode uses on master replies.
var guardLimits = resp.Limits{
	MaxLine:  guardMaxLine,
	MaxBulk:  guardMaxBulk,
	MaxElems: guardMaxElems,
	MaxDepth: guardMaxDepth,
	MaxValue: guardMaxReplySize,
}

// respScanner checks a stream of replies against guardLimits; its zero
// value is ready to use.
type respScanner struct{ sc *resp.Scanner }

func (s *respScanner) feed(b []byte) error {
	if s.sc == nil {
		s.sc = resp.NewScanner(guardLimits)
	}
	for len(b) > 0 {
		n, _, err := s.sc.Next(b)
		if err != nil {
			return fmt.Errorf("%w: %w", errGuard, err)
		}
		b = b[n:]
	}
	return nil
}
