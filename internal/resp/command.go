package resp

import (
	"fmt"

	"github.com/tidwall/redcon"
)

// Redis's own limits on commands (server.h), so that a client gets from us
// the errors Redis itself would give.
const (
	maxMultibulk  = 1024 * 1024 // most arguments in one command
	maxInline     = 64 << 10    // longest inline command or header line
	argKeep       = 64          // bytes of each leading argument kept for classification
	keptArgs      = 4           // the name and three arguments
	maxHeaderLine = 32          // "*1048576" or "$536870912" and some slack
)

// ProtocolError is what Redis would answer before closing the connection,
// e.g. "Protocol error: invalid bulk length".
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

// Command is what a CommandScanner keeps of a command: its argument count
// and the first bytes of its first four arguments. The name is lower-cased.
type Command struct {
	Argc   int
	Inline bool
	args   [keptArgs][argKeep]byte
	lens   [keptArgs]int // bytes kept
	full   [keptArgs]bool
}

// Name is the command's name, lower-cased (at most 64 bytes kept).
func (c *Command) Name() []byte { return c.args[0][:c.lens[0]] }

// Arg returns the start of argument i (1..3) and whether it was kept whole.
func (c *Command) Arg(i int) ([]byte, bool) {
	if i <= 0 || i >= keptArgs || i >= c.Argc {
		return nil, false
	}
	return c.args[i][:c.lens[i]], c.full[i]
}

// CommandScanner finds the ends of client commands, multibulk or inline,
// in a byte stream, with Redis's own protocol rules and error messages.
type CommandScanner struct {
	maxBulk int64

	state   int
	line    [maxHeaderLine]byte
	lineLen int
	argc    int // arguments announced
	argi    int // argument being read
	skip    int64
	inline  []byte // an inline command's line, up to maxInline
	cmd     Command
	argsBuf [][]byte
}

const (
	csStart = iota
	csCount
	csArgHeader
	csArgBody
	csArgCR
	csArgLF
	csInline
)

// NewCommandScanner returns a scanner; maxBulk <= 0 means Redis's default
// proto-max-bulk-len of 512 MiB.
func NewCommandScanner(maxBulk int64) *CommandScanner {
	if maxBulk <= 0 {
		maxBulk = 512 << 20
	}
	return &CommandScanner{maxBulk: maxBulk}
}

// Command returns the command completed by the last Next that reported done.
func (s *CommandScanner) Command() *Command { return &s.cmd }

// InProgress reports whether the scanner is inside a command.
func (s *CommandScanner) InProgress() bool { return s.state != csStart }

// Next consumes b up to the end of the first command that completes in it
// and reports whether one did. Bytes consumed without done belong to an
// unfinished command. Empty multibulks ("*0") and empty inline lines are
// consumed as complete commands with Argc 0, which callers skip, as Redis
// does. An error is a *ProtocolError; the stream cannot be resumed.
func (s *CommandScanner) Next(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		switch s.state {
		case csStart:
			s.cmd.Argc, s.cmd.Inline = 0, false
			s.cmd.lens, s.cmd.full = [keptArgs]int{}, [keptArgs]bool{}
			s.lineLen = 0
			if b[n] == '*' {
				s.state = csCount
				n++
			} else {
				s.state = csInline
				s.inline = s.inline[:0]
			}
		case csCount, csArgHeader:
			c := b[n]
			n++
			if c != '\n' {
				if s.lineLen >= maxHeaderLine {
					if s.state == csCount {
						return n, false, &ProtocolError{"too big mbulk count string"}
					}
					return n, false, &ProtocolError{"too big bulk count string"}
				}
				s.line[s.lineLen] = c
				s.lineLen++
				continue
			}
			if d, err := s.header(); err != nil || d {
				return n, d, err
			}
		case csArgBody:
			k := int64(len(b) - n)
			if k > s.skip {
				k = s.skip
			}
			// Keep the start of the leading arguments.
			if i := s.argi; i < keptArgs {
				for j := 0; j < int(k) && s.cmd.lens[i] < argKeep; j++ {
					c := b[n+j]
					if i == 0 && c >= 'A' && c <= 'Z' {
						c += 'a' - 'A'
					}
					s.cmd.args[i][s.cmd.lens[i]] = c
					s.cmd.lens[i]++
				}
			}
			s.skip -= k
			n += int(k)
			if s.skip == 0 {
				s.state = csArgCR
			}
		case csArgCR, csArgLF:
			// Redis skips the two bytes after a payload without looking
			// at them (processMultibulkBuffer), so a client's "PINGxx"
			// is a PING there; parsing the same way keeps us in step.
			n++
			if s.state == csArgCR {
				s.state = csArgLF
				continue
			}
			s.argi++
			if s.argi == s.argc {
				s.state = csStart
				return n, true, nil
			}
			s.state, s.lineLen = csArgHeader, 0
		case csInline:
			c := b[n]
			n++
			if c != '\n' {
				if len(s.inline) >= maxInline {
					return n, false, &ProtocolError{"too big inline request"}
				}
				s.inline = append(s.inline, c)
				continue
			}
			s.state = csStart
			return n, true, s.splitInline()
		}
	}
	return n, false, nil
}

// header handles a complete "*N" or "$N" line; it reports whether the
// command is complete (an empty multibulk).
func (s *CommandScanner) header() (bool, error) {
	line := s.line[:s.lineLen]
	if len(line) == 0 || line[len(line)-1] != '\r' {
		if s.state == csCount {
			return false, &ProtocolError{"invalid multibulk length"}
		}
		return false, &ProtocolError{"invalid bulk length"}
	}
	line = line[:len(line)-1]
	if s.state == csCount {
		n, ok := atoi(line)
		if !ok || n > maxMultibulk {
			return false, &ProtocolError{"invalid multibulk length"}
		}
		if n <= 0 {
			s.state = csStart
			return true, nil
		}
		s.argc, s.argi, s.cmd.Argc = int(n), 0, int(n)
		s.state, s.lineLen = csArgHeader, 0
		return false, nil
	}
	if len(line) == 0 || line[0] != '$' {
		got := byte(' ')
		if len(line) > 0 {
			got = line[0]
		}
		return false, &ProtocolError{fmt.Sprintf("expected '$', got '%c'", got)}
	}
	n, ok := atoi(line[1:])
	if !ok || n < 0 || n > s.maxBulk {
		return false, &ProtocolError{"invalid bulk length"}
	}
	if s.argi < keptArgs {
		s.cmd.full[s.argi] = n <= argKeep
	}
	s.skip = n
	s.state = csArgBody
	if n == 0 {
		s.state = csArgCR
	}
	return false, nil
}

// splitInline parses an inline command ("SET k v") with redcon, which
// implements Redis's quoting rules. Inline commands come from people typing
// into telnet, so the allocation here is of no concern.
func (s *CommandScanner) splitInline() error {
	s.cmd.Inline = true
	line := append(s.inline, '\n')
	complete, args, _, _, err := redcon.ReadNextCommand(line, s.argsBuf)
	if err != nil {
		return &ProtocolError{"unbalanced quotes in request"}
	}
	if !complete {
		return nil // blank line: Argc stays 0
	}
	s.argsBuf = args[:0]
	s.cmd.Argc = len(args)
	for i := 0; i < len(args) && i < keptArgs; i++ {
		a := args[i]
		k := copy(s.cmd.args[i][:], a)
		if i == 0 {
			for j := 0; j < k; j++ {
				if c := s.cmd.args[0][j]; c >= 'A' && c <= 'Z' {
					s.cmd.args[0][j] = c + 'a' - 'A'
				}
			}
		}
		s.cmd.lens[i], s.cmd.full[i] = k, len(a) <= argKeep
	}
	return nil
}

func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// AppendCommand appends args as a RESP array of bulk strings, the form a
// client sends a command in.
func AppendCommand(b []byte, args ...string) []byte {
	b = redcon.AppendArray(b, len(args))
	for _, a := range args {
		b = redcon.AppendBulkString(b, a)
	}
	return b
}
