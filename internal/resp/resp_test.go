package resp

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

// scanAll feeds in to a Scanner in pieces of size step and returns the
// offsets at which top-level values ended and the types seen.
func scanAll(t testing.TB, s *Scanner, in []byte, step int) (ends []int, types []byte, heads []string, err error) {
	off := 0
	for off < len(in) {
		end := min(off+step, len(in))
		chunk := in[off:end]
		for len(chunk) > 0 {
			n, done, err := s.Next(chunk)
			if err != nil {
				return ends, types, heads, err
			}
			off += n
			chunk = chunk[n:]
			if done {
				ends = append(ends, off)
				types = append(types, s.Type())
				heads = append(heads, string(s.Head()))
			}
		}
	}
	return ends, types, heads, nil
}

func TestScannerFramesEveryType(t *testing.T) {
	values := []string{
		"+OK\r\n",
		"-READONLY You can't write against a read only replica.\r\n",
		":42\r\n",
		"$5\r\nhello\r\n",
		"$-1\r\n",
		"$0\r\n\r\n",
		"*-1\r\n",
		"*0\r\n",
		"*2\r\n$3\r\nfoo\r\n*1\r\n:1\r\n",
		"_\r\n",
		",3.14\r\n",
		"#t\r\n",
		"(12345678901234567890\r\n",
		"!3\r\nERR\r\n",
		"=8\r\ntxt:abcd\r\n",
		"%2\r\n+a\r\n:1\r\n+b\r\n*1\r\n$1\r\nx\r\n",
		"~2\r\n+a\r\n+b\r\n",
		">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\nbody\r\n",
		"|1\r\n+key\r\n+val\r\n:7\r\n", // an attribute, then the value it annotates
		"$12\r\nbinary\r\n\x00\xff..\r\n",
	}
	in := []byte(strings.Join(values, ""))
	var want []int
	off := 0
	for _, v := range values {
		off += len(v)
		want = append(want, off)
	}
	for step := 1; step <= len(in); step++ {
		ends, types, heads, err := scanAll(t, NewScanner(Limits{}), in, step)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if len(ends) != len(want) {
			t.Fatalf("step %d: %d values; want %d (ends %v)", step, len(ends), len(want), ends)
		}
		for i := range want {
			if ends[i] != want[i] {
				t.Fatalf("step %d: value %d ends at %d; want %d", step, i, ends[i], want[i])
			}
			wantType := values[i][0]
			if wantType == '|' {
				wantType = ':' // the type is the annotated value's
			}
			if types[i] != wantType {
				t.Fatalf("step %d: value %d type %q; want %q", step, i, types[i], wantType)
			}
		}
		if heads[1] != "READONLY You can't write against a read only rep" {
			t.Fatalf("head of the error = %q", heads[1])
		}
	}
}

func TestScannerLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  Limits
		in   string
	}{
		{"bulk over the limit", Limits{MaxBulk: 10}, "$11\r\n"},
		{"aggregate over the limit", Limits{MaxElems: 3}, "*4\r\n"},
		{"nested too deep", Limits{MaxDepth: 2}, "*1\r\n*1\r\n*1\r\n"},
		{"line too long", Limits{MaxLine: 8}, "+123456789\r\n"},
		{"value too long", Limits{MaxValue: 10}, "$20\r\n0123456789"},
		{"unknown type", Limits{}, "?x\r\n"},
		{"negative length", Limits{}, "$-2\r\n"},
		{"nil where none is allowed", Limits{}, "%-1\r\n"},
		{"not a number", Limits{}, "*x\r\n"},
		{"huge number", Limits{}, "$99999999999999999999\r\n"},
		// 19 digits fit the length check but not int64: wrapped round it
		// would read as a nil bulk and the stream would lose its framing.
		{"19-digit bulk length beyond int64", Limits{MaxBulk: 1 << 62}, "$9223372036854775808\r\n"},
		{"19-digit aggregate length beyond int64", Limits{MaxElems: 1 << 62}, "*9999999999999999999\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := scanAll(t, NewScanner(tc.lim), []byte(tc.in), len(tc.in))
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v; want a protocol error", err)
			}
		})
	}
}

// redcon's ReadNextRESP is the oracle for RESP2: wherever it finds a
// complete value, the Scanner must end one at the same offset.
func FuzzScannerAgainstRedcon(f *testing.F) {
	for _, seed := range []string{"+OK\r\n", "*2\r\n$1\r\na\r\n:5\r\n", "$-1\r\n", "-ERR x\r\n*1\r\n", "*1\r\n*1\r\n$0\r\n\r\n"} {
		f.Add([]byte(seed), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		s := NewScanner(Limits{MaxDepth: 16, MaxBulk: 1 << 20, MaxElems: 1 << 16})
		ends, _, _, err := scanAll(t, s, in, int(step)+1)
		if s.depth > 16 || s.lineLen > 64<<10 {
			t.Fatalf("state grew past its limits: depth %d line %d", s.depth, s.lineLen)
		}
		n, v := redcon.ReadNextRESP(in)
		if v.Type == 0 || err != nil {
			return
		}
		// redcon accepts lengths like "+5" or " 5" that Redis never sends;
		// compare only where its header digits are plain.
		if len(ends) == 0 || ends[0] != n {
			if plainRESP2(in[:n]) {
				t.Fatalf("redcon frames a value of %d bytes in %q; Scanner ends %v", n, in, ends)
			}
		}
	})
}

// plainRESP2 reports whether every header in b has plain decimal digits.
func plainRESP2(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == '*' || line[0] == '$' || line[0] == ':' {
			digits := line[1:]
			if len(digits) > 0 && digits[0] == '-' {
				digits = digits[1:]
			}
			for _, c := range digits {
				if c < '0' || c > '9' {
					return false
				}
			}
		}
	}
	return true
}

func scanCommands(s *CommandScanner, in []byte, step int) (ends []int, names []string, argc []int, err error) {
	off := 0
	for off < len(in) {
		end := min(off+step, len(in))
		chunk := in[off:end]
		for len(chunk) > 0 {
			n, done, err := s.Next(chunk)
			off += n
			chunk = chunk[n:]
			if err != nil {
				return ends, names, argc, err
			}
			if done {
				ends = append(ends, off)
				names = append(names, string(s.Command().Name()))
				argc = append(argc, s.Command().Argc)
			}
		}
	}
	return ends, names, argc, nil
}

func TestCommandScanner(t *testing.T) {
	cmds := []string{
		"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
		"*1\r\n$4\r\nPING\r\n",
		"*0\r\n",
		"GET \"quoted key\"\r\n",
		"*2\r\n$6\r\nselect\r\n$1\r\n3\r\n",
		"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
		"\r\n",
	}
	in := []byte(strings.Join(cmds, ""))
	wantNames := []string{"set", "ping", "", "get", "select", "get", ""}
	wantArgc := []int{3, 1, 0, 2, 2, 2, 0}
	for step := 1; step <= len(in); step++ {
		ends, names, argc, err := scanCommands(NewCommandScanner(0), in, step)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if strings.Join(names, ",") != strings.Join(wantNames, ",") {
			t.Fatalf("step %d: names %q; want %q", step, names, wantNames)
		}
		for i := range argc {
			if argc[i] != wantArgc[i] {
				t.Fatalf("step %d: argc %v; want %v", step, argc, wantArgc)
			}
		}
		if ends[len(ends)-1] != len(in) {
			t.Fatalf("step %d: ends %v", step, ends)
		}
	}
	s := NewCommandScanner(0)
	scanCommands(s, []byte(cmds[4]), 1)
	if db, full := s.Command().Arg(1); string(db) != "3" || !full {
		t.Fatalf("SELECT arg = %q (full %v); want %q", db, full, "3")
	}
}

// Each malformed command gets the error Redis itself gives.
func TestCommandScannerProtocolErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"*x\r\n", "Protocol error: invalid multibulk length"},
		{"*1048577\r\n", "Protocol error: invalid multibulk length"},
		{"*1\n", "Protocol error: invalid multibulk length"},
		{"*1\r\n:5\r\n", "Protocol error: expected '$', got ':'"},
		{"*1\r\n$-2\r\n", "Protocol error: invalid bulk length"},
		{"*1\r\n$x\r\n", "Protocol error: invalid bulk length"},
		{"*1\r\n$536870913\r\n", "Protocol error: invalid bulk length"},
		{"*1\r\n$" + strings.Repeat("1", 40), "Protocol error: too big bulk count string"},
		{"*" + strings.Repeat("1", 40), "Protocol error: too big mbulk count string"},
		{"GET \"unbalanced\r\n", "Protocol error: unbalanced quotes in request"},
		{strings.Repeat("x", 70<<10), "Protocol error: too big inline request"},
	} {
		_, _, _, err := scanCommands(NewCommandScanner(0), []byte(tc.in), 7)
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Error() != tc.want {
			t.Errorf("%.40q: err = %v; want %q", tc.in, err, tc.want)
		}
	}
}

// redcon's ReadNextCommand is the oracle for well-formed multibulk
// commands: the Scanner must end the first command where redcon does.
func FuzzCommandScannerAgainstRedcon(f *testing.F) {
	for _, seed := range []string{"*1\r\n$4\r\nPING\r\n", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "PING\r\n", "*1\r\n$-2\r\n"} {
		f.Add([]byte(seed), uint8(2))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		s := NewCommandScanner(1 << 20)
		ends, _, _, err := scanCommands(s, in, int(step)+1)
		if len(in) == 0 || in[0] != '*' || err != nil || !plainRESP2(in) {
			return
		}
		// redcon panics on some negative lengths ("$-2"); our scanner
		// rejected those above, so only valid input reaches it.
		complete, _, _, leftover, rerr := redcon.ReadNextCommand(in, nil)
		if rerr != nil || !complete {
			return
		}
		if len(ends) == 0 || ends[0] != len(in)-len(leftover) {
			t.Fatalf("redcon ends the first command at %d in %q; Scanner at %v", len(in)-len(leftover), in, ends)
		}
	})
}

func BenchmarkScannerReplies(b *testing.B) {
	reply := []byte(strings.Repeat("+OK\r\n$16\r\n0123456789abcdef\r\n:1\r\n", 16))
	s := NewScanner(Limits{})
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	for b.Loop() {
		chunk := reply
		for len(chunk) > 0 {
			n, _, err := s.Next(chunk)
			if err != nil {
				b.Fatal(err)
			}
			chunk = chunk[n:]
		}
	}
}

func BenchmarkCommandScanner(b *testing.B) {
	cmds := []byte(strings.Repeat("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$16\r\n0123456789abcdef\r\n", 16))
	s := NewCommandScanner(0)
	b.SetBytes(int64(len(cmds)))
	b.ReportAllocs()
	for b.Loop() {
		chunk := cmds
		for len(chunk) > 0 {
			n, _, err := s.Next(chunk)
			if err != nil {
				b.Fatal(err)
			}
			chunk = chunk[n:]
		}
	}
}

func TestAppendCommand(t *testing.T) {
	got := string(AppendCommand([]byte("+OK\r\n"), "SET", "k", "", "a\r\nb"))
	want := "+OK\r\n*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"
	if got != want {
		t.Fatalf("AppendCommand = %q; want %q", got, want)
	}
}
