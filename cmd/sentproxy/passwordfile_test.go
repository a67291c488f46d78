package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// writeAtomically replaces path's content the way a Kubernetes Secret
// volume or an operator's `mv` does: a new file renamed over the old.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// What a password file gives as it changes, disappears, is caught empty and
// comes back, and what it logs (each state change once).
func TestPasswordFileFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	writeAtomically(t, path, "old\n")
	first, err := readPassword(path)
	if err != nil || first != "old" {
		t.Fatalf("first read = %q, %v", first, err)
	}
	var logs testutil.Buffer
	pf := newPasswordFile(path, "master", first)
	pf.setLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	step := func(what, want string, wantLogs int) {
		t.Helper()
		if got := pf.get(); got != want {
			t.Fatalf("%s: get() = %q; want %q", what, got, want)
		}
		if n := strings.Count(logs.String(), "\n"); n != wantLogs {
			t.Fatalf("%s: %d log lines; want %d:\n%s", what, n, wantLogs, logs.String())
		}
	}
	step("unchanged", "old", 0)
	writeAtomically(t, path, "new\n")
	step("rotated", "new", 1)
	step("rotated, asked again", "new", 1)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	step("file removed: the last password stays", "new", 2)
	step("still removed: logged once", "new", 2)
	writeAtomically(t, path, "")
	step("file empty while a password was in use: the last stays", "new", 2)
	writeAtomically(t, path, "newer")
	step("back, changed", "newer", 4) // readable again, then changed
	out := logs.String()
	for _, want := range []string{"password file changed", "password file not readable", "password file readable again", "password_of=master"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"old", "newer"} {
		if strings.Contains(out, "="+secret) {
			t.Errorf("logs carry the password %q:\n%s", secret, out)
		}
	}
}

// A password rotated while sentproxy runs: the Sentinels' and the master's
// ACL user gets a new password, the password file is replaced, and every
// connection of that user is killed. sentproxy's new connections (to each
// Sentinel, its subscriptions, and the ROLE check) authenticate with the
// new password, which they can only have read from the file, and the
// route is never withdrawn.
func TestRotatedPasswordFileAppliesWithoutRestart(t *testing.T) {
	topo := startTopology(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := append(append(topo.Sentinels[:0:0], topo.Sentinels...), topo.Master)
	acl := func(args ...string) {
		t.Helper()
		for _, p := range nodes {
			if _, err := p.Do(ctx, args...); err != nil {
				t.Fatalf("%s on %s: %v", strings.Join(args[:2], " "), p.Addr, err)
			}
		}
	}
	acl("ACL", "SETUSER", "sp", "on", ">old", "+@all", "~*", "&*")

	path := filepath.Join(t.TempDir(), "pw")
	writeAtomically(t, path, "old\n")
	pf := newPasswordFile(path, "Sentinel and master", "old")
	h := startHarness(t, topo, func(c *appConfig) {
		c.discovery.SentinelUsername, c.discovery.SentinelPasswordFunc = "sp", pf.get
		c.discovery.MasterUsername, c.discovery.MasterPasswordFunc = "sp", pf.get
	})
	pf.setLogger(slog.New(slog.NewTextHandler(h.logBuf, nil)))
	h.waitRouted(topo.Master.Addr, 10*time.Second)

	writeAtomically(t, path, "new\n")
	acl("ACL", "SETUSER", "sp", "resetpass", ">new")
	rotated := time.Now()
	acl("CLIENT", "KILL", "USER", "sp")

	spClients := func(p interface {
		Do(context.Context, ...string) (any, error)
	}) int {
		v, err := p.Do(ctx, "CLIENT", "LIST")
		if err != nil {
			return -1
		}
		return strings.Count(fmt.Sprint(v), " user=sp ")
	}
	for _, p := range nodes {
		eventually(t, "sentproxy reconnected to "+p.Addr+" as sp", 10*time.Second, func() bool { return spClients(p) > 0 })
	}
	w := h.app.routes[0].watcher
	eventually(t, "every Sentinel usable in a check after the rotation", 10*time.Second, func() bool {
		st := w.Status()
		if !st.Checked.After(rotated) || len(st.Views) != len(topo.Sentinels) {
			return false
		}
		for _, v := range st.Views {
			if v.Err != nil {
				return false
			}
		}
		return true
	})
	h.mu.Lock()
	for _, e := range h.events {
		if e.addr == "" {
			t.Errorf("the master was withdrawn at %s", e.at.Format(time.TimeOnly))
		}
	}
	h.mu.Unlock()
	if got, err := rawCommand(h.addr, 5*time.Second, "PING"); err != nil || got != "+PONG" {
		t.Fatalf("PING through sentproxy after the rotation = %q, %v", got, err)
	}
	if !strings.Contains(h.logBuf.String(), "password file changed") {
		t.Error("the rotation was not logged")
	}
}
