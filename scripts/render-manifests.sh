#!/usr/bin/env bash
# Renders the chart for users without Helm:
# - deploy/kubernetes/activity-tracker.yaml: plain manifests of a complete
#   demo (single-node Kafka, simulated producer, both consumers) in the
#   namespace `activity-tracker`;
# - grafana/alerts/activity-tracker.rules.yml: the alert rules as a rule file
#   for a Prometheus without the Operator (every namespace, the
#   application's default group names, default thresholds).
#
#   scripts/render-manifests.sh          # rewrite both files
#   scripts/render-manifests.sh --check  # exit 1 if either differs from a fresh render
#
# HELM names the helm binary (default: helm on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
HELM="${HELM:-helm}"
quiet() { "$@" 2> >(grep -v 'found symbolic link in path' >&2); }

manifests() {
    cat <<'HEADER'
# activity-tracker as plain Kubernetes manifests, rendered from the Helm chart
# by scripts/render-manifests.sh (do not edit: CI checks it equals a fresh
# render). A complete demo: a single-node Kafka, the simulated producer and
# both consumers, in the namespace `activity-tracker`, for any Kubernetes the
# chart supports (rendered for 1.25, so without newer fields):
#
#   kubectl create namespace activity-tracker
#   kubectl apply -n activity-tracker -f deploy/kubernetes/activity-tracker.yaml
#
# Build the image from the repository's Dockerfile, push it where the
# cluster pulls from, and name it in place of the placeholder first:
#
#   sed -i 's#registry.example.com/activity-tracker#REGISTRY/activity-tracker#' deploy/kubernetes/activity-tracker.yaml
HEADER
    quiet "$HELM" template activity-tracker helm/activity-tracker \
        --namespace activity-tracker \
        --kube-version 1.25.0 \
        --skip-tests \
        --set image.repository=registry.example.com/activity-tracker \
        --set kafka.deploy=true \
        --set producer.enabled=true
}

rules() {
    cat <<'HEADER'
# Prometheus alerting rules for activity-tracker, rendered from the Helm
# chart's templates/_alerts.tpl by scripts/render-manifests.sh (do not edit:
# CI checks it equals a fresh render). Every namespace, the application's
# default consumer groups (analytics-processors, fraud-detectors), default
# thresholds; the chart's PrometheusRule scopes the same rules to its
# release and takes thresholds, `for`, severities and labels as values.
# Runbooks: docs/runbooks.md. Unit tests: activity-tracker.rules.test.yml
# (promtool test rules).
HEADER
    # The PrometheusRule's spec, one level up.
    quiet "$HELM" template activity-tracker helm/activity-tracker \
        --show-only templates/monitoring.yaml \
        --api-versions monitoring.coreos.com/v1 \
        --set image.repository=registry.example.com/activity-tracker \
        --set prometheusRule.enabled=true \
        --set prometheusRule.scoped=false \
        --set analytics.group=analytics-processors \
        --set fraud.group=fraud-detectors |
        awk '/^spec:/ { spec = 1; next } spec && NF { sub(/^  /, ""); print }'
}

status=0
for target in "deploy/kubernetes/activity-tracker.yaml manifests" "grafana/alerts/activity-tracker.rules.yml rules"; do
    out="${target% *}" render="${target#* }"
    if [ "${1:-}" = "--check" ]; then
        fresh="$(mktemp)"
        "$render" >"$fresh"
        if diff -u "$out" "$fresh"; then
            echo "$out equals a fresh render"
        else
            echo "$out is stale: run scripts/render-manifests.sh" >&2
            status=1
        fi
        rm -f "$fresh"
    else
        mkdir -p "$(dirname "$out")"
        "$render" >"$out"
        echo "wrote $out"
    fi
done
exit "$status"
