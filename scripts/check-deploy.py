#!/usr/bin/env python3
"""Consistency checks of the deployment artifacts that no off-the-shelf tool
makes, each able to fail:

    check-deploy.py dashboards RENDERED.yaml grafana/dashboards
        The dashboard ConfigMaps rendered by the chart hold JSON byte-identical
        to grafana/dashboards/*.json, one ConfigMap per file, none missing.
    check-deploy.py compose deploy/docker-compose.yml DOCKER_COMPOSE
        Docker Compose's own loader accepts the file; every file it mounts
        exists; images are pinned; the consumers can be scaled (no host
        ports) and get a stop grace period above their SHUTDOWN_TIMEOUT.
    check-deploy.py strimzi deploy/strimzi RENDERED.yaml
        The Strimzi manifests parse, use only the kinds we document, and agree
        with the chart values rendered next to them (topic names, partition
        count, SCRAM user, groups in the ACLs, bootstrap service).
"""

import json
import sys
from pathlib import Path

import yaml


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def check_dashboards(rendered, directory):
    expected = {p.name: p.read_bytes().decode() for p in sorted(Path(directory).glob("*.json"))}
    if not expected:
        return [f"no dashboards in {directory}"]
    found = {}
    for doc in load_all(rendered):
        if doc.get("kind") != "ConfigMap" or "grafana_dashboard" not in doc["metadata"].get("labels", {}):
            continue
        for key, value in (doc.get("data") or {}).items():
            found[key] = value
    problems = []
    for name, text in expected.items():
        if name not in found:
            problems.append(f"{name}: no rendered ConfigMap carries it")
        elif found[name] != text:
            problems.append(f"{name}: rendered JSON differs from {directory}/{name}")
    problems += [f"{name}: rendered but not in {directory}" for name in found if name not in expected]
    if not problems:
        print(f"{len(expected)} dashboard ConfigMaps byte-identical to {directory}")
    return problems


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit) and duration[: -len(unit)].replace(".", "", 1).isdigit():
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(f"bad duration {duration!r}")


def check_compose(compose_path, docker_compose):
    """Docker Compose itself (compose-go, the loader of `docker compose`)
    parses, interpolates and validates the file; we then check what it
    resolved."""
    import subprocess

    result = subprocess.run(
        [docker_compose, "-f", compose_path, "config", "--format", "json"], capture_output=True, text=True
    )
    if result.returncode != 0:
        return [f"docker compose config: {result.stderr.strip()}"]
    doc = json.loads(result.stdout)
    problems = []
    consumers = 0
    for name, service in doc["services"].items():
        image = service.get("image", "")
        if ":" not in image or image.endswith(":latest"):
            problems.append(f"service {name}: image {image!r} is not pinned to a tag")
        for volume in service.get("volumes", []):
            if volume["type"] == "bind" and not Path(volume["source"]).exists():
                problems.append(f"service {name}: mounts {volume['source']}, which does not exist")
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"].get("dockerfile", "Dockerfile")
            if not dockerfile.exists():
                problems.append(f"service {name}: builds from {dockerfile}, which does not exist")
        command = service.get("command") or []
        if command[:1] in (["analytics"], ["fraud"]):
            consumers += 1
            # `docker compose up --scale` needs services without fixed host ports.
            if service.get("ports"):
                problems.append(f"service {name}: a consumer must publish no host port, or it cannot scale")
            grace = seconds(service.get("stop_grace_period", "10s"))
            shutdown = seconds(service.get("environment", {}).get("SHUTDOWN_TIMEOUT", "20s"))
            if grace <= shutdown:
                problems.append(f"service {name}: stop_grace_period {grace}s must exceed SHUTDOWN_TIMEOUT {shutdown}s")
    if consumers != 2:
        problems.append(f"expected the analytics and fraud services, found {consumers} consumers")
    if not problems:
        print(f"{compose_path}: valid for Docker Compose, {len(doc['services'])} services, consumers scalable")
    return problems


def check_strimzi(directory, rendered):
    known = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    docs = [d for p in sorted(Path(directory).glob("*.yaml")) if p.name != "values.yaml" for d in load_all(p)]
    problems = []
    by_kind = {}
    for d in docs:
        if d.get("apiVersion") != "kafka.strimzi.io/v1beta2":
            problems.append(f"{d.get('kind')} {d['metadata']['name']}: apiVersion {d.get('apiVersion')}")
        if d.get("kind") not in known:
            problems.append(f"unexpected kind {d.get('kind')}")
        by_kind.setdefault(d.get("kind"), []).append(d)
    clusters = [k["metadata"]["name"] for k in by_kind.get("Kafka", [])]
    if len(clusters) != 1:
        return problems + [f"expected one Kafka, found {clusters}"]
    cluster = clusters[0]
    for d in docs:
        if d["kind"] != "Kafka" and d["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            problems.append(f"{d['kind']} {d['metadata']['name']}: not labelled strimzi.io/cluster={cluster}")

    config = next(
        (d["data"] for d in load_all(rendered) if d.get("kind") == "ConfigMap" and "KAFKA_ACTIVITIES_TOPIC" in d.get("data", {})),
        None,
    )
    if config is None:
        return problems + [f"{rendered}: no rendered ConfigMap with the Kafka settings"]
    topics = {t["metadata"].get("name"): t["spec"] for t in by_kind.get("KafkaTopic", [])}
    for var in ("KAFKA_ACTIVITIES_TOPIC", "KAFKA_ALERTS_TOPIC", "KAFKA_DLQ_TOPIC"):
        name = config[var]
        if name not in topics:
            problems.append(f"{var}={name} has no KafkaTopic")
    activities = topics.get(config["KAFKA_ACTIVITIES_TOPIC"], {})
    if str(activities.get("partitions")) != config["KAFKA_ACTIVITIES_PARTITIONS"]:
        problems.append(
            f"KafkaTopic partitions {activities.get('partitions')} != chart partitions {config['KAFKA_ACTIVITIES_PARTITIONS']}"
        )
    listeners = by_kind["Kafka"][0]["spec"]["kafka"]["listeners"]
    bootstrap = config["KAFKA_BOOTSTRAP_SERVERS"]
    ports = {f"{cluster}-kafka-bootstrap:{l['port']}": l for l in listeners}
    listener = ports.get(bootstrap)
    if listener is None:
        problems.append(f"bootstrap {bootstrap} is none of the listeners {sorted(ports)}")
    else:
        auth = listener.get("authentication", {}).get("type")
        mechanism = config.get("KAFKA_SASL_MECHANISM", "")
        if auth and auth.upper() != mechanism:
            problems.append(f"listener authentication {auth} but chart mechanism {mechanism!r}")
        protocol = config.get("KAFKA_SECURITY_PROTOCOL", "plaintext")
        if listener.get("tls") != protocol.endswith("ssl"):
            problems.append(f"listener tls={listener.get('tls')} but chart security protocol {protocol}")
    users = {u["metadata"]["name"]: u for u in by_kind.get("KafkaUser", [])}
    user = users.get(config.get("KAFKA_SASL_USERNAME", ""))
    if user is None:
        problems.append(f"no KafkaUser named {config.get('KAFKA_SASL_USERNAME')!r}")
    else:
        acl_names = {a["resource"].get("name") for a in user["spec"]["authorization"]["acls"]}
        for var in ("KAFKA_ACTIVITIES_TOPIC", "KAFKA_ALERTS_TOPIC", "KAFKA_DLQ_TOPIC"):
            if config[var] not in acl_names:
                problems.append(f"KafkaUser has no ACL for {config[var]}")
        groups = {
            env["value"]
            for d in load_all(rendered)
            if d.get("kind") in ("Deployment", "StatefulSet")
            for container in d["spec"]["template"]["spec"]["containers"]
            for env in container.get("env", [])
            if env["name"].endswith("_GROUP") and "value" in env
        }
        if not groups:
            problems.append("no consumer group found in the rendered workloads")
        for group in sorted(groups):
            if group not in acl_names:
                problems.append(f"KafkaUser has no ACL for consumer group {group}")
    if not problems:
        print(f"{directory}: {len(docs)} Strimzi objects agree with the chart values (cluster {cluster})")
    return problems


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("dashboards", "compose", "strimzi"):
        print(__doc__, file=sys.stderr)
        return 2
    check = {"dashboards": check_dashboards, "compose": check_compose, "strimzi": check_strimzi}[sys.argv[1]]
    problems = check(sys.argv[2], sys.argv[3])
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
