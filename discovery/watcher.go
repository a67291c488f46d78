package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sentproxy/sentproxy/internal/tlsaddr"
)

const (
	defaultPollInterval = time.Second
	defaultTimeout      = time.Second
	// transitionInterval paces re-checks while the Sentinels disagree,
	// which during a failover lasts from the first Sentinel's switch to the
	// moment a majority has followed: usually well under a second.
	transitionInterval = 20 * time.Millisecond
	// minCheckGap keeps a burst of dial failures from hammering the
	// Sentinels; +switch-master bypasses it.
	minCheckGap = 25 * time.Millisecond
	// peerRefresh is how often SENTINEL SENTINELS is asked for new peers.
	peerRefresh = 10 * time.Second
	// forgetAfter is how many peer refreshes in a row must find a learnt
	// Sentinel down and unlisted before it is forgotten.
	forgetAfter = 2
	// maxSentinels bounds the set a (possibly broken) Sentinel can make us watch.
	maxSentinels = 32
)

// Config configures a Watcher. MasterName and at least one Sentinel are required.
type Config struct {
	// MasterName is the name the Sentinels monitor the master under.
	MasterName string
	// Sentinels are seed addresses, host:port; hostnames and IPv6 literals
	// ("[::1]:26379") are allowed. Peers are learnt from them.
	Sentinels []string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels.
	SentinelUsername, SentinelPassword string
	// MasterUsername and MasterPassword authenticate the ROLE check on the master.
	MasterUsername, MasterPassword string
	// SentinelPasswordFunc and MasterPasswordFunc, when set, replace
	// SentinelPassword and MasterPassword: they are asked at every new
	// connection, so that a rotated password applies without a restart
	// (which would cut every client connection). They must not block.
	SentinelPasswordFunc, MasterPasswordFunc func() string
	// SentinelTLS and MasterTLS, when set, make the connections to the
	// Sentinels and to the master (the ROLE check) TLS. An empty ServerName
	// is taken from each address's host.
	SentinelTLS, MasterTLS *tls.Config
	// TLSRoots, when set, is asked at each TLS dial for the CAs that verify
	// the Sentinel's or the master's certificate, in place of RootCAs: the
	// CAs of a file that is followed, so that a renewed CA bundle applies
	// to the next connection without a restart.
	TLSRoots func() *x509.CertPool
	// PollInterval is how often the Sentinels are re-checked when nothing
	// happens. Zero means 1s.
	PollInterval time.Duration
	// Timeout bounds each request to a Sentinel or a master. Zero means 1s.
	Timeout time.Duration
	// Logger receives the watcher's logs; nil discards them.
	Logger *slog.Logger
	// Observer receives the watcher's events; nil means none.
	Observer Observer
}

func (c *Config) validate() error {
	if c.MasterName == "" {
		return errors.New("discovery: master name is empty")
	}
	if len(c.Sentinels) == 0 {
		return errors.New("discovery: no Sentinel address given")
	}
	for _, a := range c.Sentinels {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("discovery: Sentinel address %q: %w", a, err)
		}
		if host == "" {
			return fmt.Errorf("discovery: Sentinel address %q has no host", a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("discovery: Sentinel address %q: port must be 1-65535", a)
		}
	}
	if c.PollInterval < 0 || c.Timeout < 0 {
		return errors.New("discovery: poll interval and timeout must not be negative")
	}
	return nil
}

// Update tells consumers that the routed master changed.
type Update struct {
	MasterName string
	// Addr is the verified master's host:port, or "" when none is verified
	// (the previous one was withdrawn).
	Addr string
	// Previous is the last verified master before this one, kept through a
	// withdrawal ("" if there was none).
	Previous string
	// Epoch is the config-epoch the Sentinels agreed on.
	Epoch int64
	// Reason says what led to the update, for logs and notifications.
	Reason string
	// Observed is when the event that revealed the change was seen (a
	// +switch-master message, a failed dial, a poll tick); consumers measure
	// their cutover from it.
	Observed time.Time
}

// Status is a snapshot of what a Watcher knows.
type Status struct {
	MasterName string
	Addr       string    // verified master, "" when none
	Epoch      int64     // its config-epoch
	Since      time.Time // when Addr was last changed
	Reason     string    // why Addr is what it is (why none, when none)
	Checked    time.Time // when the last check finished
	Views      []View    // each known Sentinel's last answer
}

type trigger struct {
	reason string
	at     time.Time
	urgent bool // skip the pacing between checks
	event  bool // a Sentinel's event message: re-checks it starts are named after it
}

type sentinel struct {
	addr   string
	client *redis.SentinelClient
	// Guarded by Watcher.mu:
	runID string // learnt from INFO; guards against counting one Sentinel twice under two names
	down  bool   // the last request failed; logged once per transition
	seed  bool   // given by the operator: never forgotten
	// unlisted counts peer refreshes in a row that found it down and named
	// by no Sentinel that answered; at forgetAfter it is forgotten.
	unlisted int
	stop     context.CancelFunc // ends its subscription
}

// Watcher tracks the master of one master name through its Sentinels.
// Create it with New, start it with Run; it publishes on Updates.
type Watcher struct {
	cfg     Config
	log     *slog.Logger
	obs     Observer
	updates chan Update
	wake    chan struct{}

	// dropEvents, set by tests, discards every Sentinel event message to
	// prove that polling alone converges.
	dropEvents bool
	// peerEvery is how often SENTINEL SENTINELS is asked (peerRefresh;
	// tests shorten it).
	peerEvery time.Duration

	mu        sync.Mutex
	sentinels []*sentinel
	pending   *trigger
	status    Status
	lastPeers time.Time
	// lastVerified is the last master routed to, kept through a
	// withdrawal so that the next update can name what it replaces.
	lastVerified string
	// revealed is when a config-epoch newer than the routed one first
	// showed, so that cutover is measured from the event that revealed it.
	revealed time.Time
	// runCtx and runWG let checks start subscriptions for newly found peers.
	runCtx context.Context
	runWG  *sync.WaitGroup

	// roleMu guards the client kept for ROLE checks: the master is asked
	// every poll, and a dial (plus AUTH) each time would cost the master a
	// connection a second per sentproxy. One address is kept, the last asked.
	roleMu     sync.Mutex
	roleAddr   string
	roleClient *redis.Client
}

// New validates cfg and returns a Watcher that has not contacted anything yet.
func New(cfg Config) (*Watcher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = defaultPollInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.SentinelPasswordFunc == nil {
		pw := cfg.SentinelPassword
		cfg.SentinelPasswordFunc = func() string { return pw }
	}
	if cfg.MasterPasswordFunc == nil {
		pw := cfg.MasterPassword
		cfg.MasterPasswordFunc = func() string { return pw }
	}
	w := &Watcher{
		cfg:       cfg,
		log:       cfg.Logger,
		obs:       cfg.Observer,
		updates:   make(chan Update, 16),
		wake:      make(chan struct{}, 1),
		peerEvery: peerRefresh,
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("master_name", cfg.MasterName)
	if w.obs == nil {
		w.obs = nopObserver{}
	}
	w.status = Status{MasterName: cfg.MasterName, Reason: "not checked yet"}
	for _, a := range cfg.Sentinels {
		if s := w.addSentinelLocked(a); s != nil {
			s.seed = true
		}
	}
	return w, nil
}

// Updates delivers master changes in order. It is closed when Run returns.
// The consumer must keep reading: the watcher waits for it.
func (w *Watcher) Updates() <-chan Update { return w.updates }

// Current returns the verified master's address, if there is one.
func (w *Watcher) Current() (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status.Addr, w.status.Addr != ""
}

// Status returns a snapshot of the watcher's state.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	s.Views = append([]View(nil), s.Views...)
	return s
}

// Recheck asks for a check as soon as possible, e.g. after a dial to the
// current master failed. It never blocks.
func (w *Watcher) Recheck(reason string) { w.trigger(trigger{reason: reason, at: time.Now()}) }

func (w *Watcher) trigger(t trigger) {
	w.mu.Lock()
	if w.pending == nil {
		w.pending = &t
	} else if (t.urgent && !w.pending.urgent) || (t.event && !w.pending.event) {
		// Keep the earliest time; let the stronger reason name the check.
		w.pending.urgent = w.pending.urgent || t.urgent
		w.pending.event = w.pending.event || t.event
		w.pending.reason = t.reason
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// takePending returns the event that asked for a check; without one, the
// timer fired: a poll, or a re-check of the transition that cause started.
func (w *Watcher) takePending(cause *trigger) trigger {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		if cause != nil {
			// Named after what started the transition, so that logs and
			// updates say which event led to the switch.
			return trigger{reason: cause.reason + ", re-checked", at: cause.at}
		}
		return trigger{reason: "poll", at: time.Now()}
	}
	t := *w.pending
	w.pending = nil
	return t
}

// Run checks the Sentinels, subscribes to +switch-master on each of them and
// publishes changes until ctx is cancelled. A Sentinel outage is logged and
// retried, never returned: Run returns only when ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	w.mu.Lock()
	w.runCtx, w.runWG = ctx, &wg
	for _, s := range w.sentinels {
		w.startSubscriptionLocked(s)
	}
	w.mu.Unlock()

	defer func() {
		wg.Wait()
		w.mu.Lock()
		for _, s := range w.sentinels {
			s.client.Close()
		}
		w.mu.Unlock()
		w.closeRoleClient()
		close(w.updates)
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastCheck time.Time
	// transition is the Sentinel event whose check found the Sentinels
	// mid-failover, while the fast re-checks it started last; re-checks
	// started otherwise are polls.
	var transition *trigger
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-w.wake:
		}
		t := w.takePending(transition)
		if gap := time.Since(lastCheck); !t.urgent && gap < minCheckGap {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(minCheckGap - gap):
			}
		}
		lastCheck = time.Now()
		next := w.checkAndApply(ctx, t)
		switch {
		case next != transitionInterval:
			transition = nil
		case transition == nil && t.event:
			transition = &t
		}
		timer.Reset(next)
	}
}

// CheckOnce asks every Sentinel once (after learning peers) and returns what
// they say and which master, if any, is verified. It starts no subscription;
// it is what `sentproxy check` runs.
func (w *Watcher) CheckOnce(ctx context.Context) (Status, error) {
	defer func() {
		w.mu.Lock()
		for _, s := range w.sentinels {
			s.client.Close()
		}
		w.mu.Unlock()
		w.closeRoleClient()
	}()
	w.discoverPeers(ctx)
	w.checkAndApply(ctx, trigger{reason: "check", at: time.Now()})
	st := w.Status()
	if st.Addr == "" {
		return st, fmt.Errorf("discovery: no verified master for %q: %s", w.cfg.MasterName, st.Reason)
	}
	return st, nil
}

func (w *Watcher) addSentinelLocked(addr string) *sentinel {
	for _, s := range w.sentinels {
		if s.addr == addr {
			return nil
		}
	}
	if len(w.sentinels) >= maxSentinels {
		w.log.Warn("too many Sentinels; ignoring peer", "sentinel", addr, "limit", maxSentinels)
		return nil
	}
	s := &sentinel{
		addr:   addr,
		client: redis.NewSentinelClient(w.clientOptions(addr, w.cfg.SentinelUsername, w.cfg.SentinelPasswordFunc, w.cfg.SentinelTLS, 4)),
	}
	w.sentinels = append(w.sentinels, s)
	return s
}

func (w *Watcher) startSubscriptionLocked(s *sentinel) {
	if w.runCtx == nil {
		return
	}
	ctx, cancel := context.WithCancel(w.runCtx)
	s.stop = cancel
	w.runWG.Add(1)
	go func() {
		defer cancel()
		defer w.runWG.Done()
		w.subscribeLoop(ctx, s)
	}()
}

// clientOptions configures every go-redis client this package makes. Each
// request is tried once: the check loop is the retry, and a dead master
// must be reported in one dial, not after go-redis's five.
func (w *Watcher) clientOptions(addr, username string, password func() string, tlsCfg *tls.Config, poolSize int) *redis.Options {
	dial := w.dial
	if tlsCfg != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return w.dialTLS(ctx, network, addr, tlsCfg)
		}
	}
	return &redis.Options{
		Addr: addr,
		// Asked at each new connection: a rotated password file applies to
		// the next one.
		CredentialsProvider:      func() (string, string) { return username, password() },
		Dialer:                   dial,
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              w.cfg.Timeout,
		ReadTimeout:              w.cfg.Timeout,
		WriteTimeout:             w.cfg.Timeout,
		MaxRetries:               -1,
		DialerRetries:            1,
		PoolSize:                 poolSize,
	}
}

// dial opens every connection this package makes, wrapped in the RESP guard.
func (w *Watcher) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: w.cfg.Timeout, KeepAlive: 15 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c}, nil
}

// dialTLS is dial with TLS under the guard: the guard reads the plaintext.
func (w *Watcher) dialTLS(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: w.cfg.Timeout, KeepAlive: 15 * time.Second},
		Config:    tlsaddr.For(cfg, addr, w.cfg.TLSRoots),
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, tlsError{err}
	}
	return &guardedConn{Conn: c}, nil
}

// tlsError is a failed TLS dial: refused, timed out, or a handshake that
// failed (an unknown authority, a name mismatch, no client certificate).
type tlsError struct{ err error }

func (e tlsError) Error() string { return "TLS: " + e.err.Error() }
func (e tlsError) Unwrap() error { return e.err }

// checkAndApply runs one check and returns when the next should run.
func (w *Watcher) checkAndApply(ctx context.Context, t trigger) time.Duration {
	w.mu.Lock()
	peersDue := time.Since(w.lastPeers) >= w.peerEvery
	w.mu.Unlock()
	if peersDue {
		w.discoverPeers(ctx)
	}
	views := w.query(ctx)
	v := decide(views)

	w.mu.Lock()
	cur, curEpoch := w.status.Addr, w.status.Epoch
	w.mu.Unlock()
	addr, epoch, reason := w.judge(ctx, v, cur, curEpoch)
	w.log.Debug("checked", "trigger", t.reason, "took_seconds", time.Since(t.at).Seconds(),
		"views", summarize(views), "master", addr, "reason", reason)

	agreeing := 0
	if addr != "" && v.ok && addr == v.addr {
		agreeing = v.support
	}
	w.obs.SentinelsChecked(w.cfg.MasterName, len(views), v.answered, agreeing)

	now := time.Now()
	w.mu.Lock()
	w.status.Views = views
	w.status.Checked = now
	w.status.Reason = reason
	changed := addr != cur
	var u Update
	if changed {
		w.status.Addr, w.status.Since = addr, now
		u = Update{
			MasterName: w.cfg.MasterName,
			Addr:       addr,
			Previous:   w.lastVerified,
			Epoch:      epoch,
			Reason:     t.reason + ": " + reason,
			Observed:   t.at,
		}
		if addr != "" {
			if !w.revealed.IsZero() {
				u.Observed = w.revealed
			}
			w.revealed = time.Time{}
			w.lastVerified = addr
		}
	}
	if !changed || addr == "" {
		// The first sight of a newer config-epoch is what revealed the
		// failover, even if the switch waits for the Sentinels to agree.
		if v.answered > 0 && v.maxEpoch > w.status.Epoch && w.lastVerified != "" && w.revealed.IsZero() {
			w.revealed = t.at
		}
	}
	if addr != "" {
		w.status.Epoch = epoch
	}
	w.mu.Unlock()

	if changed {
		w.publish(ctx, u)
	}
	if v.answered > 0 && (!v.ok || v.failingOver != "") {
		return transitionInterval
	}
	return w.cfg.PollInterval
}

func (w *Watcher) publish(ctx context.Context, u Update) {
	// The consumer logs the switch once, with its cutover time; this is the
	// watcher's own account, for debugging.
	if u.Addr != "" {
		w.log.Debug("master changed", "master", u.Addr, "previous", u.Previous, "config_epoch", u.Epoch,
			"reason", u.Reason, "detect_seconds", time.Since(u.Observed).Seconds())
	} else {
		w.log.Debug("master withdrawn: no verified master", "previous", u.Previous, "reason", u.Reason)
	}
	w.obs.MasterChanged(u.MasterName, u.Previous, u.Addr, u.Reason)
	select {
	case w.updates <- u:
	case <-ctx.Done():
	}
}

// judge turns a verdict into the address to route, checking it with ROLE.
// It returns "" when nothing is verified, with the reason in words.
func (w *Watcher) judge(ctx context.Context, v verdict, cur string, curEpoch int64) (string, int64, string) {
	switch {
	case v.answered == 0:
		if cur == "" {
			return "", 0, v.why
		}
		if r := w.role(ctx, cur); r.master {
			return cur, curEpoch, v.why + "; keeping the last verified master, which still answers ROLE as master"
		} else {
			return "", 0, fmt.Sprintf("%s, and the last master %s is no longer verified: %s", v.why, cur, r)
		}
	case !v.ok:
		if cur != "" && curEpoch < v.maxEpoch {
			return "", 0, "a newer configuration is being propagated: " + v.why
		}
		if cur == "" {
			return "", 0, v.why
		}
		if r := w.role(ctx, cur); r.master {
			return cur, curEpoch, "Sentinels disagree; keeping the last verified master: " + v.why
		} else {
			return "", 0, fmt.Sprintf("Sentinels disagree and %s is no longer verified (%s): %s", cur, r, v.why)
		}
	case v.failingOver != "":
		// Writes acknowledged by the old master between the promotion of
		// a replica and the switch are lost when it is demoted; stop
		// routing to it from the start of the failover instead. Clients
		// are held until the new master is verified.
		return "", 0, fmt.Sprintf("Sentinel %s is failing over %s", v.failingOver, v.addr)
	case v.addr == cur:
		r := w.role(ctx, cur)
		switch {
		case r.master:
			return cur, v.epoch, fmt.Sprintf("%d of %d Sentinels agree at config-epoch %d; ROLE is master", v.support, v.answered, v.epoch)
		case r.definite:
			return "", 0, fmt.Sprintf("%s is not a master: %s", cur, r)
		case v.downHint:
			return "", 0, fmt.Sprintf("%s does not answer (%s) and the Sentinels flag it down", cur, r)
		default:
			// A master busy with a slow command times out too; the
			// Sentinels still vouch for it, and their down-after decides.
			return cur, v.epoch, fmt.Sprintf("%s is slow to answer ROLE (%s) but the Sentinels still agree on it", cur, r)
		}
	default:
		r := w.role(ctx, v.addr)
		if r.master {
			return v.addr, v.epoch, fmt.Sprintf("%d of %d Sentinels agree at config-epoch %d; ROLE is master", v.support, v.answered, v.epoch)
		}
		return "", 0, fmt.Sprintf("the Sentinels' choice %s is not verified: %s", v.addr, r)
	}
}

type roleResult struct {
	master   bool
	role     string // what ROLE said, when it answered
	definite bool   // the answer (or refusal) settles it; a timeout does not
	err      error
}

func (r roleResult) String() string {
	if r.err != nil {
		return "ROLE failed: " + r.err.Error()
	}
	return "ROLE is " + r.role
}

// role asks addr for ROLE with the master's credentials.
func (w *Watcher) role(ctx context.Context, addr string) roleResult {
	w.roleMu.Lock()
	defer w.roleMu.Unlock()
	reused := w.roleAddr == addr
	if !reused {
		w.newRoleClientLocked(addr)
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	reply, err := w.roleClient.Do(ctx, "ROLE").Slice()
	if err != nil && reused && ctx.Err() == nil {
		// The kept connection may have died with its server (a reset,
		// not a refusal): ask once more on a fresh one, whose dial tells
		// a dead master (refused) from a slow one.
		w.newRoleClientLocked(addr)
		reply, err = w.roleClient.Do(ctx, "ROLE").Slice()
	}
	if err != nil {
		var rerr redis.Error
		definite := errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &rerr)
		return roleResult{err: err, definite: definite}
	}
	if len(reply) == 0 {
		return roleResult{err: errors.New("empty ROLE reply"), definite: true}
	}
	role, ok := reply[0].(string)
	if !ok {
		return roleResult{err: fmt.Errorf("ROLE reply starts with %T, want a string", reply[0]), definite: true}
	}
	return roleResult{master: role == "master", role: role, definite: true}
}

// newRoleClientLocked replaces the ROLE client with one for addr; roleMu
// is held.
func (w *Watcher) newRoleClientLocked(addr string) {
	if w.roleClient != nil {
		w.roleClient.Close()
	}
	w.roleAddr = addr
	w.roleClient = redis.NewClient(w.clientOptions(addr, w.cfg.MasterUsername, w.cfg.MasterPasswordFunc, w.cfg.MasterTLS, 1))
}

func (w *Watcher) closeRoleClient() {
	w.roleMu.Lock()
	defer w.roleMu.Unlock()
	if w.roleClient != nil {
		w.roleClient.Close()
		w.roleClient, w.roleAddr = nil, ""
	}
}

// query asks every known Sentinel for its view of the master, in parallel.
func (w *Watcher) query(ctx context.Context) []View {
	w.mu.Lock()
	sentinels := append([]*sentinel(nil), w.sentinels...)
	w.mu.Unlock()

	views := make([]View, len(sentinels))
	var wg sync.WaitGroup
	for i, s := range sentinels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i] = w.askSentinel(ctx, s)
		}()
	}
	wg.Wait()

	// One Sentinel known under two names (a hostname seed and the IP its
	// peers announce) must not vote twice.
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	out := views[:0]
	for i, v := range views {
		id := sentinels[i].runID
		if id != "" && seen[id] {
			continue
		}
		if id != "" {
			seen[id] = true
		}
		out = append(out, v)
	}
	return out
}

func (w *Watcher) askSentinel(parent context.Context, s *sentinel) View {
	ctx, cancel := context.WithTimeout(parent, w.cfg.Timeout)
	defer cancel()
	start := time.Now()
	v := View{Sentinel: s.addr}
	m, err := s.client.Master(ctx, w.cfg.MasterName).Result()
	if err == nil {
		v, err = w.parseMaster(ctx, s.addr, m)
	}
	if err != nil {
		v.Err = fmt.Errorf("discovery: SENTINEL MASTER %q via %s: %w", w.cfg.MasterName, s.addr, err)
		if parent.Err() != nil {
			// Our own cancellation (shutdown), not the Sentinel's failure:
			// neither logged nor counted, and its state is left as it was.
			return v
		}
	}
	w.obs.SentinelRequest(w.cfg.MasterName, s.addr, time.Since(start), v.Err)
	w.mu.Lock()
	wasDown, needID := s.down, s.runID == ""
	s.down = v.Err != nil
	w.mu.Unlock()
	switch {
	case v.Err != nil && !wasDown:
		w.log.Warn("Sentinel unreachable or unusable", "sentinel", s.addr, "err", v.Err)
	case v.Err == nil && wasDown:
		w.log.Info("Sentinel answers again", "sentinel", s.addr)
	}
	if v.Err == nil && needID {
		w.learnRunID(ctx, s)
	}
	return v
}

func (w *Watcher) learnRunID(ctx context.Context, s *sentinel) {
	cmd := redis.NewStringCmd(ctx, "info", "server")
	_ = s.client.Process(ctx, cmd)
	info, err := cmd.Result()
	if err != nil {
		return
	}
	for _, line := range strings.Split(info, "\n") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			w.mu.Lock()
			s.runID = id
			w.mu.Unlock()
			return
		}
	}
}

// parseMaster validates one SENTINEL MASTER reply. Anything unexpected is an
// error (this Sentinel gets no vote); a placeholder or unresolvable address
// is a vote for "not ready yet".
func (w *Watcher) parseMaster(ctx context.Context, sentinelAddr string, m map[string]string) (View, error) {
	v := View{Sentinel: sentinelAddr}
	if name := m["name"]; name != w.cfg.MasterName {
		return v, fmt.Errorf("%w: it names master %q", errBadReply, name)
	}
	ip, port := m["ip"], m["port"]
	if ip == "" {
		return v, fmt.Errorf("%w: no ip", errBadReply)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return v, fmt.Errorf("%w: bad port %q", errBadReply, port)
	}
	// "+6379" and "06379" parse, but must not split a vote by spelling.
	port = strconv.Itoa(p)
	epoch, err := strconv.ParseInt(m["config-epoch"], 10, 64)
	if err != nil || epoch < 0 {
		return v, fmt.Errorf("%w: bad config-epoch %q", errBadReply, m["config-epoch"])
	}
	v.Epoch = epoch
	v.Flags = strings.Split(m["flags"], ",")
	switch why := w.checkHost(ctx, ip); why {
	case "":
		v.Addr = net.JoinHostPort(ip, port)
	default:
		v.NotReady = why
	}
	return v, nil
}

// checkHost says why an announced host cannot be routed to, or "" if it can.
func (w *Watcher) checkHost(ctx context.Context, host string) string {
	if host == "" {
		return "empty address"
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return "placeholder address " + host
		}
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
		return fmt.Sprintf("host %q does not resolve: %v", host, err)
	}
	return ""
}

// discoverPeers adds the Sentinels that known Sentinels report.
func (w *Watcher) discoverPeers(ctx context.Context) {
	w.mu.Lock()
	w.lastPeers = time.Now()
	sentinels := append([]*sentinel(nil), w.sentinels...)
	w.mu.Unlock()

	type peer struct{ addr, runID string }
	var (
		found   []peer
		listers int // Sentinels that answered
		fmu     sync.Mutex
		wg      sync.WaitGroup
	)
	for _, s := range sentinels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
			defer cancel()
			peers, err := s.client.Sentinels(ctx, w.cfg.MasterName).Result()
			if err != nil {
				w.log.Debug("SENTINEL SENTINELS failed", "sentinel", s.addr, "err", err)
				return
			}
			fmu.Lock()
			listers++
			fmu.Unlock()
			for _, p := range peers {
				ip, port := p["ip"], p["port"]
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || w.checkHost(ctx, ip) != "" {
					continue
				}
				fmu.Lock()
				found = append(found, peer{net.JoinHostPort(ip, port), p["runid"]})
				fmu.Unlock()
			}
		}()
	}
	wg.Wait()

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range found {
		known := false
		for _, s := range w.sentinels {
			if s.addr == p.addr || (p.runID != "" && s.runID == p.runID) {
				known = true
				break
			}
		}
		if known {
			continue
		}
		if s := w.addSentinelLocked(p.addr); s != nil {
			s.runID = p.runID
			w.log.Info("learnt Sentinel", "sentinel", p.addr)
			w.startSubscriptionLocked(s)
		}
	}
	if listers == 0 {
		return // nobody to ask whether a Sentinel was removed
	}
	// A Sentinel taken out of service (SENTINEL RESET on its peers) is
	// dropped from their lists; one that is merely down stays listed. So a
	// learnt Sentinel that is down and named by no peer that answered, twice
	// running, is forgotten, and stops counting as down in logs and metrics.
	kept := w.sentinels[:0]
	for _, s := range w.sentinels {
		listed := false
		for _, p := range found {
			if s.addr == p.addr || (p.runID != "" && s.runID == p.runID) {
				listed = true
				break
			}
		}
		if s.seed || !s.down || listed {
			s.unlisted = 0
			kept = append(kept, s)
			continue
		}
		s.unlisted++
		if s.unlisted < forgetAfter {
			kept = append(kept, s)
			continue
		}
		w.log.Info("forgot Sentinel: down and no longer named by its peers", "sentinel", s.addr)
		if s.stop != nil {
			s.stop()
		}
		s.client.Close()
		w.obs.SentinelForgotten(w.cfg.MasterName, s.addr)
	}
	clear(w.sentinels[len(kept):])
	w.sentinels = kept
}
