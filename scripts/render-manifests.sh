#!/usr/bin/env bash
# Renders the chart into plain manifests for users without Helm:
# deploy/kubernetes/activity-tracker.yaml — a complete demo (single-node Kafka,
# simulated producer, both consumers) in the namespace `activity-tracker`.
#
#   scripts/render-manifests.sh          # rewrite the file
#   scripts/render-manifests.sh --check  # exit 1 if it differs from a fresh render
#
# HELM names the helm binary (default: helm on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
HELM="${HELM:-helm}"
OUT=deploy/kubernetes/activity-tracker.yaml

render() {
    cat <<'HEADER'
# activity-tracker as plain Kubernetes manifests, rendered from the Helm chart
# by scripts/render-manifests.sh (do not edit: CI checks it equals a fresh
# render). A complete demo: a single-node Kafka, the simulated producer and
# both consumers, in the namespace `activity-tracker`:
#
#   kubectl create namespace activity-tracker
#   kubectl apply -n activity-tracker -f deploy/kubernetes/activity-tracker.yaml
#
# The image `activity-tracker:0.1.0` must be built from the repository's
# Dockerfile and pushed where the cluster can pull it (edit `image:` lines or
# use `helm install --set image.repository=…` for anything else).
HEADER
    "$HELM" template activity-tracker helm/activity-tracker \
        --namespace activity-tracker \
        --skip-tests \
        --set kafka.deploy=true \
        --set producer.enabled=true \
        2> >(grep -v 'found symbolic link in path' >&2)
}

if [ "${1:-}" = "--check" ]; then
    fresh="$(mktemp)"
    trap 'rm -f "$fresh"' EXIT
    render >"$fresh"
    if ! diff -u "$OUT" "$fresh"; then
        echo "$OUT is stale: run scripts/render-manifests.sh" >&2
        exit 1
    fi
    echo "$OUT equals a fresh render"
else
    mkdir -p "$(dirname "$OUT")"
    render >"$OUT"
    echo "wrote $OUT"
fi
