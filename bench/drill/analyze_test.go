package main

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// synth builds a run: fault at t0+10s, switch at t0+12s.
func synth() (*RunData, time.Time) {
	t0 := time.Unix(1_700_000_000, 0)
	d := &RunData{
		Scenario: "sentinel-failover", Run: 1,
		Contenders: []string{"tcp", "haproxy"},
		Start:      t0,
		Fault:      t0.Add(10 * time.Second),
		Switch:     t0.Add(12 * time.Second),
		End:        t0.Add(20 * time.Second),
		Final:      map[string]map[int]int64{},
	}
	return d, t0
}

func rec(c string, client int, op string, sched time.Time, lat time.Duration, err string, v int64) Record {
	return Record{Contender: c, Client: client, Op: op, Sched: sched, Sent: sched, Done: sched.Add(lat), Err: err, Value: v}
}

func TestAnalyze(t *testing.T) {
	d, t0 := synth()
	s := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	d.Records = []Record{
		// tcp: INCRs 1..3 before the fault, value 3 not replicated.
		rec("tcp", 0, "INCR", s(1), time.Millisecond, "", 1),
		rec("tcp", 0, "INCR", s(2), time.Millisecond, "", 2),
		rec("tcp", 0, "INCR", s(9.9), time.Millisecond, "", 3),
		// Two errors after the fault, 1.5 s apart.
		rec("tcp", 0, "SET", s(10.5), 500*time.Millisecond, "read tcp 127.0.0.1:5000->127.0.0.1:6000: read: connection reset by peer", 0),
		rec("tcp", 0, "GET", s(11.5), 500*time.Millisecond, "read tcp 127.0.0.1:5001->127.0.0.1:6000: read: connection reset by peer", 0),
		// First success after the switch: 0.3 s after it.
		rec("tcp", 0, "INCR", s(12.2), 100*time.Millisecond, "", 3),
		// haproxy: an INCR run by the old master after the switch and
		// acknowledged (value 5), then the new master gives 5 again.
		rec("haproxy", 0, "INCR", s(1), time.Millisecond, "", 4),
		rec("haproxy", 0, "INCR", s(12.5), time.Millisecond, "", 5),
		rec("haproxy", 0, "INCR", s(14), time.Millisecond, "", 5),
	}
	d.Monitor = []MonitorLine{
		{At: s(12.5).Add(500 * time.Microsecond), Contender: "haproxy", Client: 0, Op: "INCR", Src: "127.0.0.1:7000"},
		// Before the switch: not counted.
		{At: s(1).Add(500 * time.Microsecond), Contender: "haproxy", Client: 0, Op: "INCR", Src: "127.0.0.1:7000"},
	}
	// A slot haproxy's client skipped after a stall counts with its lower
	// bound.
	d.Skipped = []Skip{{Contender: "haproxy", Client: 0, Sched: s(10.1), Until: s(13)}}
	d.Final["tcp"] = map[int]int64{0: 3}
	d.Final["haproxy"] = map[int]int64{0: 5}

	m := Analyze(d)
	tcp, hp := m["tcp"], m["haproxy"]
	if tcp.Errors != 2 {
		t.Errorf("tcp errors: got %d; want 2", tcp.Errors)
	}
	if len(tcp.ErrorKinds) != 1 {
		t.Errorf("tcp error kinds: got %v; want one kind (addresses folded)", tcp.ErrorKinds)
	}
	if got, want := tcp.ErrLast-tcp.ErrFirst, time.Second; got != want {
		t.Errorf("tcp error window: got %v; want %v", got, want)
	}
	if got, want := tcp.FirstOK, 300*time.Millisecond; !tcp.HasFirstOK || got != want {
		t.Errorf("tcp first success after switch: got %v (%v); want %v", got, tcp.HasFirstOK, want)
	}
	// Window is [fault, switch+2s): SET 0.5 s, GET 0.5 s, INCR 0.1 s.
	if tcp.WindowN != 3 || tcp.P99 != 500*time.Millisecond {
		t.Errorf("tcp p99: got %v over %d; want 500ms over 3", tcp.P99, tcp.WindowN)
	}
	// Value 3 acked twice: the first (before the fault) was lost.
	if tcp.LostBefore != 1 || tcp.LostAfter != 0 {
		t.Errorf("tcp lost: got before=%d after=%d; want 1, 0", tcp.LostBefore, tcp.LostAfter)
	}
	if hp.OldWrites != 1 || hp.OldWritesAcked != 1 {
		t.Errorf("haproxy old-master writes: got %d (acked %d); want 1 (1)", hp.OldWrites, hp.OldWritesAcked)
	}
	if hp.LostBefore != 0 || hp.LostAfter != 1 {
		t.Errorf("haproxy lost: got before=%d after=%d; want 0, 1", hp.LostBefore, hp.LostAfter)
	}
	if hp.WindowN != 2 || hp.P99 != 2900*time.Millisecond || hp.Skipped != 1 {
		t.Errorf("haproxy p99: got %v over %d (skipped %d); want 2.9s over 2 (1)", hp.P99, hp.WindowN, hp.Skipped)
	}
	// The success on the old master does not count as first success.
	if got, want := hp.FirstOK, 2*time.Second+time.Millisecond; got != want {
		t.Errorf("haproxy first success: got %v; want %v", got, want)
	}
}

func TestLostINCRsAboveFinal(t *testing.T) {
	t0 := time.Unix(0, 0)
	var recs []Record
	for v := int64(1); v <= 10; v++ {
		recs = append(recs, Record{Op: "INCR", Value: v, Done: t0.Add(time.Duration(v) * time.Second)})
	}
	if got := len(lostINCRs(recs, 8)); got != 2 {
		t.Fatalf("got %d lost; want 2", got)
	}
	if got := len(lostINCRs(recs, 10)); got != 0 {
		t.Fatalf("got %d lost; want 0", got)
	}
}

func TestPercentile(t *testing.T) {
	var xs []time.Duration
	for i := 1; i <= 100; i++ {
		xs = append(xs, time.Duration(i)*time.Millisecond)
	}
	if got := percentile(xs, 0.99); got != 99*time.Millisecond {
		t.Errorf("got %v; want 99ms", got)
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("empty: got %v; want 0", got)
	}
}

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2, 10})
	if s.Med != 2.5 || s.Min != 1 || s.Max != 10 || s.N != 4 {
		t.Errorf("got %+v", s)
	}
}

func TestParseMonitorLine(t *testing.T) {
	ml, ok := parseMonitorLine(`+1700000000.123456 [0 127.0.0.1:5000] "incr" "drill:resp:7:ctr"`)
	if !ok {
		t.Fatal("not parsed")
	}
	if ml.Contender != "resp" || ml.Client != 7 || ml.Op != "INCR" || ml.Src != "127.0.0.1:5000" {
		t.Errorf("got %+v", ml)
	}
	if want := time.Unix(1_700_000_000, 123_456_000); !ml.At.Equal(want) {
		t.Errorf("got %v; want %v", ml.At, want)
	}
	if _, ok := parseMonitorLine(`+1700000000.1 [0 127.0.0.1:5000] "ping"`); ok {
		t.Error("a line without a drill key was parsed")
	}
}

func TestTimelineSVG(t *testing.T) {
	d, t0 := synth()
	d.Contenders = []string{"tcp", "resp", "haproxy", "goredis"}
	d.Cont = t0.Add(13 * time.Second)
	for _, c := range d.Contenders {
		for i := range 200 {
			sched := t0.Add(time.Duration(i) * 100 * time.Millisecond)
			err := ""
			if i%50 == 0 {
				err = `boom <&> "quoted"`
			}
			d.Records = append(d.Records, rec(c, 0, "GET", sched, time.Duration(i+1)*time.Millisecond, err, 0))
		}
	}
	svg := Timeline(d)
	dec := xml.NewDecoder(strings.NewReader(svg))
	lanes := map[string]bool{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "g" {
			continue
		}
		for _, a := range se.Attr {
			if a.Name.Local == "data-contender" {
				lanes[a.Value] = true
			}
		}
	}
	if len(lanes) != len(d.Contenders) {
		t.Fatalf("got lanes %v; want one per contender %v", lanes, d.Contenders)
	}
	for _, want := range []string{"sentproxy tcp", "go-redis FailoverClient", "+switch-master", "SIGCONT", "#d62728"} {
		if !strings.Contains(svg, want) {
			t.Errorf("picture lacks %q", want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-scenarios=nope"},
		{"-contenders=tcp,envoy"},
		{"-clients=0"},
		{"-rate=-1"},
		{"-runs=0"},
		{"-down-after=1ms"},
		{"extra"},
	} {
		_, err := parseFlags(args)
		var ue lab.UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: got %v; want a usage error", args, err)
		}
	}
	o, err := parseFlags([]string{"-quick", "-contenders=goredis,tcp"})
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.Runs != 1 || o.cfg.Clients != 4 || strings.Join(o.cfg.Contenders, ",") != "tcp,goredis" {
		t.Errorf("got %+v", o.cfg)
	}
	if o.keep {
		t.Error("scratch directory kept without -keep")
	}
	if o, err := parseFlags([]string{"-keep"}); err != nil || !o.keep {
		t.Errorf("-keep: got keep=%v, %v", o.keep, err)
	}
}
