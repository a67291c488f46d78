package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
)

// Run is one failover as the Sentinels announced it.
type Run struct {
	Killed   time.Time
	Promoted time.Time   // the leader's +promoted-slave
	Leader   int         // the Sentinel that promoted
	Switches []time.Time // each Sentinel's +switch-master, earliest first
	// LeaderSwitch is the leader's own +switch-master: the end of its
	// failover, once the other replicas follow the new master.
	LeaderSwitch time.Time
}

// majority is when more than half of the Sentinels had switched.
func (r Run) majority() time.Time { return r.Switches[len(r.Switches)/2] }

// MajorityAfterPromotion is how long after the promotion a majority of the
// Sentinels reported the new master.
func (r Run) MajorityAfterPromotion() time.Duration { return r.majority().Sub(r.Promoted) }

// MajorityAfterFirstSwitch is how long after the first +switch-master any
// Sentinel published a majority had switched: the part of a cutover
// measured from the first +switch-master that comes from the Sentinels, not
// from sentproxy. 0 when the first to switch already made the majority.
func (r Run) MajorityAfterFirstSwitch() time.Duration { return r.majority().Sub(r.Switches[0]) }

// analyze reads one failover from the Sentinels' messages: complete once
// one Sentinel promoted a replica and every Sentinel published
// +switch-master. Until then it says what is missing.
func analyze(killed time.Time, events []event, sentinels int) (Run, error) {
	r := Run{Killed: killed, Leader: -1}
	switched := make([]bool, sentinels)
	for _, ev := range events {
		switch ev.channel {
		case "+promoted-slave":
			if r.Leader < 0 {
				r.Promoted, r.Leader = ev.at, ev.sentinel
			}
		case "+switch-master":
			if ev.sentinel < 0 || ev.sentinel >= sentinels || switched[ev.sentinel] {
				continue // a second switch (a later failover) is not this one's
			}
			switched[ev.sentinel] = true
			r.Switches = append(r.Switches, ev.at)
		}
	}
	if r.Leader < 0 {
		return r, errors.New("no Sentinel promoted a replica")
	}
	if len(r.Switches) < sentinels {
		return r, fmt.Errorf("%d of %d Sentinels published +switch-master", len(r.Switches), sentinels)
	}
	for _, ev := range events {
		if ev.channel == "+switch-master" && ev.sentinel == r.Leader {
			r.LeaderSwitch = ev.at
			break
		}
	}
	slices.SortFunc(r.Switches, func(a, b time.Time) int { return a.Compare(b) })
	return r, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

// Report renders the runs as the "propagation" section of RESULTS.md.
func Report(env lab.Env, cfg Config, runs []Run) string {
	var b strings.Builder
	b.WriteString("## Propagation: when a majority of the Sentinels knows the new master\n\n")
	fmt.Fprintf(&b, "Command: `%s` (%s)\n\n", env.Command, env.Date)
	load := "nothing else asks the Sentinels"
	if cfg.Pollers > 0 {
		load = fmt.Sprintf("%d pollers each ask every Sentinel SENTINEL MASTER every %s, as that many sentproxy processes do while the Sentinels disagree", cfg.Pollers, cfg.Poll)
	}
	fmt.Fprintf(&b, "Machine: %s CPUs; %s. No proxy runs: a master, %d replicas and 3 Sentinels (quorum 2, down-after %s), the master killed with SIGKILL; %s. Times are when each Sentinel's +promoted-slave and +switch-master reached a subscriber. sentproxy routes once a majority of the Sentinels agree (2 of 3), so \"majority after first +switch-master\" is the part of a cutover, measured from the first +switch-master, that the Sentinels take before sentproxy may switch.\n\n",
		env.NProc, env.Redis, cfg.Replicas, cfg.DownAfter, load)
	b.WriteString("| run | promotion after kill, ms | 1st / 2nd / 3rd +switch-master after promotion, ms | leader's +switch-master after promotion, ms | majority after first +switch-master, ms |\n")
	b.WriteString("|---:|---:|---|---:|---:|\n")
	var afterProm, afterFirst []float64
	late := 0
	for i, r := range runs {
		parts := make([]string, len(r.Switches))
		for k, s := range r.Switches {
			parts[k] = ms(s.Sub(r.Promoted))
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", i+1, ms(r.Promoted.Sub(r.Killed)), strings.Join(parts, " / "),
			ms(r.LeaderSwitch.Sub(r.Promoted)), ms(r.MajorityAfterFirstSwitch()))
		afterProm = append(afterProm, float64(r.MajorityAfterPromotion())/float64(time.Millisecond))
		afterFirst = append(afterFirst, float64(r.MajorityAfterFirstSwitch())/float64(time.Millisecond))
		if r.MajorityAfterFirstSwitch() > 50*time.Millisecond {
			late++
		}
	}
	fmt.Fprintf(&b, "\nMedians over %d runs: a majority switched %.0f ms after the promotion and %.0f ms after the first +switch-master. In %d of %d runs a majority came more than 50 ms after the first +switch-master.\n",
		len(runs), lab.Median(afterProm), lab.Median(afterFirst), late, len(runs))
	return b.String()
}
