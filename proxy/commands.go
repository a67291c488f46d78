package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/sentproxy/sentproxy/internal/resp"
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

// loadCommands fetches COMMAND from addr once per Server, authenticated
// with the master credentials when given. It runs in the background; until
// it succeeds (or when it cannot: the master wants credentials the proxy was
// not given, or they may not run COMMAND), the built-in list applies.
func (s *Server) loadCommands(addr string) {
	if !s.commandsFetching.CompareAndSwap(false, true) {
		return
	}
	go func() {
		pw := s.cfg.MasterPassword
		if f := s.cfg.MasterPasswordFunc; f != nil {
			pw = f()
		}
		t, err := fetchCommandTable(addr, s.cfg.DialTimeout, s.cfg.TLS, s.cfg.TLSRoots, s.cfg.MasterUsername, pw)
		if err != nil {
			// Info, not debug: without the table, read-only commands the
			// built-in list lacks (a module's) are not retried at a failover.
			s.log.Info("COMMAND not fetched; using the built-in read-only list", "upstream", addr, "err", err)
			s.commandsFetching.Store(false)
			return
		}
		s.commands.Store(&t)
		s.log.Debug("command table fetched", "upstream", addr, "commands", len(t))
	}()
}

// fetchCommandTable asks addr for COMMAND, after AUTH when a password is
// given (both in one write). Errors never carry the password: Redis's
// replies to AUTH do not echo it.
func fetchCommandTable(addr string, timeout time.Duration, tlsCfg *tls.Config, roots func() *x509.CertPool, username, password string) (commandTable, error) {
	c, err := dialMaster(addr, timeout, 0, tlsCfg, roots)
	if err != nil {
		return nil, fmt.Errorf("proxy: COMMAND: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var req []byte
	switch {
	case password != "" && username != "":
		req = resp.AppendCommand(req, "AUTH", username, password)
	case password != "":
		req = resp.AppendCommand(req, "AUTH", password)
	}
	authed := len(req) == 0
	req = resp.AppendCommand(req, "COMMAND")
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("proxy: COMMAND: %w", err)
	}
	// The reply is a few hundred KiB; read until redcon frames it whole.
	r := io.LimitReader(c, 16<<20)
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if !authed {
			k, v := redcon.ReadNextRESP(buf)
			if k == 0 {
				if err != nil {
					return nil, fmt.Errorf("proxy: COMMAND: AUTH reply: %w", err)
				}
				continue
			}
			if v.Type != redcon.String || v.String() != "OK" {
				return nil, fmt.Errorf("proxy: COMMAND: AUTH with the master credentials answered %q", v.String())
			}
			buf, authed = buf[k:], true
		}
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
