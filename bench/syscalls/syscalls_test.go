package main

import (
	"bufio"
	"errors"
	"strings"
	"testing"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// The table strace -c prints, errors column empty where none failed.
const straceOut = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 36.38    9.365613          31    300064    100040 splice
 31.76    8.176214        3764      2172           nanosleep
  0.66    0.169950          40      4182           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00   25.744031          84    306418    100115 total
`

func TestParseStrace(t *testing.T) {
	calls, errs, err := parseStrace(bufio.NewScanner(strings.NewReader(straceOut)))
	if err != nil {
		t.Fatal(err)
	}
	if calls["splice"] != 300064 || errs["splice"] != 100040 || calls["nanosleep"] != 2172 || errs["nanosleep"] != 0 || calls["epoll_pwait"] != 4182 {
		t.Fatalf("calls %v errors %v", calls, errs)
	}
	if _, ok := calls["total"]; ok {
		t.Fatal("the total line was taken for a system call")
	}
}

// An empty or garbled strace output (strace could not attach, say) is an
// error, not a row of zeros.
func TestParseStraceEmpty(t *testing.T) {
	for _, in := range []string{"", "strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted\n"} {
		if _, _, err := parseStrace(bufio.NewScanner(strings.NewReader(in))); err == nil {
			t.Errorf("parseStrace(%q): no error", in)
		}
	}
}

func TestReportRows(t *testing.T) {
	targets := []target{{name: "sentproxy tcp"}, {name: "HAProxy"}}
	res := map[string]*measurement{
		"sentproxy tcp": {calls: map[string]float64{"splice": 6, "nanosleep": 0.3}, errors: map[string]float64{"splice": 2}, user: []float64{7, 5, 6}, system: []float64{40, 45, 50}},
		"HAProxy":       {calls: map[string]float64{"recvfrom": 2, "sendto": 2}, errors: map[string]float64{}, user: []float64{2}, system: []float64{19}},
	}
	got := report(targets, res, options{requests: 1000, clients: 50, rounds: 3}, lab.Env{Command: "go run ./bench/syscalls"})
	for _, want := range []string{
		"| sentproxy tcp | 6.0 | 45.0 | 6.30 | 2.00 | splice 6.00 (2.00 failed), nanosleep 0.30 |",
		"| HAProxy | 2.0 | 19.0 | 4.00 | 0.00 | recvfrom 2.00, sendto 2.00 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "5"}, {"-c", "0"}, {"-rounds", "99"}, {"extra"}, {"-bogus"}} {
		var ue lab.UsageError
		if _, err := parseFlags(args); !errors.As(err, &ue) {
			t.Errorf("parseFlags(%q) = %v; want a usage error", args, err)
		}
	}
	o, err := parseFlags([]string{"-quick"})
	if err != nil || o.rounds != 1 || o.requests != 10000 || !strings.Contains(o.results, "quick") {
		t.Fatalf("-quick: %+v, %v", o, err)
	}
}
