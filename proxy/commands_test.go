package proxy

import (
	"strings"
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

// A master with requirepass answers COMMAND only after AUTH: the proxy
// fetches its table with the master credentials it was given, and the
// classification then comes from the master (LOLWUT read-only).
func TestCommandTableWithMasterPassword(t *testing.T) {
	r := testredis.StartServer(t, redisproc.Options{Password: "master-secret"})
	s, _, _ := startServer(t, Config{Mode: ModeRESP, MasterPassword: "master-secret"})
	s.SetMaster(r.Addr)
	eventually(t, "the command table", 5*time.Second, func() bool { return s.commands.Load() != nil })
	if !s.readOnlyFor([]byte("lolwut")) {
		t.Error("lolwut not read-only: the table is not the master's")
	}
}

// What the fetch does with each kind of credentials against real servers:
// an ACL user that may run COMMAND succeeds; no credentials, a wrong
// password, and a user allowed only ROLE (as a minimal ROLE-check user
// would be) fail with an error that names the cause and never the password.
func TestFetchCommandTableCredentials(t *testing.T) {
	open := testredis.StartServer(t, redisproc.Options{ExtraConfig: []string{
		"user sp on >sp-secret ~* +@all",
		"user roleonly on >ro-secret +role",
	}})
	locked := testredis.StartServer(t, redisproc.Options{Password: "master-secret"})
	for _, tc := range []struct {
		name, addr, user, pass string
		wantErr                string // "" means the table must come back
	}{
		{"ACL user", open.Addr, "sp", "sp-secret", ""},
		{"requirepass", locked.Addr, "", "master-secret", ""},
		{"no credentials", locked.Addr, "", "", "NOAUTH"},
		{"wrong password", locked.Addr, "", "not-the-secret", "WRONGPASS"},
		{"wrong user password", open.Addr, "sp", "not-the-secret", "WRONGPASS"},
		{"user without COMMAND", open.Addr, "roleonly", "ro-secret", "NOPERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table, err := fetchCommandTable(tc.addr, 2*time.Second, nil, nil, tc.user, tc.pass)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("fetch: %v", err)
				}
				if ro, ok := table["lolwut"]; !ok || !ro {
					t.Fatalf("lolwut in the table: %v, read-only %v", ok, ro)
				}
				return
			}
			if err == nil {
				t.Fatalf("fetch succeeded; want an error with %s", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not name %s", err, tc.wantErr)
			}
			if tc.pass != "" && strings.Contains(err.Error(), tc.pass) {
				t.Errorf("error %q carries the password", err)
			}
		})
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
