#!/usr/bin/env python3
"""Generates the Grafana dashboards in grafana/dashboards/ from the panel
specifications below.

Every dashboard gets the same variables (datasource, namespace, pod, group),
every query filters on them, and panels are laid out on a grid, so the three
dashboards stay consistent. The JSON files are the single source the Helm
chart packages; CI checks they match this generator (`--check`).

    python3 grafana/generate.py           # rewrite grafana/dashboards/*.json
    python3 grafana/generate.py --check   # exit 1 if a file is stale
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"

# Series selector with the dashboard variables. `=~` with the "All" value
# `.*` also matches series without the label (a local Prometheus scraping
# the demo has no namespace or pod label).
SEL = 'namespace=~"$namespace", pod=~"$pod", group=~"$group"'
SEL_NO_GROUP = 'namespace=~"$namespace", pod=~"$pod"'
RATE = "$__rate_interval"
RANGE = "$__range"


def q(expr, legend="", instant=False):
    return {"expr": expr, "legend": legend, "instant": instant}


def panel(title, kind, queries, unit=None, width=8, height=8, description="", options=None, stacked=False):
    return {
        "title": title,
        "kind": kind,
        "queries": queries,
        "unit": unit,
        "width": width,
        "height": height,
        "description": description,
        "options": options or {},
        "stacked": stacked,
    }


def row(title):
    """A full-width row header; the panels after it belong to it."""
    return {"title": title, "kind": "row", "width": 24, "height": 1}


def quantiles(metric, selector, by="", legend_prefix=""):
    by_clause = f"le{', ' + by if by else ''}"
    return [
        q(
            f"histogram_quantile({p}, sum by ({by_clause}) (rate({metric}{{{selector}}}[{RATE}])))",
            f"{legend_prefix}p{int(p * 100)}",
        )
        for p in (0.5, 0.99)
    ]


ANALYTICS = {
    "uid": "activity-analytics",
    "title": "User Activity Analytics",
    "description": "What users do: event mix, revenue, conversion funnel, pages, products, geography and devices. Volume figures sum every pod's counters; distinct-user figures sum the partitions each pod owns (a user lives on one partition).",
    "panels": [
        panel("Events in range", "stat", [q(f"sum(increase(activity_events_total{{{SEL}}}[{RANGE}]))")], "short", 4, 4),
        panel("Revenue in range", "stat", [q(f"sum(increase(activity_revenue_total{{{SEL}}}[{RANGE}]))")], "currencyUSD", 4, 4),
        panel("Purchases in range", "stat", [q(f"sum(increase(activity_purchases_total{{{SEL}}}[{RANGE}]))")], "short", 4, 4),
        panel(
            "Average order value",
            "stat",
            [q(f"sum(increase(activity_revenue_total{{{SEL}}}[{RANGE}])) / sum(increase(activity_purchases_total{{{SEL}}}[{RANGE}]))")],
            "currencyUSD",
            4,
            4,
        ),
        panel("Active users (window)", "stat", [q(f"sum(activity_active_users{{{SEL}}})")], "short", 4, 4,
              "Distinct users active within ANALYTICS_WINDOW, summed over the partitions each pod owns."),
        panel(
            "Conversion (purchase / page-view users)",
            "stat",
            [q(f'sum(activity_funnel_users{{stage="purchase", {SEL}}}) / sum(activity_funnel_users{{stage="page_view", {SEL}}})')],
            "percentunit",
            4,
            4,
        ),
        panel("Events per second by type", "timeseries",
              [q(f"sum by (event_type) (rate(activity_events_total{{{SEL}}}[{RATE}]))", "{{event_type}}")], "ops", 12, 8, stacked=True),
        panel("Revenue per minute", "timeseries",
              [q(f"sum(rate(activity_revenue_total{{{SEL}}}[{RATE}])) * 60", "revenue / min")], "currencyUSD", 12, 8),
        panel(
            "Conversion funnel (distinct users)",
            "bargauge",
            [q(f"sum by (stage) (activity_funnel_users{{{SEL}}})", "{{stage}}", instant=True)],
            "short",
            8,
            8,
            "Distinct users per stage within ANALYTICS_WINDOW.",
        ),
        panel("Order value distribution", "bargauge",
              [q(f"sum by (le) (increase(activity_order_value_bucket{{{SEL}}}[{RANGE}]))", "≤ {{le}}", instant=True)],
              "short", 8, 8, "Orders by value bucket (cumulative counts per upper bound).", {"format": "heatmap"}),
        panel("Session duration", "timeseries",
              quantiles("activity_session_duration_seconds_bucket", SEL), "s", 8, 8,
              "Closed sessions (30 minutes of inactivity ends a session)."),
        panel("Top pages", "bargauge",
              [q(f"topk(10, sum by (page) (increase(activity_page_views_total{{{SEL}}}[{RANGE}])))", "{{page}}", instant=True)],
              "short", 8, 9),
        panel("Top products by interactions", "bargauge",
              [q(f"topk(10, sum by (product) (increase(activity_product_interactions_total{{{SEL}}}[{RANGE}])))", "{{product}}", instant=True)],
              "short", 8, 9),
        panel("Top products by revenue", "bargauge",
              [q(f"topk(10, sum by (product) (increase(activity_product_revenue_total{{{SEL}}}[{RANGE}])))", "{{product}}", instant=True)],
              "currencyUSD", 8, 9),
        panel("Events by country", "piechart",
              [q(f"topk(10, sum by (country) (increase(activity_events_by_country_total{{{SEL}}}[{RANGE}])))", "{{country}}", instant=True)],
              "short", 6, 8),
        panel("Device types", "piechart",
              [q(f"sum by (device_type) (increase(activity_events_by_device_type_total{{{SEL}}}[{RANGE}]))", "{{device_type}}", instant=True)],
              "short", 6, 8),
        panel("Browsers", "piechart",
              [q(f"topk(8, sum by (browser) (increase(activity_events_by_browser_total{{{SEL}}}[{RANGE}])))", "{{browser}}", instant=True)],
              "short", 6, 8),
        panel("Operating systems", "piechart",
              [q(f"topk(8, sum by (os) (increase(activity_events_by_os_total{{{SEL}}}[{RANGE}])))", "{{os}}", instant=True)],
              "short", 6, 8),
    ],
}

FRAUD = {
    "uid": "activity-fraud",
    "title": "Fraud Detection",
    "description": "Fraud alerts by rule and severity, high-value purchases, and how fast an event becomes an acknowledged alert.",
    "panels": [
        panel("Alerts in range", "stat", [q(f"sum(increase(activity_fraud_alerts_total{{{SEL}}}[{RANGE}]))")], "short", 6, 4),
        panel("HIGH severity alerts in range", "stat",
              [q(f'sum(increase(activity_fraud_alerts_total{{severity="HIGH", {SEL}}}[{RANGE}]))')], "short", 6, 4),
        panel("High-value purchases in range", "stat",
              [q(f"sum(increase(activity_fraud_high_value_purchases_total{{{SEL}}}[{RANGE}]))")], "short", 6, 4),
        panel("High-value amount in range", "stat",
              [q(f"sum(increase(activity_fraud_high_value_amount_total{{{SEL}}}[{RANGE}]))")], "currencyUSD", 6, 4),
        panel("Alerts per minute by rule", "timeseries",
              [q(f"sum by (rule) (rate(activity_fraud_alerts_total{{{SEL}}}[{RATE}])) * 60", "{{rule}}")], "short", 12, 8, stacked=True),
        panel("Alerts per minute by severity", "timeseries",
              [q(f"sum by (severity) (rate(activity_fraud_alerts_total{{{SEL}}}[{RATE}])) * 60", "{{severity}}")], "short", 12, 8, stacked=True),
        panel("Alerts in range by rule", "bargauge",
              [q(f"sum by (rule) (increase(activity_fraud_alerts_total{{{SEL}}}[{RANGE}]))", "{{rule}}", instant=True)], "short", 8, 8),
        panel("Detection latency (event time → alert acknowledged)", "timeseries",
              quantiles("activity_end_to_end_latency_seconds_bucket", f'stage="alert_published", consumer="fraud", {SEL}'), "s", 8, 8,
              "From the event's own timestamp to the alert being acknowledged by Kafka."),
        panel("High-value purchase amount per minute", "timeseries",
              [q(f"sum(rate(activity_fraud_high_value_amount_total{{{SEL}}}[{RATE}])) * 60", "amount / min")], "currencyUSD", 8, 8),
        panel("Users tracked by the detector", "timeseries",
              [q(f"sum(activity_fraud_tracked_users{{{SEL}}})", "users")], "short", 8, 8),
        panel("Fraud state bytes per tracked user", "timeseries",
              [q(f"sum(activity_fraud_state_bytes{{{SEL}}}) / sum(activity_fraud_tracked_users{{{SEL}}})", "bytes / user")], "bytes", 8, 8),
        panel("Events analysed per second", "timeseries",
              [q(f'sum(rate(activity_events_processed_total{{consumer="fraud", {SEL}}}[{RATE}]))', "events/s")], "ops", 8, 8),
    ],
}

FLEET = {
    "uid": "activity-fleet",
    "title": "Consumer Fleet",
    "description": "The fleet: which pod owns which partition over time (the picture of scaling), lag, throughput, latency, rebalances and state rebuilds; and the HTTP collector that takes events in.",
    "panels": [
        panel("Partitions owned per pod", "timeseries",
              [q(f"sum by (consumer, pod, instance) (activity_consumer_assigned_partitions{{{SEL}}})", "{{consumer}} {{pod}}{{instance}}")],
              "short", 12, 9, "Scale the deployment and watch partitions move: each line is one pod.", stacked=True),
        panel("Who owns which partition", "timeseries",
              [q(f"max by (consumer, partition, pod, instance) (activity_consumer_assigned_partitions{{{SEL}}})",
                 "{{consumer}} p{{partition}} → {{pod}}{{instance}}")],
              "short", 12, 9, "One series per (partition, owner); a partition that moves starts a new series."),
        panel("Consumer lag per partition", "timeseries",
              [q(f"sum by (consumer, partition) (activity_consumer_lag_messages{{{SEL}}})", "{{consumer}} p{{partition}}")], "short", 12, 8),
        panel("Consumer lag per group", "timeseries",
              [q(f"sum by (group) (activity_consumer_lag_messages{{{SEL}}})", "{{group}}")], "short", 12, 8),
        panel("Throughput per pod", "timeseries",
              [q(f"sum by (consumer, pod, instance) (rate(activity_events_consumed_total{{{SEL}}}[{RATE}]))", "{{consumer}} {{pod}}{{instance}}")],
              "ops", 12, 8),
        panel("Processing time per event", "timeseries",
              quantiles("activity_event_processing_seconds_bucket", SEL, "consumer", "{{consumer}} "), "s", 12, 8),
        panel("End-to-end latency (event time → processed)", "timeseries",
              quantiles("activity_end_to_end_latency_seconds_bucket", f'stage="processed", {SEL}', "consumer", "{{consumer}} "), "s", 12, 8),
        panel("Rebalances per minute", "timeseries",
              [q(f"sum by (consumer, kind) (rate(activity_consumer_rebalances_total{{{SEL}}}[{RATE}])) * 60", "{{consumer}} {{kind}}")], "short", 12, 8),
        panel("State rebuild: events replayed per second", "timeseries",
              [q(f"sum by (consumer) (rate(activity_state_rebuild_events_total{{{SEL}}}[{RATE}]))", "{{consumer}}")], "ops", 8, 8),
        panel("State rebuild duration (p90 over range)", "stat",
              [q(f"histogram_quantile(0.9, sum by (le) (increase(activity_state_rebuild_seconds_bucket{{{SEL}}}[{RANGE}])))")], "s", 4, 8),
        panel("Ready consumers", "stat",
              [q(f"sum by (consumer) (activity_consumer_ready{{{SEL}}})", "{{consumer}}", instant=True)], "short", 4, 8),
        panel("Rejected events by reason", "timeseries",
              [q(f"sum by (reason) (rate(activity_events_rejected_total{{{SEL}}}[{RATE}]))", "{{reason}}")], "ops", 8, 8),
        panel("Dead-lettered events by reason", "timeseries",
              [q(f"sum by (reason) (rate(activity_dlq_messages_total{{{SEL}}}[{RATE}]))", "{{reason}}")], "ops", 8, 8),
        panel("Offset commits by result", "timeseries",
              [q(f"sum by (consumer, result) (rate(activity_consumer_commits_total{{{SEL}}}[{RATE}]))", "{{consumer}} {{result}}")], "ops", 8, 8),
        panel("Producer events per second", "timeseries", [
            q(f"sum(rate(activity_producer_events_sent_total{{{SEL_NO_GROUP}}}[{RATE}]))", "sent"),
            q(f"sum(rate(activity_producer_events_delivered_total{{{SEL_NO_GROUP}}}[{RATE}]))", "delivered"),
            q(f"sum(rate(activity_producer_events_failed_total{{{SEL_NO_GROUP}}}[{RATE}]))", "failed"),
        ], "ops", 8, 8),
        panel("Producer queue", "timeseries",
              [q(f"sum by (pod, instance) (activity_producer_queue_messages{{{SEL_NO_GROUP}}})", "{{pod}}{{instance}}")], "short", 8, 8),
        panel("Resident memory per pod", "timeseries",
              [q(f"sum by (pod, instance) (process_resident_memory_bytes{{{SEL_NO_GROUP}}})", "{{pod}}{{instance}}")], "bytes", 8, 8),
        row("Collector (HTTP intake: activity-tracker collect)"),
        panel("Collector requests per second by status", "timeseries",
              [q(f"sum by (route, status) (rate(activity_collector_requests_total{{{SEL_NO_GROUP}}}[{RATE}]))", "{{route}} {{status}}")],
              "reqps", 8, 8, "Requests to /v1/events (events), /v1/tracker.js (tracker) and CORS preflights, by HTTP status.", stacked=True),
        panel("Collector events accepted and rejected per second", "timeseries", [
            q(f"sum(rate(activity_collector_events_accepted_total{{{SEL_NO_GROUP}}}[{RATE}]))", "accepted"),
            q(f"sum by (reason) (rate(activity_collector_events_rejected_total{{{SEL_NO_GROUP}}}[{RATE}]))", "rejected {{reason}}"),
        ], "ops", 8, 8,
              "Accepted: acknowledged by Kafka and answered 202. Rejected by reason: a decoder code (missing_field…), "
              "invalid_batch, too_many_events, rate_limited, kafka_unavailable; a request refused before its body "
              "is read (unauthorized, forbidden_origin, too_large, timeout) counts once."),
        panel("Collector Kafka connection per pod", "timeseries",
              [q(f"max by (pod, instance) (activity_collector_kafka_up{{{SEL_NO_GROUP}}})", "{{pod}}{{instance}}")],
              "short", 8, 8, "1 while the pod reaches the brokers and the activities topic; at 0 it is not ready and answers 503."),
        panel("Collector request latency", "timeseries",
              quantiles("activity_collector_request_seconds_bucket", SEL_NO_GROUP, "route", "{{route}} "), "s", 12, 8,
              "Time to answer a /v1 request, body upload and Kafka acknowledgement included."),
        panel("Collector produce acknowledgement", "timeseries",
              quantiles("activity_collector_produce_seconds_bucket", SEL_NO_GROUP), "s", 12, 8,
              "From enqueueing a request's events to the brokers acknowledging all of them."),
    ],
}


def variable(name, label, query):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def panel_json(spec, pid, x, y):
    if spec["kind"] == "row":
        return {
            "id": pid,
            "type": "row",
            "title": spec["title"],
            "collapsed": False,
            "gridPos": {"h": spec["height"], "w": spec["width"], "x": x, "y": y},
            "panels": [],
        }
    targets = []
    for i, query in enumerate(spec["queries"]):
        target = {
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "expr": query["expr"],
            "legendFormat": query["legend"] or "__auto",
            "refId": chr(ord("A") + i),
            "range": not query["instant"],
            "instant": query["instant"],
        }
        if spec["options"].get("format"):
            target["format"] = spec["options"]["format"]
        targets.append(target)
    defaults = {"unit": spec["unit"] or "short"}
    kind = spec["kind"]
    options = {}
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if spec["stacked"] else 10,
            "showPoints": "never",
            "stacking": {"mode": "normal" if spec["stacked"] else "none", "group": "A"},
        }
        options = {
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    elif kind == "bargauge":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        }
    elif kind == "piechart":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "pieType": "donut",
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value", "percent"]},
        }
    return {
        "id": pid,
        "type": kind,
        "title": spec["title"],
        "description": spec["description"],
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": spec["height"], "w": spec["width"], "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets,
    }


def dashboard(d):
    panels = []
    x = y = row_height = 0
    for pid, spec in enumerate(d["panels"], start=1):
        if x + spec["width"] > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(panel_json(spec, pid, x, y))
        x += spec["width"]
        row_height = max(row_height, spec["height"])
    return {
        "uid": d["uid"],
        "title": d["title"],
        "description": d["description"],
        "tags": ["activity-tracker", "kafka"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [
            {
                "title": title,
                "type": "link",
                "url": f"/d/{uid}",
                "icon": "dashboard",
                "tooltip": f"Open the {title} dashboard",
                "targetBlank": False,
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "tags": [],
            }
            for uid, title in (("activity-analytics", "Analytics"), ("activity-fraud", "Fraud"), ("activity-fleet", "Fleet"))
            if uid != d["uid"]
        ],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "default", "value": "default"},
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "options": [],
                },
                variable("namespace", "Namespace", "label_values(activity_build_info, namespace)"),
                variable("pod", "Pod", 'label_values(activity_build_info{namespace=~"$namespace"}, pod)'),
                variable("group", "Consumer group", 'label_values(activity_events_consumed_total{namespace=~"$namespace"}, group)'),
            ]
        },
        "panels": panels,
    }


def render(d):
    return json.dumps(dashboard(d), indent=2, ensure_ascii=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    OUT.mkdir(exist_ok=True)
    stale = []
    for name, d in (("analytics", ANALYTICS), ("fraud", FRAUD), ("fleet", FLEET)):
        path = OUT / f"activity-tracker-{name}.json"
        text = render(d)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run python3 grafana/generate.py):", *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
