// Package resp frames RESP2 and RESP3 streams without copying them: it finds
// where each value or command ends, and keeps just enough of it (types,
// lengths, the first bytes of a line, a command's name and first arguments)
// to classify it. Payloads are never copied, so values of any size stream
// through with constant memory.
//
// Both scanners are incremental: feed them whatever a Read returned, in any
// split, and they keep their place. Neither allocates after construction.
package resp

import (
	"errors"
	"fmt"
	"math"
)

// ErrProtocol wraps every framing error.
var ErrProtocol = errors.New("protocol error")

// Limits bound what a Scanner accepts; zero means the default.
type Limits struct {
	MaxLine  int   // longest header or simple line; default 64 KiB
	MaxBulk  int64 // longest bulk payload; default 512 MiB (Redis's proto-max-bulk-len)
	MaxElems int64 // most elements in one aggregate; default 1<<31
	MaxDepth int   // deepest nesting; default (and at most) 64
	MaxValue int64 // most bytes in one top-level value; default unlimited
}

const maxDepth = 64

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = 64 << 10
	}
	if l.MaxBulk <= 0 {
		l.MaxBulk = 512 << 20
	}
	if l.MaxElems <= 0 {
		l.MaxElems = 1 << 31
	}
	if l.MaxDepth <= 0 || l.MaxDepth > maxDepth {
		l.MaxDepth = maxDepth
	}
	return l
}

// HeadSize is how many bytes of a value's first line a Scanner keeps.
const HeadSize = 48

// Scanner finds the ends of top-level RESP values (replies, pushes) in a
// byte stream.
type Scanner struct {
	lim Limits

	inLine  bool
	lineLen int
	hdr     [24]byte // the header line of an aggregate or bulk, to parse its length
	hdrLen  int
	typ     byte // type byte of the line being read
	skip    int64
	depth   int
	stack   [maxDepth]int64
	attr    [maxDepth]bool // the frame is an attribute: completing it does not complete an element
	size    int64          // bytes of the current top-level value so far

	// Of the last top-level value completed:
	top     byte
	head    [HeadSize]byte
	headLen int
}

// NewScanner returns a Scanner with the given limits.
func NewScanner(lim Limits) *Scanner { return &Scanner{lim: lim.withDefaults()} }

// Reset forgets any partial value, e.g. after the stream was replaced.
func (s *Scanner) Reset() {
	lim := s.lim
	*s = Scanner{lim: lim}
}

// Type is the type byte of the last completed top-level value: '+', '-',
// ':', '$', '*', '>', '%', '~', '_', ',', '#', '(', '=', '!'.
func (s *Scanner) Type() byte { return s.top }

// Head is the start of the last completed top-level value's first line,
// without its type byte (for an error, the error message; for a push or an
// array, its length).
func (s *Scanner) Head() []byte { return s.head[:s.headLen] }

// InValue reports whether the scanner is inside a value (part of it has
// been consumed and it is not complete).
func (s *Scanner) InValue() bool { return s.inLine || s.skip > 0 || s.depth > 0 }

// Next scans b and stops right after the first top-level value that ends
// in it. It returns how many bytes it consumed and whether a value ended
// there; call it again with the rest. With done false, all of b belongs to
// a value not yet complete.
func (s *Scanner) Next(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		if s.skip > 0 {
			k := int64(len(b) - n)
			if k > s.skip {
				k = s.skip
			}
			s.skip -= k
			n += int(k)
			if err := s.grow(k); err != nil {
				return n, false, err
			}
			if s.skip == 0 {
				if s.elementDone() {
					return n, true, nil
				}
			}
			continue
		}
		c := b[n]
		n++
		if err := s.grow(1); err != nil {
			return n, false, err
		}
		if !s.inLine {
			s.inLine, s.typ, s.lineLen, s.hdrLen = true, c, 0, 0
			if s.depth == 0 {
				s.top, s.headLen = c, 0
			}
			continue
		}
		if c == '\n' {
			s.inLine = false
			finished, err := s.line()
			if err != nil {
				return n, false, err
			}
			if finished {
				return n, true, nil
			}
			continue
		}
		s.lineLen++
		if s.lineLen > s.lim.MaxLine {
			return n, false, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, s.lim.MaxLine)
		}
		if s.depth == 0 && s.headLen < HeadSize && c != '\r' {
			s.head[s.headLen] = c
			s.headLen++
		}
		if s.hdrLen < len(s.hdr) {
			s.hdr[s.hdrLen] = c
			s.hdrLen++
		}
	}
	return n, false, nil
}

func (s *Scanner) grow(k int64) error {
	s.size += k
	if s.lim.MaxValue > 0 && s.size > s.lim.MaxValue {
		return fmt.Errorf("%w: value longer than %d bytes", ErrProtocol, s.lim.MaxValue)
	}
	return nil
}

// line handles a complete line; it reports whether a top-level value ended.
func (s *Scanner) line() (bool, error) {
	switch s.typ {
	case '+', '-', ':', ',', '#', '_', '(':
		return s.elementDone(), nil
	case '$', '!', '=':
		n, err := parseLength(s.hdr[:s.hdrLen], s.typ == '$')
		if err != nil {
			return false, err
		}
		if n < 0 {
			return s.elementDone(), nil
		}
		if n > s.lim.MaxBulk {
			return false, fmt.Errorf("%w: bulk length %d over %d", ErrProtocol, n, s.lim.MaxBulk)
		}
		s.skip = n + 2
		return false, nil
	case '*', '~', '>', '%', '|':
		n, err := parseLength(s.hdr[:s.hdrLen], s.typ == '*')
		if err != nil {
			return false, err
		}
		if n > s.lim.MaxElems {
			return false, fmt.Errorf("%w: aggregate of %d elements over %d", ErrProtocol, n, s.lim.MaxElems)
		}
		if s.typ == '%' || s.typ == '|' {
			n *= 2
		}
		if n <= 0 {
			if s.typ == '|' {
				return false, nil
			}
			return s.elementDone(), nil
		}
		if s.depth >= s.lim.MaxDepth {
			return false, fmt.Errorf("%w: nested deeper than %d", ErrProtocol, s.lim.MaxDepth)
		}
		s.stack[s.depth] = n
		s.attr[s.depth] = s.typ == '|'
		s.depth++
		return false, nil
	default:
		return false, fmt.Errorf("%w: unknown RESP type byte %q", ErrProtocol, s.typ)
	}
}

// elementDone records a complete value and closes every aggregate it
// completes. It reports whether a top-level value ended.
func (s *Scanner) elementDone() bool {
	for s.depth > 0 {
		top := s.depth - 1
		s.stack[top]--
		if s.stack[top] > 0 {
			return false
		}
		s.depth--
		if s.attr[top] {
			// An attribute annotates the value that follows it; it is
			// not an element of its parent.
			return false
		}
	}
	s.size = 0
	return true
}

// parseLength parses a RESP length; -1 is allowed where nil is (nullable).
func parseLength(b []byte, nullable bool) (int64, error) {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, fmt.Errorf("%w: bad length %q", ErrProtocol, b)
	}
	if b[0] == '-' {
		if nullable && len(b) == 2 && b[1] == '1' {
			return -1, nil
		}
		return 0, fmt.Errorf("%w: bad length %q", ErrProtocol, b)
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad length %q", ErrProtocol, b)
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			// 19 digits can pass int64; wrapped round, the length would
			// read as a nil and the stream lose its framing.
			return 0, fmt.Errorf("%w: length %q overflows", ErrProtocol, b)
		}
		n = n*10 + d
	}
	return n, nil
}
