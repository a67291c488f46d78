package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "sentproxy"

// Label names. In every subsystem the name label is master_name: routes are
// named after the master they serve, so one label joins proxy and Sentinel
// series for the same master.
const (
	labelMaster    = "master_name"
	labelAddress   = "address"
	labelSentinel  = "sentinel"
	labelResult    = "result"
	labelReason    = "reason"
	labelDirection = "direction"
)

// closeReasons mirrors the reason constants of package proxy. They are listed
// here rather than imported so that this package stays independent of the
// proxy; a reason missing from this list still gets counted, just without
// being pre-initialised.
var closeReasons = []string{
	"client",
	"upstream",
	"master_switch",
	"no_master",
	"dial_error",
	"shutdown",
	"idle",
	"max_connections",
	"internal_error",
	"tls_handshake",
}

// Bucket layouts. Cutovers and dials to a master on the local network take
// well under a millisecond when all goes well, and that is exactly the range
// where a regression matters, so the low end is fine-grained.
var (
	cutoverBuckets  = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	dialBuckets     = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	sentinelBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// Redis clients typically hold pooled connections for hours; short-lived
	// ones point at clients that do not pool or at connections being cut.
	lifetimeBuckets = []float64{.01, .1, 1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600}
)

// Metrics records sentproxy's events as Prometheus metrics. It is safe for
// concurrent use. The zero value is not usable; create one with [New]. A nil
// *Metrics records nothing.
type Metrics struct {
	masterSwitches    *prometheus.CounterVec
	masterWithdrawals *prometheus.CounterVec
	masterInfo        *prometheus.GaugeVec
	masterUp          *prometheus.GaugeVec
	masterLastSwitch  *prometheus.GaugeVec
	cutover           *prometheus.HistogramVec
	notifyResults     *prometheus.CounterVec

	sentinelUp       *prometheus.GaugeVec
	sentinelRequests *prometheus.CounterVec
	sentinelDuration *prometheus.HistogramVec
	sentinelKnown    *prometheus.GaugeVec
	sentinelAnswered *prometheus.GaugeVec
	sentinelAgreeing *prometheus.GaugeVec

	connections       *prometheus.CounterVec
	activeConnections *prometheus.GaugeVec
	closedConnections *prometheus.CounterVec
	connDuration      *prometheus.HistogramVec
	dialDuration      *prometheus.HistogramVec
	dialErrors        *prometheus.CounterVec
	bytes             *prometheus.CounterVec

	// series caches the resolved children per master/route name so that the
	// per-connection calls skip the label hashing and lookup of the vectors.
	// Names come from configuration, so it never shrinks and needs no eviction.
	series sync.Map // string -> *nameSeries

	// infoMu serialises master_info updates: two concurrent MasterChanged
	// calls for one master must not interleave their delete and set and leave
	// two address series behind. infoAddr remembers which address series
	// exists, so the right one is deleted whatever oldAddr the caller passes.
	infoMu   sync.Mutex
	infoAddr map[string]string
}

// nameSeries holds the children of every per-name series that is touched
// often. Its fields are written once, before it is published in the cache.
type nameSeries struct {
	up               prometheus.Gauge
	switches         prometheus.Counter
	withdrawals      prometheus.Counter
	cutover          prometheus.Observer
	sentinelDuration prometheus.Observer
	sentinelKnown    prometheus.Gauge
	sentinelAnswered prometheus.Gauge
	sentinelAgreeing prometheus.Gauge

	accepted       prometheus.Counter
	active         prometheus.Gauge
	closed         map[string]prometheus.Counter // read-only once published
	lifetime       prometheus.Observer
	dialOK         prometheus.Observer
	dialErrors     prometheus.Counter
	clientToMaster prometheus.Counter
	masterToClient prometheus.Counter
}

// New creates the metrics and registers them on reg. It panics if any of
// them is already registered there, as prometheus.MustRegister does: that is
// a wiring bug, not a runtime condition.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		masterSwitches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "master",
			Name:      "switches_total",
			Help:      "Times the routed master moved from one address to another.",
		}, []string{labelMaster}),
		masterWithdrawals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "master",
			Name:      "withdrawals_total",
			Help:      "Times the routed master was withdrawn because none could be verified.",
		}, []string{labelMaster}),
		masterInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "master",
			Name:      "info",
			Help:      "Address of the currently routed master; always 1, absent while no master is routed.",
		}, []string{labelMaster, labelAddress}),
		masterUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "master",
			Name:      "up",
			Help:      "1 while a verified master is routed, 0 otherwise.",
		}, []string{labelMaster}),
		masterLastSwitch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "master",
			Name:      "last_switch_timestamp_seconds",
			Help:      "Unix time of the last change of the routed master, including discovery and withdrawal.",
		}, []string{labelMaster}),
		cutover: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "master",
			Name:      "cutover_duration_seconds",
			Help:      "Time from the event that revealed a master change to the proxy routing to the new master.",
			Buckets:   cutoverBuckets,
		}, []string{labelMaster}),

		sentinelUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "sentinel",
			Name:      "up",
			Help:      "1 if the last query to this Sentinel got a usable answer, 0 otherwise.",
		}, []string{labelMaster, labelSentinel}),
		sentinelRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "sentinel",
			Name:      "requests_total",
			Help:      "Queries sent to Sentinels about a master, by result (ok or error).",
		}, []string{labelMaster, labelSentinel, labelResult}),
		sentinelDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "sentinel",
			Name:      "request_duration_seconds",
			Help:      "Duration of queries to Sentinels about a master, failed ones included.",
			Buckets:   sentinelBuckets,
		}, []string{labelMaster}),
		sentinelKnown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "sentinel",
			Name:      "known",
			Help:      "Sentinels known for a master at the last check.",
		}, []string{labelMaster}),
		sentinelAnswered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "sentinel",
			Name:      "answered",
			Help:      "Sentinels that answered at the last check.",
		}, []string{labelMaster}),
		sentinelAgreeing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "sentinel",
			Name:      "agreeing",
			Help:      "Sentinels that supported the verified master at the last check (0 when there is none).",
		}, []string{labelMaster}),

		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "proxy",
			Name:      "connections_total",
			Help:      "Client connections accepted.",
		}, []string{labelMaster}),
		activeConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Subsystem: "proxy",
			Name:      "active_connections",
			Help:      "Client connections currently open.",
		}, []string{labelMaster}),
		closedConnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "proxy",
			Name:      "closed_connections_total",
			Help:      "Client connections closed, by reason.",
		}, []string{labelMaster, labelReason}),
		connDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "proxy",
			Name:      "connection_duration_seconds",
			Help:      "Lifetime of closed client connections.",
			Buckets:   lifetimeBuckets,
		}, []string{labelMaster}),
		dialDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Subsystem: "proxy",
			Name:      "upstream_dial_duration_seconds",
			Help:      "Duration of successful dials to the master.",
			Buckets:   dialBuckets,
		}, []string{labelMaster}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "proxy",
			Name:      "upstream_dial_errors_total",
			Help:      "Failed dials to the master.",
		}, []string{labelMaster}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "proxy",
			Name:      "bytes_total",
			Help:      "Bytes relayed by closed client connections, by direction.",
		}, []string{labelMaster, labelDirection}),

		notifyResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Subsystem: "notify",
			Name:      "results_total",
			Help:      "Switch notifications by sink (exec, webhook) and result (ok, error; a dropped one is an error).",
		}, []string{"sink", "result"}),

		infoAddr: make(map[string]string),
	}
	reg.MustRegister(
		m.masterSwitches, m.masterWithdrawals, m.masterInfo, m.masterUp, m.masterLastSwitch, m.cutover,
		m.sentinelUp, m.sentinelRequests, m.sentinelDuration, m.sentinelKnown, m.sentinelAnswered, m.sentinelAgreeing,
		m.connections, m.activeConnections, m.closedConnections, m.connDuration, m.dialDuration, m.dialErrors, m.bytes,
		m.notifyResults,
	)
	return m
}

// forName returns the cached children for a master/route name, creating
// them on first sight. Creating a child exports it at zero, which is the
// point: counters that exist from the start let rate() and increase() see
// the first event instead of treating it as the series' beginning.
func (m *Metrics) forName(name string) *nameSeries {
	if s, ok := m.series.Load(name); ok {
		return s.(*nameSeries)
	}
	s := &nameSeries{
		up:               m.masterUp.WithLabelValues(name),
		switches:         m.masterSwitches.WithLabelValues(name),
		withdrawals:      m.masterWithdrawals.WithLabelValues(name),
		cutover:          m.cutover.WithLabelValues(name),
		sentinelDuration: m.sentinelDuration.WithLabelValues(name),
		sentinelKnown:    m.sentinelKnown.WithLabelValues(name),
		sentinelAnswered: m.sentinelAnswered.WithLabelValues(name),
		sentinelAgreeing: m.sentinelAgreeing.WithLabelValues(name),

		accepted:       m.connections.WithLabelValues(name),
		active:         m.activeConnections.WithLabelValues(name),
		closed:         make(map[string]prometheus.Counter, len(closeReasons)),
		lifetime:       m.connDuration.WithLabelValues(name),
		dialOK:         m.dialDuration.WithLabelValues(name),
		dialErrors:     m.dialErrors.WithLabelValues(name),
		clientToMaster: m.bytes.WithLabelValues(name, "client_to_master"),
		masterToClient: m.bytes.WithLabelValues(name, "master_to_client"),
	}
	for _, r := range closeReasons {
		s.closed[r] = m.closedConnections.WithLabelValues(name, r)
	}
	// Two goroutines may race to build the same entry; the vectors hand both
	// the same children, so whichever is stored is equivalent.
	actual, _ := m.series.LoadOrStore(name, s)
	return actual.(*nameSeries)
}

// ConnectionAccepted counts a client connection accepted on route.
func (m *Metrics) ConnectionAccepted(route string) {
	if m == nil {
		return
	}
	s := m.forName(route)
	s.accepted.Inc()
	s.active.Inc()
}

// ConnectionClosed records the end of a client connection on route.
func (m *Metrics) ConnectionClosed(route, reason string, lifetime time.Duration, clientToMaster, masterToClient int64) {
	if m == nil {
		return
	}
	s := m.forName(route)
	s.active.Dec()
	if c, ok := s.closed[reason]; ok {
		c.Inc()
	} else {
		// A reason the proxy added after this list was written: still count
		// it rather than lose it.
		m.closedConnections.WithLabelValues(route, reason).Inc()
	}
	s.lifetime.Observe(lifetime.Seconds())
	// Counter.Add panics on negative values; a bogus count must not take the
	// proxy down with it.
	if clientToMaster > 0 {
		s.clientToMaster.Add(float64(clientToMaster))
	}
	if masterToClient > 0 {
		s.masterToClient.Add(float64(masterToClient))
	}
}

// UpstreamDialed records a dial to the master of route. Only successful dials
// enter the duration histogram: failures are mostly timeouts, which would
// pile up in the top bucket and hide the latency of the dials that worked.
func (m *Metrics) UpstreamDialed(route string, took time.Duration, err error) {
	if m == nil {
		return
	}
	s := m.forName(route)
	if err != nil {
		s.dialErrors.Inc()
		return
	}
	s.dialOK.Observe(took.Seconds())
}

// SentinelRequest records one query to a Sentinel about master.
func (m *Metrics) SentinelRequest(master, sentinel string, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.forName(master).sentinelDuration.Observe(took.Seconds())
	// Resolve both results every time so that the error series exists (at
	// zero) before the first error, which keeps error-ratio queries defined.
	// This runs once per Sentinel per check, far off the connection path.
	ok := m.sentinelRequests.WithLabelValues(master, sentinel, "ok")
	failed := m.sentinelRequests.WithLabelValues(master, sentinel, "error")
	up := m.sentinelUp.WithLabelValues(master, sentinel)
	if err != nil {
		failed.Inc()
		up.Set(0)
		return
	}
	ok.Inc()
	up.Set(1)
}

// SentinelsChecked records the outcome of one check of master's Sentinels.
func (m *Metrics) SentinelsChecked(master string, known, answered, agreeing int) {
	if m == nil {
		return
	}
	s := m.forName(master)
	s.sentinelKnown.Set(float64(known))
	s.sentinelAnswered.Set(float64(answered))
	s.sentinelAgreeing.Set(float64(agreeing))
}

// MasterChanged records a change of the routed master. Only a move from one
// address to another counts as a switch: the first discovery (oldAddr empty)
// is not a failover, and a withdrawal (newAddr empty) is counted separately.
// The reason is not a label; it is free text meant for logs.
func (m *Metrics) MasterChanged(master, oldAddr, newAddr, reason string) {
	if m == nil {
		return
	}
	s := m.forName(master)
	m.masterLastSwitch.WithLabelValues(master).SetToCurrentTime()
	if newAddr == "" {
		s.withdrawals.Inc()
		s.up.Set(0)
	} else {
		s.up.Set(1)
		if oldAddr != "" && oldAddr != newAddr {
			s.switches.Inc()
		}
	}
	m.setMasterInfo(master, oldAddr, newAddr)
}

// setMasterInfo keeps exactly one master_info series per routed master, or
// none while it is withdrawn, so that joins on it never see two addresses.
func (m *Metrics) setMasterInfo(master, oldAddr, newAddr string) {
	m.infoMu.Lock()
	defer m.infoMu.Unlock()
	if prev, ok := m.infoAddr[master]; ok && prev != newAddr {
		m.masterInfo.DeleteLabelValues(master, prev)
	}
	// The caller's idea of the old address normally matches ours; if it does
	// not, drop its series too rather than trust either side alone.
	if oldAddr != "" && oldAddr != newAddr {
		m.masterInfo.DeleteLabelValues(master, oldAddr)
	}
	if newAddr == "" {
		delete(m.infoAddr, master)
		return
	}
	m.masterInfo.WithLabelValues(master, newAddr).Set(1)
	m.infoAddr[master] = newAddr
}

// Cutover records how long it took from the event that revealed a new master
// (such as Sentinel's +switch-master message) until the proxy routed to it.
func (m *Metrics) Cutover(master string, took time.Duration) {
	if m == nil {
		return
	}
	m.forName(master).cutover.Observe(took.Seconds())
}

// NotifyResult counts one switch notification's outcome; err nil is success.
func (m *Metrics) NotifyResult(sink string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.notifyResults.WithLabelValues(sink, result).Inc()
}

// NewRegistry returns a registry with the Go runtime, process and
// sentproxy_build_info collectors registered. It is a fresh registry rather
// than prometheus.DefaultRegisterer so that what sentproxy exports does not
// depend on what its dependencies register globally.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector(namespace),
	)
	return reg
}

// Handler serves the metrics gathered from reg. A nil reg serves a fresh
// [NewRegistry], so a misconfigured caller gets runtime metrics instead of a
// panic on the first scrape.
//
// Gathering errors are logged and the rest of the metrics are still served:
// one broken collector should not blind the whole scrape.
func Handler(reg *prometheus.Registry) http.Handler {
	if reg == nil {
		reg = NewRegistry()
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slogLogger{},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}

// slogLogger adapts slog's default logger to promhttp.Logger. It has no state,
// so unlike a *log.Logger field left nil it cannot make the handler panic.
type slogLogger struct{}

func (slogLogger) Println(v ...any) {
	slog.Default().Error("serving metrics", "error", sprintln(v))
}

// sprintln joins promhttp's arguments the way log.Println would, without the
// trailing newline that slog would otherwise quote.
func sprintln(v []any) string {
	s := fmt.Sprintln(v...)
	return strings.TrimSuffix(s, "\n")
}

// SentinelForgotten deletes the series of a Sentinel that is no longer
// watched, so that an alert on it being down does not fire for ever.
func (m *Metrics) SentinelForgotten(master, sentinel string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{labelMaster: master, labelSentinel: sentinel}
	m.sentinelUp.Delete(l)
	m.sentinelRequests.DeletePartialMatch(l)
}

// TLS certificates sentproxy presents, for RegisterTLSCertificateExpiry.
const (
	// TLSClientCertificate is presented to the Sentinels and the master
	// (--tls.cert-file).
	TLSClientCertificate = "client"
	// TLSServerCertificate is presented to clients (--proxy.tls-cert-file).
	TLSServerCertificate = "server"
)

// RegisterTLSCertificateExpiry exports, on reg, when the TLS certificate
// of the given kind (TLSClientCertificate or TLSServerCertificate) that
// sentproxy presents for the route (master name) expires, as read by
// notAfter at each scrape, so that an alert can fire before a renewal that
// never came breaks every new connection. It is 0 when notAfter gives the
// zero time: no such certificate.
func RegisterTLSCertificateExpiry(reg prometheus.Registerer, route, kind string, notAfter func() time.Time) {
	help := "When the TLS client certificate sentproxy presents for the route (--tls.cert-file, read again when it changes) expires, in Unix time; 0 without one."
	if kind == TLSServerCertificate {
		help = "When the TLS certificate sentproxy presents to the route's clients (--proxy.tls-cert-file, read again when it changes) expires, in Unix time; 0 without one."
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace:   namespace,
		Subsystem:   "tls",
		Name:        kind + "_certificate_expiry_timestamp_seconds",
		Help:        help,
		ConstLabels: prometheus.Labels{labelMaster: route},
	}, func() float64 {
		t := notAfter()
		if t.IsZero() {
			return 0
		}
		return float64(t.Unix())
	}))
}
