package discovery

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// feedAll feeds the chunks in order and stops at the first error.
func feedAll(s *respScanner, chunks ...[]byte) error {
	for _, c := range chunks {
		if err := s.feed(c); err != nil {
			return err
		}
	}
	return nil
}

// idle reports whether s sits between two top-level replies, which is
// where a stream of complete replies must leave it.
func idle(s *respScanner) bool {
	return s.sc == nil || !s.sc.InValue()
}

func guardValidReplies() []struct{ name, resp string } {
	sentinelMaster := respFields(masterFields("mymaster", "10.0.0.1", "6379", "12"))
	return []struct{ name, resp string }{
		{"simple string", "+OK\r\n"},
		{"error", "-ERR No such master with that name\r\n"},
		{"integer", ":-42\r\n"},
		{"bulk string", bulk("hello")},
		{"empty bulk string", "$0\r\n\r\n"},
		{"bulk string holding CRLF and RESP", bulk("*3\r\n$1\r\n")},
		{"nil bulk string", "$-1\r\n"},
		{"nil array", "*-1\r\n"},
		{"empty array", "*0\r\n"},
		{"SENTINEL MASTER reply", sentinelMaster},
		{"ROLE of a master", respArray(bulk("master"), ":3129659\r\n", respArray(respArray(bulk("10.0.0.2"), bulk("6379"), bulk("3129242"))))},
		{"pub/sub message", respArray(bulk("message"), bulk("+switch-master"), bulk("mymaster 10.0.0.1 6379 10.0.0.2 6379"))},
		{"array holding nil elements", respArray("$-1\r\n", "*-1\r\n", ":1\r\n")},
		{"RESP3 map", "%2\r\n+ip\r\n+10.0.0.1\r\n+port\r\n:6379\r\n"},
		{"RESP3 empty map", "%0\r\n"},
		{"RESP3 set", "~2\r\n+a\r\n+b\r\n"},
		{"RESP3 push", ">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n"},
		{"RESP3 scalars", "#t\r\n,3.14\r\n_\r\n(12345678901234567890123\r\n"},
		{"RESP3 verbatim string", "=15\r\ntxt:Some string\r\n"},
		{"RESP3 blob error", "!21\r\nSYNTAX invalid syntax\r\n"},
		{"map nested in array nested in map", "%1\r\n+k\r\n*2\r\n%1\r\n+a\r\n:1\r\n$-1\r\n"},
		{"nested exactly guardMaxDepth deep", strings.Repeat("*1\r\n", guardMaxDepth) + ":1\r\n"},
		{"three pipelined replies", "+OK\r\n" + bulk("x") + respArray(":1\r\n", ":2\r\n")},
	}
}

// Every valid reply is accepted however the network splits it: in one
// piece, at every single byte boundary, and one byte at a time.
func TestRespScannerAcceptsValidRepliesSplitAnywhere(t *testing.T) {
	for _, c := range guardValidReplies() {
		t.Run(c.name, func(t *testing.T) {
			b := []byte(c.resp)
			for i := 0; i <= len(b); i++ {
				var s respScanner
				if err := feedAll(&s, b[:i], b[i:]); err != nil {
					t.Fatalf("split at %d: %v", i, err)
				}
				if !idle(&s) {
					t.Fatalf("split at %d: scanner not idle after a complete reply: %+v", i, s)
				}
			}
			var s respScanner
			for i := range b {
				if err := s.feed(b[i : i+1]); err != nil {
					t.Fatalf("byte by byte, at %d: %v", i, err)
				}
			}
			if !idle(&s) {
				t.Fatalf("byte by byte: scanner not idle: %+v", s)
			}
		})
	}
}

// Replies right at each limit are accepted; the byte or element beyond it
// is what gets refused (TestRespScannerRejects).
func TestRespScannerAcceptsRepliesAtTheLimits(t *testing.T) {
	maxElems := "*" + strconv.Itoa(guardMaxElems) + "\r\n" + strings.Repeat(":1\r\n", guardMaxElems)
	for _, c := range []struct{ name, resp string }{
		{"line of guardMaxLine bytes", "+" + strings.Repeat("a", guardMaxLine-1) + "\r\n"},
		{"bulk of guardMaxBulk bytes", bulk(strings.Repeat("b", guardMaxBulk))},
		{"array of guardMaxElems elements", maxElems},
		{"map of guardMaxElems pairs", "%" + strconv.Itoa(guardMaxElems) + "\r\n" + strings.Repeat(":1\r\n", 2*guardMaxElems)},
		// The reply-size limit is per reply: five maximal bulks in a row
		// are five replies.
		{"five maximal bulk replies in a row", strings.Repeat(bulk(strings.Repeat("b", guardMaxBulk)), 5)},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := []byte(c.resp)
			// Splitting at every boundary of a MiB is quadratic; a few
			// awkward places do: inside the header, the CRLF, the payload.
			for _, i := range []int{0, 1, 2, 5, len(b) / 2, len(b) - 2, len(b) - 1, len(b)} {
				var s respScanner
				if err := feedAll(&s, b[:i], b[i:]); err != nil {
					t.Fatalf("split at %d: %v", i, err)
				}
				if !idle(&s) {
					t.Fatalf("split at %d: scanner not idle", i)
				}
			}
		})
	}
}

func TestRespScannerRejects(t *testing.T) {
	bigBulk := bulk(strings.Repeat("b", guardMaxBulk))
	for _, c := range []struct {
		name, resp, want string
	}{
		{name: "line one byte over guardMaxLine", resp: "+" + strings.Repeat("a", guardMaxLine) + "\r\n", want: "line longer than"},
		{name: "endless line", resp: ":" + strings.Repeat("1", 2*guardMaxLine), want: "line longer than"},
		{name: "bulk one byte over guardMaxBulk", resp: "$" + strconv.Itoa(guardMaxBulk+1) + "\r\n", want: "bulk length"},
		{name: "bulk of 4 GiB", resp: "$4294967296\r\n", want: "bulk length 4294967296 over"},
		{name: "verbatim string over guardMaxBulk", resp: "=" + strconv.Itoa(guardMaxBulk+1) + "\r\n", want: "bulk length"},
		{name: "blob error over guardMaxBulk", resp: "!" + strconv.Itoa(guardMaxBulk+1) + "\r\n", want: "bulk length"},
		{name: "array one over guardMaxElems", resp: "*" + strconv.Itoa(guardMaxElems+1) + "\r\n", want: "aggregate of"},
		{name: "array of 2^31-1", resp: "*2147483647\r\n", want: "aggregate of 2147483647 elements"},
		{name: "map one over guardMaxElems", resp: "%" + strconv.Itoa(guardMaxElems+1) + "\r\n", want: "aggregate of"},
		{name: "set one over guardMaxElems", resp: "~" + strconv.Itoa(guardMaxElems+1) + "\r\n", want: "aggregate of"},
		{name: "push one over guardMaxElems", resp: ">" + strconv.Itoa(guardMaxElems+1) + "\r\n", want: "aggregate of"},
		{name: "nested one deeper than guardMaxDepth", resp: strings.Repeat("*1\r\n", guardMaxDepth+1) + ":1\r\n", want: "nested deeper than"},
		{name: "nested maps too deep", resp: strings.Repeat("%1\r\n+k\r\n", guardMaxDepth+1), want: "nested deeper than"},
		{name: "one reply over guardMaxReplySize", resp: "*5\r\n" + strings.Repeat(bigBulk, 5), want: "value longer than"},
		{name: "non-numeric length", resp: "$abc\r\n", want: "bad length"},
		{name: "empty length", resp: "*\r\n", want: "bad length"},
		{name: "length with a plus sign", resp: "$+5\r\n", want: "bad length"},
		{name: "length with a space", resp: "$ 5\r\n", want: "bad length"},
		{name: "length with trailing junk", resp: "*1x\r\n", want: "bad length"},
		{name: "lone minus", resp: "$-\r\n", want: "bad length"},
		{name: "negative length other than -1", resp: "*-2\r\n", want: "bad length"},
		{name: "minus zero", resp: "$-0\r\n", want: "bad length"},
		{name: "20-digit length", resp: "$12345678901234567890\r\n", want: "bad length"},
		{name: "19-digit bulk length beyond int64", resp: "$9223372036854775808\r\n", want: "overflows"},
		{name: "19-digit array length beyond int64", resp: "*9999999999999999999\r\n", want: "overflows"},
		{name: "unknown RESP type byte", resp: "?1\r\n", want: "unknown RESP type byte '?'"},
		{name: "NUL byte", resp: "\x00\r\n", want: "unknown RESP type byte"},
		{name: "bare CRLF", resp: "\r\n", want: "unknown RESP type byte"},
		{name: "HTTP response", resp: "HTTP/1.1 200 OK\r\n", want: "unknown RESP type byte 'H'"},
		{name: "garbage after a valid reply", resp: "+OK\r\nhello\r\n", want: "unknown RESP type byte 'h'"},
		{name: "garbage inside an array", resp: "*2\r\n:1\r\nxyz\r\n", want: "unknown RESP type byte 'x'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := []byte(c.resp)
			check := func(how string, err error) {
				t.Helper()
				if !errors.Is(err, errGuard) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("%s: error %v; want errGuard with %q", how, err, c.want)
				}
			}
			var s respScanner
			check("in one piece", s.feed(b))
			// Splitting must not let anything through; the long inputs are
			// split at a few places only, to stay linear.
			points := []int{0, 1, 2, 3, len(b) / 2, len(b) - 2, len(b) - 1}
			if len(b) <= 256 {
				points = points[:0]
				for i := 0; i < len(b); i++ {
					points = append(points, i)
				}
			}
			for _, i := range points {
				if i < 0 || i > len(b) {
					continue
				}
				var s respScanner
				check("split at "+strconv.Itoa(i), feedAll(&s, b[:i], b[i:]))
			}
		})
	}
}

// guardedConn hands valid replies through untouched and turns a refused one
// into an error wrapping errGuard, closing the connection so that nothing
// after it is read.
func TestGuardedConn(t *testing.T) {
	client, server := net.Pipe()
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	gc := &guardedConn{Conn: client}

	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	send := func(s string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = server.Write([]byte(s))
		}()
	}

	good := respFields(masterFields("mymaster", "10.0.0.1", "6379", "1"))
	send(good)
	got := make([]byte, len(good))
	if _, err := io.ReadFull(gc, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte(good)) {
		t.Fatalf("read %q; want %q", got, good)
	}
	wg.Wait()

	send("*2147483647\r\n")
	buf := make([]byte, 64)
	n, err := gc.Read(buf)
	if n != 0 || !errors.Is(err, errGuard) {
		t.Fatalf("Read = %d, %v; want 0 and errGuard", n, err)
	}
	if !strings.Contains(err.Error(), client.RemoteAddr().String()) {
		t.Errorf("error %q does not name the peer", err)
	}
	if _, err := gc.Read(buf); err == nil {
		t.Fatal("Read after a refused reply succeeded; want the connection closed")
	}
}

// Feeding the scanner never allocates: its state is fixed-size, so what a
// peer sends cannot grow it.
func TestRespScannerDoesNotAllocate(t *testing.T) {
	var s respScanner
	reply := []byte(respFields(masterFields("mymaster", "10.0.0.1", "6379", "12")))
	if err := s.feed(reply); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = s.feed(reply) }); n != 0 {
		t.Fatalf("%v allocations per reply; want 0", n)
	}
}

func FuzzRespScanner(f *testing.F) {
	for _, c := range guardValidReplies() {
		f.Add([]byte(c.resp), uint8(3))
	}
	for _, s := range []string{
		"*2147483647\r\n",
		"$4294967296\r\n",
		"$9223372036854775808\r\n",
		"*40\r\n$4\r\nname\r\n",
		strings.Repeat("*1\r\n", 20) + ":1\r\n",
		"%3\r\n~1\r\n>1\r\n=3\r\nab",
		"\r\r\n\n\r\n$-1\r\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		var whole respScanner
		errWhole := whole.feed(data)

		// The same bytes as a network might deliver them. The scanner is
		// a state machine over the stream, so the split must not matter.
		var parts respScanner
		var errParts error
		step := int(chunk%16) + 1
		for i := 0; i < len(data) && errParts == nil; i += step {
			errParts = parts.feed(data[i:min(i+step, len(data))])
		}
		if (errWhole == nil) != (errParts == nil) || (errWhole != nil && errWhole.Error() != errParts.Error()) {
			t.Fatalf("in one piece: %v; in chunks of %d: %v", errWhole, step, errParts)
		}
		if errWhole != nil {
			if !errors.Is(errWhole, errGuard) {
				t.Fatalf("error %v does not wrap errGuard", errWhole)
			}
			return
		}
		if idle(&whole) != idle(&parts) {
			t.Fatalf("state differs by split: whole idle %v, chunks of %d idle %v", idle(&whole), step, idle(&parts))
		}
	})
}
