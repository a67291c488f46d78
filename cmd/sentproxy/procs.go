package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// startProcs is GOMAXPROCS as Go set it at start: from the CPUs the
// process may run on and its cgroup's CPU limit, or from $GOMAXPROCS.
var startProcs = runtime.GOMAXPROCS(0)

// eventLoopsAuto is --proxy.event-loops's default.
const eventLoopsAuto = "auto"

// procsPlan is how many event loops each epoll route runs, and the
// GOMAXPROCS sentproxy sets so that they can all hold.
//
// A busy loop waits in epoll_wait keeping its P (proxy's hold), and at
// least one P is always left to the rest of the process, so at Go's
// default of one P per CPU only CPUs−1 loops may hold; the others park on
// the netpoller, which costs a goroutine wake-up per batch. On 2 CPUs that
// is one loop. Two loops that both hold (GOMAXPROCS=3) drew level with
// HAProxy without pipelining and stayed ahead with it, where one loop was
// 3–5 % behind without (README, Event loops and GOMAXPROCS). A holding
// loop blocked in epoll_wait uses no CPU, so the extra P adds threads that
// may run, not work.
type procsPlan struct {
	loops int // per epoll route, as proxy.Config.EventLoops
	procs int // GOMAXPROCS to run with; startProcs leaves Go's
	// why says, for the log, why procs is what it is.
	why string
}

// cpuLimit is the CPU bandwidth limit of the process's cgroups.
type cpuLimit struct {
	known bool    // the cgroup files could be read
	cpus  float64 // the tightest quota ÷ period on the way up; 0 is none
}

// parseEventLoops reads --proxy.event-loops: "auto", or a count, 0 meaning
// one per CPU.
func parseEventLoops(s string) (n int, auto bool, err error) {
	if s == eventLoopsAuto {
		return 0, true, nil
	}
	n, err = strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("--proxy.event-loops=%s: must be auto, 0 (one per CPU) or a number of loops", s)
	}
	return n, false, nil
}

// planProcs decides the loops per epoll route and GOMAXPROCS. base is Go's
// GOMAXPROCS at start, pinned whether $GOMAXPROCS set it (then it is left
// alone: the operator chose it). GOMAXPROCS is raised to let every loop
// hold with one P to spare, but by one P at most, and only where Go gave
// at least 2 (on one CPU a holding loop was never measured) and no cgroup
// CPU limit stands below the new value (threads past the quota would be
// throttled, which is why Go follows the limit). "auto" runs 2 loops on a
// single epoll route when both can hold, else 1.
func planProcs(flag string, epollRoutes, base int, pinned bool, limit cpuLimit) (procsPlan, error) {
	n, auto, err := parseEventLoops(flag)
	if err != nil {
		return procsPlan{}, err
	}
	if epollRoutes == 0 {
		return procsPlan{loops: 0, procs: base, why: "no route runs event loops"}, nil
	}
	canRaise := func(to int) (bool, string) {
		switch {
		case pinned:
			return false, "GOMAXPROCS is set in the environment"
		case base < 2:
			return false, "Go gave one P (one CPU)"
		case !limit.known:
			return false, "the cgroup CPU limit could not be read"
		case limit.cpus > 0 && limit.cpus < float64(to):
			return false, fmt.Sprintf("the cgroup CPU limit is %.4g CPUs", limit.cpus)
		}
		return true, ""
	}
	var fellBack string // why auto runs one loop where it would run two
	switch {
	case auto && epollRoutes == 1:
		n = 2
		if ok, why := canRaise(3); base < 3 && !ok {
			n, fellBack = 1, why
		}
	case auto:
		n = 1
	case n == 0:
		n = base
	}
	p := procsPlan{loops: n, procs: base}
	want := min(max(base, n*epollRoutes+1), base+1)
	switch ok, why := canRaise(want); {
	case fellBack != "":
		p.why = "one loop, not two: " + fellBack
	case want == base:
		p.why = "every loop can hold at Go's GOMAXPROCS"
	case !ok && base < 2:
		p.why = why + ", so no loop may hold: they park on Go's netpoller"
	case !ok:
		p.why = fmt.Sprintf("%s, so only %d of %d loops may hold at once", why, base-1, n*epollRoutes)
	default:
		p.procs = want
		p.why = "one P more than Go's, so that every loop can hold"
	}
	return p, nil
}

// envPinsProcs tells whether $GOMAXPROCS set the runtime's value, which
// it does only as a positive number.
func envPinsProcs() bool {
	n, err := strconv.Atoi(os.Getenv("GOMAXPROCS"))
	return err == nil && n > 0
}

// apply sets GOMAXPROCS. Setting it stops Go from following later changes
// of the cgroup CPU limit, so it is set only when it changes.
func (p procsPlan) apply(log *slog.Logger) {
	if p.procs != runtime.GOMAXPROCS(0) {
		runtime.GOMAXPROCS(p.procs)
	}
	log.Info("event loops", "per_route", p.loops, "gomaxprocs", p.procs, "go_default", startProcs, "why", p.why)
}

// cpuQuota reads the CPU bandwidth limit of the process's cgroup and of
// its ancestors (a parent's limit binds too, though Go reads only the
// leaf's), cgroup v1 or v2.
func cpuQuota() cpuLimit {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return cpuLimit{}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return cpuLimit{}
	}
	return quotaFrom(string(cg), string(mi), os.ReadFile)
}

// quotaFrom is cpuQuota on the contents of /proc/self/cgroup and
// /proc/self/mountinfo, reading the limit files with read.
func quotaFrom(cgroup, mountinfo string, read func(string) ([]byte, error)) cpuLimit {
	// A cgroup path is never empty ("/" at least): empty means not found.
	var v1Path, v2Path string
	for _, line := range strings.Split(cgroup, "\n") {
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		switch {
		case id == "0" && ctrls == "":
			v2Path = path
		case slices.Contains(strings.Split(ctrls, ","), "cpu"):
			v1Path = path
		}
	}
	var v1Root, v1Mount, v2Root, v2Mount string
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		switch {
		case g[0] == "cgroup" && slices.Contains(strings.Split(g[2], ","), "cpu") && v1Mount == "":
			v1Root, v1Mount = f[3], f[4]
		case g[0] == "cgroup2" && v2Mount == "":
			v2Root, v2Mount = f[3], f[4]
		}
	}
	// The cpu controller is in one hierarchy only: v1's when mounted.
	switch {
	case v1Path != "" && v1Mount != "":
		return walkUp(v1Root, v1Mount, v1Path, func(dir string) (float64, bool) {
			q, err1 := read(dir + "/cpu.cfs_quota_us")
			p, err2 := read(dir + "/cpu.cfs_period_us")
			if err1 != nil || err2 != nil {
				return 0, false
			}
			return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
		})
	case v2Path != "" && v2Mount != "":
		return walkUp(v2Root, v2Mount, v2Path, func(dir string) (float64, bool) {
			b, err := read(dir + "/cpu.max")
			if errors.Is(err, fs.ErrNotExist) {
				return 0, true // the root, or no cpu controller here: no limit
			}
			if err != nil {
				return 0, false
			}
			q, p, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
			return ratio(q, p)
		})
	}
	return cpuLimit{}
}

// walkUp applies limitAt to the cgroup directory of path and to each
// parent up to the mount point, and keeps the tightest limit.
func walkUp(root, mount, path string, limitAt func(dir string) (float64, bool)) cpuLimit {
	rel := path
	if root != "/" {
		var ok bool
		if rel, ok = strings.CutPrefix(path, root); !ok || (rel != "" && rel[0] != '/') {
			return cpuLimit{} // the cgroup is outside what is mounted
		}
	}
	rel = strings.Trim(rel, "/")
	lim := cpuLimit{known: true}
	for {
		dir := strings.TrimSuffix(mount, "/")
		if rel != "" {
			dir += "/" + rel
		}
		cpus, ok := limitAt(dir)
		if !ok {
			return cpuLimit{}
		}
		if cpus > 0 && (lim.cpus == 0 || cpus < lim.cpus) {
			lim.cpus = cpus
		}
		if rel == "" {
			return lim
		}
		i := strings.LastIndexByte(rel, '/')
		rel = rel[:max(i, 0)]
	}
}

// ratio reads a quota and a period: "max" or a negative quota is no
// limit (0).
func ratio(quota, period string) (float64, bool) {
	if quota == "max" || quota == "-1" {
		return 0, true
	}
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, false
	}
	if q < 0 {
		return 0, true
	}
	return float64(q) / float64(p), true
}
