package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sentproxy/sentproxy/bench/internal/lab"
	"github.com/sentproxy/sentproxy/internal/redisproc"
)

// Results is everything one bench run measured.
type Results struct {
	Tput []TputRun
	Idle []IdleResult
}

// TputRun is one redis-benchmark run.
type TputRun struct {
	Round    int
	Target   string
	Clients  int
	Pipeline int
	Requests int
	RPS      float64
	CPU      time.Duration // CPU time of the target's process (the proxy; Redis for direct)
}

// requests is the redis-benchmark -n for a configuration: 20000 for one
// client without pipelining, more where the rate is higher; a default
// run (4 targets × 8 configurations × 3 rounds) takes about 5 minutes.
func requests(clients, pipeline int, scale float64) int {
	n := 20000.0 // c=1 P=1; at 2-5k req/s on a 2-CPU box that is 4-11 s
	switch {
	case clients > 1 && pipeline > 1:
		n *= 25
	case pipeline > 1:
		n *= 10
	case clients > 1:
		n *= 5
	}
	n *= scale
	return max(int(n), 1000, clients*pipeline)
}

var rpsRE = regexp.MustCompile(`GET: ([0-9.]+) requests per second`)

// parseRPS reads the last "GET: N requests per second" of redis-benchmark -q.
func parseRPS(out string) (float64, error) {
	m := rpsRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0, fmt.Errorf("no \"requests per second\" in redis-benchmark output %q", out)
	}
	return strconv.ParseFloat(m[len(m)-1][1], 64)
}

func benchmark(ctx context.Context, addr string, clients, pipeline, n int, test string) (float64, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port,
		"-c", strconv.Itoa(clients), "-P", strconv.Itoa(pipeline), "-n", strconv.Itoa(n), "-t", test, "-q")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark %v: %w: %s", cmd.Args[1:], err, out)
	}
	if test != "get" {
		return 0, nil
	}
	return parseRPS(string(out))
}

// Throughput starts one topology, sentproxy in both modes and HAProxy in
// front of it, and runs redis-benchmark GET against each target for every
// clients × pipeline configuration, cfg.Rounds times, rotating the order
// of the targets each round.
func Throughput(ctx context.Context, cfg Config) ([]TputRun, error) {
	log := cfg.Log
	tdir := filepath.Join(cfg.Dir, "tput")
	topo, err := startTopology(ctx, tdir, 10100)
	if err != nil {
		return nil, err
	}
	defer topo.Close()
	addr := map[string]string{"direct": topo.Master.Addr}
	pid := map[string]int{"direct": topo.Master.PID()}
	for _, t := range cfg.Targets {
		switch t {
		case "tcp", "epoll", "resp":
			sp, err := lab.StartSentproxy(ctx, lab.ProxyOptions{Bin: cfg.Bin, Dir: tdir, Mode: t, Sentinels: topo.SentinelAddrs(),
				Extra: []string{"--proxy.max-connections=0"}})
			if err != nil {
				return nil, err
			}
			defer sp.Close()
			addr[t], pid[t] = sp.Addr, sp.PID()
		case "haproxy":
			hp, err := lab.StartHAProxy(ctx, lab.HAProxyOptions{Dir: tdir, Servers: []string{topo.Master.Addr}, MaxConn: 4096})
			if err != nil {
				return nil, err
			}
			defer hp.Close()
			addr[t], pid[t] = hp.Addr, hp.PID()
		}
	}
	// The key redis-benchmark's GET reads.
	if _, err := benchmark(ctx, topo.Master.Addr, 1, 1, 1000, "set"); err != nil {
		return nil, err
	}
	var runs []TputRun
	for round := 0; round < cfg.Rounds; round++ {
		order := rotate(cfg.Targets, round)
		for _, c := range cfg.Clients {
			for _, p := range cfg.Pipelines {
				n := requests(c, p, cfg.Scale)
				for _, t := range order {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					cpu0, err := lab.CPUTime(pid[t])
					if err != nil {
						return nil, err
					}
					rps, err := benchmark(ctx, addr[t], c, p, n, "get")
					if err != nil {
						return nil, fmt.Errorf("%s: %w", t, err)
					}
					cpu1, err := lab.CPUTime(pid[t])
					if err != nil {
						return nil, err
					}
					r := TputRun{Round: round, Target: t, Clients: c, Pipeline: p, Requests: n, RPS: rps, CPU: cpu1 - cpu0}
					log.Info("throughput", "round", round+1, "target", t, "clients", c, "pipeline", p, "n", n,
						"rps", int(rps), "cpu_us_per_req", fmt.Sprintf("%.2f", r.CPUPerReq()))
					runs = append(runs, r)
				}
			}
		}
	}
	return runs, nil
}

// CPUPerReq is the target process's CPU time per request in µs.
func (r TputRun) CPUPerReq() float64 {
	return float64(r.CPU.Microseconds()) / float64(r.Requests)
}

func rotate(xs []string, k int) []string {
	out := make([]string, len(xs))
	for i := range xs {
		out[i] = xs[(i+k)%len(xs)]
	}
	return out
}

// IdleResult is the idle memory and cutover measurement of one mode.
type IdleResult struct {
	Mode      string
	Conns     int
	RSSBefore int64
	RSSAfter  int64
	OpenTime  time.Duration

	CutoverErr string // set when the cutover could not be measured
	// From the SENTINEL FAILOVER call and from +switch-master until the
	// last connection was closed (tcp) or answered from the new master
	// (resp).
	FromFailover time.Duration
	FromSwitch   time.Duration
	Closed       int // connections that saw EOF or an error
	Moved        int // resp: connections that reached the new master
	Stuck        int // neither closed nor moved within the limit
}

// PerConn is the RSS growth per connection in bytes.
func (r IdleResult) PerConn() float64 {
	return float64(r.RSSAfter-r.RSSBefore) / float64(r.Conns)
}

type conn struct {
	c net.Conn
	r *bufio.Reader
}

func (c *conn) do(cmd string) (string, error) {
	if _, err := c.c.Write([]byte(cmd)); err != nil {
		return "", err
	}
	return readReply(c.r)
}

// readReply reads one RESP reply and flattens it to text: simple strings,
// errors ("-ERR ..."), integers and bulk strings as themselves, arrays as
// their elements joined by spaces.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty RESP line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return line, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			return "", nil
		}
		b := make([]byte, n+2)
		if _, err := ioReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad array length %q", line)
		}
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			s, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " "), nil
	}
	return "", fmt.Errorf("unexpected RESP line %q", line)
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func respCommand(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// startTopology starts a master, one replica and three Sentinels in a new
// directory under dir, with maxclients raised on the data nodes so that
// thousands of proxied connections fit.
func startTopology(ctx context.Context, dir string, maxClients int) (*redisproc.Topology, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	topo, err := redisproc.StartTopology(ctx, redisproc.TopologyOptions{Dir: dir, Replicas: 1, Sentinels: 3, Quorum: 2})
	if err != nil {
		return nil, err
	}
	for _, p := range append([]*redisproc.Process{topo.Master}, topo.Replicas...) {
		if _, err := p.Do(ctx, "CONFIG", "SET", "maxclients", strconv.Itoa(maxClients)); err != nil {
			_ = topo.Close()
			return nil, fmt.Errorf("CONFIG SET maxclients on %s: %w", p.Addr, err)
		}
	}
	return topo, nil
}

// openIdle opens n connections to addr, 200 at a time, each sending PING
// and reading +PONG.
func openIdle(ctx context.Context, addr string, n int) ([]*conn, error) {
	conns := make([]*conn, n)
	sem := make(chan struct{}, 200)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			err := func() error {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					return err
				}
				cc := &conn{c: c, r: bufio.NewReaderSize(c, 512)}
				conns[i] = cc
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				s, err := cc.do("*1\r\n$4\r\nPING\r\n")
				if err != nil {
					return err
				}
				if s != "PONG" {
					return fmt.Errorf("PING answered %q", s)
				}
				return c.SetDeadline(time.Time{})
			}()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("connection %d: %w", i, err)
				}
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		if c != nil {
			c.c.Close()
		}
	}
}

// subscribeSwitch subscribes to +switch-master on the Sentinel at addr and
// returns a channel that receives the new master's address and the time
// the message arrived.
type switchEvent struct {
	at      time.Time
	newAddr string
}

func subscribeSwitch(addr string) (net.Conn, <-chan switchEvent, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	cc := &conn{c: c, r: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := cc.do(respCommand("SUBSCRIBE", "+switch-master")); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("SUBSCRIBE +switch-master on %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(90 * time.Second))
	ch := make(chan switchEvent, 1)
	go func() {
		defer close(ch)
		for {
			s, err := readReply(cc.r)
			if err != nil {
				return
			}
			// "message +switch-master mymaster oldip oldport newip newport"
			f := strings.Fields(s)
			if len(f) == 7 && f[0] == "message" {
				ch <- switchEvent{at: time.Now(), newAddr: net.JoinHostPort(f[5], f[6])}
				return
			}
		}
	}()
	return c, ch, nil
}

// IdleAndCutover starts a fresh topology and sentproxy in mode, opens
// cfg.Idle idle connections through it and measures the proxy's RSS
// growth, then fails over and measures what happens to the connections.
func IdleAndCutover(ctx context.Context, cfg Config, mode string) (IdleResult, error) {
	log := cfg.Log
	n := idleConns(cfg.Idle, mode, noFileLimit())
	if n < cfg.Idle {
		log.Warn("fewer idle connections than asked: the proxy would run out of file descriptors",
			"mode", mode, "asked", cfg.Idle, "using", n, "fds_per_conn", fdsPerConn(mode), "nofile", noFileLimit())
	}
	cfg.Idle = n
	res := IdleResult{Mode: mode, Conns: cfg.Idle}
	tdir := filepath.Join(cfg.Dir, "idle-"+mode)
	topo, err := startTopology(ctx, tdir, cfg.Idle+200)
	if err != nil {
		return res, err
	}
	defer topo.Close()
	sp, err := lab.StartSentproxy(ctx, lab.ProxyOptions{Bin: cfg.Bin, Dir: tdir, Mode: mode, Sentinels: topo.SentinelAddrs(),
		Extra: []string{"--proxy.max-connections=0"}})
	if err != nil {
		return res, err
	}
	defer sp.Close()

	// One connection first, so that lazily set-up state is in "before".
	warm, err := openIdle(ctx, sp.Addr, 1)
	if err != nil {
		return res, err
	}
	closeAll(warm)
	time.Sleep(500 * time.Millisecond)
	if res.RSSBefore, err = lab.RSS(sp.PID()); err != nil {
		return res, err
	}
	start := time.Now()
	conns, err := openIdle(ctx, sp.Addr, cfg.Idle)
	if err != nil {
		return res, fmt.Errorf("%s: opening %d idle connections: %w", mode, cfg.Idle, err)
	}
	defer closeAll(conns)
	res.OpenTime = time.Since(start)
	time.Sleep(time.Second)
	if res.RSSAfter, err = lab.RSS(sp.PID()); err != nil {
		return res, err
	}
	log.Info("idle memory", "mode", mode, "conns", cfg.Idle, "rss_before_mb", res.RSSBefore>>20, "rss_after_mb", res.RSSAfter>>20,
		"bytes_per_conn", int(res.PerConn()))

	if err := cutover(ctx, topo, mode, conns, &res); err != nil {
		res.CutoverErr = err.Error()
		log.Warn("cutover failed", "mode", mode, "err", err)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	return res, nil
}

const cutoverLimit = 60 * time.Second

func cutover(ctx context.Context, topo *redisproc.Topology, mode string, conns []*conn, res *IdleResult) error {
	if err := topo.WaitConverged(ctx); err != nil {
		return err
	}
	sub, switched, err := subscribeSwitch(topo.SentinelAddrs()[0])
	if err != nil {
		return err
	}
	defer sub.Close()

	done := make([]time.Time, len(conns)) // when each connection closed or moved
	var closed, moved atomic.Int64
	var wg sync.WaitGroup
	if mode != "resp" {
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.c.SetReadDeadline(time.Now().Add(cutoverLimit))
				var b [64]byte
				for {
					if _, err := c.c.Read(b[:]); err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							return
						}
						done[i] = time.Now()
						closed.Add(1)
						return
					}
				}
			}()
		}
	}

	t0 := time.Now()
	if err := topo.Failover(ctx); err != nil {
		return err
	}
	var ev switchEvent
	select {
	case e, ok := <-switched:
		if !ok {
			return errors.New("no +switch-master within 90s")
		}
		ev = e
	case <-ctx.Done():
		return ctx.Err()
	}
	_, newPort, _ := net.SplitHostPort(ev.newAddr)

	if mode == "resp" {
		sem := make(chan struct{}, 500)
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := ev.at.Add(cutoverLimit)
				for time.Now().Before(deadline) && ctx.Err() == nil {
					sem <- struct{}{}
					_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
					s, err := c.do("*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nport\r\n")
					<-sem
					if err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							continue
						}
						done[i] = time.Now()
						closed.Add(1)
						return
					}
					if s == "port "+newPort {
						done[i] = time.Now()
						moved.Add(1)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done():
		closeAll(conns)
		<-finished
		return ctx.Err()
	}
	var last time.Time
	for _, d := range done {
		if d.After(last) {
			last = d
		}
	}
	res.Closed, res.Moved = int(closed.Load()), int(moved.Load())
	res.Stuck = len(conns) - res.Closed - res.Moved
	if !last.IsZero() {
		res.FromFailover, res.FromSwitch = last.Sub(t0), last.Sub(ev.at)
	}
	return nil
}

// fdsPerConn is how many file descriptors sentproxy holds per client
// connection: the client and upstream sockets, and in tcp mode two splice
// pipes of two descriptors each.
func fdsPerConn(mode string) int {
	if mode == "tcp" {
		return 6
	}
	return 2
}

// idleConns caps the asked connection count so the proxy stays under the
// descriptor limit, with 150 to spare (500 in tcp mode: at 20000 it failed
// past 3300 connections).
func idleConns(asked int, mode string, limit uint64) int {
	spare := 150
	if mode == "tcp" {
		spare = 500
	}
	most := (int(min(limit, 1<<20)) - spare) / fdsPerConn(mode)
	return max(1, min(asked, most))
}

func noFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 20000
	}
	return uint64(l.Cur) // int64 on the BSDs
}
