package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sentproxy/sentproxy/internal/tlsaddr"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

const (
	defaultDialTimeout = 2 * time.Second
	// defaultHoldTimeout covers a Sentinel failover with common settings:
	// down-after-milliseconds (often 5-30 s) plus election and promotion.
	defaultHoldTimeout = 35 * time.Second
	defaultKeepAlive   = 15 * time.Second
	// defaultClientHandshakeTimeout is generous for a client on the same
	// host or network, and still frees a connection that never speaks.
	defaultClientHandshakeTimeout = 10 * time.Second
	// dialRetryBackoff paces re-dials to a master that refused us while the
	// watcher re-checks the Sentinels.
	dialRetryBackoff = 100 * time.Millisecond
)

// Config configures a Server. The zero value is usable: defaults apply to
// zero fields.
type Config struct {
	// Name names the route (the master name) in logs, metrics and the errors
	// clients see.
	Name string
	// DialTimeout bounds one dial to the master. Zero means 2s.
	DialTimeout time.Duration
	// HoldTimeout is how long a new client waits for a verified master (and
	// for a dial to it to succeed) before it gets an error. Zero means 35s;
	// negative means do not wait.
	HoldTimeout time.Duration
	// KeepAlive is the TCP keep-alive period on both legs. Zero means 15s;
	// negative disables keep-alive.
	KeepAlive time.Duration
	// IdleTimeout closes a connection after no byte moved either way for
	// this long. Zero (the default) disables it: BLPOP and SUBSCRIBE
	// connections are idle legitimately. EngineEpoll's loops watch it
	// themselves, at a clock read per batch; EngineSplice then copies
	// through a buffer in user space instead of splicing, because a
	// splice cannot be watched. ModeRESP counts idleness as Redis's own
	// timeout does: a client awaiting a reply (BLPOP, commands held
	// through a failover), subscribed or in MONITOR is never idle.
	IdleTimeout time.Duration
	// Engine moves ModeTCP bytes: EngineEpoll or EngineSplice; empty
	// means DefaultEngine (EngineEpoll on Linux).
	Engine string
	// EventLoops is how many epoll loops (each one goroutine, so at most
	// one CPU) may serve the route with EngineEpoll; a new connection goes
	// to the loop with the fewest. Zero means 1, negative one per CPU
	// (GOMAXPROCS). More loops cost more CPU per request (fewer events per
	// epoll_wait, more wake-ups), so they pay only once one loop fills a
	// CPU.
	EventLoops int
	// MaxConnections caps concurrent client connections, held ones
	// included. Zero means no cap.
	MaxConnections int
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Observer receives connection events; nil means none.
	Observer Observer
	// Mode is ModeTCP (the default) or ModeRESP.
	Mode string
	// MaxClientBuffer bounds, in ModeRESP, the bytes of one client's
	// commands awaiting replies (kept to resend them after a failover);
	// past it the client is not read until replies drain. A single held
	// command longer than this (or than 64 MiB) is answered with an error
	// and not run. Zero means 16 MiB.
	MaxClientBuffer int64
	// MaxBuffer bounds that for all clients together; past it new
	// commands are answered with an error and not run. Zero means 512 MiB.
	MaxBuffer int64
	// MasterUsername and MasterPassword authenticate the proxy's own
	// request to the master: resp mode's COMMAND fetch. Clients still
	// authenticate themselves; their AUTH passes through.
	MasterUsername, MasterPassword string
	// MasterPasswordFunc, when set, replaces MasterPassword: it is asked at
	// each fetch, so that a rotated password applies without a restart.
	MasterPasswordFunc func() string
	// NoMasterReason, if set, says why there is no master right now, for
	// the error a held client gets at the hold timeout; "" defers to the
	// reason given to ClearMaster (or "not discovered yet"). It lets the
	// error name the cause as it stands at that moment (a wrong master name,
	// Sentinels unreachable) rather than as it stood at the last change.
	NoMasterReason func() string
	// TLS, when set, makes every connection to the master TLS (the
	// clients' side is ClientTLS's). An empty ServerName is taken from the
	// master's address. The bytes then pass through Go's TLS in user
	// space, so a ModeTCP route copies them (EngineSplice's goroutines,
	// without splice) rather than using EngineEpoll.
	TLS *tls.Config
	// TLSRoots, when set with TLS, is asked at each dial to the master for
	// the CAs that verify its certificate, in place of TLS.RootCAs: the
	// CAs of a file that is followed, so that a renewed CA bundle applies
	// to the next connection without a restart.
	TLSRoots func() *x509.CertPool
	// ClientTLS, when set, makes clients connect in TLS: the listener's
	// side of the handshake, with the certificate it holds (and, with
	// ClientAuth, the clients' certificates checked). A ModeTCP route then
	// copies through Go's TLS (EngineSplice's goroutines) rather than
	// EngineEpoll, as with TLS.
	ClientTLS *tls.Config
	// ClientHandshakeTimeout bounds a client's TLS handshake. Zero means
	// 10s.
	ClientHandshakeTimeout time.Duration
	// OnDialError, if set, is called after a dial to the master failed, so
	// that the master can be re-checked at once. It must not block.
	OnDialError func(addr string, err error)
}

// sweepEvery is how often idle sessions are looked for, by an epoll loop
// or by the resp-mode sweeper: a quarter of the timeout, within [10 ms,
// 1 s], so a session is cut at most that long after its timeout, and
// nothing wakes more than once every 10 ms for it.
func sweepEvery(idle time.Duration) time.Duration {
	return min(max(idle/4, 10*time.Millisecond), time.Second)
}

// Server proxies client connections to the current master.
//
// It never contacts Sentinel: it is told the master with SetMaster and
// ClearMaster. Every upstream connection is tracked with the address it was
// dialled to, and a change of master closes every connection to any other
// address before the call returns.
type Server struct {
	cfg    Config
	log    *slog.Logger
	obs    Observer
	active atomic.Int64
	wg     sync.WaitGroup

	// commands is the master's own command table (resp mode), fetched
	// once; commandsFetching guards against fetching it twice at once.
	commands         atomic.Pointer[commandTable]
	commandsFetching atomic.Bool
	// buffered is the bytes all resp-mode clients hold awaiting replies.
	buffered atomic.Int64

	// stopping ends client TLS handshakes under way when Shutdown starts,
	// as held clients are refused then.
	stopping context.Context
	stop     context.CancelFunc
	// handshakeWarn paces the warning for failed client handshakes.
	handshakeWarn rateLimit
	// epoch is the origin of sessions' lastIO stamps (monotonic).
	epoch time.Time
	// sweeping starts the resp-mode idle sweeper once, at the first Serve.
	sweeping sync.Once

	mu        sync.Mutex
	master    string
	noMaster  string        // why there is no master, for the client's error
	changed   chan struct{} // closed and replaced at each change; wakes held clients
	sessions  map[*session]struct{}
	listeners map[net.Listener]struct{}
	closing   bool

	// loops are the epoll engine's event loops, Config.EventLoops slots,
	// each nil while no connection uses it.
	loopMu sync.Mutex
	loops  []*eventLoop
}

// withDefaults fills in the zero values and picks the engine that will
// really run: EngineSplice where epoll is not supported or TLS is on.
func (cfg Config) withDefaults() Config {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.HoldTimeout == 0 {
		cfg.HoldTimeout = defaultHoldTimeout
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = defaultKeepAlive
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeTCP
	}
	if cfg.Engine == "" {
		cfg.Engine = DefaultEngine
	}
	if cfg.ClientHandshakeTimeout <= 0 {
		cfg.ClientHandshakeTimeout = defaultClientHandshakeTimeout
	}
	if cfg.Engine != EngineEpoll || !EngineEpollSupported || cfg.TLS != nil || cfg.ClientTLS != nil {
		cfg.Engine = EngineSplice
	}
	switch {
	case cfg.EventLoops == 0:
		cfg.EventLoops = 1
	case cfg.EventLoops < 0:
		cfg.EventLoops = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxClientBuffer <= 0 {
		cfg.MaxClientBuffer = defaultMaxClientBuffer
	}
	if cfg.MaxBuffer <= 0 {
		cfg.MaxBuffer = defaultMaxBuffer
	}
	return cfg
}

// Loops returns how many event loops a Server with this configuration
// runs: Config.EventLoops (resolved) for ModeTCP on EngineEpoll, else 0.
// Each may hold a P (see eventLoop.wait), which is what a caller sizing
// GOMAXPROCS needs to know.
func (cfg Config) Loops() int { return cfg.withDefaults().loops() }

// loops is Loops on a configuration withDefaults has filled in.
func (cfg Config) loops() int {
	if cfg.Mode != ModeTCP || cfg.Engine != EngineEpoll {
		return 0
	}
	return cfg.EventLoops
}

// New returns a Server with no master: clients are held until SetMaster.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		obs:       cfg.Observer,
		noMaster:  "not discovered yet",
		epoch:     time.Now(),
		changed:   make(chan struct{}),
		sessions:  map[*session]struct{}{},
		listeners: map[net.Listener]struct{}{},
	}
	s.stopping, s.stop = context.WithCancel(context.Background())
	if n := cfg.loops(); n > 0 {
		s.loops = make([]*eventLoop, n)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	s.log = s.log.With("route", cfg.Name)
	return s
}

// Master returns the address clients are routed to, "" when none.
func (s *Server) Master() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.master
}

// Mode is the route's mode, ModeTCP or ModeRESP.
func (s *Server) Mode() string { return s.cfg.Mode }

// Engine is the engine that moves the bytes of a ModeTCP route (with an
// idle timeout, EngineSplice copies through a buffer), "" in ModeRESP.
func (s *Server) Engine() string {
	if s.cfg.Mode != ModeTCP {
		return ""
	}
	return s.cfg.Engine
}

// EventLoops is how many event loops serve the route: 0 unless the epoll
// engine moves its bytes.
func (s *Server) EventLoops() int { return len(s.loops) }

// Buffered is the bytes of commands awaiting replies that resp-mode
// clients hold in memory now.
func (s *Server) Buffered() int64 { return s.buffered.Load() }

// ActiveConnections is the number of client connections open now, held
// ones included.
func (s *Server) ActiveConnections() int64 { return s.active.Load() }

// SetMaster routes new clients to addr and closes, both legs, every
// connection open to any other address. When it returns, no byte more is
// written to the previous master through this server.
func (s *Server) SetMaster(addr string) {
	if addr == "" {
		s.ClearMaster("master withdrawn")
		return
	}
	s.setMaster(addr, "")
}

// ClearMaster stops routing: open connections are closed and new clients
// are held until SetMaster, or get an error that carries reason.
func (s *Server) ClearMaster(reason string) { s.setMaster("", reason) }

func (s *Server) setMaster(addr, reason string) {
	s.mu.Lock()
	if addr == s.master && (addr != "" || reason == s.noMaster) {
		s.mu.Unlock()
		return
	}
	s.master, s.noMaster = addr, reason
	if addr != "" && s.cfg.Mode == ModeRESP && s.commands.Load() == nil {
		s.loadCommands(addr)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	var cut, moved []*session
	for ss := range s.sessions {
		if ss.upAddr == addr {
			continue
		}
		if ss.rc != nil {
			moved = append(moved, ss)
		} else {
			cut = append(cut, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range cut {
		ss.cut(ReasonMasterSwitch)
	}
	// Command-aware connections are not cut: their master leg is reset and
	// they move to the new master, holding their commands meanwhile.
	for _, ss := range moved {
		ss.rc.masterMoved()
	}
	if len(cut) > 0 {
		s.log.Info("closed connections to the previous master", "count", len(cut), "master", addr)
	}
}

// Serve accepts clients on ln until Shutdown, then returns ErrServerClosed.
// Other accept errors are retried after a short pause.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	if s.cfg.Mode == ModeRESP && s.cfg.IdleTimeout > 0 {
		s.sweeping.Do(func() { go s.sweepIdleRESP() })
	}

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			// EMFILE and friends: pause instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff.String())
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.obs.ConnectionAccepted(s.cfg.Name)
		if n := s.active.Add(1); s.cfg.MaxConnections > 0 && n > int64(s.cfg.MaxConnections) {
			s.active.Add(-1)
			s.refuseAtAccept(c, ReasonMaxConnections, "max number of clients reached")
			continue
		}
		// A connection accepted as Shutdown closes the listener must not
		// be added to wg once Shutdown may be waiting on it: closing is
		// set, under mu, before that wait starts.
		acceptedHook()
		s.mu.Lock()
		closing := s.closing
		if !closing {
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if closing {
			s.active.Add(-1)
			s.refuseAtAccept(c, ReasonShutdown, "sentproxy: shutting down")
			return ErrServerClosed
		}
		go s.handle(c)
	}
}

// acceptedHook runs in Serve after each accepted connection has passed the
// connection limit; a no-op but in tests, which use it to start Shutdown
// at that point.
var acceptedHook = func() {}

// refuseAtAccept refuses a client the accept loop will not hand on. With
// ClientTLS it only closes: the error would need a handshake first, paid
// for in the accept loop (by the very flood a connection limit is there to
// stop).
func (s *Server) refuseAtAccept(c net.Conn, reason, msg string) {
	if s.cfg.ClientTLS != nil {
		c.Close()
		s.obs.ConnectionClosed(s.cfg.Name, reason, 0, 0, 0)
		return
	}
	s.refuse(c, time.Now(), reason, msg)
}

// Shutdown stops accepting, lets open connections finish until ctx ends,
// then closes the rest. It returns ctx's error if it had to force-close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.stop()
	for ln := range s.listeners {
		ln.Close()
	}
	close(s.changed) // wake held clients; they see closing
	s.changed = make(chan struct{})
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	var rest []*session
	for ss := range s.sessions {
		rest = append(rest, ss)
	}
	s.mu.Unlock()
	for _, ss := range rest {
		ss.cut(ReasonShutdown)
	}
	<-done
	return fmt.Errorf("proxy: drain timed out, closed %d connections: %w", len(rest), ctx.Err())
}

// refuse answers a client we will not proxy with a RESP error, then closes.
func (s *Server) refuse(c net.Conn, accepted time.Time, reason, msg string) {
	// One line, as Redis itself would send it; a newline inside would end the
	// error early and desynchronise the client.
	msg = strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "-ERR "+msg+"\r\n")
	c.Close()
	s.obs.ConnectionClosed(s.cfg.Name, reason, time.Since(accepted), 0, 0)
	s.log.Debug("client refused", "remote", c.RemoteAddr().String(), "reason", reason)
}

func (s *Server) handle(client net.Conn) {
	defer s.wg.Done()
	defer s.active.Add(-1)
	accepted := time.Now()
	s.setKeepAlive(client)
	if s.cfg.ClientTLS != nil {
		tc, err := s.handshake(client)
		if err != nil {
			s.handshakeFailed(client, accepted, err)
			return
		}
		client = tc
	}

	ss, reason, msg := s.connect(client, accepted)
	if ss == nil {
		s.refuse(client, accepted, reason, msg)
		return
	}
	switch {
	case s.cfg.Mode == ModeRESP:
		ss.runRESP()
	case s.cfg.Engine == EngineEpoll:
		if !ss.runLoop() {
			ss.run()
		}
	default:
		ss.run()
	}
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.obs.ConnectionClosed(s.cfg.Name, ss.reason, time.Since(accepted), ss.c2m, ss.m2c)
	s.log.Debug("connection closed", "remote", client.RemoteAddr().String(), "upstream", ss.upAddr,
		"reason", ss.reason, "client_to_master_bytes", ss.c2m, "master_to_client_bytes", ss.m2c)
}

// handshake is the server side of a client's TLS handshake, before the
// client is held or routed, so that a client that cannot speak TLS to us
// (plain text on a TLS listener, an unknown certificate) is told apart
// from a master that cannot be reached.
func (s *Server) handshake(c net.Conn) (*tls.Conn, error) {
	tc := tls.Server(c, s.cfg.ClientTLS)
	ctx, cancel := context.WithTimeout(s.stopping, s.cfg.ClientHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("proxy: client TLS handshake: %w", err)
	}
	return tc, nil
}

// handshakeFailed closes a client whose TLS handshake failed, and counts
// and logs it.
func (s *Server) handshakeFailed(c net.Conn, accepted time.Time, err error) {
	c.Close()
	reason := ReasonTLSHandshake
	if s.stopping.Err() != nil {
		reason = ReasonShutdown // cut short, as a held client is refused
	}
	s.obs.ConnectionClosed(s.cfg.Name, reason, time.Since(accepted), 0, 0)
	// An app with the wrong CA or no certificate fails every connection:
	// that must show at the default level, but a scanner must not flood
	// the log, so one line per interval.
	level, attrs := slog.LevelDebug, []any{"remote", c.RemoteAddr().String(), "err", err}
	if reason == ReasonTLSHandshake {
		if ok, missed := s.handshakeWarn.allow(time.Now(), handshakeWarnEvery); ok {
			level, attrs = slog.LevelWarn, append(attrs, "failures_not_logged_since_last", missed)
		}
	}
	s.log.Log(context.Background(), level, "client TLS handshake failed", attrs...)
}

// connect waits for a master and dials it, until the hold timeout. On
// success the session is registered under the address it was dialled to,
// checked under the lock against the current master so that a switch racing
// with the dial cannot leave a connection to the old master behind.
func (s *Server) connect(client net.Conn, accepted time.Time) (*session, string, string) {
	deadline := accepted.Add(max(s.cfg.HoldTimeout, 0))
	var lastErr error
	for {
		s.mu.Lock()
		addr, why, changed, closing := s.master, s.noMaster, s.changed, s.closing
		s.mu.Unlock()
		if closing {
			return nil, ReasonShutdown, "sentproxy: shutting down"
		}
		if addr == "" {
			if !waitUntil(changed, deadline) {
				if s.cfg.NoMasterReason != nil {
					if r := s.cfg.NoMasterReason(); r != "" {
						why = r
					}
				}
				return nil, ReasonNoMaster, fmt.Sprintf("sentproxy: no master for '%s': %s", s.cfg.Name, why)
			}
			continue
		}
		up, err := s.dial(addr, deadline)
		if err != nil {
			lastErr = err
			if s.cfg.OnDialError != nil {
				s.cfg.OnDialError(addr, err)
			}
			retry := time.Now().Add(dialRetryBackoff)
			if retry.After(deadline) {
				return nil, ReasonDialError, fmt.Sprintf("sentproxy: cannot reach master for '%s' at %s: %v", s.cfg.Name, addr, lastErr)
			}
			waitUntil(changed, retry)
			continue
		}
		s.mu.Lock()
		if s.master != addr || s.closing {
			s.mu.Unlock()
			up.Close()
			continue
		}
		ss := &session{server: s, client: client, up: up, upAddr: addr}
		if s.cfg.Mode == ModeRESP {
			ss.rc = newRespConn(ss)
		}
		s.sessions[ss] = struct{}{}
		s.mu.Unlock()
		return ss, "", ""
	}
}

func (s *Server) dial(addr string, deadline time.Time) (net.Conn, error) {
	timeout := s.cfg.DialTimeout
	if left := time.Until(deadline); left > 0 && left < timeout {
		timeout = left
	}
	start := time.Now()
	up, err := dialMaster(addr, timeout, s.cfg.KeepAlive, s.cfg.TLS, s.cfg.TLSRoots)
	s.obs.UpstreamDialed(s.cfg.Name, time.Since(start), err)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial master %s: %w", addr, err)
	}
	return up, nil
}

// dialMaster dials addr, in TLS when tlsCfg is set (the handshake within
// the same timeout), with the CAs roots gives when it is set.
func dialMaster(addr string, timeout, keepAlive time.Duration, tlsCfg *tls.Config, roots func() *x509.CertPool) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: keepAlive}
	if tlsCfg == nil {
		return d.Dial("tcp", addr)
	}
	c, err := (&tls.Dialer{NetDialer: d, Config: tlsaddr.For(tlsCfg, addr, roots)}).Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return c, nil
}

// handshakeWarnEvery is the least time between two warnings of failed
// client handshakes.
const handshakeWarnEvery = 10 * time.Second

// rateLimit lets an event through at most once per interval, counting the
// ones held back in between.
type rateLimit struct {
	mu     sync.Mutex
	last   time.Time
	missed int
}

// allow reports whether the event at now may go through and, if so, how
// many were held back since the last one that did.
func (r *rateLimit) allow(now time.Time, every time.Duration) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < every {
		r.missed++
		return false, 0
	}
	missed := r.missed
	r.last, r.missed = now, 0
	return true, missed
}

// abortConn closes c at once. Under TLS the TCP connection goes first:
// tls.Conn.Close would otherwise write a close_notify alert, which waits
// up to 5 s on a client that does not read, and cut must not wait.
func abortConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.NetConn().Close()
	}
	c.Close()
}

// tcpOf is the TCP connection under c, which may be TLS.
func tcpOf(c net.Conn) (*net.TCPConn, bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	return tcp, ok
}

func (s *Server) setKeepAlive(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if s.cfg.KeepAlive < 0 {
		tc.SetKeepAlive(false)
		return
	}
	tc.SetKeepAlive(true)
	tc.SetKeepAlivePeriod(s.cfg.KeepAlive)
}

// waitUntil waits for ch to close or the deadline; it reports whether ch closed.
func waitUntil(ch <-chan struct{}, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}
