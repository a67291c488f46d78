package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultQueueSize       = 64
	DefaultExecTimeout     = 10 * time.Second
	DefaultWebhookTimeout  = 5 * time.Second
	DefaultWebhookAttempts = 3
	DefaultRetryBackoff    = time.Second
	DefaultDrainTimeout    = 5 * time.Second
)

// Sink names, as passed to Observer.NotifyResult and logged under "sink".
const (
	SinkExec    = "exec"
	SinkWebhook = "webhook"
)

var (
	// ErrDropped is reported for an event pushed out of a full queue.
	ErrDropped = errors.New("notify: queue full; event dropped")
	// ErrClosed is reported for an event notified after Close, or still
	// queued when Run ended.
	ErrClosed = errors.New("notify: notifier closed; event dropped")
)

// Event is one change of the routed master, after it took effect.
type Event struct {
	MasterName string
	// OldAddr is the previous master's host:port, "" if there was none.
	OldAddr string
	// NewAddr is the new master's host:port; "" means the master was
	// withdrawn (no verified master).
	NewAddr string
	// Reason says what led to the change.
	Reason string
	// Observed is when the event that revealed the change was seen.
	Observed time.Time
	// Switched is when the change took effect.
	Switched time.Time
	// Cutover is Switched - Observed for a switch; zero for a withdrawal.
	Cutover time.Duration
}

// Observer receives the outcome of each event for each sink: err is nil
// when it was delivered, ErrDropped or ErrClosed when it never was tried,
// and the delivery's error otherwise. It is called from the notifier's
// goroutines and, for drops, from Notify's caller: it must be safe for
// concurrent use and must not block. The parameters are plain types so that
// an implementation (package metrics) needs no import of this package.
type Observer interface {
	NotifyResult(sink string, err error)
}

type nopObserver struct{}

func (nopObserver) NotifyResult(string, error) {}

// Config configures a Notifier. With neither Exec nor Webhook set it does
// nothing, cheaply.
type Config struct {
	// Exec is the program run after each switch, with the arguments of a
	// Sentinel client-reconfig-script. It is a path (or a name looked up in
	// PATH), not a command line: there is no shell. "" disables it.
	Exec string
	// ExecEnv is the program's environment; nil means this process's.
	ExecEnv []string
	// ExecTimeout bounds each run. Zero means 10s.
	ExecTimeout time.Duration

	// Webhook is the URL each event is POSTed to as JSON. "" disables it.
	Webhook string
	// WebhookTimeout bounds each attempt. Zero means 5s.
	WebhookTimeout time.Duration
	// WebhookAttempts is how many times an event is POSTed at most, the
	// first attempt included. Zero means 3.
	WebhookAttempts int
	// RetryBackoff is the pause before the second attempt; it doubles
	// before each further one. Zero means 1s.
	RetryBackoff time.Duration

	// QueueSize is how many events each sink holds while it is busy. Zero
	// means 64.
	QueueSize int
	// DrainTimeout bounds how long Close lets queued and running
	// deliveries go on. Zero means 5s.
	DrainTimeout time.Duration

	// Logger receives the notifier's logs; nil discards them.
	Logger *slog.Logger
	// Observer receives each delivery's outcome; nil means none.
	Observer Observer
}

// Notifier delivers Events to the configured sinks. Create it with New,
// start it with Run, stop it with Close. A nil *Notifier is valid and does
// nothing.
type Notifier struct {
	cfg      Config
	log      *slog.Logger
	obs      Observer
	workers  []*worker
	failures atomic.Uint64
	dropped  atomic.Uint64

	// mu guards the lifecycle. Notify holds it for reading while it
	// queues, so that once Close holds it for writing no event can slip
	// into a queue that nobody will drain.
	mu      sync.RWMutex
	closed  bool
	running bool
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when Run returns
}

// New returns a Notifier for cfg. It starts nothing; call Run. An invalid
// webhook URL is not an error here (validate it with ValidateWebhookURL
// beforehand): every delivery to it then fails, and says so.
func New(cfg Config) *Notifier {
	if cfg.ExecTimeout <= 0 {
		cfg.ExecTimeout = DefaultExecTimeout
	}
	if cfg.WebhookTimeout <= 0 {
		cfg.WebhookTimeout = DefaultWebhookTimeout
	}
	if cfg.WebhookAttempts <= 0 {
		cfg.WebhookAttempts = DefaultWebhookAttempts
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	n := &Notifier{
		cfg:     cfg,
		log:     cfg.Logger,
		obs:     cfg.Observer,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.obs == nil {
		n.obs = nopObserver{}
	}
	if cfg.Exec != "" {
		s := &execSink{path: cfg.Exec, env: cfg.ExecEnv, timeout: cfg.ExecTimeout}
		n.workers = append(n.workers, n.newWorker(SinkExec, s.send, s.skip, "program", cfg.Exec))
	}
	if cfg.Webhook != "" {
		s := newWebhookSink(cfg, n.log)
		n.workers = append(n.workers, n.newWorker(SinkWebhook, s.send, nil, "host", s.host))
	}
	return n
}

// Sinks returns the names of the configured sinks.
func (n *Notifier) Sinks() []string {
	if n == nil {
		return nil
	}
	var names []string
	for _, w := range n.workers {
		names = append(names, w.name)
	}
	return names
}

// Failures returns how many deliveries failed or were dropped, all sinks
// together.
func (n *Notifier) Failures() uint64 {
	if n == nil {
		return 0
	}
	return n.failures.Load()
}

// Dropped returns how many of the Failures were events never tried: pushed
// out of a full queue, notified after Close, or left queued when Run ended.
func (n *Notifier) Dropped() uint64 {
	if n == nil {
		return 0
	}
	return n.dropped.Load()
}

// Notify queues ev for every sink that takes it and returns at once: it
// never waits for a sink. When a sink's queue is full, its oldest event is
// dropped and counted.
func (n *Notifier) Notify(ev Event) {
	if n == nil || len(n.workers) == 0 {
		return
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, w := range n.workers {
		if w.skip != nil && w.skip(ev) {
			continue
		}
		if n.closed {
			n.report(w, ev, ErrClosed, 0)
			continue
		}
		w.push(ev)
	}
}

// Run delivers events until Close has been called and the queues are
// drained (or Config.DrainTimeout has passed), or until ctx ends, which
// cancels running deliveries. Events still queued then are counted as
// failures. Run returns at once if it was already called, or if Close was.
func (n *Notifier) Run(ctx context.Context) {
	if n == nil {
		return
	}
	n.mu.Lock()
	if n.running || n.closed {
		n.mu.Unlock()
		return
	}
	n.running = true
	n.mu.Unlock()
	defer close(n.done)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go n.cancelAfterDrain(ctx, cancel)

	var wg sync.WaitGroup
	for _, w := range n.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, n.closing)
		}()
	}
	wg.Wait()

	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	for _, w := range n.workers {
		for _, ev := range w.takeAll() {
			n.report(w, ev, ErrClosed, 0)
		}
	}
}

// cancelAfterDrain cancels the deliveries DrainTimeout after Close.
func (n *Notifier) cancelAfterDrain(ctx context.Context, cancel context.CancelFunc) {
	select {
	case <-n.closing:
	case <-ctx.Done():
		return
	}
	t := time.NewTimer(n.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-t.C:
		n.log.Warn("notifications still pending at shutdown; cancelling them", "drain_timeout", n.cfg.DrainTimeout.String())
		cancel()
	case <-ctx.Done():
	}
}

// Close stops taking events, lets Run deliver what is queued for at most
// Config.DrainTimeout, and returns when Run has returned. If Run never ran,
// queued events are counted as failures. Close is idempotent.
func (n *Notifier) Close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	first := !n.closed
	n.closed = true
	running := n.running
	n.mu.Unlock()
	select {
	case <-n.closing:
	default:
		close(n.closing)
	}
	if running {
		<-n.done
		return
	}
	if first {
		for _, w := range n.workers {
			for _, ev := range w.takeAll() {
				n.report(w, ev, ErrClosed, 0)
			}
		}
	}
}

// report counts, observes and logs one outcome.
func (n *Notifier) report(w *worker, ev Event, err error, took time.Duration) {
	n.obs.NotifyResult(w.name, err)
	attrs := []any{"sink", w.name, w.targetKey, w.target, "master_name", ev.MasterName, "master", ev.NewAddr, "previous", ev.OldAddr}
	switch {
	case err == nil:
		n.log.Info("notification delivered", append(attrs, "took_seconds", took.Seconds())...)
		return
	case errors.Is(err, ErrDropped), errors.Is(err, ErrClosed):
		n.dropped.Add(1)
	}
	n.failures.Add(1)
	n.log.Warn("notification failed", append(attrs, "err", err)...)
}

// worker owns one sink's queue and delivers from it, one event at a time.
type worker struct {
	n    *Notifier
	name string
	send func(context.Context, Event) error
	skip func(Event) bool // events this sink does not take; nil takes all
	// targetKey and target say where the sink delivers, for logs: the
	// program, or the webhook's host (never its URL).
	targetKey, target string

	mu    sync.Mutex
	queue []Event
	wake  chan struct{}
}

func (n *Notifier) newWorker(name string, send func(context.Context, Event) error, skip func(Event) bool, targetKey, target string) *worker {
	return &worker{
		n: n, name: name, send: send, skip: skip,
		targetKey: targetKey, target: target,
		queue: make([]Event, 0, n.cfg.QueueSize),
		wake:  make(chan struct{}, 1),
	}
}

// push queues ev, dropping the oldest event if the queue is full.
func (w *worker) push(ev Event) {
	var (
		old     Event
		dropped bool
	)
	w.mu.Lock()
	if len(w.queue) >= w.n.cfg.QueueSize {
		old, dropped = w.queue[0], true
		copy(w.queue, w.queue[1:])
		w.queue = w.queue[:len(w.queue)-1]
	}
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	if dropped {
		w.n.report(w, old, ErrDropped, 0)
	}
}

func (w *worker) pop() (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return Event{}, false
	}
	ev := w.queue[0]
	copy(w.queue, w.queue[1:])
	w.queue = w.queue[:len(w.queue)-1]
	return ev, true
}

func (w *worker) takeAll() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	evs := append([]Event(nil), w.queue...)
	w.queue = w.queue[:0]
	return evs
}

// run delivers until the queue is empty after Close, or ctx ends.
func (w *worker) run(ctx context.Context, closing <-chan struct{}) {
	for {
		if ev, ok := w.pop(); ok {
			start := time.Now()
			err := w.send(ctx, ev)
			w.n.report(w, ev, err, time.Since(start))
			continue
		}
		select {
		case <-closing:
			// Nothing can be queued after Close, and the queue is empty.
			return
		case <-ctx.Done():
			return
		case <-w.wake:
		}
	}
}

// Text is a one-line summary of ev for people, as sent in the webhook's
// "text" field.
func Text(ev Event) string {
	reason := oneLine(ev.Reason, 300)
	var s string
	switch {
	case ev.NewAddr == "":
		s = fmt.Sprintf("sentproxy: %s has no verified master (was %s); new clients are held", ev.MasterName, orNone(ev.OldAddr))
	case ev.OldAddr == "":
		s = fmt.Sprintf("sentproxy: %s master is %s", ev.MasterName, ev.NewAddr)
	case ev.OldAddr == ev.NewAddr:
		s = fmt.Sprintf("sentproxy: %s master %s is verified again", ev.MasterName, ev.NewAddr)
	default:
		s = fmt.Sprintf("sentproxy: %s master switched from %s to %s (cutover %s)", ev.MasterName, ev.OldAddr, ev.NewAddr, roundDuration(ev.Cutover))
	}
	if reason != "" {
		s += ": " + reason
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// oneLine flattens s to one line of at most max bytes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
