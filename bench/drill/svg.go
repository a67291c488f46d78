package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// Timeline layout, in SVG user units.
const (
	svgWidth   = 1000
	svgLeft    = 120
	svgRight   = 20
	svgTop     = 84
	svgLaneH   = 130
	svgLaneGap = 18
	svgBottom  = 46
	latMin     = 100 * time.Microsecond
	latMax     = 20 * time.Second
	// svgBefore is how much of the warm-up the picture shows.
	svgBefore = 2 * time.Second
)

// contenderLabel names a contender the way the report does.
func contenderLabel(c string) string {
	switch c {
	case "tcp":
		return "sentproxy tcp"
	case "epoll":
		return "sentproxy tcp, epoll engine"
	case "resp":
		return "sentproxy resp"
	case "haproxy":
		return "HAProxy role check"
	case "goredis":
		return "go-redis FailoverClient"
	}
	return c
}

// Timeline draws one run: a lane per contender, each request a dot at its
// completion time (x, relative to the fault) and its latency from the
// scheduled start (y, log scale). Requests that land on the same pixel are
// drawn once, which keeps the file small without changing what it shows.
func Timeline(d *RunData) string {
	from := d.Fault.Add(-svgBefore)
	to := d.End
	if !to.After(d.Fault) {
		to = d.Fault.Add(time.Second)
	}
	plotW := float64(svgWidth - svgLeft - svgRight)
	span := to.Sub(from).Seconds()
	xOf := func(t time.Time) float64 {
		return float64(svgLeft) + plotW*t.Sub(from).Seconds()/span
	}
	lmin, lmax := math.Log10(latMin.Seconds()), math.Log10(latMax.Seconds())
	yIn := func(lane int, lat time.Duration) float64 {
		l := math.Log10(math.Min(math.Max(lat.Seconds(), latMin.Seconds()), latMax.Seconds()))
		top := float64(svgTop + lane*(svgLaneH+svgLaneGap))
		return top + float64(svgLaneH)*(1-(l-lmin)/(lmax-lmin))
	}
	n := len(d.Contenders)
	height := svgTop + n*(svgLaneH+svgLaneGap) - svgLaneGap + svgBottom

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgWidth, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">Failover drill: %s (run %d) — latency of each request, log scale, by completion time</text>`+"\n", svgLeft, html.EscapeString(d.Scenario), d.Run)
	// Legend.
	lx := svgLeft
	legend := func(mark, label string) {
		b.WriteString(strings.ReplaceAll(mark, "X", fmt.Sprint(lx)))
		fmt.Fprintf(&b, `<text x="%d" y="44">%s</text>`+"\n", lx+12, html.EscapeString(label))
		lx += 14 + 7*len(label) + 16
	}
	legend(`<circle cx="X" cy="40" r="2.5" fill="#2b6cb0"/>`, "success")
	legend(`<circle cx="X" cy="40" r="3" fill="#9467bd"/>`, "ran on old master after switch")
	legend(`<path d="M X 36 l 7 7 m 0 -7 l -7 7" transform="translate(-3,0)" stroke="#d62728" stroke-width="2"/>`, "error")
	legend(`<line x1="X" y1="34" x2="X" y2="46" stroke="black" stroke-width="2"/>`, "fault")
	legend(`<line x1="X" y1="34" x2="X" y2="46" stroke="#2ca02c" stroke-width="2" stroke-dasharray="4,2"/>`, "+switch-master")
	if !d.Cont.IsZero() {
		legend(`<line x1="X" y1="34" x2="X" y2="46" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="2,2"/>`, "SIGCONT")
	}

	laneOf := map[string]int{}
	for i, c := range d.Contenders {
		laneOf[c] = i
		top := svgTop + i*(svgLaneH+svgLaneGap)
		fmt.Fprintf(&b, `<g class="lane" data-contender="%s">`+"\n", html.EscapeString(c))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="#f7f7f7" stroke="#999"/>`+"\n", svgLeft, top, plotW, svgLaneH)
		for _, tick := range []time.Duration{latMin, time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second, 10 * time.Second} {
			y := yIn(i, tick)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd"/>`, svgLeft, y, float64(svgLeft)+plotW, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", svgLeft-6, y+4, tick)
		}
		b.WriteString("</g>\n")
	}
	fmt.Fprintf(&b, `<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">latency from scheduled start</text>`+"\n", svgTop+(n*(svgLaneH+svgLaneGap))/2)

	// Time axis: whole seconds relative to the fault.
	axisY := svgTop + n*(svgLaneH+svgLaneGap) - svgLaneGap
	step := 1.0
	if span > 40 {
		step = 5
	}
	for s := math.Ceil(-svgBefore.Seconds()/step) * step; s <= to.Sub(d.Fault).Seconds(); s += step {
		x := xOf(d.Fault.Add(time.Duration(s * float64(time.Second))))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/><text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x, axisY, x, axisY+5, x, axisY+18, s)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">seconds since the fault (completion time)</text>`+"\n", float64(svgLeft)+plotW/2, axisY+36)

	// The event lines go under the dots, so a request completing right at
	// the switch stays visible; their labels sit above the lanes (row 1
	// above row 0).
	vline := func(t time.Time, color, dash, label string, row int) {
		if t.IsZero() {
			return
		}
		x := xOf(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="1.5" stroke-dasharray="%s"/>`+"\n", x, svgTop-4, x, axisY, color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="%s" font-size="11" stroke="white" stroke-width="3" paint-order="stroke">%s</text>`+"\n", x+3, svgTop-6-row*14, color, html.EscapeString(label))
	}
	vline(d.Fault, "black", "none", "fault", 0)
	vline(d.Switch, "#2ca02c", "4,2", fmt.Sprintf("+switch-master (+%.2fs)", d.Switch.Sub(d.Fault).Seconds()), 1)
	vline(d.Cont, "#ff7f0e", "2,2", fmt.Sprintf("SIGCONT (+%.2fs)", d.Cont.Sub(d.Fault).Seconds()), 0)

	type px struct{ lane, x, y int }
	seenOK, seenOld, seenErr := map[px]bool{}, map[px]bool{}, map[px]bool{}
	var dots, old, errs strings.Builder
	hits := oldMasterHits(d)
	for i, r := range d.Records {
		lane, ok := laneOf[r.Contender]
		if !ok || r.Done.Before(from) || r.Done.After(to) {
			continue
		}
		x, y := xOf(r.Done), yIn(lane, r.Done.Sub(r.Sched))
		// A 2-unit grid: finer than a dot, coarse enough to keep the file
		// under a few hundred kB at 40 clients.
		k := px{lane, int(x / 2), int(y / 2)}
		if r.Err == "" && hits[i] {
			if !seenOld[k] {
				seenOld[k] = true
				fmt.Fprintf(&old, `<circle cx="%.0f" cy="%.0f" r="2"/>`+"\n", x, y)
			}
			continue
		}
		if r.Err == "" {
			if !seenOK[k] {
				seenOK[k] = true
				fmt.Fprintf(&dots, `<circle cx="%.0f" cy="%.0f" r="1.6"/>`+"\n", x, y)
			}
			continue
		}
		if !seenErr[k] {
			seenErr[k] = true
			fmt.Fprintf(&errs, `<path d="M %.1f %.1f l 7 7 m 0 -7 l -7 7" stroke="#d62728" stroke-width="2"><title>%s</title></path>`+"\n", x-3.5, y-3.5, html.EscapeString(r.Err))
		}
	}
	// The dots share their style through the group, which halves the file.
	b.WriteString(`<g fill="#2b6cb0" fill-opacity="0.6">` + "\n" + dots.String() + "</g>\n")
	b.WriteString(`<g fill="#9467bd">` + "\n" + old.String() + "</g>\n")
	b.WriteString(errs.String())

	// Lane titles go over the dots, with a white halo to stay readable.
	for i, c := range d.Contenders {
		top := svgTop + i*(svgLaneH+svgLaneGap)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold" stroke="white" stroke-width="4" paint-order="stroke">%s</text>`+"\n", svgLeft+6, top+15, html.EscapeString(contenderLabel(c)))
	}
	b.WriteString("</svg>\n")
	return b.String()
}
