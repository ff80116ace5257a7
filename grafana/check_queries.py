#!/usr/bin/env python3
"""Runs every query of every shipped dashboard against a real Prometheus.

For each panel target the Grafana variables are substituted ($namespace,
$pod, $group → ".*", $__rate_interval, $__range), the expression is run as
an instant query through the HTTP API, and the check fails if Prometheus
returns an error, no series, or only NaN (Grafana draws nothing for either);
a panel without queries fails too. Each query variable (label_values) must list
at least one value. Retries until everything passes or --wait seconds
elapse, because a freshly started Prometheus needs a few scrapes before
rates have data.

    check_queries.py --prometheus http://127.0.0.1:9090 [--wait 120] dashboard.json...
"""

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request

VARIABLES = ("namespace", "pod", "group")


def substitute(expr, rate_interval, range_):
    expr = expr.replace("$__rate_interval", rate_interval).replace("${__rate_interval}", rate_interval)
    expr = expr.replace("$__range", range_).replace("${__range}", range_)
    expr = expr.replace("$__interval", rate_interval)
    for name in VARIABLES:
        expr = expr.replace("${" + name + "}", ".*").replace("$" + name, ".*")
    if "$" in re.sub(r"\{\{[^}]*\}\}", "", expr):
        raise ValueError(f"unsubstituted variable in {expr!r}")
    return expr


def get(prometheus, path, params):
    url = f"{prometheus}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def check_query(prometheus, expr):
    try:
        answer = get(prometheus, "/api/v1/query", {"query": expr})
    except urllib.error.HTTPError as e:
        return f"error {e.code}: {e.read().decode(errors='replace')[:300]}"
    if answer.get("status") != "success":
        return f"error: {answer.get('error')}"
    result = answer["data"]["result"]
    if not result:
        return "no data"
    # Grafana draws nothing for NaN (a quantile over no observations, a
    # ratio of zero rates): a panel of only NaN is as empty as no data.
    values = [r["value"][1] for r in result if "value" in r]
    if values and all(v in ("NaN", "+Inf", "-Inf") for v in values):
        return f"only {values[0]} values"
    return None


def check_variable(prometheus, query):
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    if not m:
        return f"unsupported variable query {query!r}"
    selector = substitute(m.group(1), "1m", "1h")
    answer = get(prometheus, f"/api/v1/label/{m.group(2)}/values", {"match[]": [selector]})
    if answer.get("status") != "success" or not answer["data"]:
        return "no values"
    return None


def collect(paths):
    checks = []
    for path in paths:
        dashboard = json.load(open(path))
        title = dashboard["title"]
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                checks.append(("variable", f"{title} / ${variable['name']}", query))
        for panel in panels_of(dashboard):
            targets = panel.get("targets", [])
            if not targets:
                checks.append(("empty", f"{title} / {panel['title']}", ""))
            for target in targets:
                checks.append(("panel", f"{title} / {panel['title']} [{target['refId']}]", target["expr"]))
    return checks


def panels_of(dashboard):
    """Every panel that shows data, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--wait", type=float, default=120)
    parser.add_argument("--rate-interval", default="30s")
    parser.add_argument("--range", default="15m")
    parser.add_argument("dashboards", nargs="+")
    args = parser.parse_args()

    checks = collect(args.dashboards)
    deadline = time.monotonic() + args.wait
    while True:
        failures = []
        for kind, name, query in checks:
            if kind == "variable":
                problem = check_variable(args.prometheus, query)
            elif kind == "empty":
                problem = "a panel without queries"
            else:
                problem = check_query(args.prometheus, substitute(query, args.rate_interval, args.range))
            if problem:
                failures.append((name, query, problem))
        if not failures:
            panels = sum(1 for c in checks if c[0] == "panel")
            variables = len(checks) - panels
            print(f"dashboards: {len(args.dashboards)} dashboards, {panels} panel queries and {variables} variable queries all returned data from Prometheus")
            return 0
        if time.monotonic() >= deadline:
            for name, query, problem in failures:
                print(f"FAIL {name}: {problem}\n     {query}")
            print(f"{len(failures)} of {len(checks)} dashboard queries failed")
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
