// Command syscalls shows where a proxy's CPU goes per request: system
// calls per request (strace -c -f attached to the proxy while
// redis-benchmark runs GET through it) and user and system CPU time per
// request (from /proc/PID/stat, in a separate run without strace, which
// slows what it traces). It compares sentproxy in tcp mode (both engines)
// and resp mode with HAProxy (mode tcp, one thread) in the same run.
//
// Why it exists: tcp mode's splice engine copies with io.Copy between the
// raw TCP connections, which Go turns into splice(2) through a pipe, and
// Go's netpoller reads until EAGAIN before it parks. That fixes how many
// system calls a message costs; this program measures it next to the epoll
// engine's (the default on Linux) and HAProxy's.
//
// It writes the "syscalls" section of bench/RESULTS.md. From the
// repository root (needs strace, redis-server, redis-sentinel,
// redis-benchmark and haproxy):
//
//	go run ./bench/syscalls            # about 1 minute
//	go run ./bench/syscalls -quick     # smoke run; results go to a temp file
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
	"github.com/sentproxy/sentproxy/internal/redisproc"
)

func main() { lab.Main("syscalls", run) }

type options struct {
	requests int
	clients  int
	rounds   int
	results  string
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("syscalls", flag.ContinueOnError)
	o := options{}
	fs.IntVar(&o.requests, "n", 100000, "GET requests per measurement")
	fs.IntVar(&o.clients, "c", 50, "redis-benchmark clients")
	fs.IntVar(&o.rounds, "rounds", 3, "CPU-time rounds (target order rotated each round)")
	resultsFile := lab.ResultsFlag(fs, "syscalls")
	quick := fs.Bool("quick", false, "smoke run: 1 round of 10000 requests")
	set, err := lab.ParseFlags(fs, args)
	if err != nil {
		return o, err
	}
	if o.results, err = resultsFile(set, *quick); err != nil {
		return o, err
	}
	if *quick {
		if !set["n"] {
			o.requests = 10000
		}
		if !set["rounds"] {
			o.rounds = 1
		}
	}
	switch {
	case o.requests < 1000 || o.requests > 10_000_000:
		return o, lab.UsageError{Msg: fmt.Sprintf("-n %d: want 1000..10000000", o.requests)}
	case o.clients < 1 || o.clients > 1000:
		return o, lab.UsageError{Msg: fmt.Sprintf("-c %d: want 1..1000", o.clients)}
	case o.rounds < 1 || o.rounds > 20:
		return o, lab.UsageError{Msg: fmt.Sprintf("-rounds %d: want 1..20", o.rounds)}
	}
	return o, nil
}

// target is one proxy under test.
type target struct {
	name string
	addr string
	pid  int
}

// measurement is what one target cost per request.
type measurement struct {
	calls  map[string]float64 // syscall name -> calls per request
	errors map[string]float64 // syscall name -> failed calls per request
	user   []float64          // µs per request, one per round
	system []float64
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	for _, b := range []string{"strace", "redis-benchmark", "haproxy"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found: apt-get install -y strace redis-tools haproxy", b)
		}
	}
	root, err := lab.ModuleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sentproxy-syscalls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := lab.BuildSentproxy(ctx, root, dir)
	if err != nil {
		return err
	}
	topo, err := redisproc.StartTopology(ctx, redisproc.TopologyOptions{Dir: dir, Replicas: -1, Sentinels: 1, Quorum: 1})
	if err != nil {
		return err
	}
	defer topo.Close()
	var targets []target
	for _, v := range []struct{ name, mode string }{
		{"sentproxy tcp", "tcp"},
		{"sentproxy tcp epoll", "epoll"},
		{"sentproxy resp", "resp"},
	} {
		sp, err := lab.StartSentproxy(ctx, lab.ProxyOptions{Bin: bin, Dir: dir, Mode: v.mode, Sentinels: topo.SentinelAddrs()})
		if err != nil {
			return err
		}
		defer sp.Close()
		targets = append(targets, target{v.name, sp.Addr, sp.PID()})
	}
	hp, err := lab.StartHAProxy(ctx, lab.HAProxyOptions{Dir: dir, Servers: []string{topo.Master.Addr}})
	if err != nil {
		return err
	}
	defer hp.Close()
	targets = append(targets, target{"HAProxy", hp.Addr, hp.PID()})

	res := map[string]*measurement{}
	for _, t := range targets {
		res[t.name] = &measurement{}
		// Warm-up: connections, buffers and the Go heap settle first.
		if err := benchmark(ctx, t.addr, o.clients, o.requests/10); err != nil {
			return err
		}
	}
	for r := range o.rounds {
		for i := range targets {
			t := targets[(i+r)%len(targets)]
			u0, s0, err := lab.CPUTimes(t.pid)
			if err != nil {
				return err
			}
			if err := benchmark(ctx, t.addr, o.clients, o.requests); err != nil {
				return err
			}
			u1, s1, err := lab.CPUTimes(t.pid)
			if err != nil {
				return err
			}
			m := res[t.name]
			m.user = append(m.user, float64(u1-u0)/float64(time.Microsecond)/float64(o.requests))
			m.system = append(m.system, float64(s1-s0)/float64(time.Microsecond)/float64(o.requests))
			log.Info("cpu", "round", r+1, "target", t.name, "user_us_per_req", m.user[len(m.user)-1], "sys_us_per_req", m.system[len(m.system)-1])
		}
	}
	for _, t := range targets {
		calls, errs, err := traced(ctx, dir, t, o.clients, o.requests)
		if err != nil {
			return err
		}
		m := res[t.name]
		m.calls, m.errors = calls, errs
		log.Info("strace", "target", t.name, "syscalls_per_req", sum(calls))
	}
	body := report(targets, res, o, lab.Environment(ctx, root, "go run ./bench/syscalls", args))
	fmt.Print(body)
	path := lab.InRoot(root, o.results)
	if err := lab.ReplaceSection(path, "syscalls", body); err != nil {
		return err
	}
	log.Info("results written", "file", path)
	return nil
}

// benchmark runs redis-benchmark GET with n requests through addr.
func benchmark(ctx context.Context, addr string, clients, n int) error {
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-c", strconv.Itoa(clients),
		"-n", strconv.Itoa(n), "-t", "get", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("redis-benchmark via %s: %w: %s", addr, err, out)
	}
	return nil
}

// traced runs the benchmark with strace -c -f attached to the target and
// returns calls and failed calls per request, by system call.
func traced(ctx context.Context, dir string, t target, clients, n int) (calls, errs map[string]float64, err error) {
	out := filepath.Join(dir, "strace-"+strings.ReplaceAll(t.name, " ", "-")+".txt")
	cmd := exec.Command("strace", "-c", "-f", "-q", "-o", out, "-p", strconv.Itoa(t.pid))
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("strace: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	if err := waitTraced(ctx, t.pid, cmd); err != nil {
		return nil, nil, err
	}
	if err := benchmark(ctx, t.addr, clients, n); err != nil {
		return nil, nil, err
	}
	// SIGINT makes strace detach and write its summary.
	_ = cmd.Process.Signal(syscall.SIGINT)
	werr := cmd.Wait()
	stopped = true
	f, err := os.Open(out)
	if err != nil {
		return nil, nil, fmt.Errorf("strace output: %w (strace: %v)", err, werr)
	}
	defer f.Close()
	raw, rawErrs, err := parseStrace(bufio.NewScanner(f))
	if err != nil {
		return nil, nil, err
	}
	calls, errs = map[string]float64{}, map[string]float64{}
	for k, v := range raw {
		calls[k] = float64(v) / float64(n)
	}
	for k, v := range rawErrs {
		errs[k] = float64(v) / float64(n)
	}
	return calls, errs, nil
}

// waitTraced polls until strace has attached to pid (its TracerPid is set).
func waitTraced(ctx context.Context, pid int, strace *exec.Cmd) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "TracerPid:"); ok && strings.TrimSpace(v) == strconv.Itoa(strace.Process.Pid) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("strace did not attach to %d within 10s (ptrace not allowed?)", pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// parseStrace reads the table of `strace -c`: "% time seconds usecs/call
// calls errors syscall", errors being empty when there were none.
func parseStrace(sc *bufio.Scanner) (calls, errs map[string]int64, err error) {
	calls, errs = map[string]int64{}, map[string]int64{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[len(f)-1] == "total" || f[len(f)-1] == "syscall" {
			continue
		}
		if _, err := strconv.ParseFloat(f[0], 64); err != nil {
			continue // header and rule lines
		}
		name := f[len(f)-1]
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			continue
		}
		calls[name] = n
		if len(f) == 6 {
			if e, err := strconv.ParseInt(f[4], 10, 64); err == nil {
				errs[name] = e
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if len(calls) == 0 {
		return nil, nil, errors.New("strace summary had no system calls")
	}
	return calls, errs, nil
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// report renders the markdown section.
func report(targets []target, res map[string]*measurement, o options, env lab.Env) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Where the CPU goes: system calls per request\n\n")
	fmt.Fprintf(&b, "`%s` — %s CPUs, %s, %s, %s, revision %s\n\n", env.Command, env.NProc, env.Redis, env.HAProxy, env.GoVersion, env.Revision)
	fmt.Fprintf(&b, "redis-benchmark `-c %d -n %d -t get` (pipeline 1) through each proxy. CPU: user and system time of the proxy process per request (/proc/PID/stat), median of %d rounds in rotated order. System calls: one more run per proxy with `strace -c -f` attached (strace slows the proxy; the counts, not the times, are what it is read for).\n\n",
		o.clients, o.requests, o.rounds)
	b.WriteString("| proxy | user µs/req | system µs/req | system calls/req | of which failed (EAGAIN) | largest |\n|---|---:|---:|---:|---:|---|\n")
	for _, t := range targets {
		m := res[t.name]
		type kv struct {
			k string
			v float64
		}
		var top []kv
		for k, v := range m.calls {
			top = append(top, kv{k, v})
		}
		sort.Slice(top, func(i, j int) bool { return top[i].v > top[j].v || top[i].v == top[j].v && top[i].k < top[j].k })
		var parts []string
		for _, x := range top {
			if x.v < 0.05 || len(parts) == 4 {
				break
			}
			p := fmt.Sprintf("%s %.2f", x.k, x.v)
			if e := m.errors[x.k]; e >= 0.05 {
				p += fmt.Sprintf(" (%.2f failed)", e)
			}
			parts = append(parts, p)
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.2f | %.2f | %s |\n", t.name, lab.Median(m.user), lab.Median(m.system), sum(m.calls), sum(m.errors), strings.Join(parts, ", "))
	}
	b.WriteString("\nA GET through a proxy is two messages (request in, reply out). HAProxy reads a message, writes it, and on a short read waits for epoll without reading again. Go's netpoller reads until EAGAIN before it parks, so each message costs a third call; in tcp mode with the splice engine (`--proxy.engine=splice`) the calls are splice(2) (socket to pipe, pipe to socket), from io.Copy between the raw connections. The epoll engine (`--proxy.engine=epoll`, the default on Linux) works as HAProxy does: one level-triggered epoll loop reads once per readiness event and writes once at the end of the batch, so two calls per message. While busy, the loop waits in epoll_pwait itself, as HAProxy waits in epoll_wait: one call per batch of events, not per message; after 5 ms idle it parks on Go's netpoller instead, which adds the netpoller's calls. How many batches a request takes depends on the timing, which strace changes.\n")
	return b.String()
}
