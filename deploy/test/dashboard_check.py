#!/usr/bin/env python3
"""Checks deploy/grafana/tsunagu.json against what a running gateway exports. Run by
deploy/test.sh with the text of a real gateway's GET /metrics.

- The dashboard is JSON Grafana can import: unique panel ids, a grid position for each, a
  Prometheus datasource taken from the `datasource` variable, each query with a refId.
- Every metric name in every query is exported by the gateway: a sample name in /metrics, or
  the name a family declared by `# TYPE` gets for its samples (counter: `_total`; histogram:
  `_bucket`, `_sum`, `_count`), as OpenMetrics names them. The gateway writes no family that
  has no sample yet (no error so far: no `tsunagu_errors`), so the test feeds it what the
  dashboard shows first. `up` is Prometheus' own.
- Every label a query groups or selects by exists on the metrics it names, where the gateway
  has samples of them (`job` and `instance` are Prometheus' target labels, `le` a bucket's).
- Writes every query as a recording rule (Grafana's `$__rate_interval` as 5m) to --rules, for
  `promtool check rules` to parse the PromQL.
"""

import argparse
import json
import re
import sys

PROMETHEUS_OWN = {"up"}
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gaugehistogram": ["_bucket", "_gsum", "_gcount"]}
# PromQL words that may stand before `(` or inside an expression and are not metric names.
NOT_METRICS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "by",
    "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "topk", "bottomk", "abs", "clamp_min", "clamp_max", "delta", "deriv", "absent",
    "vector", "scalar", "time", "label_replace", "sort", "sort_desc", "quantile", "stddev",
}


def exported(metrics_text):
    """Sample names the gateway exports, with the label names seen on each."""
    names = {}
    for line in metrics_text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            family, kind = m.groups()
            for suffix in SUFFIXES.get(kind, [""]):
                names.setdefault(family + suffix, set())
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
        if m:
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            names.setdefault(m.group(1), set()).update(labels | {"__sampled__"})
    return names


def queries(dashboard, failures):
    ids = set()
    stack = list(dashboard.get("panels", []))
    while stack:
        p = stack.pop(0)
        stack.extend(p.get("panels", []))
        pid = p.get("id")
        if pid in ids:
            failures.append(f"panel id {pid} is used twice")
        ids.add(pid)
        grid = p.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
            failures.append(f"panel {pid} ({p.get('title')}) has no grid position")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            failures.append(f"panel {pid} ({p.get('title')}) does not use the datasource variable")
        targets = p.get("targets", [])
        if not targets:
            failures.append(f"panel {pid} ({p.get('title')}) has no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            failures.append(f"panel {pid} ({p.get('title')}) has missing or repeated refIds")
        for t in targets:
            yield pid, p.get("title"), t.get("refId"), t.get("expr", "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--metrics", required=True, help="a running gateway's /metrics text")
    ap.add_argument("--rules", required=True, help="where to write the queries as recording rules")
    a = ap.parse_args()

    failures = []
    dashboard = json.load(open(a.dashboard, encoding="utf-8"))
    variables = [v for v in dashboard.get("templating", {}).get("list", []) if v.get("name") == "datasource"]
    if not variables or variables[0].get("type") != "datasource" or variables[0].get("query") != "prometheus":
        failures.append("no `datasource` variable of type prometheus")
    names = exported(open(a.metrics, encoding="utf-8").read())
    if not any(n.startswith("tsunagu_") for n in names):
        failures.append("the /metrics text names no tsunagu_ metric")

    rules, used, unchecked_labels = [], set(), set()
    for pid, title, ref, expr in queries(dashboard, failures):
        where = f"panel {pid} ({title}) {ref}"
        # Strings (label values, `{{legend}}`) are not names.
        bare = re.sub(r'"[^"]*"', '""', expr)
        idents = set(re.findall(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)", re.sub(r"\[[^\]]*\]", "", bare)))
        grouped = set()
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", bare):
            grouped |= {x.strip() for x in clause.split(",") if x.strip()}
        selected = set()
        for sel in re.findall(r"\{([^}]*)\}", bare):
            selected |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel))
        metrics = {i for i in idents - NOT_METRICS - grouped - selected if not re.fullmatch(r"\d.*", i)}
        if not metrics:
            failures.append(f"{where}: no metric in {expr!r}")
        for m in sorted(metrics):
            if m in PROMETHEUS_OWN:
                continue
            if m not in names:
                failures.append(f"{where}: {m} is not exported by the gateway")
            used.add(m)
        sampled = [names[m] for m in metrics if m in names and "__sampled__" in names[m]]
        for label in sorted((grouped | selected) - TARGET_LABELS - {"le"}):
            if not sampled:
                unchecked_labels.add(f"{label} ({', '.join(sorted(metrics))})")
            elif not any(label in s for s in sampled):
                failures.append(f"{where}: label {label} is on none of {sorted(metrics)}")
        rules.append({"record": f"dashboard:panel{pid}:{ref}", "expr": expr.replace("$__rate_interval", "5m")})

    # JSON is YAML: promtool reads this as a rule file.
    with open(a.rules, "w", encoding="utf-8") as f:
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, indent=1)
    for fail in failures:
        print("FAIL " + fail)
    print(f"tsunagu.json: {len(rules)} queries over {len(used)} gateway metrics, all exported"
          if not failures else f"tsunagu.json: {len(failures)} problem(s)")
    if unchecked_labels:
        print("labels not checked (no samples yet in this gateway's /metrics): " + "; ".join(sorted(unchecked_labels)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
