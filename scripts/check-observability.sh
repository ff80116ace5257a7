#!/usr/bin/env bash
# Checks the observability deliverables against real tools, offline:
# - the dashboards are up to date with grafana/generate.py;
# - /metrics of a running demo passes `promtool check metrics`;
# - a real Prometheus scraping that demo answers every query of every panel
#   of every shipped dashboard with data (grafana/check_queries.py);
# - the alert rules pass `promtool check rules` and their unit tests.
# Usage: scripts/check-observability.sh path/to/activity-tracker
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "$1")"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # what, deadline seconds, command...
    local what="$1" deadline=$(( $(date +%s) + $2 )); shift 2
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then echo "timed out waiting for $what" >&2; return 1; fi
        sleep 0.5
    done
}

python3 grafana/generate.py --check

DEMO_PORT="$(free_port)"
PROM_PORT="$(free_port)"
HTTP_ADDR="127.0.0.1:$DEMO_PORT" EVENTS_PER_SECOND=200 FRAUD_RATE=0.2 LOG_LEVEL=WARNING \
    "$BIN" demo >"$WORK/demo.out" 2>"$WORK/demo.err" &
PIDS+=($!)
wait_for "the demo's /metrics" 60 curl -sf "http://127.0.0.1:$DEMO_PORT/metrics"
wait_for "fraud alerts in /metrics" 60 sh -c "curl -s http://127.0.0.1:$DEMO_PORT/metrics | grep -q 'activity_fraud_alerts_total{.*} [1-9]'"

curl -s "http://127.0.0.1:$DEMO_PORT/metrics" > "$WORK/metrics.txt"
promtool check metrics < "$WORK/metrics.txt"
echo "promtool check metrics: /metrics of a running demo passes"
undocumented=""
for name in $(grep '^# HELP activity_' "$WORK/metrics.txt" | awk '{print $3}'); do
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
YAML
promtool check config "$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --web.listen-address="127.0.0.1:$PROM_PORT" \
    --storage.tsdb.path="$WORK/tsdb" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for "Prometheus" 60 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"
python3 grafana/check_queries.py --prometheus "http://127.0.0.1:$PROM_PORT" --wait 120 grafana/dashboards/*.json

promtool check rules grafana/alerts/activity-tracker.rules.yml
(cd grafana/alerts && promtool test rules activity-tracker.rules.test.yml)
