package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// flagsTable renders README's flags table from the CLI itself, so the two
// cannot drift apart.
func flagsTable(t *testing.T) string {
	t.Helper()
	var cli CLI
	parser, err := newParser(&cli, &bytes.Buffer{}, &bytes.Buffer{}, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("| Flag | Env | Default | Description |\n|---|---|---|---|\n")
	seen := map[string]bool{}
	var walk func(n *kong.Node, cmd string)
	walk = func(n *kong.Node, cmd string) {
		for _, f := range n.Flags {
			if f.Name == "help" || seen[f.Name] {
				continue
			}
			seen[f.Name] = true
			env := ""
			if len(f.Envs) > 0 {
				env = "`" + f.Envs[0] + "`"
			}
			def := f.Default
			if def != "" {
				def = "`" + def + "`"
			}
			scope := ""
			if cmd != "" {
				scope = " (" + cmd + ")"
			}
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s%s |\n", f.Name, env, def, strings.ReplaceAll(f.Help, "|", "\\|"), scope)
		}
		for _, c := range n.Children {
			walk(c, c.Name)
		}
	}
	walk(parser.Model.Node, "")
	return b.String()
}

// TestREADMEFlagsTable fails when README's flags table differs from the
// CLI's. Run with UPDATE_README=1 to rewrite it.
func TestREADMEFlagsTable(t *testing.T) {
	const begin, end = "<!-- flags:begin -->\n", "<!-- flags:end -->"
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", begin, end)
	}
	want := flagsTable(t)
	if got := s[i+len(begin) : j]; got != want {
		if os.Getenv("UPDATE_README") != "" {
			if err := os.WriteFile("../../README.md", []byte(s[:i+len(begin)]+want+s[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Fatalf("README.md's flags table is stale; run UPDATE_README=1 go test -run TestREADMEFlagsTable ./cmd/sentproxy\nwant:\n%s", want)
	}
}
