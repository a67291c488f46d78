package proxy

import (
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
)

// The read-only classification comes from the master's own COMMAND table
// once fetched: LOLWUT is read-only there but not in the built-in list.
func TestCommandTableFromTheMaster(t *testing.T) {
	r := testredis.StartServer(t, redisproc.Options{})
	s, _, _ := startServer(t, Config{Mode: ModeRESP})
	if s.readOnlyFor([]byte("lolwut")) {
		t.Fatal("lolwut read-only before the table was fetched; the built-in list does not have it")
	}
	s.SetMaster(r.Addr)
	eventually(t, "the command table", 5*time.Second, func() bool { return s.commands.Load() != nil })
	for name, want := range map[string]bool{"lolwut": true, "get": true, "xread": true, "set": false, "incr": false, "blpop": false, "eval": false} {
		if got := s.readOnlyFor([]byte(name)); got != want {
			t.Errorf("readOnlyFor(%q) = %v; want %v", name, got, want)
		}
	}
}

func TestParseCommandTableRejectsOddReplies(t *testing.T) {
	for _, raw := range []string{"-NOAUTH Authentication required.\r\n", ":1\r\n", "*0\r\n"} {
		_, v := redcon.ReadNextRESP([]byte(raw))
		if _, err := parseCommandTable(v); err == nil {
			t.Errorf("%q: no error", raw)
		}
	}
}
