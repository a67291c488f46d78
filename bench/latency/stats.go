package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// Percentiles summarizes one run's latencies.
type Percentiles struct {
	P50, P90, P99, P999, Max time.Duration
}

// pctNames and get list the percentiles in report order.
var pctNames = []string{"p50", "p90", "p99", "p99.9", "max"}

func (p Percentiles) get(name string) time.Duration {
	switch name {
	case "p50":
		return p.P50
	case "p90":
		return p.P90
	case "p99":
		return p.P99
	case "p99.9":
		return p.P999
	case "max":
		return p.Max
	}
	panic("unknown percentile " + name)
}

// percentile returns the nearest-rank q-quantile of sorted samples: the
// smallest sample with at least q of all samples at or below it.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// percentiles sorts samples in place and summarizes them.
func percentiles(samples []time.Duration) Percentiles {
	slices.Sort(samples)
	return Percentiles{
		P50:  percentile(samples, 0.50),
		P90:  percentile(samples, 0.90),
		P99:  percentile(samples, 0.99),
		P999: percentile(samples, 0.999),
		Max:  percentile(samples, 1),
	}
}

// spread is the median of per-round figures and their range.
type spread struct {
	Median, Min, Max float64
	N                int
}

func newSpread(xs []float64) spread {
	if len(xs) == 0 {
		return spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	return spread{Median: lab.Median(xs), Min: slices.Min(xs), Max: slices.Max(xs), N: len(xs)}
}

// String prints "median (min–max)" with format, or just the median when
// there is one figure.
func (s spread) String() string { return s.format("%.0f") }

func (s spread) format(f string) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf(f, s.Median)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Median, s.Min, s.Max)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// cpuCounters is the first line of /proc/stat: the whole machine's CPU
// time in clock ticks, busy and in total.
type cpuCounters struct{ busy, total int64 }

func readCPUCounters() (cpuCounters, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuCounters{}, fmt.Errorf("machine cpu: %w", err)
	}
	return parseCPUCounters(string(b))
}

// parseCPUCounters reads "cpu user nice system idle iowait irq softirq
// steal ...": idle and iowait are not busy, the rest is.
func parseCPUCounters(stat string) (cpuCounters, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuCounters{}, fmt.Errorf("machine cpu: unexpected /proc/stat line %q", line)
	}
	var c cpuCounters
	// guest and guest_nice (fields 9 and 10) are already inside user and nice.
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return cpuCounters{}, fmt.Errorf("machine cpu: %q in /proc/stat: %w", s, err)
		}
		c.total += n
		if i != 3 && i != 4 {
			c.busy += n
		}
	}
	return c, nil
}

// busyFraction is the share of the machine's CPU time that was busy
// between two readings.
func busyFraction(a, b cpuCounters) float64 {
	if b.total <= a.total {
		return math.NaN()
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}
