package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
	"github.com/sentproxy/sentproxy/internal/testredis"
	"github.com/sentproxy/sentproxy/internal/testutil"
)

func TestPlanProcs(t *testing.T) {
	none := cpuLimit{known: true}
	for _, tc := range []struct {
		name        string
		flag        string
		epollRoutes int
		base        int
		pinned      bool
		limit       cpuLimit
		loops       int
		procs       int
		why         string // a part of plan.why
	}{
		{"auto on 2 CPUs: two loops, one P more", "auto", 1, 2, false, none, 2, 3, "one P more"},
		{"auto on 4 CPUs: two loops fit", "auto", 1, 4, false, none, 2, 4, "can hold"},
		{"auto on 1 CPU: one loop, parked", "auto", 1, 1, false, none, 1, 1, "one loop, not two: Go gave one P"},
		{"auto with GOMAXPROCS=2 set: one loop", "auto", 1, 2, true, none, 1, 2, "one loop, not two: GOMAXPROCS is set"},
		{"auto with GOMAXPROCS=3 set: two loops", "auto", 1, 3, true, none, 2, 3, "can hold"},
		{"auto under a 2-CPU quota: one loop", "auto", 1, 2, false, cpuLimit{true, 2}, 1, 2, "one loop, not two: the cgroup CPU limit is 2 CPUs"},
		{"auto under a 3-CPU quota on 2 CPUs", "auto", 1, 2, false, cpuLimit{true, 3}, 2, 3, "one P more"},
		{"auto under a 0.5-CPU quota (Go gives 2)", "auto", 1, 2, false, cpuLimit{true, 0.5}, 1, 2, "limit is 0.5 CPUs"},
		{"auto, the cgroup unreadable: one loop", "auto", 1, 2, false, cpuLimit{}, 1, 2, "one loop, not two: the cgroup CPU limit could not be read"},
		{"auto, two routes: one loop each, one P more", "auto", 2, 2, false, none, 1, 3, "one P more"},
		{"auto, three routes: one P more at most", "auto", 3, 2, false, none, 1, 3, "one P more"},
		{"auto, no epoll route: no loops, nothing changes", "auto", 0, 2, false, none, 0, 2, "no route"},
		{"two loops asked for, no epoll route", "2", 0, 2, false, none, 0, 2, "no route"},
		{"one loop: nothing changes", "1", 1, 2, false, none, 1, 2, "can hold"},
		{"two loops asked for on 2 CPUs", "2", 1, 2, false, none, 2, 3, "one P more"},
		{"two loops asked for, GOMAXPROCS set", "2", 1, 2, true, none, 2, 2, "set in the environment, so only 1 of 2 loops"},
		{"two loops asked for under a 2-CPU quota", "2", 1, 2, false, cpuLimit{true, 2}, 2, 2, "cgroup CPU limit is 2"},
		{"two loops asked for, cgroup unreadable", "2", 1, 2, false, cpuLimit{}, 2, 2, "could not be read"},
		{"eight loops on 2 CPUs: one P more at most", "8", 1, 2, false, none, 8, 3, "one P more"},
		{"0 is one per CPU, one P more", "0", 1, 4, false, none, 4, 5, "one P more"},
		{"two loops on 1 CPU", "2", 1, 1, false, none, 2, 1, "one P (one CPU), so no loop may hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planProcs(tc.flag, tc.epollRoutes, tc.base, tc.pinned, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if p.loops != tc.loops || p.procs != tc.procs || !strings.Contains(p.why, tc.why) {
				t.Errorf("planProcs(%q, routes %d, base %d, pinned %v, %+v) = %d loops, GOMAXPROCS %d (%s); want %d, %d (%q)",
					tc.flag, tc.epollRoutes, tc.base, tc.pinned, tc.limit, p.loops, p.procs, p.why, tc.loops, tc.procs, tc.why)
			}
		})
	}
}

// Tried: a negative count, words other than auto, a number with a unit,
// an empty value. Each is refused, with the flag named.
func TestPlanProcsBadFlag(t *testing.T) {
	for _, v := range []string{"-1", "two", "Auto", "2x", "", "1.5"} {
		if _, err := planProcs(v, 1, 2, false, cpuLimit{known: true}); err == nil || !strings.Contains(err.Error(), "--proxy.event-loops") {
			t.Errorf("--proxy.event-loops=%q: err %v; want one naming the flag", v, err)
		}
	}
}

func TestQuotaFrom(t *testing.T) {
	const hybridMounts = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	const v2Mounts = `24 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
`
	const dockerV1Mounts = `700 690 0:30 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
`
	for _, tc := range []struct {
		name          string
		cgroup, mount string
		files         map[string]string
		want          cpuLimit
	}{
		{"cgroup v1 cpu controller, no quota (this CI machine's layout)",
			"4:memory:/x\n1:cpu:/\n0::/\n", hybridMounts,
			map[string]string{"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"},
			cpuLimit{known: true}},
		{"cgroup v1, a quota of 1.5 CPUs on the parent",
			"1:cpu:/a/b\n", hybridMounts,
			map[string]string{
				"/sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us": "-1", "/sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us": "100000",
				"/sys/fs/cgroup/cpu/a/cpu.cfs_quota_us": "150000", "/sys/fs/cgroup/cpu/a/cpu.cfs_period_us": "100000",
				"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"},
			cpuLimit{known: true, cpus: 1.5}},
		{"cgroup v1 in a container: the mount's root is the container's cgroup",
			"5:cpu,cpuacct:/docker/abc\n", dockerV1Mounts,
			map[string]string{"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "200000", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000"},
			cpuLimit{known: true, cpus: 2}},
		{"cgroup v2 systemd service, the slice limits, the leaf does not",
			"0::/system.slice/sentproxy.service\n", v2Mounts,
			map[string]string{
				"/sys/fs/cgroup/system.slice/sentproxy.service/cpu.max": "max 100000\n",
				"/sys/fs/cgroup/system.slice/cpu.max":                   "50000 100000\n"},
			cpuLimit{known: true, cpus: 0.5}},
		{"cgroup v2, the tighter of two limits",
			"0::/a/b\n", v2Mounts,
			map[string]string{"/sys/fs/cgroup/a/b/cpu.max": "300000 100000", "/sys/fs/cgroup/a/cpu.max": "400000 100000"},
			cpuLimit{known: true, cpus: 3}},
		{"cgroup v2 namespace root (a container): no cpu.max, no limit",
			"0::/\n", v2Mounts, map[string]string{}, cpuLimit{known: true}},
		{"cgroup v2, cpu.max garbled: unknown",
			"0::/a\n", v2Mounts, map[string]string{"/sys/fs/cgroup/a/cpu.max": "lots 100000"}, cpuLimit{}},
		{"cgroup v2, cpu.max with a zero period: unknown",
			"0::/a\n", v2Mounts, map[string]string{"/sys/fs/cgroup/a/cpu.max": "100000 0"}, cpuLimit{}},
		{"cgroup v1, quota file unreadable: unknown",
			"1:cpu:/\n", hybridMounts, map[string]string{}, cpuLimit{}},
		{"the cgroup lies outside the mounted part: unknown",
			"5:cpu,cpuacct:/other\n", dockerV1Mounts, map[string]string{}, cpuLimit{}},
		{"a sibling that shares the mount root's prefix is outside too",
			"5:cpu,cpuacct:/docker/abcdef\n", dockerV1Mounts, map[string]string{}, cpuLimit{}},
		{"no cgroup mounted at all: unknown",
			"0::/\n", "22 1 0:21 / /proc rw - proc proc rw\n", map[string]string{}, cpuLimit{}},
		{"garbage in both files: unknown",
			"nonsense\n::\n", "- - -\n\n", map[string]string{}, cpuLimit{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(path string) ([]byte, error) {
				if s, ok := tc.files[path]; ok {
					return []byte(s), nil
				}
				return nil, fmt.Errorf("open %s: %w", path, fs.ErrNotExist)
			}
			if got := quotaFrom(tc.cgroup, tc.mount, read); got != tc.want {
				t.Errorf("quotaFrom = %+v; want %+v", got, tc.want)
			}
		})
	}
}

// `sentproxy run` with the defaults, in a process of its own in front of a
// real master and Sentinel, runs with the GOMAXPROCS and the event loops
// that planProcs gives for this machine (on 2 CPUs without a CPU limit:
// 3 and 2), as the runtime itself reports it on /metrics; with
// GOMAXPROCS set in its environment it keeps that value and runs one loop
// where two could not both hold.
func TestRunSetsGOMAXPROCS(t *testing.T) {
	testredis.Require(t)
	master := testredis.StartServer(t, redisproc.Options{})
	sentinel := testredis.StartSentinel(t, redisproc.SentinelOptions{MasterPort: master.Port})
	for _, tc := range []struct {
		name   string
		env    string // GOMAXPROCS, "" for none
		flag   string
		routes int
		// onTwoCPUs is the event loops and GOMAXPROCS to see where Go
		// gives 2 Ps and no CPU limit binds (this CI's machines), said
		// here and not taken from planProcs.
		onTwoCPUs [2]int
	}{
		{"defaults", "", "auto", 1, [2]int{2, 3}},
		{"GOMAXPROCS=2 set", "2", "auto", 1, [2]int{1, 2}},
		{"two loops asked for", "", "2", 1, [2]int{2, 3}},
		{"resp mode: no loops", "", "auto", 0, [2]int{0, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mode := "tcp"
			if tc.routes == 0 {
				mode = "resp"
			}
			p := startSentproxyProcess(t, tc.env, "run", "--sentinel.addrs="+sentinel.Addr,
				"--proxy.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0",
				"--proxy.mode="+mode, "--proxy.event-loops="+tc.flag, "--log.format=json")
			// Go's own value in the child: this process's, unless
			// GOMAXPROCS set ours (scripts/test.sh runs some tests so).
			base, pinned := startProcs, tc.env != ""
			switch {
			case pinned:
				base = 2
			case envPinsProcs():
				base = int(p.record["go_default"].(float64))
			}
			if got := p.record["go_default"]; got != float64(base) {
				t.Errorf("logged Go's GOMAXPROCS as %v; want %d", got, base)
			}
			limit := cpuQuota()
			want, err := planProcs(tc.flag, tc.routes, base, pinned, limit)
			if err != nil {
				t.Fatal(err)
			}
			if base == 2 && limit.known && (limit.cpus == 0 || limit.cpus >= 3) {
				if got := [2]int{want.loops, want.procs}; got != tc.onTwoCPUs {
					t.Errorf("on 2 CPUs without a CPU limit: %d event loops and GOMAXPROCS %d planned; want %v", want.loops, want.procs, tc.onTwoCPUs)
				}
			}
			if got := p.record["per_route"]; got != float64(want.loops) {
				t.Errorf("logged %v event loops per route; want %d (%s)", got, want.loops, want.why)
			}
			web := &harness{t: t, web: p.record["web"].(string)}
			if got := web.metric("go_sched_gomaxprocs_threads"); got != float64(want.procs) {
				t.Errorf("GOMAXPROCS %v; want %d (%s)", got, want.procs, want.why)
			}
			st := getStatus(t, web)
			if st.GOMAXPROCS != want.procs || st.Routes[0].EventLoops != want.loops {
				t.Errorf("/status: GOMAXPROCS %d, routes %+v; want %d and one route with %d event loops", st.GOMAXPROCS, st.Routes, want.procs, want.loops)
			}
			// It serves: a PING through it reaches the master.
			if reply, err := rawCommand(p.record["listen"].(string), 5*time.Second, "PING"); err != nil || reply != "+PONG" {
				t.Errorf("PING through sentproxy: %q, %v", reply, err)
			}
		})
	}
}

// sentproxyProcess is this test binary run as sentproxy; record holds the
// "event loops" log record's fields, plus "web" and "listen", the bound
// addresses.
type sentproxyProcess struct {
	record map[string]any
}

func startSentproxyProcess(t *testing.T, gomaxprocs string, args ...string) *sentproxyProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	env := []string{"SENTPROXY_TEST_AS_MAIN=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "SENTPROXY_") {
			env = append(env, kv)
		}
	}
	if gomaxprocs != "" {
		env = append(env, "GOMAXPROCS="+gomaxprocs)
	}
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.Buffer{}
	p := &sentproxyProcess{record: map[string]any{}}
	ready := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			if sent {
				continue
			}
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			switch rec["msg"] {
			case "event loops":
				for k, v := range rec {
					p.record[k] = v
				}
			case "listening":
				p.record["listen"] = rec["address"]
			case "serving HTTP endpoints":
				p.record["web"] = rec["address"]
			}
			if p.record["web"] != nil && p.record["listen"] != nil && p.record["msg"] != nil {
				sent = true
				close(ready)
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-scanned
		if err := cmd.Wait(); err != nil {
			t.Errorf("sentproxy: %v", err)
		}
		if t.Failed() {
			t.Logf("sentproxy log:\n%s", tail(logs.String(), 100))
		}
	})
	select {
	case <-ready:
	case <-scanned:
		t.Fatal("sentproxy ended before it logged its event loops and addresses")
	case <-time.After(20 * time.Second):
		t.Fatal("sentproxy did not log its event loops and addresses within 20 s")
	}
	return p
}
