package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The monitoring that deploy/ ships, relative to this package's directory.
const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/dashboards/sentproxy.json"
)

// metricRef matches a sentproxy metric name in PromQL or prose. Alert names
// (SentproxyNoMaster) and the command (`sentproxy check`) do not match.
var metricRef = regexp.MustCompile(`\bsentproxy_[a-z_]+`)

// histogramSuffixes are the series a histogram or summary exports under
// names of its own; /metrics declares only the base name's # TYPE.
var histogramSuffixes = []string{"_bucket", "_count", "_sum"}

// alertMetrics returns the sentproxy metric names alerts.yml mentions, in its
// expressions and in its annotations alike: a metric an operator is told to
// look at must exist too.
func alertMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	return uniq(metricRef.FindAllString(string(b), -1))
}

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets, annotations, and the template variables' queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if n["type"] == "datasource" {
				return // the data source variable: its query is a plugin type
			}
			for k, v := range n {
				s, isString := v.(string)
				if !isString {
					walk(v)
				} else if (k == "expr" || k == "definition" || k == "query") && strings.TrimSpace(s) != "" {
					exprs = append(exprs, s)
				}
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(d)
	return exprs
}

func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, e := range dashboardExprs(t) {
		names = append(names, metricRef.FindAllString(e, -1)...)
	}
	return uniq(names)
}

func uniq(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// exportedTypes maps each metric family on /metrics to its # TYPE.
func exportedTypes(body string) map[string]string {
	types := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	return types
}

// missingMetric says why name, as referenced by a query, is not exported:
// "" when it is, either as a family of its own or as a histogram's (or
// summary's) _bucket, _count or _sum series.
func missingMetric(types map[string]string, name string) string {
	if _, ok := types[name]; ok {
		return ""
	}
	for _, suf := range histogramSuffixes {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		switch typ, exported := types[base]; {
		case !exported:
			return "not exported (nor " + base + ")"
		case typ != "histogram" && typ != "summary":
			return base + " is a " + typ + ", so it has no " + suf + " series"
		default:
			return ""
		}
	}
	return "not exported"
}

// TestDeployMetricsExported checks that every sentproxy metric the alerting
// rules and the Grafana dashboard refer to is exported by a live sentproxy
// routing to a real master, so that a renamed metric cannot leave an alert
// that never fires or a panel that stays empty.
func TestDeployMetricsExported(t *testing.T) {
	alerts, dashboard := alertMetrics(t), dashboardMetrics(t)
	// Guard the extraction itself: finding nothing would pass vacuously.
	if len(alerts) < 5 {
		t.Fatalf("found only %d metric names in %s: %v", len(alerts), alertsFile, alerts)
	}
	if len(dashboard) < 10 {
		t.Fatalf("found only %d metric names in %s: %v", len(dashboard), dashboardFile, dashboard)
	}

	topo := startTopology(t)
	h := startHarness(t, topo, nil)
	h.waitRouted(topo.Master.Addr, 10*time.Second)

	// Vectors export a family only once a series exists: the Sentinels'
	// series after their first answer, master_info while a master is
	// routed. All of that precedes routing, but give a slow machine a moment
	// before calling a name missing.
	var body string
	var types map[string]string
	missing := func() []string {
		var out []string
		for _, src := range []struct {
			file  string
			names []string
		}{{alertsFile, alerts}, {dashboardFile, dashboard}} {
			for _, name := range src.names {
				if why := missingMetric(types, name); why != "" {
					out = append(out, src.file+": "+name+": "+why)
				}
			}
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = h.httpGet("/metrics")
		types = exportedTypes(body)
		if len(missing()) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("referenced but not exported by sentproxy:\n  %s", strings.Join(m, "\n  "))
	}

	// Every alert's annotations name the route with $labels.master_name, so
	// every sentproxy series the rules select must carry that label.
	for _, name := range alerts {
		if !hasLabel(body, name, "master_name") {
			t.Errorf("%s: %s has no series with a master_name label", alertsFile, name)
		}
	}
	if !t.Failed() {
		t.Logf("alerts.yml uses %d sentproxy metrics, the dashboard %d; all exported", len(alerts), len(dashboard))
	}
}

// hasLabel reports whether a sample of series name (a family or one of its
// _bucket/_count/_sum series) carries label.
func hasLabel(body, name, label string) bool {
	prefixes := []string{name + "{"}
	for _, suf := range histogramSuffixes {
		prefixes = append(prefixes, name+suf+"{")
	}
	for _, line := range strings.Split(body, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) && strings.Contains(line, label+`="`) {
				return true
			}
		}
	}
	return false
}

// TestDeployMissingMetric checks the test's own rule on names: a histogram's
// series count as exported, a counter has no _bucket, and a name that is
// not exported at all is reported.
func TestDeployMissingMetric(t *testing.T) {
	types := exportedTypes("# HELP a_seconds x\n# TYPE a_seconds histogram\n# TYPE b_total counter\n")
	for name, wantOK := range map[string]bool{
		"a_seconds":        true,
		"a_seconds_bucket": true,
		"a_seconds_count":  true,
		"a_seconds_sum":    true,
		"b_total":          true,
		"b_total_bucket":   false,
		"c_total":          false,
		"c_count":          false,
	} {
		if got := missingMetric(types, name) == ""; got != wantOK {
			t.Errorf("missingMetric(%q) = %q; want exported=%v", name, missingMetric(types, name), wantOK)
		}
	}
}
