#!/usr/bin/env bash
# Offline validation of everything we deploy with, by the real tools:
#
#   - the Helm chart: `helm lint --strict` and `helm template` (real helm) for
#     the default values and every scenario under helm/activity-tracker/ci/,
#     and for deploy/strimzi/values.yaml;
#   - every rendered object against the Kubernetes schemas, strictly
#     (kubernetes-validate for built-in kinds, the CRD models for
#     ServiceMonitor, PodMonitor, PrometheusRule, ScaledObject,
#     TriggerAuthentication; an unknown kind fails);
#   - negative tests: values typos rejected by values.schema.json, a
#     grace period not above SHUTDOWN_TIMEOUT refused, the collector without
#     write keys refused, invalid objects and unknown kinds failing the
#     validator;
#   - the collector wired as its values say (keys from a mounted Secret, the
#     Ingress routing /v1 only, HPA, PDB and monitors on the collector), with
#     chart-created keys (ci/collector-values.yaml) and an existing Secret;
#   - the CRD guards (no Prometheus Operator or KEDA object without its
#     API) and, with the APIs, the monitors and autoscalers wired right
#     (scripts/check-deploy.py scaling);
#   - generated files in sync: values.schema.json and the chart README's
#     values table, the plain manifests in deploy/kubernetes/, the dashboard
#     ConfigMaps byte-identical to grafana/dashboards/;
#   - deploy/docker-compose.yml through Docker Compose's own loader, its
#     Prometheus config through promtool, the Strimzi manifests against the
#     chart values that go with them;
#   - every Kafka we deploy (compose, the chart's kafka.deploy, Strimzi)
#     is the version the tests run on (scripts/kafka);
#   - hadolint on the Dockerfile.
#
# Tools: HELM (a helm binary), PYTHON (a Python with the packages of .ci/run),
# DOCKER_COMPOSE (a docker-compose binary).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HELM:?HELM must name a helm binary}" "${PYTHON:?}" "${DOCKER_COMPOSE:?}"
CHART=helm/activity-tracker
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
CRD_APIS=(--api-versions monitoring.coreos.com/v1 --api-versions keda.sh/v1alpha1)

# Helm logs every followed symbolic link (files/ links to grafana/) at INFO.
quiet() { "$@" 2> >(grep -v 'found symbolic link in path' >&2); }
fail() { echo "FAIL: $*" >&2; exit 1; }
section() { printf -- '-- %s\n' "$*"; }

# The chart refuses to render without an image (no default image exists):
# every render below names one.
printf 'image: {repository: registry.example.com/activity-tracker}\n' >"$WORK/image-values.yaml"
IMAGE=(-f "$WORK/image-values.yaml")
# Kubernetes versions the renders are validated against: the oldest the
# chart supports and the newest; fields newer than 1.25 are gated on the
# cluster's version, so each version gets its own render.
KUBE_VERSIONS=(1.25.0 1.37.0)
# render NAME HELM-TEMPLATE-ARGS...: renders for every version in
# KUBE_VERSIONS ($WORK/NAME-VERSION.yaml); $WORK/NAME.yaml is the newest.
render() {
    local name="$1" version
    shift
    for version in "${KUBE_VERSIONS[@]}"; do
        quiet "$HELM" template "$@" --kube-version "$version" >"$WORK/$name-$version.yaml" || fail "helm template ($name, Kubernetes $version)"
    done
    cp "$WORK/$name-${KUBE_VERSIONS[-1]}.yaml" "$WORK/$name.yaml"
}

section "helm $("$HELM" version --short)"
scenarios=(default)
for f in "$CHART"/ci/*-values.yaml; do scenarios+=("$(basename "$f" -values.yaml)"); done
for s in "${scenarios[@]}"; do
    values=("${IMAGE[@]}")
    [ "$s" != default ] && values+=(-f "$CHART/ci/$s-values.yaml")
    quiet "$HELM" lint --strict "$CHART" "${values[@]}" >"$WORK/lint-$s.log" \
        || { cat "$WORK/lint-$s.log"; fail "helm lint --strict ($s)"; }
    render "$s" "at-$s" "$CHART" --namespace "ns-$s" "${values[@]}" "${CRD_APIS[@]}"
    printf '   %-14s lint --strict ok, %3d objects rendered\n' "$s" "$(grep -c '^kind:' "$WORK/$s.yaml")"
done
# The Strimzi values, installed as their comment says (release
# activity-tracker in namespace kafka).
render strimzi activity-tracker "$CHART" --namespace kafka -f deploy/strimzi/values.yaml "${IMAGE[@]}" "${CRD_APIS[@]}"
# The collector with write keys from a Secret the user manages.
cat >"$WORK/collector-existing-values.yaml" <<'YAML'
collector:
  enabled: true
  writeKeys: {existingSecret: tracker-write-keys, secretKey: write-keys}
  countryHeader: CF-IPCountry
podMonitor: {enabled: true}
YAML
render collector-existing at-collector-existing "$CHART" -f "$WORK/collector-existing-values.yaml" "${IMAGE[@]}" "${CRD_APIS[@]}"

section "Kubernetes schemas, strict"
for version in "${KUBE_VERSIONS[@]}"; do
    "$PYTHON" scripts/validate-manifests.py --kube-version "$version" "$WORK"/*-"$version".yaml
done
# The plain manifests are rendered for the oldest supported version, so
# they apply to every cluster the chart supports.
"$PYTHON" scripts/validate-manifests.py deploy/kubernetes/activity-tracker.yaml
grep -q '^  unhealthyPodEvictionPolicy: AlwaysAllow$' "$WORK/default.yaml" \
    || fail "the PodDisruptionBudgets lack unhealthyPodEvictionPolicy: AlwaysAllow on Kubernetes ${KUBE_VERSIONS[-1]}"
echo "   PodDisruptionBudgets let a drain evict crash-looping pods (unhealthyPodEvictionPolicy: AlwaysAllow, Kubernetes 1.27+)"

section "negative tests: each must be refused"
# refused WHAT PATTERN COMMAND...: COMMAND must fail, saying PATTERN (so it
# fails for the reason under test, not another).
refused() {
    local what="$1" pattern="$2"; shift 2
    if "$@" >"$WORK/refused.log" 2>&1; then
        cat "$WORK/refused.log"
        fail "accepted: $what"
    fi
    grep -qE -- "$pattern" "$WORK/refused.log" || { cat "$WORK/refused.log"; fail "$what refused, but not for /$pattern/"; }
    printf '   refused %-42s %s\n' "$what:" "$(grep -m1 -E -- "$pattern" "$WORK/refused.log" | sed 's/^[- ]*//' | cut -c1-100)"
}
n=0
bad_values() { # what, pattern, values YAML
    n=$((n + 1))
    printf '%s\n' "$3" >"$WORK/bad-values-$n.yaml"
    refused "$1" "$2" "$HELM" template x "$CHART" "${IMAGE[@]}" -f "$WORK/bad-values-$n.yaml"
}
refused 'the defaults (no image.repository)' 'image.repository is not set' "$HELM" template x "$CHART"
bad_values 'kafka.deploy without topics.create' 'kafka.deploy needs kafka.topics.create' \
    'kafka: {deploy: true, topics: {create: false}}'
bad_values 'an image digest that is not one' 'digest.*(pattern|match)' 'image: {digest: "latest"}'
bad_values 'replication factor 0' 'replicationFactor' 'kafka: {topics: {replicationFactor: 0}}'
bad_values 'an alert threshold that is not a number' 'threshold.*(number|integer|string)' \
    'prometheusRule: {rules: {consumerLagHigh: {threshold: "lots"}}}'
bad_values 'an alert "for" that is not a duration' 'for.*(pattern|match)' \
    'prometheusRule: {rules: {consumerLagHigh: {for: "ten minutes"}}}'

bad_values 'fraud.replicaCount: "three"' 'replicaCount.*(integer|string)' 'fraud: {replicaCount: "three"}'
bad_values 'a typo (fraud.replicaCont)' "additional properties 'replicaCont' not allowed" 'fraud: {replicaCont: 3}'
bad_values 'a top-level typo (servicemonitor)' "additional properties 'servicemonitor' not allowed" 'servicemonitor: {enabled: true}'
bad_values 'kafka.securityProtocol: tls' 'securityProtocol.*(one of|enum|must be)' 'kafka: {securityProtocol: tls}'
bad_values 'a negative KEDA lag threshold' 'lagThreshold.*(minimum|>=)' 'fraud: {keda: {enabled: true, lagThreshold: -5}}'
bad_values 'grace period not above SHUTDOWN_TIMEOUT' 'terminationGracePeriodSeconds \(20\)' 'fraud: {terminationGracePeriodSeconds: 20}'
bad_values 'a ServiceMonitor and a PodMonitor together' 'both true: every pod would be scraped twice' \
    'serviceMonitor: {enabled: true}
podMonitor: {enabled: true}'
bad_values 'a collector grace period not above delay + timeout' 'collector.terminationGracePeriodSeconds \(25\) must be greater than collector.shutdownDelaySeconds' \
    'collector: {enabled: true, writeKeys: {keys: [ci-write-key]}, terminationGracePeriodSeconds: 25}'
bad_values 'the collector without write keys' 'collector.enabled needs write keys' 'collector: {enabled: true}'
bad_values 'the collector with two key sources' 'either existingSecret .* or keys .*not both' \
    'collector: {enabled: true, writeKeys: {existingSecret: s, keys: [ci-write-key]}}'
bad_values 'a write key shorter than 8 characters' 'keys/0.*(pattern|match)' 'collector: {writeKeys: {keys: [short]}}'
bad_values 'an origin with a path' 'allowedOrigins/0.*(pattern|match)' \
    'collector: {allowedOrigins: ["https://shop.example.com/checkout"]}'
cat >"$WORK/bad-objects.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: typo}
spec:
  replicas: 1
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers: [{name: x, image: x, resourcez: {}}]
YAML
refused "a Deployment with an unknown field" "INVALID.*resourcez" "$PYTHON" scripts/validate-manifests.py "$WORK/bad-objects.yaml"
printf 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n' >"$WORK/unknown-kind.yaml"
refused "an unknown kind" "INVALID.*no schema for example.com/v1 Widget" "$PYTHON" scripts/validate-manifests.py "$WORK/unknown-kind.yaml"
cat >"$WORK/bad-sm.yaml" <<'YAML'
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: sm}
spec:
  selector: {matchLabels: {app: x}}
  endpoints: [{port: http, intervall: 15s}]
YAML
refused "a ServiceMonitor with an unknown field" "INVALID.*intervall" "$PYTHON" scripts/validate-manifests.py "$WORK/bad-sm.yaml"

section "CRD guards, monitors and autoscaling"
quiet "$HELM" template at "$CHART" "${IMAGE[@]}" -f "$CHART/ci/monitoring-values.yaml" -f "$CHART/ci/keda-values.yaml" \
    -f "$CHART/ci/collector-values.yaml" >"$WORK/no-crds.yaml"
if grep -qE '^kind: (ServiceMonitor|PodMonitor|PrometheusRule|ScaledObject|TriggerAuthentication)$' "$WORK/no-crds.yaml"; then
    fail "custom resources rendered although their APIs are absent"
fi
echo "   without the Prometheus Operator and KEDA APIs, no custom resource is rendered"
quiet "$HELM" template at-scaling "$CHART" "${IMAGE[@]}" --namespace ns-scaling -f "$CHART/ci/scaling-values.yaml" >"$WORK/scaling-no-apis.yaml"
"$PYTHON" scripts/check-deploy.py scaling "$WORK/scaling.yaml" "$WORK/scaling-no-apis.yaml"

section "Strimzi with KEDA, kafka.deploy, alert rules"
"$PYTHON" scripts/check-deploy.py keda-strimzi "$WORK/strimzi.yaml" scripts/fixtures/strimzi-secrets.yaml
"$PYTHON" scripts/check-deploy.py kafka-deploy "$WORK/kafka-deploy.yaml" -
# The chart's rules with overridden values (ci/alerts-values.yaml) as
# release "shop" in namespace "prod", through their promtool unit tests.
mkdir -p "$WORK/rules"
cp grafana/alerts/chart-rules.test.yml "$WORK/rules/"
quiet "$HELM" template shop "$CHART" --namespace prod "${IMAGE[@]}" -f "$CHART/ci/alerts-values.yaml" \
    --api-versions monitoring.coreos.com/v1 --show-only templates/monitoring.yaml |
    "$PYTHON" -c 'import sys, yaml
rules = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"{len(rules)} PrometheusRules"
yaml.safe_dump(rules[0]["spec"], sys.stdout)' >"$WORK/rules/chart-rules.yml"
promtool check rules "$WORK/rules/chart-rules.yml" >/dev/null
promtool test rules "$WORK/rules/chart-rules.test.yml"
! grep -q 'alert: ActivityCollectorKafkaDown' "$WORK/rules/chart-rules.yml" || fail "a rule disabled in the values is rendered"
echo "   the chart's rules honour overridden thresholds, for, severity, labels and runbook URL; a disabled rule is left out"
# Every alert the chart can render has its runbook section.
quiet "$HELM" template shop "$CHART" "${IMAGE[@]}" -f "$CHART/ci/alerts-values.yaml" \
    --set prometheusRule.rules.collectorKafkaDown.enabled=true --api-versions monitoring.coreos.com/v1 \
    --show-only templates/monitoring.yaml >"$WORK/all-rules.yaml"
alerts="$(sed -n 's/^ *- alert: //p' "$WORK/all-rules.yaml" | sort -u)"
[ "$(echo "$alerts" | wc -l)" -ge 12 ] || fail "expected every alert rendered, got: $alerts"
for alert in $alerts; do
    grep -q "^## $alert\$" docs/runbooks.md || fail "docs/runbooks.md has no section for $alert (its runbook_url anchor)"
done
echo "   docs/runbooks.md has a section for each of the $(echo "$alerts" | wc -l) alerts"

section "NOTES.txt: the scaling command for each autoscaling mode"
# helm template does not render NOTES.txt, and helm install --dry-run takes
# no --api-versions: render it as a ConfigMap of a copy of the chart.
cp -rL "$CHART" "$WORK/notes-chart"
{ echo '{{- define "at.notes" }}'; cat "$CHART/templates/NOTES.txt"; echo '{{- end }}'; } >"$WORK/notes-chart/templates/_notes.tpl"
rm "$WORK/notes-chart/templates/NOTES.txt"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include "at.notes" . | quote }}\n' \
    >"$WORK/notes-chart/templates/notes.yaml"
notes() { quiet "$HELM" template r "$WORK/notes-chart" "${IMAGE[@]}" --show-only templates/notes.yaml "$@" |
    "$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["data"]["notes"])'; }
notes >"$WORK/notes-default.txt"
notes -f "$CHART/ci/scaling-values.yaml" "${CRD_APIS[@]}" >"$WORK/notes-scaling.txt"
for expected in "kubectl scale -n default deployment/r-activity-tracker-fraud --replicas=4" \
    "kubectl scale -n default deployment/r-activity-tracker-analytics --replicas=3"; do
    grep -qF -- "$expected" "$WORK/notes-default.txt" || { cat "$WORK/notes-default.txt"; fail "NOTES without autoscaling lacks: $expected"; }
done
! grep -q 'kubectl scale' "$WORK/notes-scaling.txt" || { cat "$WORK/notes-scaling.txt"; fail "NOTES suggest kubectl scale although KEDA and the HPA own the replicas"; }
for expected in "--set fraud.keda.minReplicaCount=" "--set analytics.autoscaling.minReplicas="; do
    grep -qF -- "$expected" "$WORK/notes-scaling.txt" || { cat "$WORK/notes-scaling.txt"; fail "NOTES with KEDA and the HPA lack: $expected"; }
done
echo "   kubectl scale without autoscaling; with KEDA (fraud) and the HPA (analytics), their minimum through helm upgrade"

section "README: the Deploy on Kubernetes commands"
"$PYTHON" scripts/check-deploy.py readme README.md "$HELM"

section "collector"
"$PYTHON" scripts/check-deploy.py collector "$WORK/collector.yaml" "$CHART/ci/collector-values.yaml"
"$PYTHON" scripts/check-deploy.py collector "$WORK/collector-existing.yaml" "$WORK/collector-existing-values.yaml"

section "generated files in sync"
"$PYTHON" scripts/chart-docs.py --check
HELM="$HELM" scripts/render-manifests.sh --check
"$PYTHON" scripts/check-deploy.py dashboards "$WORK/monitoring.yaml" grafana/dashboards

section "docker compose, Prometheus config, Strimzi"
"$PYTHON" scripts/check-deploy.py compose deploy/docker-compose.yml "$DOCKER_COMPOSE"
promtool check config --syntax-only deploy/prometheus.yml
"$PYTHON" scripts/check-deploy.py strimzi deploy/strimzi "$WORK/strimzi.yaml"

section "Kafka version"
kafka_version="$(sed -n 's/^KAFKA_VERSION = "\(.*\)"$/\1/p' scripts/kafka)"
[ -n "$kafka_version" ] || { echo "no KAFKA_VERSION in scripts/kafka" >&2; exit 1; }
for where in "deploy/docker-compose.yml:image: apache/kafka:$kafka_version" \
    "$CHART/values.yaml:tag: \"$kafka_version\"" "deploy/strimzi/kafka.yaml:version: $kafka_version"; do
    grep -qF "${where#*:}" "${where%%:*}" || { echo "${where%%:*} does not deploy Kafka $kafka_version, the version the tests run" >&2; exit 1; }
done
echo "   Kafka $kafka_version (the tested version) in compose, the chart and the Strimzi manifests"

section "Dockerfile"
"$(dirname "$PYTHON")/hadolint" Dockerfile && echo "   hadolint: clean"
# No Docker engine here: build what the image build would see instead. The
# paths the build stage COPYs, each admitted by .dockerignore (an allow-list),
# copied alone into an empty directory, must compile with the lock file.
context="$WORK/docker-context"
mkdir -p "$context"
mapfile -t copied < <(sed -n 's/^COPY \([^-][^ ]*\) .*/\1/p' Dockerfile | grep -v '^\.' | sort -u)
for path in "${copied[@]}"; do
    top="${path%%/*}"
    grep -qxF "!$top" .dockerignore || grep -qxF "!$top/" .dockerignore || fail ".dockerignore keeps $path out of the build context, but the Dockerfile copies it"
    mkdir -p "$context/$(dirname "$path")"
    cp -r "$path" "$context/$path"
done
cp Cargo.toml Cargo.lock "$context/"
(cd "$context" && CARGO_TARGET_DIR="$OLDPWD/target" cargo check --locked --quiet --no-default-features) \
    || fail "the sources the Dockerfile copies do not build on their own"
echo "   the build context (${#copied[@]} paths the Dockerfile copies, admitted by .dockerignore) builds with the lock file"
