package redisproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sentproxy/sentproxy/internal/resp"
)

const (
	// DefaultStartTimeout bounds how long a start waits for the process to
	// answer PING when the caller's context allows longer.
	DefaultStartTimeout = 10 * time.Second

	// callTimeout bounds every single command this package sends. The
	// processes may be SIGSTOPped on purpose; one stuck call must not eat
	// the whole deadline of the poll it belongs to.
	callTimeout = time.Second

	// pollInterval is the pause between attempts of a poll. It only paces
	// the loop; the deadline is what ends it.
	pollInterval = 25 * time.Millisecond

	// portAttempts is how often a start retries with a new port when another
	// process took the probed port before the child could bind it.
	portAttempts = 5

	installHint = "apt-get install -y redis-server redis-sentinel redis-tools"
)

// FindBinaries looks up redis-server and redis-sentinel on PATH. Some
// installations ship only redis-server; then sentinel is the redis-server
// path too, which works because this package always passes --sentinel.
func FindBinaries() (server, sentinel string, err error) {
	server, err = exec.LookPath("redis-server")
	if err != nil {
		return "", "", fmt.Errorf("redisproc: redis-server not found on PATH (install with: %s): %w", installHint, err)
	}
	sentinel, err = exec.LookPath("redis-sentinel")
	if err != nil {
		sentinel = server
	}
	return server, sentinel, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may take it before the caller binds it; the Start functions retry
// for that reason.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisproc: probe free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("redisproc: probe free port: %w", err)
	}
	return port, nil
}

// Options configures StartServer.
type Options struct {
	// Dir is the parent directory; the server gets a new subdirectory of it
	// for its config, log and any RDB file. Required.
	Dir string
	// Name prefixes the subdirectory's name (default "redis"), which makes
	// the directory of a topology readable.
	Name string
	// Password, when set, becomes requirepass and masterauth, and this
	// package authenticates with it for its own commands.
	Password string
	// ExtraConfig lines are appended verbatim to redis.conf, after the
	// defaults, so they override them (e.g. "replicaof 127.0.0.1 1234").
	ExtraConfig []string
	// StartTimeout overrides DefaultStartTimeout.
	StartTimeout time.Duration
}

// SentinelOptions configures StartSentinel.
type SentinelOptions struct {
	// Dir is the parent directory; the Sentinel gets a new subdirectory of
	// it. Required.
	Dir string
	// Name prefixes the subdirectory's name (default "sentinel").
	Name string
	// MasterName is the name the master is monitored under (default
	// "mymaster").
	MasterName string
	// MasterPort is the port of the master on 127.0.0.1. Required.
	MasterPort int
	// Quorum is the number of Sentinels that must agree the master is down
	// (default 1, so that a lone Sentinel can fail over).
	Quorum int
	// DownAfter is down-after-milliseconds (default 1s).
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout (default 5s). Sentinel will not
	// start another failover of the same master within twice this time.
	FailoverTimeout time.Duration
	// AuthPass is the password of the data nodes (sentinel auth-pass).
	AuthPass string
	// Password is requirepass of the Sentinel itself. Sentinels use it to
	// authenticate to each other too, so give all of them the same one.
	Password string
	// ExtraConfig lines are appended verbatim to sentinel.conf.
	ExtraConfig []string
	// StartTimeout overrides DefaultStartTimeout.
	StartTimeout time.Duration
}

// Process is one running (or stopped, or killed) redis-server or Sentinel.
// Addr, Port and Dir do not change after the Start function returns, not
// even across Restart. Methods are safe for concurrent use.
type Process struct {
	Addr string // "127.0.0.1:PORT"
	Port int
	Dir  string

	kind         string // "redis-server" or "redis-sentinel", for messages
	bin          string
	args         []string
	logPath      string
	password     string // what this package authenticates with
	startTimeout time.Duration

	mu     sync.Mutex
	cur    *run // the latest child; nil before the first start
	closed bool
}

// run is one child process of a Process; Restart creates a new one.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait has reaped the child
	err  error         // Wait's result, valid after done is closed
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// signal sends sig through the os.Process handle, which refuses (with
// os.ErrProcessDone) once the child has been reaped: a PID recycled by the
// kernel for somebody else's process is never signalled.
func (r *run) signal(sig os.Signal) error {
	return r.cmd.Process.Signal(sig)
}

// kill sends SIGKILL unless the child is already gone, then waits until it
// is reaped.
func (r *run) kill() error {
	err := r.signal(syscall.SIGKILL)
	if errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	<-r.done
	return err
}

// PID returns the process ID of the latest child, or 0 if none was started.
// The process may have exited since.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.cmd.Process.Pid
}

// LogPath returns the log file; the child's stdout and stderr go there too.
func (p *Process) LogPath() string { return p.logPath }

// LogTail returns the last n lines of the log file, or a note saying why it
// could not be read.
func (p *Process) LogTail(n int) string { return logTail(p.logPath, n) }

// current returns the latest child, or an error naming the process if there
// is none or it has exited.
func (p *Process) current() (*run, error) {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil || r.exited() {
		return nil, fmt.Errorf("redisproc: %s on port %d: %w", p.kind, p.Port, os.ErrProcessDone)
	}
	return r, nil
}

// running reports whether the latest child is alive (possibly stopped).
func (p *Process) running() bool {
	_, err := p.current()
	return err == nil
}

// Kill sends SIGKILL and waits until the process is reaped: a crash, as far
// as its peers can tell. It is not an error if the process was already gone.
func (p *Process) Kill() error {
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r == nil {
		return nil
	}
	if err := r.kill(); err != nil {
		return fmt.Errorf("redisproc: kill %s on port %d: %w", p.kind, p.Port, err)
	}
	return nil
}

// Stop sends SIGSTOP: the process keeps its sockets open but answers nothing,
// like a host that hangs. Cont resumes it.
func (p *Process) Stop() error { return p.sendSignal(syscall.SIGSTOP, "stop") }

// Cont sends SIGCONT to a process paused by Stop.
func (p *Process) Cont() error { return p.sendSignal(syscall.SIGCONT, "continue") }

func (p *Process) sendSignal(sig os.Signal, what string) error {
	r, err := p.current()
	if err != nil {
		return err
	}
	if err := r.signal(sig); err != nil {
		return fmt.Errorf("redisproc: %s %s on port %d: %w", what, p.kind, p.Port, err)
	}
	return nil
}

// Close kills the process if it still runs and waits for it. It is
// idempotent, and after it Restart fails.
func (p *Process) Close() error {
	p.mu.Lock()
	p.closed = true
	r := p.cur
	p.mu.Unlock()
	if r == nil {
		return nil
	}
	if err := r.kill(); err != nil {
		return fmt.Errorf("redisproc: close %s on port %d: %w", p.kind, p.Port, err)
	}
	return nil
}

// Restart starts the process again with the same config file, port and
// directory, and waits until it answers. A process that still runs is killed
// first, so Restart doubles as crash-and-recover. Redis and Sentinel rewrite
// their config files (CONFIG REWRITE after a failover, Sentinel's state), so
// a restarted node comes back with its latest role, as a real one would.
func (p *Process) Restart(ctx context.Context) error {
	if err := p.Kill(); err != nil {
		return err
	}
	r, err := p.spawn()
	if err != nil {
		return err
	}
	if err := p.waitReady(ctx, r); err != nil {
		_ = r.kill()
		return fmt.Errorf("redisproc: restart %s on port %d: %w\n%s", p.kind, p.Port, err, p.logTailNote())
	}
	return nil
}

// spawn starts one child. The closed check and the start share the lock so
// that a concurrent Close can never miss a child.
func (p *Process) spawn() (*run, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("redisproc: start %s on port %d: process was closed", p.kind, p.Port)
	}
	logf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("redisproc: open log of %s on port %d: %w", p.kind, p.Port, err)
	}
	// The child inherits its own copy of the descriptor.
	defer logf.Close()

	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.Dir
	// Both streams go to the log: Redis prints config errors to stderr
	// before it opens its logfile, and those are the ones worth reading.
	cmd.Stdout = logf
	cmd.Stderr = logf
	// A group of its own keeps a terminal's Ctrl-C away from the child; the
	// parent decides when and in what order its children go.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redisproc: start %s on port %d: %w", p.kind, p.Port, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.cur = r
	return r, nil
}

// errForeignPort marks a start that lost its port to another process.
var errForeignPort = errors.New("port is taken by another process")

// waitReady polls until the child answers PING and proves, by its
// process_id, that it is the one listening on the port: FreePort's probe
// is racy, and another test's Redis answering PONG on our port would
// otherwise count as ready.
func (p *Process) waitReady(ctx context.Context, r *run) error {
	timeout := p.startTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pid := r.cmd.Process.Pid
	var last error
	for {
		if r.exited() {
			if bytes.Contains(readTail(p.logPath, 8<<10), []byte("Address already in use")) {
				return fmt.Errorf("exited early (%v): %w", r.err, errForeignPort)
			}
			return fmt.Errorf("exited early: %v", r.err)
		}
		up, err := p.probe(ctx, pid)
		if up {
			return nil
		}
		if errors.Is(err, errForeignPort) {
			return err
		}
		last = err
		select {
		case <-r.done:
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v (last attempt: %v): %w", timeout, last, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// probe sends PING and, when that works, checks the answering process's ID.
func (p *Process) probe(ctx context.Context, pid int) (bool, error) {
	if _, err := do(ctx, p.Addr, p.password, "PING"); err != nil {
		var re replyError
		if errors.As(err, &re) && re.code() == "NOAUTH" {
			// A password came in through ExtraConfig that this package
			// does not know; the server is up, but its identity cannot be
			// checked.
			return true, nil
		}
		return false, err
	}
	v, err := do(ctx, p.Addr, p.password, "INFO", "server")
	if err != nil {
		return false, err
	}
	s, _ := v.(string)
	got := infoField(s, "process_id")
	if got != strconv.Itoa(pid) {
		return false, fmt.Errorf("pid %s answers instead of %d: %w", got, pid, errForeignPort)
	}
	return true, nil
}

func (p *Process) logTailNote() string {
	return fmt.Sprintf("last lines of %s:\n%s", p.logPath, p.LogTail(20))
}

// startFresh picks a port, writes the config for it and starts the child,
// retrying with a new port when the old one was taken in between.
func (p *Process) startFresh(ctx context.Context, confPath string, render func(port int) []string) error {
	var err error
	for range portAttempts {
		port, perr := FreePort()
		if perr != nil {
			return perr
		}
		p.Port = port
		p.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if werr := writeConfig(confPath, render(port)); werr != nil {
			return fmt.Errorf("redisproc: write config of %s on port %d: %w", p.kind, port, werr)
		}
		// A fresh log per attempt keeps an old attempt's bind error from
		// being mistaken for this one's.
		if rerr := os.Remove(p.logPath); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return fmt.Errorf("redisproc: reset log of %s on port %d: %w", p.kind, port, rerr)
		}
		r, serr := p.spawn()
		if serr != nil {
			return serr
		}
		err = p.waitReady(ctx, r)
		if err == nil {
			return nil
		}
		_ = r.kill()
		if !errors.Is(err, errForeignPort) || ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("redisproc: start %s on port %d: %w\n%s", p.kind, p.Port, err, p.logTailNote())
}

// newProcess creates the process's directory and fills in the fixed fields.
func newProcess(parent, name, kind, bin, confName string, password string, startTimeout time.Duration) (*Process, string, error) {
	if parent == "" {
		return nil, "", fmt.Errorf("redisproc: start %s: no directory given", kind)
	}
	abs, err := filepath.Abs(parent)
	if err != nil {
		return nil, "", fmt.Errorf("redisproc: start %s: %w", kind, err)
	}
	// A unique directory per process: two servers sharing one would
	// overwrite each other's RDB file and config rewrites.
	dir, err := os.MkdirTemp(abs, name+"-")
	if err != nil {
		return nil, "", fmt.Errorf("redisproc: start %s: %w", kind, err)
	}
	confPath := filepath.Join(dir, confName)
	return &Process{
		Dir:          dir,
		kind:         kind,
		bin:          bin,
		logPath:      filepath.Join(dir, strings.TrimSuffix(confName, ".conf")+".log"),
		password:     password,
		startTimeout: startTimeout,
	}, confPath, nil
}

// StartServer starts a redis-server in a new subdirectory of opts.Dir and
// returns once it answers PING. The deadline is ctx's or the start timeout,
// whichever comes first.
func StartServer(ctx context.Context, opts Options) (*Process, error) {
	server, _, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = "redis"
	}
	p, confPath, err := newProcess(opts.Dir, name, "redis-server", server, "redis.conf", opts.Password, opts.StartTimeout)
	if err != nil {
		return nil, err
	}
	p.args = []string{confPath}
	render := func(port int) []string {
		lines := []string{
			"bind 127.0.0.1",
			"port " + strconv.Itoa(port),
			"dir " + quoteConf(p.Dir),
			`save ""`,
			"appendonly no",
			"protected-mode no",
			"daemonize no",
			"logfile " + quoteConf(p.logPath),
			// The default waits 5 s for more replicas before a diskless
			// full sync; with a handful of local replicas that is pure
			// delay, at start-up and whenever a node rejoins.
			"repl-diskless-sync-delay 0",
		}
		if opts.Password != "" {
			lines = append(lines,
				"requirepass "+quoteConf(opts.Password),
				"masterauth "+quoteConf(opts.Password))
		}
		return append(lines, opts.ExtraConfig...)
	}
	if err := p.startFresh(ctx, confPath, render); err != nil {
		return nil, err
	}
	return p, nil
}

// StartSentinel starts a Sentinel monitoring the master on
// 127.0.0.1:opts.MasterPort and returns once it answers PING. Sentinel
// insists on a writable config file (it persists its state there), so the
// file lives in the Sentinel's own directory.
func StartSentinel(ctx context.Context, opts SentinelOptions) (*Process, error) {
	_, sentinel, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	if opts.MasterPort <= 0 {
		return nil, errors.New("redisproc: start redis-sentinel: no master port given")
	}
	name := opts.Name
	if name == "" {
		name = "sentinel"
	}
	masterName := opts.MasterName
	if masterName == "" {
		masterName = "mymaster"
	}
	quorum := opts.Quorum
	if quorum <= 0 {
		quorum = 1
	}
	downAfter := opts.DownAfter
	if downAfter <= 0 {
		downAfter = time.Second
	}
	failoverTimeout := opts.FailoverTimeout
	if failoverTimeout <= 0 {
		failoverTimeout = 5 * time.Second
	}
	p, confPath, err := newProcess(opts.Dir, name, "redis-sentinel", sentinel, "sentinel.conf", opts.Password, opts.StartTimeout)
	if err != nil {
		return nil, err
	}
	// --sentinel works for redis-sentinel and redis-server alike, so
	// FindBinaries' fallback needs no special case here.
	p.args = []string{confPath, "--sentinel"}
	render := func(port int) []string {
		lines := []string{
			"bind 127.0.0.1",
			"port " + strconv.Itoa(port),
			"dir " + quoteConf(p.Dir),
			"logfile " + quoteConf(p.logPath),
			"daemonize no",
			"protected-mode no",
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", masterName, opts.MasterPort, quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", masterName, downAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", masterName, failoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", masterName),
		}
		if opts.AuthPass != "" {
			lines = append(lines, fmt.Sprintf("sentinel auth-pass %s %s", masterName, quoteConf(opts.AuthPass)))
		}
		if opts.Password != "" {
			lines = append(lines, "requirepass "+quoteConf(opts.Password))
		}
		return append(lines, opts.ExtraConfig...)
	}
	if err := p.startFresh(ctx, confPath, render); err != nil {
		return nil, err
	}
	return p, nil
}

func writeConfig(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// quoteConf quotes a value for a Redis config file, whose parser knows
// double quotes with backslash escapes; a temp dir path may contain spaces.
func quoteConf(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// readTail returns up to the last max bytes of a file, nil if unreadable.
func readTail(path string, max int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := st.Size() - max
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return nil
	}
	return b
}

func logTail(path string, n int) string {
	if _, err := os.Stat(path); err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(readTail(path, 64<<10)), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// infoField returns the value of key in an INFO reply, "" if absent.
func infoField(info, key string) string {
	for line := range strings.SplitSeq(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return v
		}
	}
	return ""
}

// A minimal RESP2 client. go-redis would do, but its connection pool,
// retries and handshake (HELLO, CLIENT SETINFO) stand between a test and
// the process it is poking; here each command gets a fresh connection with
// its own deadline, so a SIGSTOPped node can only cost one callTimeout.

// replyError is an error reply from the server, such as "NOAUTH ...".
type replyError string

func (e replyError) Error() string { return string(e) }

// code returns the error's first word, e.g. "NOAUTH" or "INPROG".
func (e replyError) code() string {
	c, _, _ := strings.Cut(string(e), " ")
	return c
}

// Do sends one command to the process on a new connection, authenticated
// when the process has a password, and returns the reply as do does. It is
// for the odd setting a caller needs (e.g. CONFIG SET maxclients), not for
// load.
func (p *Process) Do(ctx context.Context, args ...string) (any, error) {
	return do(ctx, p.Addr, p.password, args...)
}

// do sends one command (after AUTH when password is set) and returns the
// reply: string for simple and bulk strings, int64, []any, or nil for a
// null. An error reply comes back as a replyError.
func do(ctx context.Context, addr, password string, args ...string) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// The deadline covers the timeout; this covers the caller cancelling.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	var req []byte
	if password != "" {
		req = resp.AppendCommand(req, "AUTH", password)
	}
	req = resp.AppendCommand(req, args...)
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	if password != "" {
		v, err := readReply(br)
		if err != nil {
			return nil, err
		}
		if e, ok := v.(replyError); ok {
			return nil, fmt.Errorf("AUTH: %w", e)
		}
	}
	v, err := readReply(br)
	if err != nil {
		return nil, err
	}
	if e, ok := v.(replyError); ok {
		return nil, e
	}
	return v, nil
}

// maxBulk caps a bulk string; our replies are INFO texts and addresses, so
// anything near this means the stream is not what we think it is.
const maxBulk = 16 << 20

func readReply(br *bufio.Reader) (any, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed RESP line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return replyError(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("malformed RESP integer %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxBulk {
			return nil, fmt.Errorf("malformed RESP bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errors.New("malformed RESP bulk string terminator")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("malformed RESP array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = readReply(br); err != nil {
				return nil, err
			}
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("unexpected RESP type %q", kind)
	}
}
