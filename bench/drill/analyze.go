package main

import (
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// matchTolerance allows for the gap between the drill's clock reading and
// Redis's own gettimeofday around one command.
const matchTolerance = time.Millisecond

// Metrics are one contender's results in one run. Times are relative to the
// fault unless named otherwise.
type Metrics struct {
	Requests   int
	Skipped    int
	Errors     int
	ErrorKinds map[string]int
	HasErr     bool
	ErrFirst   time.Duration
	ErrLast    time.Duration
	// FirstOK is the time from +switch-master to the first success that did
	// not run on the old master; HasFirstOK is false without a switch or
	// without such a success.
	HasFirstOK bool
	FirstOK    time.Duration
	// P99 is over every request scheduled inside the failover window, errors
	// included, latency counted from the scheduled start; skipped slots
	// count with their lower bound.
	WindowN int
	P99     time.Duration
	// Writes (INCR, SET) the old master ran after the switch, and how many
	// of them the client saw acknowledged.
	OldWrites      int
	OldWritesAcked int
	OldReads       int
	// Acknowledged INCRs the final master does not hold, split by when they
	// were acknowledged.
	FinalKnown bool
	LostBefore int
	LostAfter  int
}

var (
	reAddr   = regexp.MustCompile(`(\d{1,3}\.){3}\d{1,3}:\d+`)
	reNumber = regexp.MustCompile(`\b\d+(\.\d+)?(ms|µs|s)?\b`)
)

// errorKind folds one error text into a kind: addresses, ports and numbers
// would otherwise make every error its own kind.
func errorKind(s string) string {
	s = reAddr.ReplaceAllString(s, "ADDR")
	s = reNumber.ReplaceAllString(s, "N")
	if len(s) > 90 {
		s = s[:90] + "…"
	}
	return s
}

// windowEnd is the end of the failover window: two seconds after the
// switch, or after the fault when there was none.
func windowEnd(d *RunData) time.Time {
	if !d.Switch.IsZero() {
		return d.Switch.Add(windowAfterSwitch)
	}
	return d.Fault.Add(windowAfterSwitch)
}

// oldMasterHits returns, per contender, the indexes into d.Records of the
// requests the old master ran after the switch, found by matching each
// MONITOR line to the one request of that client in flight at its time
// (each client has one connection and one request at a time).
func oldMasterHits(d *RunData) map[int]bool {
	hits := map[int]bool{}
	if d.Switch.IsZero() {
		return hits
	}
	type ck struct {
		contender string
		client    int
	}
	by := map[ck][]int{}
	for i, r := range d.Records {
		k := ck{r.Contender, r.Client}
		by[k] = append(by[k], i)
	}
	for _, idx := range by {
		sort.Slice(idx, func(a, b int) bool { return d.Records[idx[a]].Sent.Before(d.Records[idx[b]].Sent) })
	}
	for _, m := range d.Monitor {
		if !m.At.After(d.Switch) {
			continue
		}
		idx := by[ck{m.Contender, m.Client}]
		// The last request sent no later than the line's time.
		j := sort.Search(len(idx), func(j int) bool {
			return d.Records[idx[j]].Sent.After(m.At.Add(matchTolerance))
		}) - 1
		if j < 0 {
			continue
		}
		r := d.Records[idx[j]]
		if r.Op == m.Op && !m.At.After(r.Done.Add(matchTolerance)) {
			hits[idx[j]] = true
		}
	}
	return hits
}

// Analyze computes every contender's metrics for one run.
func Analyze(d *RunData) map[string]*Metrics {
	out := map[string]*Metrics{}
	for _, c := range d.Contenders {
		out[c] = &Metrics{ErrorKinds: map[string]int{}}
	}
	hits := oldMasterHits(d)
	wend := windowEnd(d)
	lat := map[string][]time.Duration{}
	acked := map[string]map[int][]Record{}
	for i, r := range d.Records {
		m := out[r.Contender]
		if m == nil {
			continue
		}
		m.Requests++
		if r.Err != "" {
			m.Errors++
			m.ErrorKinds[errorKind(r.Err)]++
			at := r.Done.Sub(d.Fault)
			if !m.HasErr || at < m.ErrFirst {
				m.ErrFirst = at
			}
			if !m.HasErr || at > m.ErrLast {
				m.ErrLast = at
			}
			m.HasErr = true
		}
		if !r.Sched.Before(d.Fault) && r.Sched.Before(wend) {
			lat[r.Contender] = append(lat[r.Contender], r.Done.Sub(r.Sched))
		}
		if hits[i] {
			if r.Op == "GET" {
				m.OldReads++
			} else {
				m.OldWrites++
				if r.Err == "" {
					m.OldWritesAcked++
				}
			}
		}
		if r.Err == "" && !d.Switch.IsZero() && r.Done.After(d.Switch) && !hits[i] {
			if at := r.Done.Sub(d.Switch); !m.HasFirstOK || at < m.FirstOK {
				m.FirstOK, m.HasFirstOK = at, true
			}
		}
		if r.Op == "INCR" && r.Err == "" {
			if acked[r.Contender] == nil {
				acked[r.Contender] = map[int][]Record{}
			}
			acked[r.Contender][r.Client] = append(acked[r.Contender][r.Client], r)
		}
	}
	for _, s := range d.Skipped {
		m := out[s.Contender]
		if m == nil {
			continue
		}
		m.Skipped++
		if !s.Sched.Before(d.Fault) && s.Sched.Before(wend) {
			lat[s.Contender] = append(lat[s.Contender], s.Until.Sub(s.Sched))
		}
	}
	for c, m := range out {
		m.WindowN = len(lat[c])
		m.P99 = percentile(lat[c], 0.99)
		final, ok := d.Final[c]
		if !ok {
			continue
		}
		m.FinalKnown = true
		for client, recs := range acked[c] {
			for _, r := range lostINCRs(recs, final[client]) {
				if r.Done.Before(d.Fault) {
					m.LostBefore++
				} else {
					m.LostAfter++
				}
			}
		}
	}
	return out
}

// lostINCRs returns the acknowledged INCRs of one counter that the final
// master does not hold. Only its own client increments the counter, so
// the final master's history is 1..final, each value given out once. An
// acknowledged value above final was lost; a value acknowledged twice means
// the counter was rolled back in between (the earlier acknowledgement came
// from a history that was thrown away). Neither check can see a lost INCR
// whose value the new history reached again without this client being told
// it, so this is a lower bound.
func lostINCRs(recs []Record, final int64) []Record {
	recs = slices.Clone(recs)
	sort.Slice(recs, func(i, j int) bool { return recs[i].Done.Before(recs[j].Done) })
	last := map[int64]int{}
	for i, r := range recs {
		last[r.Value] = i
	}
	var lost []Record
	for i, r := range recs {
		if r.Value > final || last[r.Value] != i {
			lost = append(lost, r)
		}
	}
	return lost
}

// percentile uses the nearest-rank method; it returns 0 for no samples.
func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(rank, 0)]
}

// Summary is a value over runs: the median and the range.
type Summary struct {
	N             int // runs that had a value
	Med, Min, Max float64
}

func summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	return Summary{N: len(xs), Med: lab.Median(xs), Min: slices.Min(xs), Max: slices.Max(xs)}
}

// kindsAcross merges the error kinds of several runs, most frequent first.
func kindsAcross(ms []*Metrics) []string {
	total := map[string]int{}
	for _, m := range ms {
		for k, n := range m.ErrorKinds {
			total[k] += n
		}
	}
	keys := make([]string, 0, len(total))
	for k := range total {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if total[keys[i]] != total[keys[j]] {
			return total[keys[i]] > total[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

func hasKind(kinds []string, words ...string) bool {
	for _, k := range kinds {
		for _, w := range words {
			if strings.Contains(strings.ToLower(k), w) {
				return true
			}
		}
	}
	return false
}
