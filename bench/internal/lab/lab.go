package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// BuildSentproxy compiles ./cmd/sentproxy of the module at root into dir and
// returns the binary's path.
func BuildSentproxy(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "sentproxy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/sentproxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sentproxy: %w: %s", err, out)
	}
	return bin, nil
}

// ModuleRoot walks up from the working directory to the directory holding
// go.mod, so the bench programs work from any subdirectory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Process is a child started by this package.
type Process struct {
	Name    string
	Addr    string // where clients connect
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// PID returns the child's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the child has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Close asks the child to stop with SIGTERM, waits up to five seconds, then
// kills it. It is idempotent.
func (p *Process) Close() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for 5s and was killed", p.Name, p.PID())
}

// LogTail returns the end of the child's log, for error messages.
func (p *Process) LogTail() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

func start(name, logPath string, argv []string, env ...string) (*Process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	// Its own process group, so a Ctrl-C at the terminal reaches the bench
	// program, which then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// ProxyOptions configures StartSentproxy.
type ProxyOptions struct {
	Bin        string   // sentproxy binary; required
	Dir        string   // where its log goes; required
	Mode       string   // "tcp", "resp", or "epoll": tcp mode with --proxy.engine=epoll
	Sentinels  []string // Sentinel addresses; required
	MasterName string   // default "mymaster"
	Extra      []string // more flags, e.g. "--proxy.max-connections=0"
	Env        []string // more environment, e.g. "GOMAXPROCS=1"
	Name       string   // for its log file; default the mode
}

// Sentproxy is a running sentproxy with its proxy and web addresses.
type Sentproxy struct {
	*Process
	WebAddr string
}

// StartSentproxy starts `sentproxy run` on free loopback ports and returns
// once /readyz answers 200, that is once it routes to a verified master.
func StartSentproxy(ctx context.Context, o ProxyOptions) (*Sentproxy, error) {
	if o.MasterName == "" {
		o.MasterName = "mymaster"
	}
	if o.Mode == "" {
		o.Mode = "tcp"
	}
	pport, err := redisproc.FreePort()
	if err != nil {
		return nil, err
	}
	wport, err := redisproc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pport))
	web := net.JoinHostPort("127.0.0.1", strconv.Itoa(wport))
	mode, engine := o.Mode, "splice"
	if mode == "epoll" {
		mode, engine = "tcp", "epoll"
	}
	argv := append([]string{o.Bin, "run",
		"--sentinel.addrs=" + strings.Join(o.Sentinels, ","),
		"--sentinel.master-name=" + o.MasterName,
		"--proxy.mode=" + mode,
		"--proxy.engine=" + engine,
		"--proxy.listen-address=" + addr,
		"--web.listen-address=" + web,
		"--log.level=warn",
	}, o.Extra...)
	if o.Name == "" {
		o.Name = o.Mode
	}
	p, err := start("sentproxy-"+o.Name, filepath.Join(o.Dir, "sentproxy-"+o.Name+"-"+strconv.Itoa(pport)+".log"), argv, o.Env...)
	if err != nil {
		return nil, err
	}
	p.Addr = addr
	sp := &Sentproxy{Process: p, WebAddr: web}
	err = waitFor(ctx, p, "/readyz 200", 30*time.Second, func() error {
		resp, err := http.Get("http://" + web + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	return sp, nil
}

// HAProxyOptions configures StartHAProxy.
type HAProxyOptions struct {
	Dir     string   // for its config and log; required
	Servers []string // every data node (master and replicas)
	// RoleCheck makes HAProxy route to whichever server answers
	// `role:master` to INFO replication, checked every Inter, and close the
	// sessions of a server marked down: the setup HAProxy users are told to
	// run in front of Sentinel-managed Redis. Without it the first server is
	// the only backend, as for plain throughput runs.
	RoleCheck bool
	Inter     time.Duration // default 1s
	MaxConn   int           // default 4096
}

// HAProxyConfig returns the configuration StartHAProxy writes, listening
// on listen.
func HAProxyConfig(o HAProxyOptions, listen string) string {
	if o.Inter == 0 {
		o.Inter = time.Second
	}
	if o.MaxConn == 0 {
		o.MaxConn = 4096
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    nbthread 1\n    maxconn %d\n\n", o.MaxConn)
	fmt.Fprintf(&b, "defaults\n    mode tcp\n    maxconn %d\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n", o.MaxConn)
	fmt.Fprintf(&b, "frontend redis_in\n    bind %s\n    default_backend redis_master\n\n", listen)
	b.WriteString("backend redis_master\n")
	if !o.RoleCheck {
		fmt.Fprintf(&b, "    server master %s maxconn %d\n", o.Servers[0], o.MaxConn)
		return b.String()
	}
	b.WriteString("    option tcp-check\n")
	b.WriteString("    tcp-check connect\n")
	b.WriteString("    tcp-check send PING\\r\\n\n")
	b.WriteString("    tcp-check expect string +PONG\n")
	b.WriteString("    tcp-check send info\\ replication\\r\\n\n")
	b.WriteString("    tcp-check expect string role:master\n")
	b.WriteString("    tcp-check send QUIT\\r\\n\n")
	b.WriteString("    tcp-check expect string +OK\n")
	for i, s := range o.Servers {
		fmt.Fprintf(&b, "    server redis%d %s check inter %dms on-marked-down shutdown-sessions\n", i+1, s, o.Inter.Milliseconds())
	}
	return b.String()
}

// StartHAProxy starts HAProxy on a free loopback port and returns once it
// accepts connections.
func StartHAProxy(ctx context.Context, o HAProxyOptions) (*Process, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, fmt.Errorf("haproxy: %w (install Debian's haproxy package)", err)
	}
	port, err := redisproc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := filepath.Join(o.Dir, "haproxy-"+strconv.Itoa(port)+".cfg")
	if err := os.WriteFile(cfg, []byte(HAProxyConfig(o, addr)), 0o644); err != nil {
		return nil, fmt.Errorf("haproxy config: %w", err)
	}
	if out, err := exec.CommandContext(ctx, bin, "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy rejected %s: %w: %s", cfg, err, out)
	}
	p, err := start("haproxy", strings.TrimSuffix(cfg, ".cfg")+".log", []string{bin, "-f", cfg, "-db"})
	if err != nil {
		return nil, err
	}
	p.Addr = addr
	err = waitFor(ctx, p, "accepting on "+addr, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// waitFor polls ready every 20ms until it succeeds, the child exits, or the
// time runs out.
func waitFor(ctx context.Context, p *Process, what string, limit time.Duration, ready func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while waiting for %s: %v; log:\n%s", p.Name, what, p.waitErr, p.LogTail())
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %s: %w (last: %v); log:\n%s", p.Name, what, ctx.Err(), err, p.LogTail())
		case <-tick.C:
		}
	}
}

// CPUTime returns the user plus system CPU time the process has used,
// from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
	user, system, err := CPUTimes(pid)
	return user + system, err
}

// CPUTimes returns the user and the system CPU time the process has used,
// from /proc/PID/stat.
func CPUTimes(pid int) (user, system time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name (field 2) may hold spaces; fields after it follow
	// its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("cpu time: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("cpu time: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("cpu time: malformed /proc/%d/stat", pid)
	}
	return time.Duration(ut) * time.Second / clockTicks, time.Duration(st) * time.Second / clockTicks, nil
}

// RSS returns the process's resident set size in bytes, from VmRSS in
// /proc/PID/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("rss: unexpected VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("rss: no VmRSS in /proc/%d/status", pid)
}
