#!/usr/bin/env python3
"""Consistency checks of the deployment artifacts that no off-the-shelf tool
makes, each able to fail:

    check-deploy.py dashboards RENDERED.yaml grafana/dashboards
        The dashboard ConfigMaps rendered by the chart hold JSON byte-identical
        to grafana/dashboards/*.json, one ConfigMap per file, none missing.
    check-deploy.py compose deploy/docker-compose.yml DOCKER_COMPOSE
        Docker Compose's own loader accepts the file; every file it mounts
        exists; images are pinned; the consumers can be scaled (no host
        ports) and get a stop grace period above their SHUTDOWN_TIMEOUT; the
        broker writes its log directory to its volume (a recreate keeps
        topics and offsets).
    check-deploy.py strimzi deploy/strimzi RENDERED.yaml
        The Strimzi manifests parse, use only the kinds we document, and agree
        with the chart values rendered next to them (topic names, partition
        count, SCRAM user, groups in the ACLs, bootstrap service).
    check-deploy.py scaling WITH_APIS.yaml WITHOUT_APIS.yaml
        ci/scaling-values.yaml rendered with and without the Prometheus
        Operator and KEDA APIs: with them, one ServiceMonitor per component
        that skips the StatefulSets' headless Services, alert rules scoped to
        the release's namespace and groups (absent rules included), a
        ScaledObject up to the partition count with the conservative HPA
        behavior, HPAs only where KEDA does not scale; without them, no custom resource, and the KEDA
        component keeps its replicaCount.
    check-deploy.py keda-strimzi RENDERED.yaml SECRETS.yaml
        The Strimzi values with KEDA: every TriggerAuthentication reference is
        a key the Secrets Strimzi writes (SECRETS.yaml, shaped like them) or a
        Secret the chart renders has; SCRAM user and password, the cluster
        CA and `tls` reach the scaler; the bootstrap is fully qualified (the
        KEDA operator resolves it from its own namespace); the scaler
        watches the release-scoped group of the workload it scales.
    check-deploy.py kafka-deploy RENDERED.yaml -
        kafka.deploy with the collector: nothing behind a post-install or
        post-upgrade hook (installers that wait for readiness would
        deadlock); every workload creates the topics in an init container
        before it starts; consumer groups are scoped to the release; a
        NetworkPolicy selects every pod (networkPolicy.enabled).
    check-deploy.py readme README.md HELM
        The commands of the README's "Deploy on Kubernetes" section are
        real: every `helm install`/`helm upgrade` renders with the real helm
        (an upgrade with --reuse-values on top of its release's install), and
        every name a `kubectl` command uses (a scaled workload, a component
        label, a file to apply, a release to test) exists.
    check-deploy.py collector RENDERED.yaml VALUES.yaml
        The HTTP collector rendered with VALUES.yaml (over the chart's
        defaults) is wired as its values say: `collect` with probes on
        /healthz and /readyz; the write keys only in a mounted Secret (the
        chart's, holding exactly the listed keys, or the existing one) named
        by COLLECT_WRITE_KEYS_FILE; origins comma-joined; the Service, the
        Ingress (the /v1 prefix only, so /metrics is not public), the HPA,
        the PDB and the monitors all select or target the collector.
"""

import json
import re
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
        if image.startswith("apache/kafka:"):
            env = service.get("environment", {})
            mounts = {v["target"] for v in service.get("volumes", []) if v["type"] == "volume"}
            if env.get("KAFKA_LOG_DIRS") not in mounts:
                problems.append(
                    f"service {name}: KAFKA_LOG_DIRS={env.get('KAFKA_LOG_DIRS')!r} is not on a named volume {sorted(mounts)}: "
                    "a recreate loses every topic and offset"
                )
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
    # Fully qualified (<service>.<namespace>.svc), as KEDA needs it.
    host, _, port = bootstrap.partition(":")
    service, _, rest = host.partition(".")
    if not rest.endswith(".svc") or rest.count(".") != 1:
        problems.append(f"bootstrap {bootstrap} is not <service>.<namespace>.svc:<port>")
    ports = {f"{cluster}-kafka-bootstrap:{l['port']}": l for l in listeners}
    listener = ports.get(f"{service}:{port}")
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
        prefixes = [
            a["resource"]["name"]
            for a in user["spec"]["authorization"]["acls"]
            if a["resource"].get("type") == "topic" and a["resource"].get("patternType") == "prefix"
        ]
        snapshots = config.get("STATE_SNAPSHOT_INTERVAL", "0s") not in ("0s", "0")
        for group in sorted(groups):
            if group not in acl_names:
                problems.append(f"KafkaUser has no ACL for consumer group {group}")
            # Each group's partition snapshots (src/runtime/snapshots.rs).
            state = f"{config['KAFKA_ACTIVITIES_TOPIC']}-state-{group}"
            if not snapshots:
                continue
            spec = topics.get(state)
            if spec is None:
                problems.append(f"snapshots are on but {state} has no KafkaTopic")
            elif spec.get("config", {}).get("cleanup.policy") != "compact" or spec.get("partitions") != activities.get("partitions"):
                problems.append(f"{state} must be compacted with the activities topic's partitions")
            if state not in acl_names and not any(state.startswith(p) for p in prefixes):
                problems.append(f"KafkaUser has no ACL for {state}")
    if not problems:
        print(f"{directory}: {len(docs)} Strimzi objects agree with the chart values (cluster {cluster})")
    return problems


def merged(defaults, overrides):
    """Helm's merge of a values file over the chart's defaults."""
    out = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def check_collector(rendered, values_path):
    chart = Path(__file__).resolve().parent.parent / "helm" / "activity-tracker"
    with open(chart / "values.yaml") as f, open(values_path) as g:
        values = merged(yaml.safe_load(f), yaml.safe_load(g) or {})["collector"]
    docs = load_all(rendered)
    if not values["enabled"]:
        return [f"{values_path}: collector.enabled is not true"]
    mine = [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "collector"]
    by_kind = {}
    for d in mine:
        by_kind.setdefault(d["kind"], []).append(d)
    problems = []
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        return [f"expected one collector Deployment, found {len(deployments)}"]
    deployment = deployments[0]
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}

    def selects(selector):
        """Selects the collector's pods, and only them."""
        return bool(selector) and selector.get("app.kubernetes.io/component") == "collector" and all(
            pod_labels.get(k) == v for k, v in selector.items()
        )

    def volume_of(path):
        """The volume a file path lies in, and the file's name inside it."""
        for mount, volume in mounts.items():
            if path.startswith(mount.rstrip("/") + "/"):
                return volumes.get(volume), path[len(mount.rstrip("/")) + 1 :]
        return None, None

    if container.get("args") != ["collect"]:
        problems.append(f"Deployment {name}: args {container.get('args')}, not [collect]")
    if "http" not in {p.get("name") for p in container.get("ports", [])}:
        problems.append(f"Deployment {name}: no container port named http")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") != "http":
            problems.append(f"Deployment {name}: {probe} is {get}, not {path} on port http")
    security = container.get("securityContext", {})
    if not security.get("readOnlyRootFilesystem") or security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"Deployment {name}: container securityContext {security} is weaker than the other components'")
    if not pod["spec"].get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"Deployment {name}: pod does not run as non-root")

    # Write keys: a file from a mounted Secret, never a value in the environment.
    if "COLLECT_WRITE_KEYS" in env:
        problems.append(f"Deployment {name}: write keys in the environment (COLLECT_WRITE_KEYS)")
    keys_file = env.get("COLLECT_WRITE_KEYS_FILE")
    volume, key = volume_of(keys_file or "")
    if not keys_file or volume is None or "secret" not in volume:
        problems.append(f"Deployment {name}: COLLECT_WRITE_KEYS_FILE={keys_file} is not in a mounted Secret")
    else:
        secret_name = volume["secret"]["secretName"]
        existing = values["writeKeys"]["existingSecret"]
        secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}
        if existing:
            if secret_name != existing or secrets:
                problems.append(f"keys from Secret {secret_name} (rendered: {sorted(secrets)}), expected only the existing {existing}")
            if key != values["writeKeys"]["secretKey"]:
                problems.append(f"keys file {keys_file} is not the Secret's key {values['writeKeys']['secretKey']}")
        elif secret_name not in secrets:
            problems.append(f"the keys volume mounts Secret {secret_name}, which the chart does not render")
        else:
            data = secrets[secret_name].get("stringData", {})
            listed = [k for k in str(data.get(key, "")).splitlines() if k]
            if listed != values["writeKeys"]["keys"]:
                # Not printed: they are secrets.
                problems.append(f"Secret {secret_name}, key {key}: the keys differ from collector.writeKeys.keys")

    origins = ",".join(values["allowedOrigins"]) or None
    if env.get("COLLECT_ALLOWED_ORIGINS") != origins:
        problems.append(f"COLLECT_ALLOWED_ORIGINS={env.get('COLLECT_ALLOWED_ORIGINS')!r}, values say {origins!r}")
    if env.get("COLLECT_TRUSTED_PROXIES") != str(values["trustedProxies"]):
        problems.append(f"COLLECT_TRUSTED_PROXIES={env.get('COLLECT_TRUSTED_PROXIES')!r}, values say {values['trustedProxies']}")
    if env.get("COLLECT_SHUTDOWN_DELAY") != f"{values['shutdownDelaySeconds']}s":
        problems.append(f"COLLECT_SHUTDOWN_DELAY={env.get('COLLECT_SHUTDOWN_DELAY')!r}, not collector.shutdownDelaySeconds")
    if values["geoip"]["volume"]:
        volume, file = volume_of(env.get("COLLECT_GEOIP_DB") or "")
        if volume is None or file != values["geoip"]["file"]:
            problems.append(f"COLLECT_GEOIP_DB={env.get('COLLECT_GEOIP_DB')} is not {values['geoip']['file']} in a mounted volume")
    elif "COLLECT_GEOIP_DB" in env:
        problems.append("COLLECT_GEOIP_DB set without collector.geoip.volume")

    services = [s for s in by_kind.get("Service", []) if selects(s["spec"].get("selector"))]
    if len(services) != 1:
        return problems + [f"expected one Service selecting the collector pods, found {len(services)}"]
    service = services[0]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    if ports.get("http", {}).get("port") != values["service"]["port"] or ports.get("http", {}).get("targetPort") != "http":
        problems.append(f"Service {service['metadata']['name']}: ports {service['spec']['ports']}, expected http {values['service']['port']} → http")

    ingresses = by_kind.get("Ingress", [])
    if not values["ingress"]["enabled"]:
        if ingresses:
            problems.append("an Ingress is rendered although collector.ingress.enabled is false")
    elif len(ingresses) != 1:
        problems.append(f"expected one collector Ingress, found {len(ingresses)}")
    else:
        spec = ingresses[0]["spec"]
        hosts = [r.get("host") for r in spec["rules"]]
        if hosts != (values["ingress"]["hosts"] or [None]):
            problems.append(f"Ingress hosts {hosts}, values say {values['ingress']['hosts']}")
        for rule in spec["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                if (path["path"].rstrip("/"), path["pathType"]) != ("/v1", "Prefix"):
                    problems.append(f"Ingress routes {path['pathType']} {path['path']}: only the /v1 prefix may be public")
                if backend["name"] != service["metadata"]["name"] or backend["port"] not in ({"name": "http"}, {"number": values["service"]["port"]}):
                    problems.append(f"Ingress backend {backend} is not the collector Service's http port")
        for tls in spec.get("tls", []):
            stray = set(tls.get("hosts", [])) - set(hosts)
            if stray:
                problems.append(f"Ingress TLS for {sorted(stray)}, which no rule serves")

    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if values["autoscaling"]["enabled"]:
        target = hpas[0]["spec"]["scaleTargetRef"] if len(hpas) == 1 else {}
        if (target.get("kind"), target.get("name")) != ("Deployment", name):
            problems.append(f"expected one HPA targeting Deployment {name}, found {[h['spec']['scaleTargetRef'] for h in hpas]}")
        if "replicas" in deployment["spec"]:
            problems.append(f"Deployment {name} sets replicas although the HPA owns them")
    elif hpas or deployment["spec"].get("replicas") != values["replicaCount"]:
        problems.append(f"without autoscaling: {len(hpas)} HPAs and replicas {deployment['spec'].get('replicas')}")
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if selects(p["spec"]["selector"]["matchLabels"])]
    if len(pdbs) != (1 if values["pdb"]["enabled"] else 0):
        problems.append(f"{len(pdbs)} PodDisruptionBudgets select the collector, pdb.enabled is {values['pdb']['enabled']}")
    for monitor in by_kind.get("ServiceMonitor", []):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        labels = service["metadata"]["labels"]
        if wanted.get("app.kubernetes.io/component") != "collector" or any(labels.get(k) != v for k, v in wanted.items()):
            problems.append(f"ServiceMonitor {monitor['metadata']['name']} does not select the collector Service")
        if [e.get("port") for e in monitor["spec"]["endpoints"]] != ["http"]:
            problems.append(f"ServiceMonitor {monitor['metadata']['name']} does not scrape the http port")
    for monitor in by_kind.get("PodMonitor", []):
        if not selects(monitor["spec"]["selector"]["matchLabels"]):
            problems.append(f"PodMonitor {monitor['metadata']['name']} does not select the collector pods")
    if not problems:
        kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
        print(f"collector ({values_path}): {kinds} wired as the values say")
    return problems


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def workloads(docs):
    return {**by_kind(docs, "Deployment"), **by_kind(docs, "StatefulSet")}


def check_scaling(with_apis, without_apis):
    """Monitors and autoscaling as the values of ci/scaling-values.yaml ask,
    rendered once with the Prometheus Operator and KEDA APIs and once
    without them."""
    chart = Path(__file__).resolve().parent.parent / "helm" / "activity-tracker"
    with open(chart / "values.yaml") as f, open(chart / "ci" / "scaling-values.yaml") as g:
        values = merged(yaml.safe_load(f), yaml.safe_load(g))
    partitions = values["kafka"]["topics"]["partitions"]
    problems = []
    docs = load_all(with_apis)
    work = workloads(docs)
    name = lambda c: next((n for n in work if n.endswith(f"-{c}")), None)
    fraud, analytics = name("fraud"), name("analytics")
    if not fraud or not analytics:
        return [f"no fraud or analytics workload in {with_apis}"]

    # Every component scraped once: one ServiceMonitor each, never the
    # headless Service of a StatefulSet (it selects the same pods).
    monitors = by_kind(docs, "ServiceMonitor")
    for component in ("analytics", "fraud", "producer", "collector"):
        if not any(n.endswith(f"-{component}") for n in monitors):
            problems.append(f"no ServiceMonitor for {component}")
    headless = [d for d in by_kind(docs, "Service").values() if d["spec"].get("clusterIP") == "None"
                and d["metadata"]["labels"].get("app.kubernetes.io/component") in ("analytics", "fraud")]
    if len(headless) != 2:
        problems.append(f"expected the two consumers' headless Services (statefulset mode), found {len(headless)}")
    for sm_name, sm in monitors.items():
        selector = sm["spec"]["selector"]
        for svc in headless:
            labels = svc["metadata"]["labels"]
            matches = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
            for e in selector.get("matchExpressions", []):
                if e["operator"] == "DoesNotExist" and e["key"] in labels:
                    matches = False
            if matches:
                problems.append(f"ServiceMonitor {sm_name} also selects the headless Service {svc['metadata']['name']}: every figure would count twice")
    if by_kind(docs, "PodMonitor"):
        problems.append("a PodMonitor next to the ServiceMonitors")
    release = release_of(docs)
    namespace = f'namespace="ns-{release.removeprefix("at-")}"'
    rules = [r for pr in by_kind(docs, "PrometheusRule").values() for g in pr["spec"]["groups"] for r in g["rules"]]
    if not rules:
        problems.append("no PrometheusRule rules")
    for rule in rules:
        for selector in re.findall(r"activity_[a-z_]+(\{[^}]*\})?", rule["expr"]):
            if namespace not in selector:
                problems.append(f"{rule['alert']}: a selector without {namespace}: {rule['expr']!r}")
                break
    absent = next((r["expr"] for r in rules if r["alert"] == "ActivityConsumerGroupAbsent"), "")
    for group in (f"{release}-analytics-processors", f"{release}-fraud-detectors"):
        if f'group="{group}"' not in absent:
            problems.append(f"no absent rule for the group {group}")

    # KEDA scales fraud up to the partition count; the HPA scales analytics.
    scaled = by_kind(docs, "ScaledObject")
    so = next(iter(scaled.values()), None) if len(scaled) == 1 else None
    if not so:
        problems.append(f"expected one ScaledObject, found {len(scaled)}")
    else:
        if so["spec"]["scaleTargetRef"]["name"] != fraud:
            problems.append(f"the ScaledObject scales {so['spec']['scaleTargetRef']['name']}, not {fraud}")
        if so["spec"]["maxReplicaCount"] != partitions:
            problems.append(f"maxReplicaCount {so['spec']['maxReplicaCount']} is not the partition count {partitions}")
        trigger = so["spec"]["triggers"][0]["metadata"]
        if trigger["consumerGroup"] != groups_of(docs)[fraud] or trigger["topic"] != values["kafka"]["topics"]["activities"]:
            problems.append("the Kafka scaler watches another group or topic")
        behavior = so["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior != values["fraud"]["keda"]["behavior"]:
            problems.append(f"the ScaledObject's HPA behavior {behavior} is not fraud.keda.behavior")
        if trigger.get("ensureEvenDistributionOfPartitions") != "true":
            problems.append("the Kafka scaler does not keep partitions evenly distributed")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    targets = sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas.values())
    if analytics not in targets or fraud in targets:
        problems.append(f"HPAs target {targets}: analytics by CPU, fraud by KEDA only")
    for w in (fraud, analytics):
        if "replicas" in work[w]["spec"]:
            problems.append(f"{w} sets replicas although an autoscaler owns them")

    # Without the APIs: no custom resource, and fraud falls back to its
    # replicaCount rather than to one pod.
    docs = load_all(without_apis)
    work = workloads(docs)
    kinds = {d.get("kind") for d in docs}
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"):
        if kind in kinds:
            problems.append(f"{kind} rendered without its API")
    if work[fraud]["spec"].get("replicas") != values["fraud"]["replicaCount"]:
        problems.append(f"without KEDA, {fraud} runs {work[fraud]['spec'].get('replicas', 1)} replicas, not fraud.replicaCount ({values['fraud']['replicaCount']})")
    if "replicas" in work[analytics]["spec"]:
        problems.append(f"without KEDA, {analytics} still belongs to its HPA and must not set replicas")
    if not problems:
        print(f"   with the APIs: a ServiceMonitor per component (headless Services excluded), the PrometheusRule, "
              f"KEDA for fraud up to {partitions} replicas, an HPA for analytics")
        print(f"   without them: no custom resource; fraud keeps replicaCount {values['fraud']['replicaCount']}")
    return problems


def release_of(docs):
    """The release name, from the instance label every object carries."""
    names = {d["metadata"].get("labels", {}).get("app.kubernetes.io/instance") for d in docs} - {None}
    return names.pop() if len(names) == 1 else None


def groups_of(docs):
    """Workload name -> the consumer group it joins (KAFKA_*_GROUP)."""
    return {
        name: env["value"]
        for name, d in workloads(docs).items()
        for container in d["spec"]["template"]["spec"]["containers"]
        for env in container.get("env", [])
        if env["name"].endswith("_GROUP") and "value" in env
    }


def check_keda_strimzi(rendered, secrets_path):
    docs = load_all(rendered)
    problems = []
    release = release_of(docs)
    fixtures = {d["metadata"]["name"]: set(d.get("data", {})) for d in load_all(secrets_path) if d.get("kind") == "Secret"}
    ours = {n: set(d.get("data", {})) | set(d.get("stringData", {})) for n, d in by_kind(docs, "Secret").items()}
    auths = by_kind(docs, "TriggerAuthentication")
    scaled = by_kind(docs, "ScaledObject")
    groups = groups_of(docs)
    if len(scaled) != 2:
        problems.append(f"expected a ScaledObject for each consumer, found {sorted(scaled)}")
    for name, so in scaled.items():
        target = so["spec"]["scaleTargetRef"]["name"]
        for trigger in so["spec"]["triggers"]:
            meta = trigger["metadata"]
            for server in meta["bootstrapServers"].split(","):
                host = server.rsplit(":", 1)[0]
                if not host.endswith(".svc") and not host.endswith(".svc.cluster.local"):
                    problems.append(f"ScaledObject {name}: bootstrap {server} is not fully qualified; the KEDA operator runs in another namespace")
            if meta["consumerGroup"] != groups.get(target):
                problems.append(f"ScaledObject {name}: watches group {meta['consumerGroup']}, but {target} joins {groups.get(target)}")
            if not meta["consumerGroup"].startswith(f"{release}-"):
                problems.append(f"ScaledObject {name}: group {meta['consumerGroup']} is not scoped to the release {release}")
            if meta.get("sasl") != "scram_sha512" or meta.get("tls") != "enable":
                problems.append(f"ScaledObject {name}: sasl={meta.get('sasl')} tls={meta.get('tls')}, not scram_sha512 over TLS")
            ref = trigger.get("authenticationRef", {}).get("name")
            auth = auths.get(ref)
            if auth is None:
                problems.append(f"ScaledObject {name}: authenticationRef {ref!r} is not a rendered TriggerAuthentication")
                continue
            params = set()
            for t in auth["spec"].get("secretTargetRef", []):
                params.add(t["parameter"])
                keys = fixtures.get(t["name"], ours.get(t["name"]))
                if keys is None:
                    problems.append(f"TriggerAuthentication {ref}: {t['parameter']} from Secret {t['name']}, which neither Strimzi nor the chart creates")
                elif t["key"] not in keys:
                    problems.append(f"TriggerAuthentication {ref}: {t['parameter']} from key {t['key']!r} of Secret {t['name']}, which has only {sorted(keys)}")
            for needed in ("username", "password", "ca"):
                if needed not in params:
                    problems.append(f"TriggerAuthentication {ref}: no {needed}")
    if not problems:
        print(f"   KEDA on Strimzi: {len(scaled)} ScaledObjects, SCRAM-SHA-512 over TLS with a fully qualified bootstrap; "
              f"every TriggerAuthentication key exists in the Strimzi-shaped Secrets ({', '.join(sorted(fixtures))}) or the chart's")
    return problems


def check_kafka_deploy(rendered, _):
    docs = load_all(rendered)
    problems = []
    release = release_of(docs)
    for d in docs:
        hook = d["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        if hook and hook != "test":
            problems.append(f"{d['kind']} {d['metadata']['name']} is a {hook} hook")
    work = workloads(docs)
    if not any(n.endswith("-collector") for n in work):
        problems.append("no collector in the render")
    for name, d in work.items():
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "kafka":
            continue
        inits = d["spec"]["template"]["spec"].get("initContainers", [])
        if not any(c.get("args") == ["topics", "create"] for c in inits):
            problems.append(f"{name} does not create the topics before it starts")
    # With networkPolicy.enabled, a NetworkPolicy selects every pod.
    policies = by_kind(docs, "NetworkPolicy")
    for name, d in work.items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        if not any(all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items()) for p in policies.values()):
            problems.append(f"no NetworkPolicy selects the pods of {name}")
    groups = groups_of(docs)
    if len(groups) != 2:
        problems.append(f"expected two consumer groups, found {groups}")
    for name, group in groups.items():
        if not group.startswith(f"{release}-"):
            problems.append(f"{name} joins {group}, not a group scoped to the release {release}")
    if not problems:
        print(f"   kafka.deploy: no install hook; {len(work) - 1} workloads create the topics in an init container; "
              f"{len(policies)} NetworkPolicies cover every pod; "
              f"groups {', '.join(sorted(groups.values()))}")
    return problems


def check_readme(readme, helm):
    import shlex
    import subprocess

    text = Path(readme).read_text()
    section = text[text.index("## Deploy on Kubernetes"):]
    section = section[: section.index("\n## ", 3)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("   #")[0].strip()
            if line:
                commands.append(line)
    problems, installs, rendered, checked, renders = [], {}, {}, 0, 0
    apis = ["--api-versions", "monitoring.coreos.com/v1", "--api-versions", "keda.sh/v1alpha1"]
    for command in commands:
        words = shlex.split(command.split(" | ")[0])
        if words[:2] in (["helm", "install"], ["helm", "upgrade"]):
            release, chart, args = words[2], words[3], words[4:]
            namespace = args[args.index("-n") + 1] if "-n" in args else "default"
            args = [a for a in args if a not in ("--wait", "--create-namespace", "--reuse-values")]
            if words[1] == "upgrade" and "--reuse-values" in words:
                args = installs.get(release, []) + args
            installs[release] = args
            result = subprocess.run([helm, "template", release, chart, *args, *apis], capture_output=True, text=True)
            if result.returncode != 0:
                error = [line for line in result.stderr.splitlines() if "Error" in line] or result.stderr.splitlines()[-1:]
                problems.append(f"`{command}` fails: {error[0]}")
                continue
            rendered[(release, namespace)] = [d for d in yaml.safe_load_all(result.stdout) if d]
            checked += 1
            renders += 1
        elif words[:2] == ["helm", "test"]:
            if not any(r == words[2] for r, _ in rendered):
                problems.append(f"`{command}`: no release {words[2]} installed above")
            checked += 1
        elif words[:2] == ["kubectl", "scale"]:
            namespace = words[words.index("-n") + 1]
            kind, name = next(w for w in words[2:] if "/" in w).split("/")
            kinds = {"deploy": "Deployment", "deployment": "Deployment", "statefulset": "StatefulSet", "sts": "StatefulSet"}
            found = any(
                d["kind"] == kinds.get(kind) and d["metadata"]["name"] == name
                for (_, ns), docs in rendered.items() if ns == namespace for d in docs
            )
            if not found:
                problems.append(f"`{command}`: no {kind}/{name} in namespace {namespace} rendered above")
            checked += 1
        elif words[:2] == ["kubectl", "logs"]:
            namespace = words[words.index("-n") + 1]
            selector = dict(kv.split("=") for kv in words[words.index("-l") + 1].split(","))
            found = any(
                all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
                for (_, ns), docs in rendered.items() if ns == namespace
                for d in docs if d["kind"] in ("Deployment", "StatefulSet")
            )
            if not found:
                problems.append(f"`{command}`: no pods labelled {selector} in namespace {namespace}")
            checked += 1
        elif words[:2] == ["kubectl", "apply"]:
            for i, w in enumerate(words):
                if w == "-f":
                    path = Path(words[i + 1])
                    docs = [d for d in yaml.safe_load_all(path.read_text()) if d] if path.is_file() else []
                    if not docs or not all("apiVersion" in d and "kind" in d for d in docs):
                        problems.append(f"`{command}`: {path} is not a file of Kubernetes objects")
            checked += 1
    if renders < 4:
        problems.append(f"expected the README's three installs and an upgrade, rendered {renders}")
    if not problems:
        print(f"   README \"Deploy on Kubernetes\": {checked} helm and kubectl commands checked against real renders")
    return problems


def main():
    checks = {"dashboards": check_dashboards, "compose": check_compose, "strimzi": check_strimzi,
              "collector": check_collector, "scaling": check_scaling, "keda-strimzi": check_keda_strimzi,
              "kafka-deploy": check_kafka_deploy, "readme": check_readme}
    if len(sys.argv) != 4 or sys.argv[1] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    check = checks[sys.argv[1]]
    problems = check(sys.argv[2], sys.argv[3])
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
