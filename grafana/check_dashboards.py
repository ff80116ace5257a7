#!/usr/bin/env python3
"""Static checks of the shipped dashboards: the rules a reviewer would
otherwise have to remember, checked on the JSON itself (no Grafana, no
Prometheus needed). grafana/check_queries.py runs them too, before it asks
a real Prometheus for data.

1. Fleet dashboard: every aggregation (sum, max, …) has a `by`/`without`
   clause; every `by (…)` keeps `namespace`, and `group` too when a metric
   it aggregates carries a `group` label (a `without (…)` must not drop
   them). Which metrics carry `group` is read from the Rust sources in
   src/ (see `metric_labels`), so a new metric is classified by its own
   definition, not by a list kept here.
2. Fleet dashboard: "Who owns which partition" is a state-timeline panel.
3. Every stat panel has a unit, thresholds with at least one step (the
   first one being the base, `null`), thresholds as its colour mode, and
   only instant queries (`instant: true`, `range: false`).
4. Every dashboard's `namespace` variable is single-select without "All".
5. No legend glues `{{pod}}{{instance}}`.
6. A target with `format: heatmap` (Prometheus cumulative `le` buckets,
   de-accumulated by Grafana) has the legend `{{le}}` exactly (Grafana sorts
   the buckets by the series name before subtracting neighbours), keeps
   `le` in its aggregation, and if its panel is a heatmap, the panel does
   not calculate buckets again and reads the rows as `le` upper bounds.

    check_dashboards.py [--src src] dashboard.json...
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET_UID = "activity-fleet"
OWNERSHIP_TITLE = "Who owns which partition"

# ---------------------------------------------------------------- Rust sources

# Calls that define a metric: the first string literal among their arguments
# that starts with `activity_` is the metric's name. `Opts::new(…)` and
# `HistogramOpts::new(…)` only carry name and help: the labels are the next
# arguments of the call that wraps them (`IntGaugeVec::new(Opts::new(…), &[…])`).
DEFINERS = re.compile(
    r"\b(counter_vec|gauge_vec|histogram_vec|family::counter|family::gauge|family::histogram|HistogramOpts::new|Opts::new)\s*\("
)
WRAPPED = {"Opts::new", "HistogramOpts::new"}


def rust_tokens(text):
    """(kind, value, start, end) for string literals ('str'), identifiers
    ('id') and punctuation ('p'); comments, char literals and lifetimes are
    skipped, so a quote or a parenthesis inside them cannot confuse the
    bracket matching."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == '"' or (c in "br" and re.match(r'(b?r#*"|b")', text[i:i + 8])):
            m = re.match(r'b?r(#*)"', text[i:i + 8])
            if m:  # raw string: no escapes, ends at "### with the same count
                end = text.find('"' + m.group(1), i + len(m.group(0)))
                end = n if end < 0 else end + 1 + len(m.group(1))
                yield "str", text[i + len(m.group(0)):end - 1 - len(m.group(1))], i, end
            else:
                j = i + (2 if c == "b" else 1)
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                yield "str", text[i + (2 if c == "b" else 1):j], i, j + 1
                end = j + 1
            i = end
        elif c == "'":
            if text.startswith("\\", i + 1):  # '\n', '\'', '\u{..}'
                j = text.find("'", i + 3)
                i = n if j < 0 else j + 1
            elif i + 2 < n and text[i + 2] == "'":  # 'x'
                i += 3
            else:  # a lifetime or a label: 'a, 'static
                i += 1
        elif c.isalpha() or c == "_":
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", text[i:])
            yield "id", m.group(0), i, i + len(m.group(0))
            i += len(m.group(0))
        elif c.isspace():
            i += 1
        else:
            yield "p", c, i, i + 1
            i += 1


def without_test_modules(tokens):
    """The tokens outside `#[cfg(test)] mod … { … }` blocks (tests export
    made-up metrics such as activity_test_total)."""
    out, i = [], 0
    while i < len(tokens):
        t = tokens[i]
        if t[1] == "#" and [x[1] for x in tokens[i + 1:i + 6]] == ["[", "cfg", "(", "test", ")"]:
            j = i + 7  # after `]`
            if j + 2 < len(tokens) and tokens[j][1] == "mod" and tokens[j + 2][1] == "{":
                depth, k = 0, j + 2
                while k < len(tokens):
                    depth += {"{": 1, "}": -1}.get(tokens[k][1], 0) if tokens[k][0] == "p" else 0
                    k += 1
                    if depth == 0:
                        break
                i = k
                continue
        out.append(t)
        i += 1
    return out


def matching(tokens):
    """For each opening bracket's token index, the index of its closing one."""
    close, stack = {}, []
    for i, (kind, value, _, _) in enumerate(tokens):
        if kind != "p":
            continue
        if value in "([{":
            stack.append(i)
        elif value in ")]}" and stack:
            close[stack.pop()] = i
    return close


def group_bindings(tokens):
    """Names bound by `let` to something mentioning a "group" label: a label
    list (`let c = &["consumer", "group"];`), a closure returning the label
    (`let g = || ("group", …)`), or anything built from those (`keyed`)."""
    lets = {}
    for i, t in enumerate(tokens):
        if t[:2] == ("id", "let"):
            j = i + 1
            if tokens[j][1] == "mut":
                j += 1
            name, depth, k = tokens[j][1], 0, j + 1
            while k < len(tokens) and tokens[k][1] != "=":
                k += 1
            rhs = []
            for t2 in tokens[k + 1:]:
                if t2[0] == "p" and t2[1] in "([{":
                    depth += 1
                elif t2[0] == "p" and t2[1] in ")]}":
                    depth -= 1
                elif t2[1] == ";" and depth <= 0:
                    break
                rhs.append(t2)
            lets.setdefault(name, []).append(rhs)
    grouped = set()
    changed = True
    while changed:
        changed = False
        for name, bodies in lets.items():
            if name not in grouped and any(mentions_group(body, grouped) for body in bodies):
                grouped.add(name)
                changed = True
    return grouped


def mentions_group(tokens, grouped):
    return any((k == "str" and v == "group") or (k == "id" and v in grouped) for k, v, _, _ in tokens)


def metric_labels(src):
    """{metric name: True if its series carry a `group` label}, for every
    activity_* metric defined in the Rust sources under `src`."""
    metrics = {}
    for path in sorted(Path(src).rglob("*.rs")):
        text = path.read_text()
        tokens = without_test_modules(list(rust_tokens(text)))
        close = matching(tokens)
        grouped = group_bindings(tokens)
        opens = sorted(close)
        for i, t in enumerate(tokens):
            if t[0] != "id" or not DEFINERS.fullmatch(t[1] + "("):
                continue
            if i + 1 >= len(tokens) or tokens[i + 1][1] != "(":
                continue
            start, end = i + 1, close.get(i + 1)
            if end is None:
                continue
            names = [v for k, v, _, _ in tokens[start:end] if k == "str" and re.fullmatch(r"activity_[a-z0-9_]+", v)]
            if not names:
                continue
            if t[1] in WRAPPED:
                # The arguments that follow belong to the enclosing call.
                enclosing = [o for o in opens if o < i and close[o] > end and tokens[o][1] == "("]
                if enclosing:
                    start, end = enclosing[-1], close[enclosing[-1]]
            has_group = mentions_group(tokens[start:end], grouped)
            # Two sources may export one family (late events): the label
            # set is the union.
            metrics[names[0]] = metrics.get(names[0], False) or has_group
    return metrics


def has_group_label(metric, metrics):
    """True/False for a series name (histogram suffixes resolved), or None
    if it is not an activity_* metric the sources define."""
    if metric in metrics:
        return metrics[metric]
    for suffix in ("_bucket", "_sum", "_count"):
        if metric.endswith(suffix) and metric[: -len(suffix)] in metrics:
            return metrics[metric[: -len(suffix)]]
    return None


# ---------------------------------------------------------------------- PromQL

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = LABEL_LIST_KEYWORDS | {"and", "or", "unless", "bool", "offset", "atan2"}


def promql_tokens(expr):
    """(kind, value) tokens: 'id' identifiers, 'p' punctuation, 'sel' a whole
    `{…}` matcher block, 'range' a whole `[…]`; strings and numbers dropped."""
    out, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" and c != "`" else 1
            i = j + 1
        elif c == "{" or c == "[":
            closer, j, quote = "}" if c == "{" else "]", i + 1, None
            while j < n and (quote or expr[j] != closer):
                if quote and expr[j] == "\\":
                    j += 1
                elif expr[j] in "\"'`":
                    quote = None if quote == expr[j] else (quote or expr[j])
                j += 1
            out.append(("sel" if c == "{" else "range", expr[i:j + 1]))
            i = j + 1
        elif c.isalpha() or c in "_:":
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", expr[i:])
            out.append(("id", m.group(0)))
            i += len(m.group(0))
        elif c.isdigit() or c == ".":
            m = re.match(r"[0-9.eE+x]+[a-zA-Z]*", expr[i:])
            i += len(m.group(0))
        elif c.isspace():
            i += 1
        else:
            out.append(("p", c))
            i += 1
    return out


def close_paren(tokens, i):
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == ("p", "("):
            depth += 1
        elif tokens[j] == ("p", ")"):
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


def label_list(tokens, i):
    """The labels of the `( … )` starting at token i, and the index after it."""
    end = close_paren(tokens, i)
    return [v for k, v in tokens[i + 1:end] if k == "id"], end + 1


def aggregations(expr):
    """Each aggregation in a PromQL expression as (operator, clause or None,
    labels, metric names aggregated)."""
    tokens = promql_tokens(expr)
    in_label_list = set()
    for i, (kind, value) in enumerate(tokens):
        if kind == "id" and value in LABEL_LIST_KEYWORDS and i + 1 < len(tokens) and tokens[i + 1] == ("p", "("):
            in_label_list.update(range(i + 1, close_paren(tokens, i + 1) + 1))
    found = []
    for i, (kind, value) in enumerate(tokens):
        if kind != "id" or value not in AGGREGATIONS or i in in_label_list or i + 1 >= len(tokens):
            continue
        clause, labels, j = None, [], i + 1
        if tokens[j][0] == "id" and tokens[j][1] in ("by", "without"):
            clause = tokens[j][1]
            labels, j = label_list(tokens, j + 1)
        if j >= len(tokens) or tokens[j] != ("p", "("):
            continue  # not an aggregation (a label or metric named like one)
        end = close_paren(tokens, j)
        if clause is None and end + 1 < len(tokens) and tokens[end + 1][0] == "id" and tokens[end + 1][1] in ("by", "without"):
            clause = tokens[end + 1][1]
            labels, _ = label_list(tokens, end + 2)
        metrics = [
            v for k2, (k, v) in enumerate(tokens[j + 1:end], start=j + 1)
            if k == "id" and k2 not in in_label_list and v not in KEYWORDS
            and not (k2 + 1 < len(tokens) and tokens[k2 + 1] == ("p", "("))
        ]
        found.append((value, clause, labels, metrics))
    return found


# ------------------------------------------------------------------ dashboards


def panels_of(dashboard):
    """Every panel that shows data, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def check_fleet_aggregations(title, panel, metrics):
    problems = []
    for target in panel.get("targets", []):
        where = f"{title} / {panel['title']} [{target.get('refId')}]"
        try:
            aggs = aggregations(target["expr"])
        except ValueError as e:
            problems.append(f"{where}: cannot parse the query ({e})")
            continue
        for op, clause, labels, names in aggs:
            grouped = []
            for name in names:
                g = has_group_label(name, metrics)
                if g is None and not name.startswith(("process_", "go_")):
                    problems.append(f"{where}: metric {name} is not defined in src/ (a typo, or a metric that no longer exists)")
                grouped.append(g)
            needs = ["namespace"] + (["group"] if any(grouped) else [])
            if clause is None:
                problems.append(f"{where}: `{op}(…)` has no by/without clause: it adds up namespaces"
                                f"{' and consumer groups' if any(grouped) else ''}; write `{op} by ({', '.join(needs)}, …)`")
            elif clause == "by":
                missing = [label for label in needs if label not in labels]
                if missing:
                    problems.append(f"{where}: `{op} by ({', '.join(labels)})` drops {' and '.join(missing)}"
                                    f" (aggregating {', '.join(sorted(set(names)))}); keep them in the by clause")
            else:
                dropped = [label for label in needs if label in labels]
                if dropped:
                    problems.append(f"{where}: `{op} without ({', '.join(labels)})` drops {' and '.join(dropped)}")
    return problems


def check_stat(title, panel):
    problems = []
    where = f"{title} / {panel['title']}"
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    if not defaults.get("unit"):
        problems.append(f"{where}: stat panel without a unit (fieldConfig.defaults.unit)")
    steps = (defaults.get("thresholds") or {}).get("steps") or []
    if not steps:
        problems.append(f"{where}: stat panel without thresholds (fieldConfig.defaults.thresholds.steps): Grafana's default turns values above 80 red")
    elif steps[0].get("value") is not None:
        problems.append(f"{where}: the first threshold step must be the base (value null)")
    if (defaults.get("color") or {}).get("mode") != "thresholds":
        problems.append(f"{where}: stat panel colour mode is not 'thresholds' (its thresholds would not apply)")
    for target in panel.get("targets", []):
        if target.get("instant") is not True or target.get("range") is not False:
            problems.append(f"{where} [{target.get('refId')}]: stat targets must be instant queries "
                            f"(instant: true, range: false); a range query evaluates the expression at every step")
    if not panel.get("targets"):
        problems.append(f"{where}: stat panel without targets")
    return problems


def check_heatmap_target(title, panel, target):
    problems = []
    where = f"{title} / {panel['title']} [{target.get('refId')}]"
    if target.get("legendFormat") != "{{le}}":
        problems.append(f"{where}: a format=heatmap target needs legendFormat '{{{{le}}}}' exactly: Grafana sorts the "
                        f"buckets by that name before de-accumulating, and a name that is not a number leaves them "
                        f"in Prometheus' string order (+Inf, 10, 100, 25…), subtracting the wrong neighbours")
    if not any(clause == "by" and "le" in labels for _, clause, labels, _ in aggregations(target["expr"])):
        problems.append(f"{where}: a format=heatmap target must aggregate `by (le, …)`")
    if panel.get("type") == "heatmap":
        options = panel.get("options", {})
        if options.get("calculate") is not False:
            problems.append(f"{where}: heatmap of Prometheus buckets must set options.calculate = false")
        if (options.get("rowsFrame") or {}).get("layout") != "le":
            problems.append(f"{where}: heatmap of Prometheus buckets must set options.rowsFrame.layout = 'le'")
    return problems


def check_dashboard(dashboard, metrics):
    title = dashboard.get("title", "?")
    problems = []
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    namespace = variables.get("namespace")
    if namespace is None:
        problems.append(f"{title}: no namespace variable")
    elif namespace.get("multi") or namespace.get("includeAll"):
        problems.append(f"{title}: the namespace variable must be single-select without All "
                        f"(multi={namespace.get('multi')}, includeAll={namespace.get('includeAll')}): "
                        f"panels would add up several namespaces")
    fleet = dashboard.get("uid") == FLEET_UID
    ownership = False
    for panel in panels_of(dashboard):
        kind = panel.get("type")
        if kind == "stat":
            problems += check_stat(title, panel)
        for target in panel.get("targets", []):
            if re.search(r"\{\{\s*pod\s*\}\}\s*\{\{\s*instance\s*\}\}", target.get("legendFormat", "")):
                problems.append(f"{title} / {panel['title']}: legend glues {{{{pod}}}}{{{{instance}}}}; use {{{{pod}}}}")
            if target.get("format") == "heatmap":
                problems += check_heatmap_target(title, panel, target)
        if fleet:
            problems += check_fleet_aggregations(title, panel, metrics)
            if panel.get("title") == OWNERSHIP_TITLE:
                ownership = True
                if kind != "state-timeline":
                    problems.append(f"{title} / {OWNERSHIP_TITLE}: must be a state-timeline panel (one row per "
                                    f"partition, coloured by the owning pod), not {kind!r}")
    if fleet and not ownership:
        problems.append(f"{title}: no '{OWNERSHIP_TITLE}' panel")
    return problems


def check(paths, src=ROOT / "src"):
    """Every problem found in the dashboards at `paths`, as messages."""
    metrics = metric_labels(src)
    if not metrics or not any(metrics.values()) or all(metrics.values()):
        return [f"reading metric definitions from {src} found {len(metrics)} metrics, "
                f"{sum(metrics.values())} with a group label: the source parser needs attention"]
    problems = []
    seen_fleet = False
    for path in paths:
        dashboard = json.loads(Path(path).read_text())
        seen_fleet |= dashboard.get("uid") == FLEET_UID
        problems += check_dashboard(dashboard, metrics)
    if not seen_fleet:
        problems.append(f"no dashboard with uid {FLEET_UID} among {', '.join(map(str, paths))}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=str(ROOT / "src"), help="the Rust sources defining the metrics")
    parser.add_argument("--list-metrics", action="store_true", help="print each metric and whether it has a group label")
    parser.add_argument("dashboards", nargs="*")
    args = parser.parse_args()
    if args.list_metrics:
        for name, grouped in sorted(metric_labels(args.src).items()):
            print(f"{name}\t{'group' if grouped else '-'}")
        return 0
    if not args.dashboards:
        parser.error("no dashboards given")
    problems = check(args.dashboards, args.src)
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"{len(problems)} dashboard problems")
        return 1
    print(f"dashboards: {len(args.dashboards)} dashboards pass the static checks (aggregation labels, ownership "
          f"panel, stat thresholds/units/instant queries, single namespace, heatmap buckets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
