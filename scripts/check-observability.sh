#!/usr/bin/env bash
# Checks what deploy/ ships for monitoring sentproxy: the Prometheus alerting
# rules (syntax and their promtool unit tests) and the Grafana dashboard
# (valid JSON, the variables it relies on, and PromQL that parses).
# Installs promtool from Debian's prometheus package when it is missing.
# That the metrics named there are really exported is checked by
# TestDeployMetricsExported (go test ./cmd/sentproxy/), and that a real
# Prometheus loads the rules by TestPrometheusEndToEnd.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=deploy/prometheus/alerts.yml
rules_test=deploy/prometheus/alerts_test.yml
dashboard=deploy/grafana/dashboards/sentproxy.json

# Debian's prometheus package ships promtool.
bash scripts/deps.sh promtool=prometheus python3=python3

echo "== promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}')"
promtool check rules "$rules"
promtool test rules "$rules_test"

echo "== $dashboard"
python3 -m json.tool "$dashboard" >/dev/null
echo "  valid JSON"

# The dashboard's PromQL, with Grafana's variables replaced by plausible
# values, must parse: wrap every expression in a recording rule and let
# promtool check it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$dashboard" "$tmp/dashboard-rules.yml" <<'PY'
import json, sys

path, out = sys.argv[1], sys.argv[2]
d = json.load(open(path))

errors = []
if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
    errors.append("schemaVersion missing or older than 36")
names = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
if names.get("DS_PROMETHEUS", {}).get("type") != "datasource":
    errors.append("no datasource variable DS_PROMETHEUS")
if "master_name" not in names:
    errors.append("no master_name variable")

exprs = []
def walk(node, where):
    if isinstance(node, dict):
        title = node.get("title", where)
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str) and v.strip():
                exprs.append((title, v))
            elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                exprs.append((title, v["query"]))
            else:
                walk(v, title)
    elif isinstance(node, list):
        for v in node:
            walk(v, where)
walk(d, "dashboard")

seen_ids = set()
for p in d.get("panels", []):
    if p.get("id") in seen_ids:
        errors.append(f"duplicate panel id {p.get('id')}")
    seen_ids.add(p.get("id"))
    if p.get("type") != "row":
        ds = p.get("datasource", {})
        if ds.get("uid") != "${DS_PROMETHEUS}":
            errors.append(f"panel {p.get('title')!r} does not use ${{DS_PROMETHEUS}}")
        if not p.get("targets"):
            errors.append(f"panel {p.get('title')!r} has no query")

subst = {
    "$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h",
    "$master_name": ".*", "$instance": ".*",
}
rules = []
for i, (title, e) in enumerate(exprs):
    if e.startswith("label_values("):
        # label_values(<selector>, <label>): check the selector.
        e = e[len("label_values("):].rsplit(",", 1)[0]
    for k, v in subst.items():
        e = e.replace(k, v)
    if "$" in e:
        errors.append(f"{title!r}: unknown variable in {e!r}")
    rules.append({"record": f"dashboard:expr_{i}", "expr": e})

if errors:
    for e in errors:
        print("  " + e, file=sys.stderr)
    sys.exit(1)
# JSON is YAML: no PyYAML needed.
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(out, "w"), indent=1)
print(f"  {len(seen_ids)} panels, {len(rules)} PromQL expressions")
PY
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null
echo "  every PromQL expression parses"
echo "observability checks passed"
