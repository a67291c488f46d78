package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// Local copies of proxy.Observer and discovery.Observer. Importing those
// packages here would couple this package's tests to theirs; if either
// interface changes, these copies must follow and this check will tell
// whether *Metrics still fits.
type proxyObserver interface {
	ConnectionAccepted(route string)
	ConnectionClosed(route, reason string, lifetime time.Duration, clientToMaster, masterToClient int64)
	UpstreamDialed(route string, took time.Duration, err error)
}

type discoveryObserver interface {
	SentinelRequest(master, sentinel string, took time.Duration, err error)
	SentinelsChecked(master string, known, answered, agreeing int)
	MasterChanged(master, oldAddr, newAddr, reason string)
}

var (
	_ proxyObserver     = (*Metrics)(nil)
	_ discoveryObserver = (*Metrics)(nil)
)

var errTest = errors.New("test error")

// exercise makes every call once, so that each metric family has at least
// one series to lint and to compare.
func exercise(m *Metrics) {
	m.ConnectionAccepted("mymaster")
	m.ConnectionClosed("mymaster", "client", 3*time.Second, 100, 2000)
	m.UpstreamDialed("mymaster", 300*time.Microsecond, nil)
	m.UpstreamDialed("mymaster", time.Second, errTest)
	m.SentinelRequest("mymaster", "10.0.0.1:26379", 2*time.Millisecond, nil)
	m.SentinelRequest("mymaster", "10.0.0.2:26379", time.Second, errTest)
	m.SentinelsChecked("mymaster", 3, 2, 2)
	m.MasterChanged("mymaster", "", "10.0.0.10:6379", "discovered")
	m.MasterChanged("mymaster", "10.0.0.10:6379", "10.0.0.11:6379", "+switch-master")
	m.Cutover("mymaster", 4*time.Millisecond)
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	// Any panic fails the test.
	exercise(m)
	m.MasterChanged("mymaster", "10.0.0.11:6379", "", "withdrawn")
}

func TestLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	exercise(New(reg))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestCollectAndLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	exercise(m)
	// Lint each collector separately as well, so a problem names its vector.
	for _, c := range []prometheus.Collector{
		m.masterSwitches, m.masterWithdrawals, m.masterInfo, m.masterUp, m.masterLastSwitch, m.cutover,
		m.sentinelUp, m.sentinelRequests, m.sentinelDuration, m.sentinelKnown, m.sentinelAnswered, m.sentinelAgreeing,
		m.connections, m.activeConnections, m.closedConnections, m.connDuration, m.dialDuration, m.dialErrors, m.bytes,
	} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	exercise(New(reg))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"sentproxy_master_switches_total",
		"sentproxy_master_withdrawals_total",
		"sentproxy_master_info",
		"sentproxy_master_up",
		"sentproxy_master_last_switch_timestamp_seconds",
		"sentproxy_master_cutover_duration_seconds",
		"sentproxy_sentinel_up",
		"sentproxy_sentinel_requests_total",
		"sentproxy_sentinel_request_duration_seconds",
		"sentproxy_sentinel_known",
		"sentproxy_sentinel_answered",
		"sentproxy_sentinel_agreeing",
		"sentproxy_proxy_connections_total",
		"sentproxy_proxy_active_connections",
		"sentproxy_proxy_closed_connections_total",
		"sentproxy_proxy_connection_duration_seconds",
		"sentproxy_proxy_upstream_dial_duration_seconds",
		"sentproxy_proxy_upstream_dial_errors_total",
		"sentproxy_proxy_bytes_total",
	} {
		if !got[name] {
			t.Errorf("%s not exported", name)
		}
		delete(got, name)
	}
	for name := range got {
		t.Errorf("unexpected metric %s", name)
	}
}

func TestProxyMetrics(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.ConnectionAccepted("a")
	m.ConnectionAccepted("a")
	m.ConnectionAccepted("b")
	m.ConnectionClosed("a", "upstream", 2*time.Second, 10, 20)
	m.ConnectionClosed("a", "master_switch", time.Second, 5, 0)
	m.ConnectionClosed("a", "client", time.Second, -1, 0) // must not panic
	m.UpstreamDialed("a", time.Millisecond, nil)
	m.UpstreamDialed("a", time.Second, errTest)
	m.UpstreamDialed("a", time.Second, errTest)

	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"connections a", m.connections.WithLabelValues("a"), 2},
		{"connections b", m.connections.WithLabelValues("b"), 1},
		{"active a", m.activeConnections.WithLabelValues("a"), -1},
		{"active b", m.activeConnections.WithLabelValues("b"), 1},
		{"closed upstream", m.closedConnections.WithLabelValues("a", "upstream"), 1},
		{"closed master_switch", m.closedConnections.WithLabelValues("a", "master_switch"), 1},
		{"closed client", m.closedConnections.WithLabelValues("a", "client"), 1},
		{"bytes to master", m.bytes.WithLabelValues("a", "client_to_master"), 15},
		{"bytes to client", m.bytes.WithLabelValues("a", "master_to_client"), 20},
		{"dial errors", m.dialErrors.WithLabelValues("a"), 2},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n := histogramCount(t, m.dialDuration.WithLabelValues("a"), "sentproxy_proxy_upstream_dial_duration_seconds"); n != 1 {
		t.Errorf("dial duration count = %d, want 1 (successful dials only)", n)
	}
	if n := histogramCount(t, m.connDuration.WithLabelValues("a"), "sentproxy_proxy_connection_duration_seconds"); n != 3 {
		t.Errorf("connection duration count = %d, want 3", n)
	}
}

func TestClosedReasonsPreinitialised(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.ConnectionAccepted("mymaster")

	reasons := []string{"client", "upstream", "master_switch", "no_master", "dial_error", "shutdown", "idle", "max_connections", "internal_error", "tls_handshake"}
	if got := testutil.CollectAndCount(m.closedConnections); got != len(reasons) {
		t.Errorf("%d closed-connection series, want %d", got, len(reasons))
	}
	for _, r := range reasons {
		if got := testutil.ToFloat64(m.closedConnections.WithLabelValues("mymaster", r)); got != 0 {
			t.Errorf("reason %s = %v, want 0", r, got)
		}
	}
	// An unlisted reason is still counted.
	m.ConnectionClosed("mymaster", "surprise", 0, 0, 0)
	if got := testutil.ToFloat64(m.closedConnections.WithLabelValues("mymaster", "surprise")); got != 1 {
		t.Errorf("unlisted reason = %v, want 1", got)
	}
}

func TestMasterInfoSingleSeries(t *testing.T) {
	m := New(prometheus.NewRegistry())

	m.MasterChanged("mymaster", "", "10.0.0.10:6379", "discovered")
	assertInfo(t, m, "10.0.0.10:6379")
	m.MasterChanged("mymaster", "10.0.0.10:6379", "10.0.0.11:6379", "+switch-master")
	assertInfo(t, m, "10.0.0.11:6379")
	m.MasterChanged("mymaster", "10.0.0.11:6379", "10.0.0.12:6379", "+switch-master")
	assertInfo(t, m, "10.0.0.12:6379")

	if got := testutil.ToFloat64(m.masterSwitches.WithLabelValues("mymaster")); got != 2 {
		t.Errorf("switches = %v, want 2 (first discovery is not a switch)", got)
	}
	if got := testutil.ToFloat64(m.masterUp.WithLabelValues("mymaster")); got != 1 {
		t.Errorf("up = %v, want 1", got)
	}

	m.MasterChanged("mymaster", "10.0.0.12:6379", "", "no quorum")
	if n := testutil.CollectAndCount(m.masterInfo); n != 0 {
		t.Errorf("%d master_info series after withdrawal, want 0", n)
	}
	if got := testutil.ToFloat64(m.masterWithdrawals.WithLabelValues("mymaster")); got != 1 {
		t.Errorf("withdrawals = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.masterSwitches.WithLabelValues("mymaster")); got != 2 {
		t.Errorf("switches = %v after withdrawal, want 2", got)
	}
	if got := testutil.ToFloat64(m.masterUp.WithLabelValues("mymaster")); got != 0 {
		t.Errorf("up = %v after withdrawal, want 0", got)
	}

	// Coming back after a withdrawal is not a switch either.
	m.MasterChanged("mymaster", "", "10.0.0.12:6379", "recovered")
	assertInfo(t, m, "10.0.0.12:6379")
	if got := testutil.ToFloat64(m.masterSwitches.WithLabelValues("mymaster")); got != 2 {
		t.Errorf("switches = %v after recovery, want 2", got)
	}
	ts := testutil.ToFloat64(m.masterLastSwitch.WithLabelValues("mymaster"))
	if d := time.Since(time.Unix(int64(ts), 0)); d < -time.Second || d > time.Minute {
		t.Errorf("last switch timestamp %v is not now", ts)
	}
}

func assertInfo(t *testing.T, m *Metrics, addr string) {
	t.Helper()
	if n := testutil.CollectAndCount(m.masterInfo); n != 1 {
		t.Fatalf("%d master_info series, want 1", n)
	}
	if got := testutil.ToFloat64(m.masterInfo.WithLabelValues("mymaster", addr)); got != 1 {
		t.Fatalf("master_info{address=%q} = %v, want 1", addr, got)
	}
}

func TestSentinelMetrics(t *testing.T) {
	m := New(prometheus.NewRegistry())
	const s1, s2 = "10.0.0.1:26379", "10.0.0.2:26379"
	m.SentinelRequest("mymaster", s1, time.Millisecond, nil)
	m.SentinelRequest("mymaster", s2, time.Millisecond, errTest)
	m.SentinelsChecked("mymaster", 3, 2, 1)

	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"up s1", m.sentinelUp.WithLabelValues("mymaster", s1), 1},
		{"up s2", m.sentinelUp.WithLabelValues("mymaster", s2), 0},
		{"ok s1", m.sentinelRequests.WithLabelValues("mymaster", s1, "ok"), 1},
		{"error s1", m.sentinelRequests.WithLabelValues("mymaster", s1, "error"), 0},
		{"error s2", m.sentinelRequests.WithLabelValues("mymaster", s2, "error"), 1},
		{"known", m.sentinelKnown.WithLabelValues("mymaster"), 3},
		{"answered", m.sentinelAnswered.WithLabelValues("mymaster"), 2},
		{"agreeing", m.sentinelAgreeing.WithLabelValues("mymaster"), 1},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	// s2 recovers.
	m.SentinelRequest("mymaster", s2, time.Millisecond, nil)
	if got := testutil.ToFloat64(m.sentinelUp.WithLabelValues("mymaster", s2)); got != 1 {
		t.Errorf("up s2 = %v after recovery, want 1", got)
	}
	if n := histogramCount(t, m.sentinelDuration.WithLabelValues("mymaster"), "sentproxy_sentinel_request_duration_seconds"); n != 3 {
		t.Errorf("sentinel duration count = %d, want 3", n)
	}
}

func TestCutover(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.Cutover("mymaster", 700*time.Microsecond)
	h := m.cutover.WithLabelValues("mymaster")
	if n := histogramCount(t, h, "sentproxy_master_cutover_duration_seconds"); n != 1 {
		t.Fatalf("cutover count = %d, want 1", n)
	}
	// 0.7ms must land in the 1ms bucket, not be lumped with slower cutovers.
	want := `
# HELP sentproxy_master_cutover_duration_seconds Time from the event that revealed a master change to the proxy routing to the new master.
# TYPE sentproxy_master_cutover_duration_seconds histogram
sentproxy_master_cutover_duration_seconds_bucket{master_name="mymaster",le="0.0005"} 0
sentproxy_master_cutover_duration_seconds_bucket{master_name="mymaster",le="0.001"} 1
`
	got, err := testutil.CollectAndFormat(m.cutover, expfmt.TypeTextPlain, "sentproxy_master_cutover_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(string(got), line+"\n") {
			t.Errorf("missing line %q in\n%s", line, got)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	m := New(prometheus.NewRegistry())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			route := []string{"a", "b"}[i%2]
			for range 200 {
				m.ConnectionAccepted(route)
				m.ConnectionClosed(route, "client", time.Millisecond, 1, 1)
				m.MasterChanged(route, "", "10.0.0.1:6379", "x")
				m.SentinelRequest(route, "10.0.0.1:26379", time.Millisecond, nil)
			}
		})
	}
	wg.Wait()
	for _, r := range []string{"a", "b"} {
		if got := testutil.ToFloat64(m.connections.WithLabelValues(r)); got != 800 {
			t.Errorf("connections %s = %v, want 800", r, got)
		}
		if got := testutil.ToFloat64(m.activeConnections.WithLabelValues(r)); got != 0 {
			t.Errorf("active %s = %v, want 0", r, got)
		}
	}
	if n := testutil.CollectAndCount(m.masterInfo); n != 2 {
		t.Errorf("%d master_info series, want 2", n)
	}
}

// The per-connection calls run for every client connection; once a route
// has been seen they should not allocate.
func TestHotPathAllocs(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.ConnectionAccepted("mymaster")
	route := strings.Clone("mymaster") // not a constant, as at runtime
	allocs := testing.AllocsPerRun(1000, func() {
		m.ConnectionAccepted(route)
		m.ConnectionClosed(route, "client", time.Second, 10, 10)
		m.UpstreamDialed(route, time.Millisecond, nil)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per connection, want 0", allocs)
	}
}

func TestHandler(t *testing.T) {
	reg := NewRegistry()
	exercise(New(reg))
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, name := range []string{
		"sentproxy_build_info",
		"go_goroutines",
		"sentproxy_master_info",
		"sentproxy_proxy_connections_total",
	} {
		if !strings.Contains(string(body), name) {
			t.Errorf("response lacks %s", name)
		}
	}
}

func TestHandlerNilRegistry(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "sentproxy_build_info") {
		t.Errorf("status %d, body lacks sentproxy_build_info:\n%s", rec.Code, rec.Body)
	}
}

// Registering twice on one registry is a wiring bug and must be loud.
func TestNewTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	defer func() {
		if recover() == nil {
			t.Error("second New on the same registry did not panic")
		}
	}()
	New(reg)
}

// histogramCount reads a histogram child's sample count from its text
// exposition, which keeps the test free of the client_model dependency.
func histogramCount(t *testing.T, o prometheus.Observer, name string) uint64 {
	t.Helper()
	c, ok := o.(prometheus.Collector)
	if !ok {
		t.Fatalf("%T is not a prometheus.Collector", o)
	}
	text, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(text), "\n") {
		series, rest, _ := strings.Cut(line, "{")
		if series != name+"_count" {
			continue
		}
		_, value, _ := strings.Cut(rest, "} ")
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			t.Fatalf("parsing %q: %v", line, err)
		}
		return n
	}
	t.Fatalf("no _count line in\n%s", text)
	return 0
}

// A forgotten Sentinel's series go, so that an alert on it being down
// stops; the other Sentinels' series stay.
func TestSentinelForgottenDeletesItsSeries(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.SentinelRequest("mymaster", "10.0.0.1:26379", time.Millisecond, errors.New("down"))
	m.SentinelRequest("mymaster", "10.0.0.2:26379", time.Millisecond, nil)
	m.SentinelForgotten("mymaster", "10.0.0.1:26379")
	if n := testutil.CollectAndCount(m.sentinelUp); n != 1 {
		t.Fatalf("%d sentinel_up series; want 1 (the Sentinel still watched)", n)
	}
	if n := testutil.CollectAndCount(m.sentinelRequests); n != 2 {
		t.Fatalf("%d sentinel request series; want 2 (ok and error of the Sentinel still watched)", n)
	}
	if got := testutil.ToFloat64(m.sentinelUp.WithLabelValues("mymaster", "10.0.0.2:26379")); got != 1 {
		t.Fatalf("remaining Sentinel up = %v; want 1", got)
	}
}

// The expiry is read at each scrape, so a renewed certificate shows at the
// next one; no certificate exports 0 rather than a date in year 1.
func TestTLSCertificateExpiry(t *testing.T) {
	for _, kind := range []string{TLSClientCertificate, TLSServerCertificate} {
		t.Run(kind, func(t *testing.T) { testTLSCertificateExpiry(t, kind) })
	}
}

func testTLSCertificateExpiry(t *testing.T, kind string) {
	reg := prometheus.NewRegistry()
	expiry := time.Unix(1_900_000_000, 0)
	RegisterTLSCertificateExpiry(reg, "mymaster", kind, func() time.Time { return expiry })
	read := func() string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 {
			t.Fatalf("gather: %v, %d families", err, len(mfs))
		}
		m := mfs[0].GetMetric()[0]
		return mfs[0].GetName() + "{" + m.GetLabel()[0].GetName() + "=" + m.GetLabel()[0].GetValue() + "} " +
			strconv.FormatFloat(m.GetGauge().GetValue(), 'f', -1, 64)
	}
	if got := read(); got != "sentproxy_tls_"+kind+"_certificate_expiry_timestamp_seconds{master_name=mymaster} 1900000000" {
		t.Fatalf("got %q", got)
	}
	expiry = time.Unix(1_950_000_000, 0)
	if got := read(); !strings.HasSuffix(got, " 1950000000") {
		t.Fatalf("after a renewal: %q", got)
	}
	expiry = time.Time{}
	if got := read(); !strings.HasSuffix(got, " 0") {
		t.Fatalf("unknown expiry: %q", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}
