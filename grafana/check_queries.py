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

First the static checks of grafana/check_dashboards.py run on the same files
(they need no Prometheus), and once Prometheus has data, the metrics it
scraped are compared with what check_dashboards.py read from src/: a series
with a `group` label whose definition the parser thinks has none (or the
reverse) means the source parser went wrong, and the fleet dashboard's
label check would be checking the wrong thing.

    check_queries.py --prometheus http://127.0.0.1:9090 [--wait 120] dashboard.json...
"""

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_dashboards  # noqa: E402

VARIABLES = ("namespace", "pod", "group")


def substitute(expr, rate_interval, range_):
    expr = expr.replace("$__rate_interval", rate_interval).replace("${__rate_interval}", rate_interval)
    expr = expr.replace("$__range", range_).replace("${__range}", range_)
    expr = expr.replace("$__interval", rate_interval)
    for name in VARIABLES:
        expr = expr.replace("${" + name + "}", ".*").replace("$" + name, ".*")
    # Legends' {{label}} and label_replace's capture references ($1, ${1}) are not variables.
    if "$" in re.sub(r"\{\{[^}]*\}\}|\$\d+|\$\{\d+\}", "", expr):
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


def check_group_labels(prometheus, metrics):
    """Problems where the scraped series disagree with the `group` labels
    check_dashboards.py read from the sources (None if Prometheus has no
    activity_* series yet)."""
    seen = {}
    for query, grouped in (('count by (__name__) ({__name__=~"activity_.+"})', False),
                           ('count by (__name__) ({__name__=~"activity_.+", group!=""})', True)):
        try:
            answer = get(prometheus, "/api/v1/query", {"query": query})
        except urllib.error.URLError:
            return None
        for r in answer.get("data", {}).get("result", []):
            name = r["metric"]["__name__"]
            seen[name] = seen.get(name, False) or grouped
    if not seen:
        return None
    problems = []
    for name, grouped in sorted(seen.items()):
        expected = check_dashboards.has_group_label(name, metrics)
        if expected is None:
            problems.append(f"{name}: scraped, but check_dashboards.py found no definition in src/")
        elif expected != grouped:
            problems.append(f"{name}: the series {'have' if grouped else 'have no'} group label, "
                            f"check_dashboards.py read the opposite from src/")
    return problems


def collect(paths):
    checks = []
    for path in paths:
        dashboard = json.load(open(path))
        title = dashboard["title"]
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                checks.append(("variable", f"{title} / ${variable['name']}", query))
        for panel in check_dashboards.panels_of(dashboard):
            targets = panel.get("targets", [])
            if not targets:
                checks.append(("empty", f"{title} / {panel['title']}", ""))
            for target in targets:
                checks.append(("panel", f"{title} / {panel['title']} [{target['refId']}]", target["expr"]))
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--wait", type=float, default=120)
    parser.add_argument("--rate-interval", default="30s")
    parser.add_argument("--range", default="15m")
    parser.add_argument("dashboards", nargs="+")
    args = parser.parse_args()

    static = check_dashboards.check(args.dashboards)
    for problem in static:
        print(f"FAIL {problem}")
    if static:
        print(f"{len(static)} dashboard problems found by check_dashboards.py")
        return 1
    metrics = check_dashboards.metric_labels(check_dashboards.ROOT / "src")

    checks = collect(args.dashboards)
    deadline = time.monotonic() + args.wait
    while True:
        failures = []
        labels = check_group_labels(args.prometheus, metrics)
        if labels is None:
            failures.append(("group labels", "", "no activity_* series in Prometheus yet"))
        for problem in labels or []:
            failures.append(("group labels", "", problem))
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
            print(f"dashboards: {len(args.dashboards)} dashboards pass the static checks; {panels} panel queries and "
                  f"{variables} variable queries all returned data from Prometheus, whose series carry group labels "
                  f"as src/ defines them")
            return 0
        if time.monotonic() >= deadline:
            for name, query, problem in failures:
                print(f"FAIL {name}: {problem}\n     {query}")
            print(f"{len(failures)} of {len(checks)} dashboard queries failed")
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
