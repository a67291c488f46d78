package proxy

import (
	"testing"

	"github.com/sentproxy/sentproxy/internal/resp"
)

// BenchmarkRESPMatch measures the per-command bookkeeping of resp mode on
// its steady path (queue a command, settle its reply, trim), with a
// pipeline of 16: it must not allocate.
func BenchmarkRESPMatch(b *testing.B) {
	rc := &respConn{q: make([]entry, 64)}
	cmd := []byte("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$16\r\n0123456789abcdef\r\n")
	cs := resp.NewCommandScanner(0)
	if _, done, err := cs.Next(cmd); err != nil || !done {
		b.Fatal(err)
	}
	c := cs.Command()
	b.ReportAllocs()
	for b.Loop() {
		for range 16 {
			rc.queue(c, cmd)
		}
		rc.writtenTo = rc.sentEnd
		for range 16 {
			rc.settleReply('+', []byte("OK"), true)
			rc.settleHead(nil)
		}
	}
}
