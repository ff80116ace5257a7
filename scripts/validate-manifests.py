#!/usr/bin/env python3
"""Strict schema validation of rendered Kubernetes manifests, offline.

Built-in kinds are validated with kubernetes-validate in strict mode (unknown
fields are errors) against the given Kubernetes version. The custom resources
the chart can render — ServiceMonitor, PodMonitor, PrometheusRule (Prometheus
Operator) and ScaledObject, TriggerAuthentication (KEDA) — are validated with
the cloudcoil pydantic models of those CRDs; since the models ignore unknown
fields, every field of the input must also survive the model's own dump. Any
other kind FAILS: a manifest we cannot validate is not accepted.

    validate-manifests.py [--kube-version 1.25.0,1.37.0] rendered.yaml...
"""

import argparse
import sys

import kubernetes_validate
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule, ServiceMonitor

CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PrometheusRule,
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TriggerAuthentication,
}


def unknown_fields(given, kept, path=""):
    """Keys present in `given` but dropped by the model."""
    problems = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for key, value in given.items():
            if key not in kept:
                problems.append(f"{path}.{key}".lstrip("."))
            else:
                problems += unknown_fields(value, kept[key], f"{path}.{key}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept)):
            problems += unknown_fields(a, b, f"{path}[{i}]")
    return problems


def validate(doc, kube_version):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRDS:
        model = CRDS[key].model_validate(doc)
        kept = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        dropped = unknown_fields(doc, kept)
        if dropped:
            raise ValueError(f"unknown fields: {', '.join(dropped)}")
        return
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError:
        raise ValueError(f"no schema for {key[0]} {key[1]}: cannot be validated") from None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--kube-version",
        default="1.25.0,1.37.0",
        help="comma-separated Kubernetes versions to validate against (default: the oldest the chart supports and the newest)",
    )
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    versions = args.kube_version.split(",")
    failures = 0
    count = 0
    for path in args.files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc:
                    continue
                count += 1
                name = f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
                for version in versions:
                    try:
                        validate(doc, version)
                    except Exception as e:  # every kind of validation error is reported the same way
                        failures += 1
                        print(f"INVALID {name} (Kubernetes {version}): {str(e).splitlines()[0][:400]}")
                        break
    print(f"{count - failures} of {count} objects valid (Kubernetes {', '.join(versions)}, strict)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
