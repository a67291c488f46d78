package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/tidwall/redcon"
)

// commandTable says which commands only read, as the master itself
// describes them (COMMAND): Redis's "readonly" flag without "write".
// It replaces the built-in list once fetched.
type commandTable map[string]bool

// readOnlyFor reports whether the lower-cased command only reads: by the
// master's own table when it was fetched, else by the built-in list.
func (s *Server) readOnlyFor(name []byte) bool {
	if s == nil {
		return readOnly(name)
	}
	if t := s.commands.Load(); t != nil {
		if ro, ok := (*t)[string(name)]; ok {
			return ro
		}
	}
	return readOnly(name)
}

// loadCommands fetches COMMAND from addr once per Server. It runs in the
// background; until it succeeds (or when it cannot, e.g. the master wants a
// password the proxy does not have), the built-in list applies.
func (s *Server) loadCommands(addr string) {
	if !s.commandsFetching.CompareAndSwap(false, true) {
		return
	}
	go func() {
		t, err := fetchCommandTable(addr, s.cfg.DialTimeout)
		if err != nil {
			s.log.Debug("COMMAND not fetched; using the built-in read-only list", "upstream", addr, "err", err)
			s.commandsFetching.Store(false)
			return
		}
		s.commands.Store(&t)
		s.log.Debug("command table fetched", "upstream", addr, "commands", len(t))
	}()
}

func fetchCommandTable(addr string, timeout time.Duration) (commandTable, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("proxy: COMMAND: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "*1\r\n$7\r\nCOMMAND\r\n"); err != nil {
		return nil, fmt.Errorf("proxy: COMMAND: %w", err)
	}
	// The reply is a few hundred KiB; read until redcon frames it whole.
	r := io.LimitReader(c, 16<<20)
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if k, v := redcon.ReadNextRESP(buf); k > 0 {
			return parseCommandTable(v)
		}
		if err != nil {
			return nil, fmt.Errorf("proxy: COMMAND reply: %w", err)
		}
	}
}

// parseCommandTable reads COMMAND's reply: one array per command whose
// first element is the name and third the flags.
func parseCommandTable(v redcon.RESP) (commandTable, error) {
	if v.Type != redcon.Array {
		return nil, fmt.Errorf("proxy: COMMAND answered %q", v.String())
	}
	t := commandTable{}
	v.ForEach(func(cmd redcon.RESP) bool {
		var (
			i               int
			name            string
			readonly, write bool
		)
		cmd.ForEach(func(f redcon.RESP) bool {
			switch i {
			case 0:
				name = strings.ToLower(f.String())
			case 2:
				f.ForEach(func(flag redcon.RESP) bool {
					switch flag.String() {
					case "readonly":
						readonly = true
					case "write":
						write = true
					}
					return true
				})
				return false
			}
			i++
			return true
		})
		if name != "" {
			t[name] = readonly && !write
		}
		return true
	})
	if len(t) == 0 {
		return nil, fmt.Errorf("proxy: COMMAND listed no commands")
	}
	return t, nil
}
