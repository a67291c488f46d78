package lab

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ParseFlags parses args with fs (made with flag.ContinueOnError) and
// returns the names of the flags given. A bad flag or a stray argument is a
// UsageError; -help is flag.ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) (map[string]bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, UsageError{Msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, UsageError{Msg: fmt.Sprintf("unexpected arguments: %q", fs.Args())}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set, nil
}

// PickList splits the comma-separated value of flag -name and checks every
// item against known. The result follows known's order (the report's) and
// has no duplicates.
func PickList(name, value string, known []string) ([]string, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(value, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(known, s) {
			return nil, UsageError{Msg: fmt.Sprintf("-%s: unknown %q (known: %s)", name, s, strings.Join(known, ", "))}
		}
		want[s] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, UsageError{Msg: "-" + name + " is empty"}
	}
	return out, nil
}

// IntList splits the comma-separated value of flag -name into numbers from
// lo to hi, in the order given, without duplicates.
func IntList(name, value string, lo, hi int) ([]int, error) {
	var out []int
	for _, v := range strings.Split(value, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return nil, UsageError{Msg: fmt.Sprintf("-%s: %q is not a number from %d to %d", name, v, lo, hi)}
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, UsageError{Msg: "-" + name + " is empty"}
	}
	return out, nil
}

// InRoot resolves a path given relative to the module root.
func InRoot(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

// ResultsFlag adds -results to fs: the file whose section named section a
// program replaces, bench/RESULTS.md (relative to the module root) unless
// given. The function it returns gives that file once fs is parsed (set as
// ParseFlags returns it): for a -quick smoke run without -results, a file
// in the temp directory, so that a smoke run never overwrites the real
// results.
func ResultsFlag(fs *flag.FlagSet, section string) func(set map[string]bool, quick bool) (string, error) {
	results := fs.String("results", "bench/RESULTS.md", fmt.Sprintf("results file whose %q section is replaced (relative to the module root; with -quick a temp file unless given)", section))
	return func(set map[string]bool, quick bool) (string, error) {
		switch {
		case quick && !set["results"]:
			return filepath.Join(os.TempDir(), "sentproxy-"+section+"-quick.md"), nil
		case *results == "":
			return "", UsageError{Msg: "-results must not be empty"}
		}
		return *results, nil
	}
}
