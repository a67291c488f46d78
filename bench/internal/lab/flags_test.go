package lab

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPickListKeepsKnownOrder(t *testing.T) {
	got, err := PickList("targets", " resp,direct,resp ", []string{"direct", "tcp", "resp"})
	if err != nil || !slices.Equal(got, []string{"direct", "resp"}) {
		t.Fatalf("PickList = %q, %v; want [direct resp]", got, err)
	}
	for _, bad := range []string{"", ",", "tcp,bogus"} {
		var ue UsageError
		if _, err := PickList("targets", bad, []string{"direct", "tcp"}); !errors.As(err, &ue) {
			t.Errorf("PickList(%q) = %v; want a usage error", bad, err)
		}
	}
}

func TestIntList(t *testing.T) {
	got, err := IntList("clients", "10, 1,10", 1, 100)
	if err != nil || !slices.Equal(got, []int{10, 1}) {
		t.Fatalf("IntList = %v, %v; want [10 1]", got, err)
	}
	for _, bad := range []string{"", "0", "101", "x", "1,,2x"} {
		var ue UsageError
		if _, err := IntList("clients", bad, 1, 100); !errors.As(err, &ue) {
			t.Errorf("IntList(%q) = %v; want a usage error", bad, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	newFS := func() *flag.FlagSet {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(discard{})
		fs.Int("n", 1, "")
		fs.Bool("quick", false, "")
		return fs
	}
	set, err := ParseFlags(newFS(), []string{"-n", "5"})
	if err != nil || !set["n"] || set["quick"] {
		t.Fatalf("ParseFlags = %v, %v; want n set only", set, err)
	}
	var ue UsageError
	for _, args := range [][]string{{"-bogus"}, {"stray"}, {"-n", "x"}} {
		if _, err := ParseFlags(newFS(), args); !errors.As(err, &ue) {
			t.Errorf("ParseFlags(%q) = %v; want a usage error", args, err)
		}
	}
	if _, err := ParseFlags(newFS(), []string{"-help"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v; want flag.ErrHelp", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestResultsFlag(t *testing.T) {
	parse := func(args ...string) (string, error) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(discard{})
		file := ResultsFlag(fs, "x")
		quick := fs.Bool("quick", false, "")
		set, err := ParseFlags(fs, args)
		if err != nil {
			return "", err
		}
		return file(set, *quick)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "bench/RESULTS.md"},
		{[]string{"-results", "r.md"}, "r.md"},
		{[]string{"-quick"}, filepath.Join(os.TempDir(), "sentproxy-x-quick.md")},
		{[]string{"-quick", "-results", "r.md"}, "r.md"},
	} {
		if got, err := parse(c.args...); err != nil || got != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.args, got, err, c.want)
		}
	}
	var ue UsageError
	if _, err := parse("-results="); !errors.As(err, &ue) {
		t.Errorf("-results= (empty): got %v; want a usage error", err)
	}
}
