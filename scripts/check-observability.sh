#!/usr/bin/env bash
# Checks the observability deliverables against real tools, offline:
# - the dashboards are up to date with grafana/generate.py;
# - /metrics of a running demo and of a running collector pass
#   `promtool check metrics`, and every activity_* metric they export is
#   documented in the README;
# - a real Prometheus scraping both answers every query of every panel of
#   every shipped dashboard with data (grafana/check_queries.py);
# - the alert rules pass `promtool check rules` and their unit tests.
# Usage: scripts/check-observability.sh path/to/activity-tracker
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "$1")"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

python3 grafana/generate.py --check
python3 grafana/check_dashboards.py grafana/dashboards/*.json

# One broker for the demo and the collector: the `broker` command prints
# KAFKA_BOOTSTRAP_SERVERS=... as its first line (the demo's embedded broker
# would be private to the demo's process).
"$BIN" broker >"$WORK/broker.out" 2>"$WORK/broker.err" &
PIDS+=($!)
wait_for "the broker's address" 60 grep -q '^KAFKA_BOOTSTRAP_SERVERS=' "$WORK/broker.out"
BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP_SERVERS=//p' "$WORK/broker.out" | head -n1)"

DEMO_PORT="$(free_port)"
COLLECT_PORT="$(free_port)"
PROM_PORT="$(free_port)"
FRAUD2_PORT="$(free_port)"
# A short session timeout: the embedded broker completes a rebalance only
# after it (see BENCHMARKS.md).
GROUP_TIMEOUTS=(KAFKA_SESSION_TIMEOUT_MS=6000 DRAIN_TIMEOUT=3s)
env "${GROUP_TIMEOUTS[@]}" KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" HTTP_ADDR="127.0.0.1:$DEMO_PORT" \
    EVENTS_PER_SECOND=200 FRAUD_RATE=0.2 LOG_LEVEL=WARNING \
    "$BIN" demo >"$WORK/demo.out" 2>"$WORK/demo.err" &
PIDS+=($!)
# The HTTP collector, fed below with accepted and refused events so every
# collector series exists (a refused event's reason only once it happened).
WRITE_KEY=ci-write-key
ORIGIN=https://shop.example.com
KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" HTTP_ADDR="127.0.0.1:$COLLECT_PORT" LOG_LEVEL=WARNING \
    COLLECT_WRITE_KEYS="$WRITE_KEY" COLLECT_ALLOWED_ORIGINS="$ORIGIN" \
    "$BIN" collect >"$WORK/collect.out" 2>"$WORK/collect.err" &
PIDS+=($!)
wait_for "the demo's /metrics" 60 curl -sf "http://127.0.0.1:$DEMO_PORT/metrics"
wait_for "fraud alerts in /metrics" 60 sh -c "curl -s http://127.0.0.1:$DEMO_PORT/metrics | grep -q 'activity_fraud_alerts_total{.*} [1-9]'"
wait_for "the collector's /readyz" 60 curl -sf "http://127.0.0.1:$COLLECT_PORT/readyz" \
    || { cat "$WORK/collect.err" >&2; exit 1; }

COLLECT="http://127.0.0.1:$COLLECT_PORT"
# expect STATUS WHAT CURL-ARGS...: one request to the collector, which must
# answer STATUS (the contract's status codes).
expect() {
    local status="$1" what="$2"; shift 2
    local got
    got="$(curl -s -o "$WORK/answer.txt" -w '%{http_code}' --max-time 10 "$@")"
    if [ "$got" != "$status" ]; then
        echo "collector: $what answered $got, expected $status: $(head -c 300 "$WORK/answer.txt")" >&2
        exit 1
    fi
}
EVENTS='[{"user_id": "ci-user-1", "session_id": "ci-s1", "event_type": "page_view", "page_url": "/"},
         {"user_id": "ci-user-1", "session_id": "ci-s1", "event_type": "search", "page_url": "/search",
          "properties": {"search_query": "lamp"}},
         {"user_id": "ci-user-2", "event_type": "click", "page_url": "/products/1"}]'
expect 202 "a batch with a Bearer key" -X POST "$COLLECT/v1/events" -H "Authorization: Bearer $WRITE_KEY" \
    -H 'Content-Type: application/json' -d "$EVENTS"
expect 202 "a beacon (text/plain, ?key=) from an allowed origin" -X POST "$COLLECT/v1/events?key=$WRITE_KEY" \
    -H "Origin: $ORIGIN" -H 'Content-Type: text/plain' -d '{"user_id": "ci-user-3", "event_type": "page_view", "page_url": "/"}'
expect 400 "an event without user_id" -X POST "$COLLECT/v1/events" -H "X-Write-Key: $WRITE_KEY" \
    -H 'Content-Type: application/json' -d '{"event_type": "page_view", "page_url": "/"}'
expect 400 "an unknown event type" -X POST "$COLLECT/v1/events" -H "X-Write-Key: $WRITE_KEY" \
    -H 'Content-Type: application/json' -d '{"user_id": "ci-user-4", "event_type": "teleport"}'
expect 401 "a wrong write key" -X POST "$COLLECT/v1/events" -H 'Authorization: Bearer not-a-key' \
    -H 'Content-Type: application/json' -d "$EVENTS"
expect 403 "an origin not allowed" -X POST "$COLLECT/v1/events?key=$WRITE_KEY" -H 'Origin: https://evil.example.net' \
    -H 'Content-Type: text/plain' -d "$EVENTS"
expect 200 "the browser tracker" "$COLLECT/v1/tracker.js"
curl -s -o /dev/null -X OPTIONS "$COLLECT/v1/events" -H "Origin: $ORIGIN" -H 'Access-Control-Request-Method: POST'
echo "collector: answered 202, 400, 401 and 403 as the contract says"
# A trickle of accepted events while Prometheus watches, so rates are not 0.
(
    while true; do
        curl -s -o /dev/null --max-time 2 -X POST "$COLLECT/v1/events" -H "Authorization: Bearer $WRITE_KEY" \
            -H 'Content-Type: application/json' -d "$EVENTS" || true
        sleep 0.5
    done
) &
PIDS+=($!)

curl -s "http://127.0.0.1:$DEMO_PORT/metrics" > "$WORK/metrics.txt"
curl -s "$COLLECT/metrics" > "$WORK/collect-metrics.txt"
promtool check metrics < "$WORK/metrics.txt"
echo "promtool check metrics: /metrics of a running demo passes"
promtool check metrics < "$WORK/collect-metrics.txt"
echo "promtool check metrics: /metrics of a running collector passes"
undocumented=""
for name in $(cat "$WORK/metrics.txt" "$WORK/collect-metrics.txt" | grep '^# HELP activity_' | awk '{print $3}' | sort -u); do
    grep -q "\`$name\`" README.md || undocumented="$undocumented $name"
done
if [ -n "$undocumented" ]; then echo "metrics missing from the README's metric table:$undocumented" >&2; exit 1; fi
echo "every exported activity_* metric is documented in the README"

# Labels as the chart's ServiceMonitor/PodMonitor add them.
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $(pwd)/grafana/alerts/activity-tracker.rules.yml
scrape_configs:
  - job_name: ci/activity-tracker-demo
    static_configs:
      - targets: ["127.0.0.1:$DEMO_PORT"]
        labels:
          namespace: ci
          pod: activity-tracker-demo-0
  - job_name: ci/activity-tracker-fraud
    static_configs:
      - targets: ["127.0.0.1:$FRAUD2_PORT"]
        labels:
          namespace: ci
          pod: activity-tracker-fraud-1
  - job_name: ci/activity-tracker-collector
    static_configs:
      - targets: ["127.0.0.1:$COLLECT_PORT"]
        labels:
          namespace: ci
          pod: activity-tracker-collector-0
YAML
promtool check config "$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --storage.tsdb.path="$WORK/tsdb" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for "Prometheus" 60 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"
# With Prometheus watching, a second fraud replica joins the group:
# partitions move to it and it rebuilds their state, so the fleet panels
# (partitions per pod, rebalances, rebuilds) show a scaling event, as on a
# cluster.
env "${GROUP_TIMEOUTS[@]}" KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" HTTP_ADDR="127.0.0.1:$FRAUD2_PORT" LOG_LEVEL=WARNING \
    "$BIN" fraud >"$WORK/fraud2.out" 2>"$WORK/fraud2.err" &
PIDS+=($!)
wait_for "the second fraud replica to rebuild partitions" 90 sh -c \
    "curl -s http://127.0.0.1:$FRAUD2_PORT/metrics | grep -q '^activity_state_rebuild_seconds_count{.*} [1-9]'" \
    || { cat "$WORK/fraud2.err" >&2; exit 1; }
python3 grafana/check_queries.py --prometheus "http://127.0.0.1:$PROM_PORT" --wait 120 grafana/dashboards/*.json

promtool check rules grafana/alerts/activity-tracker.rules.yml
(cd grafana/alerts && promtool test rules activity-tracker.rules.test.yml)
