"""Loading and checking the deployment material under docker/ with real validators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
KSERVE_SCHEMAS = REPO / "tests/fixtures/kserve"
MONITORING_SCHEMAS = REPO / "tests/fixtures/monitoring"
LWS_SCHEMAS = REPO / "tests/fixtures/lws"
CHART = DOCKER / "helm/aim-engine"
KUBERNETES_VERSION = "1.30.0"


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def load(path: Path) -> list[dict[str, Any]]:
    return documents(path.read_text())


def validate_kubernetes(doc: dict[str, Any]) -> None:
    """Validate against the Kubernetes OpenAPI schemas bundled by kubernetes-validate (offline),
    strictly: an unknown field is an error."""
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def kserve_schema(kind: str) -> dict[str, Any]:
    name = {
        "ClusterServingRuntime": "ClusterServingRuntime-serving.kserve.io-v1alpha1.json",
        "InferenceService": "InferenceService-serving.kserve.io-v1beta1.json",
    }[kind]
    return json.loads((KSERVE_SCHEMAS / name).read_text())


def monitoring_schema(kind: str) -> dict[str, Any]:
    """The CRD schema of a Prometheus Operator or KEDA object (tests/fixtures/monitoring)."""
    name = {
        "ServiceMonitor": "ServiceMonitor-monitoring.coreos.com-v1.json",
        "PodMonitor": "PodMonitor-monitoring.coreos.com-v1.json",
        "PrometheusRule": "PrometheusRule-monitoring.coreos.com-v1.json",
        "ScaledObject": "ScaledObject-keda.sh-v1alpha1.json",
    }[kind]
    return json.loads((MONITORING_SCHEMAS / name).read_text())


def lws_schema() -> dict[str, Any]:
    """The LeaderWorkerSet CRD schema (tests/fixtures/lws, from kubernetes-sigs/lws)."""
    return json.loads((LWS_SCHEMAS / "LeaderWorkerSet-leaderworkerset.x-k8s.io-v1.json").read_text())


def pod_templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, pod spec) of every pod a workload document makes: a Deployment's or Job's one
    template ("single"), a LeaderWorkerSet's leader and worker templates (the leader defaults to
    the worker template when it is not given, as LWS does)."""
    kind = doc.get("kind")
    if kind in ("Deployment", "Job"):
        return [("single", doc["spec"]["template"]["spec"])]
    if kind == "LeaderWorkerSet":
        lwt = doc["spec"]["leaderWorkerTemplate"]
        worker = lwt["workerTemplate"]["spec"]
        leader = lwt.get("leaderTemplate", lwt["workerTemplate"])["spec"]
        return [("leader", leader), ("worker", worker)]
    return []


def validate_pod_spec(spec: dict[str, Any]) -> None:
    """A pod spec that lives inside a custom resource (LWS template, KServe runtime) checked as a
    core/v1 Pod with the strict Kubernetes schema: CRD schemas do not check formats and enums
    of core fields as tightly."""
    validate_kubernetes({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec})


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Every key in `value` that the structural CRD schema does not declare.

    CRD schemas only reject unknown keys where they say `additionalProperties: false`, so a
    misspelt field would pass plain validation; this walk catches it. `metadata` is free-form
    in CRDs (the API server validates it), so it is skipped.
    """
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if path == "" and key in ("apiVersion", "kind", "metadata"):
                continue
            if props is not None and key in props:
                yield from unknown_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from unknown_fields(item, extra, f"{path}.{key}")
            elif props is not None or extra is False:
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{i}]")


def render_chart(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render the Helm chart with Helm's own engine (helm-python-sdk bundles Helm's library)."""
    import helm_python as helm

    chart = helm.Chart.load(CHART)
    rendered = chart.render(values or {}, name="aim", namespace="default")
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs.extend(documents(text))
    return docs
