#!/usr/bin/env python3
"""Generates the chart's values.schema.json and the values table of its
README from values.yaml, so neither can drift from the values.

- Types come from the defaults; every object with known keys gets
  `additionalProperties: false`, so a typo in a value fails the install.
  Free-form Kubernetes objects (resources, labels, affinity...) stay open.
- Descriptions come from the `# --` comment above each key.
- Enums, minimums and patterns come from CONSTRAINTS below.

    scripts/chart-docs.py           # rewrite values.schema.json and README.md
    scripts/chart-docs.py --check   # exit 1 if either is stale
"""

import json
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "activity-tracker"

# Objects whose keys are the user's own (Kubernetes objects, label maps).
FREE_FORM = re.compile(
    r"^(serviceAccount\.annotations|kafka\.config|kafka\.resources|podSecurityContext|securityContext"
    r"|[a-z]+\.(resources|podAnnotations|podLabels|nodeSelector|affinity)|[a-z]+\.keda\.(behavior|fallback)"
    r"|(serviceMonitor|podMonitor|prometheusRule)\.labels|prometheusRule\.additionalRuleLabels|dashboards\.annotations|networkPolicy\.[a-zA-Z]+From"
    r"|collector\.(service|ingress)\.annotations|collector\.geoip\.volume)$"
)

DURATION = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)?$"}
HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
COMPONENT = {
    "mode": {"enum": ["deployment", "statefulset"]},
    "replicaCount": {"minimum": 0},
    "terminationGracePeriodSeconds": {"minimum": 1},
    "pdb.maxUnavailable": {"type": ["integer", "string"], "minimum": 0},
    "autoscaling.minReplicas": {"minimum": 1},
    "autoscaling.maxReplicas": {"minimum": 1},
    "autoscaling.targetCPUUtilizationPercentage": {"minimum": 1, "maximum": 100},
    "keda.lagThreshold": {"minimum": 1},
    "keda.activationLagThreshold": {"minimum": 0},
    "keda.minReplicaCount": {"minimum": 0},
    "keda.maxReplicaCount": {"minimum": 0},
    "keda.pollingInterval": {"minimum": 1},
    "keda.cooldownPeriod": {"minimum": 0},
}
CONSTRAINTS = {
    "tests.timeoutSeconds": {"minimum": 1, "maximum": 300},
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "image.digest": {"pattern": r"^(sha256:[a-f0-9]{64})?$"},
    "prometheusRule.runbookBaseUrl": {"pattern": r"^(https?://\S+)?$"},
    "prometheusRule.brokerLag.source": {"enum": ["kafka-exporter", "kminion"]},
    "prometheusRule.brokerLag.threshold": {"minimum": 0},
    "prometheusRule.brokerLag.for": DURATION,
    "prometheusRule.brokerLag.severity": {"pattern": r"^[A-Za-z0-9_-]+$"},
    "prometheusRule.rules.consumerLagHigh.threshold": {"minimum": 0},
    "prometheusRule.rules.fraudAlertSpike.factor": {"type": "number", "exclusiveMinimum": 0},
    "prometheusRule.rules.fraudAlertSpike.minPerMinute": {"type": "number", "minimum": 0},
    "prometheusRule.rules.collectorRejecting.ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "prometheusRule.rules.collectorRejecting.minPerMinute": {"type": "number", "minimum": 0},
    "kafka.bootstrapServers": {"pattern": r"^[^,\s]+:[0-9]+(,[^,\s]+:[0-9]+)*$"},
    "kafka.storageSize": {"pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"},
    "kafka.topics.partitions": {"minimum": 1, "maximum": 10000},
    # -1 is the broker's default.replication.factor.
    "kafka.topics.replicationFactor": {"anyOf": [{"const": -1}, {"minimum": 1, "maximum": 32}]},
    "kafka.topics.retentionMs": {"minimum": -1},
    "kafka.securityProtocol": {"enum": ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]},
    "kafka.sasl.mechanism": {"enum": ["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]},
    "config.logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
    "config.logFormat": {"enum": ["json", "pretty"]},
    "config.shutdownTimeoutSeconds": {"minimum": 1, "maximum": 3600},
    "config.drainTimeoutSeconds": {"minimum": 1, "maximum": 3600},
    "config.sessionTimeoutMs": {"minimum": 1000, "maximum": 3600000},
    "config.commitIntervalMs": {"minimum": 10, "maximum": 600000},
    "config.assignmentStrategy": {"enum": ["cooperative-sticky", "range", "roundrobin"]},
    "config.groupProtocol": {"enum": ["classic", "consumer"]},
    "config.allowedLatenessSeconds": {"minimum": 0, "maximum": 3600},
    "config.statsInterval": {"minimum": 1},
    "config.maxEventBytes": {"minimum": 256, "maximum": 104857600},
    "config.ipPrivacy": {"enum": ["none", "truncate", "hash"]},
    "service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "service.port": {"minimum": 1, "maximum": 65535},
    "analytics.window": DURATION,
    "analytics.maxUsersPerPartition": {"minimum": 1000},
    "fraud.highValueThreshold": {"type": "number", "exclusiveMinimum": 0},
    "fraud.velocityThreshold": {"minimum": 2, "maximum": 1000},
    "fraud.rapidLocationChangeMinutes": {"type": "number", "exclusiveMinimum": 0, "maximum": 1440},
    "fraud.multipleIpThreshold": {"minimum": 2, "maximum": 100},
    "producer.eventsPerSecond": {"type": "number", "minimum": 0},
    "producer.fraudRate": {"minimum": 0, "maximum": 1},
    "producer.users": {"minimum": 10},
    "serviceMonitor.interval": DURATION,
    "podMonitor.interval": DURATION,
    # Limits as `collect` checks them (src/config/mod.rs). A key is one token of
    # at least 8 characters: the keys file is split on newlines and commas,
    # and a line starting with # is a comment.
    "collector.writeKeys.keys": {"uniqueItems": True, "items": {"type": "string", "pattern": r"^[^#,\s][^,\s]{7,}$"}},
    "collector.writeKeys.secretKey": {"pattern": r"^[-._a-zA-Z0-9]+$"},
    # An origin is scheme://host[:port], without a path.
    "collector.allowedOrigins": {"items": {"type": "string", "pattern": r"^(\*|https?://[^/\s,]+/?)$"}},
    "collector.trustedProxies": {"minimum": 0, "maximum": 10},
    "collector.countryHeader": {"pattern": r"^[A-Za-z0-9_-]*$"},
    "collector.geoip.file": {"pattern": r"^[^/]+\.mmdb$"},
    "collector.rateLimit": {"minimum": 0, "maximum": 1000000},
    "collector.rateBurst": {"minimum": 1, "maximum": 1000000},
    "collector.maxBodyBytes": {"minimum": 1024, "maximum": 67108864},
    "collector.maxBatch": {"minimum": 1, "maximum": 10000},
    "collector.shutdownDelaySeconds": {"minimum": 0, "maximum": 60},
    "collector.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "collector.service.port": {"minimum": 1, "maximum": 65535},
    "collector.ingress.hosts": {"items": {"type": "string", "pattern": HOSTNAME}},
    "collector.ingress.tls": {
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretName"],
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "hosts": {"type": "array", "items": {"type": "string", "pattern": HOSTNAME}},
            },
        }
    },
}


def has_path(values, path):
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# bool before int: in Python a bool is an int.
JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"), (dict, "object"))


def json_type(value):
    for python_type, name in JSON_TYPES:
        if isinstance(value, python_type):
            return name
    raise ValueError(f"unsupported default {value!r}")


def descriptions(text):
    """Maps dotted key paths to their `# --` comment."""
    found, stack, pending = {}, [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and pending:
            pending.append(stripped[1:].strip())
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
        if not m:
            if stripped and not stripped.startswith("-"):
                pending = []
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        if pending:
            found[".".join(k for _, k in stack)] = " ".join(pending)
        pending = []
    return found


def schema(value, path, docs):
    node = {"type": json_type(value)}
    if path in docs:
        node["description"] = docs[path]
    if isinstance(value, dict) and not FREE_FORM.match(path):
        node["additionalProperties"] = False
        node["properties"] = {k: schema(v, f"{path}.{k}" if path else k, docs) for k, v in value.items()}
    node.update(CONSTRAINTS.get(path, {}))
    if node["type"] == "integer" and "minimum" not in node and path.endswith(("Seconds", "Ms", "Count")):
        node["minimum"] = 0
    return node


def rows(value, path, docs, out):
    if isinstance(value, dict) and value and not FREE_FORM.match(path):
        for k, v in value.items():
            rows(v, f"{path}.{k}" if path else k, docs, out)
        return
    default = json.dumps(value, ensure_ascii=False)
    out.append(f"| `{path}` | {json_type(value)} | `{default}` | {docs.get(path, '')} |")


def main():
    check = "--check" in sys.argv[1:]
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    docs = descriptions(text)
    undocumented = []

    def walk(v, p):
        if isinstance(v, dict) and v and not FREE_FORM.match(p):
            for k, x in v.items():
                walk(x, f"{p}.{k}" if p else k)
        elif p not in docs:
            undocumented.append(p)

    walk(values, "")
    for component in ("analytics", "fraud", "producer", "collector"):
        for key, rule in COMPONENT.items():
            if has_path(values, f"{component}.{key}"):
                CONSTRAINTS.setdefault(f"{component}.{key}", rule)
    for rule in values["prometheusRule"]["rules"]:
        CONSTRAINTS.setdefault(f"prometheusRule.rules.{rule}.for", DURATION)
        CONSTRAINTS.setdefault(f"prometheusRule.rules.{rule}.severity", {"pattern": r"^[A-Za-z0-9_-]+$"})
    if undocumented:
        print("values without a `# --` description:", *undocumented, sep="\n  ")
        return 1
    for path in CONSTRAINTS:
        if not has_path(values, path):
            print(f"constraint for unknown value {path}")
            return 1

    top = schema(values, "", docs)
    # Helm passes `global` to every chart, subchart or not.
    top["properties"]["global"] = {"type": "object", "description": "Helm global values."}
    doc = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "activity-tracker chart values"}
    doc.update(top)
    schema_text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    table = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    rows(values, "", docs, table)
    readme_path = CHART / "README.md"
    readme = readme_path.read_text()
    begin, end = "<!-- values:begin -->", "<!-- values:end -->"
    new_readme = readme[: readme.index(begin) + len(begin)] + "\n" + "\n".join(table) + "\n" + readme[readme.index(end):]

    stale = []
    for path, new in ((CHART / "values.schema.json", schema_text), (readme_path, new_readme)):
        if check:
            if not path.exists() or path.read_text() != new:
                stale.append(str(path))
        else:
            path.write_text(new)
    if stale:
        print("stale (run scripts/chart-docs.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
