#!/usr/bin/env python3
"""Generates the Grafana dashboards in grafana/dashboards/ from the panel
specifications below.

Every dashboard gets the same variables (datasource, namespace, pod, group),
every query filters on them, and panels are laid out on a grid, so the three
dashboards stay consistent. The JSON files are the single source the Helm
chart packages; CI checks they match this generator (`--check`) and
grafana/check_dashboards.py checks the rules below on the output.

Rules the generated JSON keeps (check_dashboards.py fails if one breaks):
- `namespace` is single-select without "All": one dashboard shows one
  installation. `pod` and `group` stay multi-select.
- In the fleet dashboard every aggregation keeps `namespace`, and `group`
  for the consumer-side metrics (those whose series carry `group`), so two
  groups' partition 0 are never added up; the legends name the group.
- Stat panels run instant queries (a `[$__range]` window evaluated once,
  not at every step of a range query: that cost grows with the square of
  the range) and carry a unit and thresholds: neutral blue for volumes,
  green at 0 then orange/red for errors, red at 0 for "ready" counts.

    python3 grafana/generate.py           # rewrite grafana/dashboards/*.json
    python3 grafana/generate.py --check   # exit 1 if a file is stale
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"

# Series selector with the dashboard variables. `=~` with the "All" value
# `.*` also matches series without the label (a local Prometheus scraping
# the demo has no namespace or pod label). The namespace variable has no
# "All": where no series has a namespace label it is empty, and `=~""`
# matches exactly the series without one.
SEL = 'namespace=~"$namespace", pod=~"$pod", group=~"$group"'
SEL_NO_GROUP = 'namespace=~"$namespace", pod=~"$pod"'
RATE = "$__rate_interval"
OWNERSHIP_TITLE = "Who owns which partition"
RANGE = "$__range"


# Threshold steps, (colour, from value); the first is the base (None).
NEUTRAL = [("blue", None)]  # volumes: no value is good or bad
ZERO_IS_GOOD = [("green", None), ("orange", 1), ("red", 100)]  # errors, dead letters
ANY_IS_BAD = [("green", None), ("red", 1)]  # HIGH severity fraud
NONE_IS_BAD = [("red", None), ("green", 1)]  # ready consumers
REBUILD_SECONDS = [("green", None), ("orange", 10), ("red", 60)]


def q(expr, legend="", instant=False, format=None):
    return {"expr": expr, "legend": legend, "instant": instant, "format": format}


def panel(title, kind, queries, unit=None, width=8, height=8, description="", options=None, stacked=False,
          thresholds=None, transformations=None):
    if kind == "stat":
        # A stat shows one number now: an instant query, and colours that
        # mean something (Grafana's default turns anything above 80 red).
        assert thresholds and unit, f"stat panel {title!r} needs thresholds and a unit"
        queries = [dict(query, instant=True) for query in queries]
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
        "thresholds": thresholds,
        "transformations": transformations or [],
    }


def row(title):
    """A full-width row header; the panels after it belong to it."""
    return {"title": title, "kind": "row", "width": 24, "height": 1}


def with_pod(expr):
    """`expr` with `pod` set from `instance` on series that have no pod label
    (a local Prometheus scraping the demo adds none), so legends can say
    `{{pod}}` alone: label_join writes "<pod>;<instance>" into a scratch
    label, and label_replace copies the instance into `pod` only when that
    starts with ";" (the regex is anchored), i.e. when pod was empty. The
    scratch label disappears in the aggregation around it."""
    return (f'label_replace(label_join({expr}, "pod_or_instance", ";", "pod", "instance"), '
            f'"pod", "$1", "pod_or_instance", ";(.*)")')


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
        panel("Events in range", "stat", [q(f"sum(increase(activity_events_total{{{SEL}}}[{RANGE}]))")], "short", 4, 4,
              thresholds=NEUTRAL),
        panel("Revenue in range", "stat", [q(f"sum(increase(activity_revenue_total{{{SEL}}}[{RANGE}]))")], "currencyUSD", 4, 4,
              thresholds=NEUTRAL),
        panel("Purchases in range", "stat", [q(f"sum(increase(activity_purchases_total{{{SEL}}}[{RANGE}]))")], "short", 4, 4,
              thresholds=NEUTRAL),
        panel(
            "Average order value",
            "stat",
            [q(f"sum(increase(activity_revenue_total{{{SEL}}}[{RANGE}])) / sum(increase(activity_purchases_total{{{SEL}}}[{RANGE}]))")],
            "currencyUSD",
            4,
            4,
            thresholds=NEUTRAL,
        ),
        panel("Active users (window)", "stat", [q(f"sum(activity_active_users{{{SEL}}})")], "short", 4, 4,
              "Distinct users active within ANALYTICS_WINDOW, summed over the partitions each pod owns.",
              thresholds=NEUTRAL),
        panel(
            "Conversion (purchase / page-view users)",
            "stat",
            [q(f'sum(activity_funnel_users{{stage="purchase", {SEL}}}) / sum(activity_funnel_users{{stage="page_view", {SEL}}})')],
            "percentunit",
            4,
            4,
            thresholds=NEUTRAL,
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
        # Prometheus buckets are cumulative (le = "at most"). With the target's
        # format "heatmap" Grafana sorts the bucket series by their name and
        # subtracts each from the next, so the legend must be exactly {{le}}:
        # any other name ("≤ 10" before) does not parse as a number, the sort
        # keeps Prometheus' string order (+Inf, 10, 100, 25, …) and the wrong
        # neighbours are subtracted. The heatmap panel must then not bucket
        # again (calculate: false) and reads the rows as upper bounds (le).
        panel("Order value distribution", "heatmap",
              [q(f"sum by (le) (rate(activity_order_value_bucket{{{SEL}}}[{RATE}])) * 60", "{{le}}", format="heatmap")],
              "short", 8, 8, "Orders per minute by order value: each row counts the orders above the row below and up to its own bound."),
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
        row("Acquisition and engagement (sessions counted once their landing event is final)"),
        panel("Sessions in range", "stat", [q(f"sum(increase(activity_sessions_total{{{SEL}}}[{RANGE}]))")], "short", 4, 4,
              thresholds=NEUTRAL),
        panel("Bounce rate", "stat",
              [q(f"1 - sum(increase(activity_engaged_sessions_total{{{SEL}}}[{RANGE}])) / sum(increase(activity_sessions_total{{{SEL}}}[{RANGE}]))")],
              "percentunit", 4, 4, "Sessions that did not engage (engaged: over 10 s, 2+ page views, or a purchase).",
              thresholds=NEUTRAL),
        panel("Pages per session", "stat",
              [q(f"sum(increase(activity_session_page_views_total{{{SEL}}}[{RANGE}])) / sum(increase(activity_sessions_total{{{SEL}}}[{RANGE}]))")],
              "short", 4, 4, thresholds=NEUTRAL),
        panel("Returning visitors", "stat",
              [q(f'sum(increase(activity_session_users_total{{visitor="returning", {SEL}}}[{RANGE}])) / sum(increase(activity_session_users_total{{{SEL}}}[{RANGE}]))')],
              "percentunit", 4, 4, "Sessions of users seen before within ANALYTICS_WINDOW.", thresholds=NEUTRAL),
        panel("Live visitors", "stat", [q(f"sum(activity_live_visitors{{{SEL}}})")], "short", 4, 4,
              "Users active in the last 5 minutes of event time.", thresholds=NEUTRAL),
        panel("Campaign revenue in range", "stat",
              [q(f"sum(increase(activity_campaign_revenue_total{{{SEL}}}[{RANGE}]))")], "currencyUSD", 4, 4,
              thresholds=NEUTRAL),
        panel("Sessions per minute by channel", "timeseries",
              [q(f"sum by (channel) (rate(activity_sessions_total{{{SEL}}}[{RATE}])) * 60", "{{channel}}")], "short", 12, 8,
              stacked=True),
        panel("Top sources by sessions", "bargauge",
              [q(f"topk(10, sum by (source) (increase(activity_source_sessions_total{{{SEL}}}[{RANGE}])))", "{{source}}", instant=True)],
              "short", 6, 8),
        panel("Revenue by source", "bargauge",
              [q(f"topk(10, sum by (source) (increase(activity_source_revenue_total{{{SEL}}}[{RANGE}])))", "{{source}}", instant=True)],
              "currencyUSD", 6, 8),
        panel("Conversion rate by source", "bargauge",
              [q(f"topk(10, sum by (source) (increase(activity_source_conversions_total{{{SEL}}}[{RANGE}])) / sum by (source) (increase(activity_source_sessions_total{{{SEL}}}[{RANGE}])))", "{{source}}", instant=True)],
              "percentunit", 8, 8, "Sessions with a purchase / sessions, per source."),
        panel("Campaigns by revenue", "bargauge",
              [q(f"topk(10, sum by (campaign) (increase(activity_campaign_revenue_total{{{SEL}}}[{RANGE}])))", "{{campaign}}", instant=True)],
              "currencyUSD", 8, 8),
        panel("Entry pages", "bargauge",
              [q(f"topk(10, sum by (page) (increase(activity_entry_page_sessions_total{{{SEL}}}[{RANGE}])))", "{{page}}", instant=True)],
              "short", 8, 8),
        panel("Exit pages", "bargauge",
              [q(f"topk(10, sum by (page) (activity_exit_page_sessions{{{SEL}}}))", "{{page}}", instant=True)],
              "short", 8, 8, "Sessions by the page of their latest page view (open sessions by their current page)."),
    ],
}

FRAUD = {
    "uid": "activity-fraud",
    "title": "Fraud Detection",
    "description": "Fraud alerts by rule and severity, high-value purchases, and how fast an event becomes an acknowledged alert.",
    "panels": [
        panel("Alerts in range", "stat", [q(f"sum(increase(activity_fraud_alerts_total{{{SEL}}}[{RANGE}]))")], "short", 6, 4,
              thresholds=[("green", None), ("orange", 1)]),
        panel("HIGH severity alerts in range", "stat",
              [q(f'sum(increase(activity_fraud_alerts_total{{severity="HIGH", {SEL}}}[{RANGE}]))')], "short", 6, 4,
              thresholds=ANY_IS_BAD),
        panel("High-value purchases in range", "stat",
              [q(f"sum(increase(activity_fraud_high_value_purchases_total{{{SEL}}}[{RANGE}]))")], "short", 6, 4,
              thresholds=NEUTRAL),
        panel("High-value amount in range", "stat",
              [q(f"sum(increase(activity_fraud_high_value_amount_total{{{SEL}}}[{RANGE}]))")], "currencyUSD", 6, 4,
              thresholds=NEUTRAL),
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

# The fleet dashboard answers per installation and per consumer group: every
# aggregation keeps `namespace`, and `group` on the consumer-side metrics
# (their series carry it; producer, collector and process metrics do not).
NS = "namespace"
NS_GROUP = "namespace, group"

# "Who owns which partition" as a state timeline: one row per (group,
# partition), each stretch labelled with, and coloured by, the pod that owned
# the partition then. PromQL values are numbers, so the pod name cannot be the
# value of a series; instead the range query runs with format "table" (one
# long table: Time, group, namespace, partition, pod, Value; the Prometheus
# data source merges a range query's series into it, sorted by time), and
# Grafana's own transformations reshape it (Grafana 10.x and later, 11 and 12
# included):
#   1. organize: drop Value (always 1) and namespace (one per dashboard), which
#      would otherwise become extra rows;
#   2. partitionByValues on group + partition: one frame per partition, the
#      two fields turned into labels of the remaining field, pod;
# so each frame is (Time, pod) and the state timeline draws the string field
# pod as that partition's row (string values are states; a stretch where the
# partition is unowned has no samples and stays empty). The row names come
# from the labels (displayName), and a regex value mapping colours each pod by
# the last character of its name (a StatefulSet ordinal, or the random suffix
# of a Deployment's pod), so neighbouring owners differ in colour while the
# text in the stretch still names the pod.
POD_COLOURS = [
    ("[0ab]$", "green"), ("[1cd]$", "blue"), ("[2fg]$", "orange"), ("[3hj]$", "purple"),
    ("[4kl]$", "yellow"), ("[5mn]$", "red"), ("[6pq]$", "super-light-blue"), ("[7rs]$", "dark-green"),
    ("[8tv]$", "dark-purple"), ("[9wx]$", "dark-orange"), (".$", "light-blue"),
]
OWNERSHIP_TRANSFORMATIONS = [
    {"id": "organize", "options": {"excludeByName": {"Value": True, "namespace": True}}},
    {"id": "partitionByValues", "options": {"fields": ["group", "partition"], "keepFields": False, "naming": {"asLabels": True}}},
]

FLEET = {
    "uid": "activity-fleet",
    "title": "Consumer Fleet",
    "description": "The fleet: which pod owns which partition over time (the picture of scaling), lag, throughput, latency, rebalances and state rebuilds; and the HTTP collector that takes events in.",
    "panels": [
        panel("Partitions owned per pod", "timeseries",
              [q(f"sum by ({NS_GROUP}, pod) ({with_pod(f'activity_consumer_assigned_partitions{{{SEL}}}')})", "{{group}} {{pod}}")],
              "short", 12, 9, "Scale the deployment and watch partitions move: each line is one pod.", stacked=True),
        panel(OWNERSHIP_TITLE, "state-timeline",
              [q(f"max by ({NS_GROUP}, partition, pod) ({with_pod(f'activity_consumer_assigned_partitions{{{SEL}}}')})",
                 format="table")],
              "string", 12, 9, "One row per partition; each stretch names (and is coloured by) the pod that owned it.",
              transformations=OWNERSHIP_TRANSFORMATIONS),
        panel("Consumer lag per partition", "timeseries",
              [q(f"max by ({NS_GROUP}, partition) (activity_consumer_lag_messages{{{SEL}}})", "{{group}} p{{partition}}")],
              "short", 12, 8, "The owner's lag (max: during a handover two pods may report the same partition)."),
        panel("Consumer lag per group", "timeseries",
              [q(f"sum by ({NS_GROUP}) (activity_consumer_lag_messages{{{SEL}}})", "{{group}}")], "short", 12, 8),
        panel("Throughput per pod", "timeseries",
              [q(f"sum by ({NS_GROUP}, pod) ({with_pod(f'rate(activity_events_consumed_total{{{SEL}}}[{RATE}])')})", "{{group}} {{pod}}")],
              "ops", 12, 8),
        panel("Processing time per event", "timeseries",
              quantiles("activity_event_processing_seconds_bucket", SEL, NS_GROUP, "{{group}} "), "s", 12, 8),
        panel("End-to-end latency (event time → processed)", "timeseries",
              quantiles("activity_end_to_end_latency_seconds_bucket", f'stage="processed", {SEL}', NS_GROUP, "{{group}} "), "s", 12, 8),
        panel("Rebalances per minute", "timeseries",
              [q(f"sum by ({NS_GROUP}, kind) (rate(activity_consumer_rebalances_total{{{SEL}}}[{RATE}])) * 60", "{{group}} {{kind}}")], "short", 12, 8),
        panel("Partition snapshots written per minute", "timeseries",
              [q(f"sum by ({NS_GROUP}, result) (rate(activity_state_snapshots_total{{{SEL}}}[{RATE}])) * 60", "{{group}} {{result}}")], "short", 12, 8,
              "Each owned partition's state written to the group's compacted state topic (every STATE_SNAPSHOT_INTERVAL and at every graceful hand-over); failed = the manifest was not delivered."),
        panel("Snapshot lookups of moved partitions (range)", "timeseries",
              [q(f"sum by ({NS_GROUP}, outcome) (increase(activity_state_restores_total{{{SEL}}}[{RANGE}]))", "{{group}} {{outcome}}")], "short", 12, 8,
              "restored: replayed only the tail since the snapshot; missing or unusable: replayed the whole window (see ActivitySnapshotsFailing)."),
        panel("State rebuild: events replayed per second", "timeseries",
              [q(f"sum by ({NS_GROUP}) (rate(activity_state_rebuild_events_total{{{SEL}}}[{RATE}]))", "{{group}}")], "ops", 8, 8),
        panel("State rebuild duration (p90 over range)", "stat",
              [q(f"histogram_quantile(0.9, sum by ({NS_GROUP}, le) (increase(activity_state_rebuild_seconds_bucket{{{SEL}}}[{RANGE}])))", "{{group}}")],
              "s", 4, 8, thresholds=REBUILD_SECONDS),
        panel("Ready consumers", "stat",
              [q(f"sum by ({NS_GROUP}) (activity_consumer_ready{{{SEL}}})", "{{group}}")], "short", 4, 8,
              "Pods of each group whose consumer is ready (/readyz).", thresholds=NONE_IS_BAD),
        panel("Rejected in range", "stat",
              [q(f"sum by ({NS_GROUP}) (increase(activity_events_rejected_total{{{SEL}}}[{RANGE}]))", "{{group}}")], "short", 4, 8,
              "Messages that failed decoding or validation.", thresholds=ZERO_IS_GOOD),
        panel("Dead-lettered in range", "stat",
              [q(f"sum by ({NS_GROUP}) (increase(activity_dlq_messages_total{{{SEL}}}[{RANGE}]))", "{{group}}")], "short", 4, 8,
              "Rejected messages acknowledged by the dead-letter topic.", thresholds=ZERO_IS_GOOD),
        panel("Rejected events by reason", "timeseries",
              [q(f"sum by ({NS_GROUP}, reason) (rate(activity_events_rejected_total{{{SEL}}}[{RATE}]))", "{{group}} {{reason}}")], "ops", 8, 8),
        panel("Dead-lettered events by reason", "timeseries",
              [q(f"sum by ({NS_GROUP}, reason) (rate(activity_dlq_messages_total{{{SEL}}}[{RATE}]))", "{{group}} {{reason}}")], "ops", 8, 8),
        panel("Offset commits by result", "timeseries",
              [q(f"sum by ({NS_GROUP}, result) (rate(activity_consumer_commits_total{{{SEL}}}[{RATE}]))", "{{group}} {{result}}")], "ops", 8, 8),
        panel("Producer events per second", "timeseries", [
            q(f"sum by ({NS}) (rate(activity_producer_events_sent_total{{{SEL_NO_GROUP}}}[{RATE}]))", "sent"),
            q(f"sum by ({NS}) (rate(activity_producer_events_delivered_total{{{SEL_NO_GROUP}}}[{RATE}]))", "delivered"),
            q(f"sum by ({NS}) (rate(activity_producer_events_failed_total{{{SEL_NO_GROUP}}}[{RATE}]))", "failed"),
        ], "ops", 8, 8),
        panel("Producer queue", "timeseries",
              [q(f"sum by ({NS}, pod) ({with_pod(f'activity_producer_queue_messages{{{SEL_NO_GROUP}}}')})", "{{pod}}")], "short", 8, 8),
        panel("Resident memory per pod", "timeseries",
              [q(f"sum by ({NS}, pod) ({with_pod(f'process_resident_memory_bytes{{{SEL_NO_GROUP}}}')})", "{{pod}}")], "bytes", 8, 8),
        row("Collector (HTTP intake: activity-tracker collect)"),
        panel("Collector requests per second by status", "timeseries",
              [q(f"sum by ({NS}, route, status) (rate(activity_collector_requests_total{{{SEL_NO_GROUP}}}[{RATE}]))", "{{route}} {{status}}")],
              "reqps", 8, 8, "Requests to /v1/events (events), /v1/tracker.js (tracker) and CORS preflights, by HTTP status.", stacked=True),
        panel("Collector events accepted and rejected per second", "timeseries", [
            q(f"sum by ({NS}) (rate(activity_collector_events_accepted_total{{{SEL_NO_GROUP}}}[{RATE}]))", "accepted"),
            q(f"sum by ({NS}, reason) (rate(activity_collector_events_rejected_total{{{SEL_NO_GROUP}}}[{RATE}]))", "rejected {{reason}}"),
        ], "ops", 8, 8,
              "Accepted: acknowledged by Kafka and answered 202. Rejected by reason: a decoder code (missing_field…), "
              "invalid_batch, too_many_events, rate_limited, kafka_unavailable; a request refused before its body "
              "is read (unauthorized, forbidden_origin, too_large, timeout) counts once."),
        panel("Collector Kafka connection per pod", "timeseries",
              [q(f"max by ({NS}, pod) ({with_pod(f'activity_collector_kafka_up{{{SEL_NO_GROUP}}}')})", "{{pod}}")],
              "short", 8, 8, "1 while the pod reaches the brokers and the activities topic; at 0 it is not ready and answers 503."),
        panel("Collector request latency", "timeseries",
              quantiles("activity_collector_request_seconds_bucket", SEL_NO_GROUP, f"{NS}, route", "{{route}} "), "s", 12, 8,
              "Time to answer a /v1 request, body upload and Kafka acknowledgement included."),
        panel("Collector produce acknowledgement", "timeseries",
              quantiles("activity_collector_produce_seconds_bucket", SEL_NO_GROUP, NS), "s", 12, 8,
              "From enqueueing a request's events to the brokers acknowledging all of them."),
    ],
}


def variable(name, label, query, multi=True):
    """A label_values variable. multi=False: one value, no "All" (Grafana
    selects the first value found; none at all leaves it empty)."""
    v = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-values"},
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if multi else {"selected": False, "text": "", "value": ""},
        "options": [],
        "hide": 0,
    }
    if multi:
        v["allValue"] = ".*"
    return v


def thresholds_json(steps):
    return {"mode": "absolute", "steps": [{"color": colour, "value": value} for colour, value in steps]}


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
        if query["format"]:
            target["format"] = query["format"]
        targets.append(target)
    defaults = {"unit": spec["unit"] or "short"}
    kind = spec["kind"]
    if spec["thresholds"]:
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = thresholds_json(spec["thresholds"])
    elif kind == "bargauge":
        # Bars coloured by thresholds by default (green, red above 80):
        # rankings and funnels are neither good nor bad, one neutral colour.
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = thresholds_json(NEUTRAL)
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
        # Instant data: one point, so no sparkline.
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "auto",
        }
    elif kind == "heatmap":
        # The data are already buckets (the target's format "heatmap"): no
        # second bucketing, rows are `le` upper bounds, empty cells hidden.
        options = {
            "calculate": False,
            "rowsFrame": {"layout": "le"},
            "yAxis": {"axisPlacement": "left", "unit": "currencyUSD", "reverse": False},
            "cellValues": {"unit": spec["unit"] or "short"},
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Blues", "scale": "exponential", "exponent": 0.5,
                      "steps": 64, "reverse": False, "fill": "dark-blue"},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": True, "showColorScale": False},
            "exemplars": {"color": "rgba(255,0,255,0.7)"},
        }
    elif kind == "state-timeline":
        defaults["custom"] = {"fillOpacity": 80, "lineWidth": 0, "hideFrom": {"legend": False, "tooltip": False, "viz": False}}
        # Rows named after the labels partitionByValues gives the pod field.
        defaults["displayName"] = "${__field.labels.group} p${__field.labels.partition}"
        defaults["color"] = {"mode": "fixed", "fixedColor": "text"}
        defaults["mappings"] = [
            {"type": "regex", "options": {"pattern": pattern, "result": {"color": colour}}} for pattern, colour in POD_COLOURS
        ]
        options = {
            "mergeValues": True,
            "showValue": "always",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "tooltip": {"mode": "single", "sort": "none"},
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
        **({"transformations": spec["transformations"]} if spec["transformations"] else {}),
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
                variable("namespace", "Namespace", "label_values(activity_build_info, namespace)", multi=False),
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
