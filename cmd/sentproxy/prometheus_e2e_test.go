package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/testutil"
)

// testNoMasterAlert is the test's copy of SentproxyNoMaster: the same
// expression, without the 30s "for", so that the few seconds a failover
// leaves the route without a master are enough to fire it.
const testNoMasterAlert = "SentproxyTestNoMaster"

// TestPrometheusEndToEnd runs a real Prometheus server (Debian's prometheus
// package) against sentproxy in front of real Redis and Sentinels: it loads
// deploy/prometheus/alerts.yml, which must evaluate without errors on real
// data, scrapes a failover, and shows from Prometheus's own API that the
// switch was counted and that the no-master alert fired and resolved. The
// dashboard's queries must run there without errors too.
func TestPrometheusEndToEnd(t *testing.T) {
	bin := prometheusBinary(t)
	alertsPath, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	alertsYAML, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	realAlerts := alertNames(string(alertsYAML))
	if len(realAlerts) == 0 {
		t.Fatalf("no alert found in %s", alertsPath)
	}
	noMasterExpr := alertExpr(t, string(alertsYAML), "SentproxyNoMaster")

	topo := startTopology(t)
	h := startHarness(t, topo, func(c *appConfig) { c.discovery.PollInterval = 250 * time.Millisecond })
	old := topo.Master.Addr
	h.waitRouted(old, 10*time.Second)

	dir := t.TempDir()
	testRules := filepath.Join(dir, "test-rules.yml")
	writeFile(t, testRules, fmt.Sprintf(`groups:
  - name: sentproxy-test
    rules:
      - alert: %s
        expr: %s
        for: 0s
        labels:
          severity: test
`, testNoMasterAlert, noMasterExpr))
	config := filepath.Join(dir, "prometheus.yml")
	writeFile(t, config, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
  - %q
scrape_configs:
  - job_name: sentproxy
    static_configs:
      - targets: [%q]
`, alertsPath, testRules, h.web))
	p := startPrometheus(t, bin, config, filepath.Join(dir, "data"))

	// Before the failover: scraped, routed, no switch yet, every rule loaded.
	p.waitValue(`up{job="sentproxy"}`, 1, 10*time.Second)
	p.waitValue(`sentproxy_master_up{master_name="mymaster"}`, 1, 5*time.Second)
	p.waitValue(`sentproxy_master_switches_total{master_name="mymaster"}`, 0, 5*time.Second)
	p.waitRulesHealthy(append(realAlerts, testNoMasterAlert), 10*time.Second)
	if got := p.firing(testNoMasterAlert); got {
		t.Fatalf("%s fires before the failover", testNoMasterAlert)
	}

	if err := topo.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	// Watch the alert while the failover is under way. The route is without
	// a master for roughly the Sentinels' down-after (2s) plus the election:
	// a few scrapes and evaluations at 1s.
	var firedAt, switchedAt time.Time
	newAddr := ""
	deadline := killed.Add(25 * time.Second)
	for firedAt.IsZero() || newAddr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: alert firing seen at %v, proxy routing to %q (old master %s)",
				time.Since(killed).Round(time.Millisecond), firedAt, h.routed(), old)
		}
		if firedAt.IsZero() && p.firing(testNoMasterAlert) {
			firedAt = time.Now()
		}
		if r := h.routed(); newAddr == "" && r != "" && r != old {
			newAddr, switchedAt = r, time.Now()
		}
		time.Sleep(100 * time.Millisecond) // polling pace
	}
	t.Logf("master killed; %s seen firing after %s; proxy routed to %s after %s",
		testNoMasterAlert, firedAt.Sub(killed).Round(time.Millisecond), newAddr, switchedAt.Sub(killed).Round(time.Millisecond))

	// Prometheus saw the switch, the new master, and kept the alert's
	// firing in its ALERTS series.
	p.waitValue(`sentproxy_master_switches_total{master_name="mymaster"}`, 1, 10*time.Second)
	p.waitValue(`sentproxy_master_info{master_name="mymaster",address="`+newAddr+`"}`, 1, 5*time.Second)
	p.waitValue(`max_over_time(ALERTS{alertname="`+testNoMasterAlert+`",alertstate="firing",master_name="mymaster"}[5m])`, 1, 5*time.Second)
	// It resolves once the new master is routed.
	p.waitValue(`sentproxy_master_up{master_name="mymaster"}`, 1, 10*time.Second)
	eventually(t, testNoMasterAlert+" resolved", 10*time.Second, func() bool { return !p.firing(testNoMasterAlert) })

	// The real rules evaluated on the failover's data without errors (a
	// vector-matching mistake only shows here, not in promtool's tests).
	p.waitRulesHealthy(append(realAlerts, testNoMasterAlert), 5*time.Second)

	// And every dashboard query runs.
	n, nonEmpty := 0, 0
	for _, e := range uniq(dashboardExprs(t)) {
		q := grafanaVars.Replace(strings.TrimSpace(e))
		if sel, ok := strings.CutPrefix(q, "label_values("); ok {
			// label_values(<selector>, <label>): query the selector.
			i := strings.LastIndex(sel, ",")
			if i < 0 {
				t.Errorf("dashboard variable query %q: no label", e)
				continue
			}
			q = sel[:i]
		}
		res, err := p.query(q)
		if err != nil {
			t.Errorf("dashboard query %q: %v", q, err)
			continue
		}
		n++
		if len(res) > 0 {
			nonEmpty++
		}
	}
	t.Logf("%d dashboard queries ran on Prometheus, %d returned series", n, nonEmpty)
}

// grafanaVars stands in for Grafana's variables in the dashboard's queries.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5s",
	"$__interval", "2s",
	"$__range", "5m",
	"$master_name", "mymaster",
	"$instance", ".*",
)

// prometheusBinary finds Debian's prometheus binary, skipping the test where
// it is not installed unless CI is set.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI is set, so prometheus is required: apt-get install prometheus")
	}
	t.Skip("prometheus not installed (apt-get install prometheus)")
	return ""
}

var alertNameRE = regexp.MustCompile(`(?m)^\s*-\s*alert:\s*(\S+)\s*$`)

func alertNames(yaml string) []string {
	var names []string
	for _, m := range alertNameRE.FindAllStringSubmatch(yaml, -1) {
		names = append(names, m[1])
	}
	return names
}

// alertExpr returns the one-line expression of alert in the rules file.
func alertExpr(t *testing.T, yaml, alert string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*-\s*alert:\s*` + regexp.QuoteMeta(alert) + `\s*\n\s*expr:\s*(.+?)\s*$`)
	m := re.FindStringSubmatch(yaml)
	if m == nil || strings.HasPrefix(m[1], ">") || strings.HasPrefix(m[1], "|") {
		t.Fatalf("no one-line expr for alert %s in %s", alert, alertsFile)
	}
	return m[1]
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// promServer is a Prometheus process started by the test.
type promServer struct {
	t    *testing.T
	base string // http://127.0.0.1:port
	log  *testutil.Buffer
}

// startPrometheus starts Prometheus on a free loopback port and waits until
// it is ready. It is stopped (SIGTERM, then SIGKILL after 5s) when the test
// ends. The port is chosen by binding :0 and closing, so another process may
// take it in between; that shows as an early exit and is retried.
func startPrometheus(t *testing.T, bin, config, data string) *promServer {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p := &promServer{t: t, base: "http://" + addr, log: &testutil.Buffer{}}
		cmd := exec.Command(bin,
			"--config.file="+config,
			"--storage.tsdb.path="+data,
			"--web.listen-address="+addr,
		)
		cmd.Stdout, cmd.Stderr = p.log, p.log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		stop := func() {
			select {
			case <-exited:
				return
			default:
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				t.Logf("prometheus (pid %d) did not stop within 5s of SIGTERM; killing it", cmd.Process.Pid)
				cmd.Process.Kill()
				<-exited
			}
		}
		// Registered after the caller's t.TempDir, so it runs before the
		// data directory is removed.
		t.Cleanup(func() {
			stop()
			if t.Failed() {
				t.Logf("prometheus log:\n%s", tail(p.log.String(), 40))
			}
		})
		lastErr = p.waitReady(exited, 20*time.Second)
		if lastErr == nil {
			return p
		}
		stop()
		if !strings.Contains(p.log.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("prometheus did not become ready: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

var promClient = &http.Client{Timeout: 5 * time.Second}

func (p *promServer) waitReady(exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("prometheus exited: %s", tail(p.log.String(), 5))
		default:
		}
		resp, err := promClient.Get(p.base + "/-/ready")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (last: %v)", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// api GETs an /api/v1 endpoint and decodes its data into v.
func (p *promServer) api(path string, params url.Values, v any) error {
	u := p.base + "/api/v1/" + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	resp, err := promClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: HTTP %d: %v", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query. Scalars and strings come back as one sample
// without labels.
func (p *promServer) query(q string) ([]promSample, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("query", url.Values{"query": {q}}, &d); err != nil {
		return nil, err
	}
	switch d.ResultType {
	case "vector":
		var s []promSample
		return s, json.Unmarshal(d.Result, &s)
	case "scalar", "string":
		var v [2]any
		return []promSample{{Value: v}}, json.Unmarshal(d.Result, &v)
	default:
		return nil, fmt.Errorf("query %q: result type %q", q, d.ResultType)
	}
}

// waitValue polls until q returns exactly one sample, equal to want.
func (p *promServer) waitValue(q string, want float64, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var last string
		res, err := p.query(q)
		switch {
		case err != nil:
			last = err.Error()
		case len(res) != 1:
			last = fmt.Sprintf("%d samples", len(res))
		default:
			s, _ := res[0].Value[1].(string)
			if v, err := strconv.ParseFloat(s, 64); err == nil && v == want {
				return
			}
			last = s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("Prometheus: %s: want %v, still %s after %s", q, want, last, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// firing reports whether an alert named name is firing for mymaster.
func (p *promServer) firing(name string) bool {
	var d struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := p.api("alerts", nil, &d); err != nil {
		p.t.Logf("GET /api/v1/alerts: %v", err)
		return false
	}
	for _, a := range d.Alerts {
		if a.Labels["alertname"] == name && a.Labels["master_name"] == "mymaster" && a.State == "firing" {
			return true
		}
	}
	return false
}

// waitRulesHealthy polls until Prometheus has loaded and evaluated every
// named alert, and fails at once on a rule that evaluates with an error.
func (p *promServer) waitRulesHealthy(names []string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var d struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name           string    `json:"name"`
					Health         string    `json:"health"`
					LastError      string    `json:"lastError"`
					LastEvaluation time.Time `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		err := p.api("rules", url.Values{"type": {"alert"}}, &d)
		pending := map[string]bool{}
		for _, n := range names {
			pending[n] = true
		}
		for _, g := range d.Groups {
			for _, r := range g.Rules {
				if r.Health == "err" {
					p.t.Fatalf("rule %s (group %s) fails on real data: %s", r.Name, g.Name, r.LastError)
				}
				if r.Health == "ok" && !r.LastEvaluation.IsZero() {
					delete(pending, r.Name)
				}
			}
		}
		if err == nil && len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("after %s, rules not loaded and evaluated: %v (err %v)", timeout, pending, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
