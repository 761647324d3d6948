"""KServe manifests against the real KServe CRD schemas, including unknown-field checks."""

from __future__ import annotations

import jsonschema
import pytest

from tests.deploy.manifests import DOCKER, kserve_schema, load, unknown_fields, validate_pod_spec

MANIFESTS = sorted((DOCKER / "kserve").glob("*.yaml"))


def _docs():
    return [(p, d) for p in MANIFESTS for d in load(p)]


@pytest.mark.parametrize("path,doc", _docs(), ids=lambda x: getattr(x, "name", ""))
def test_valid_against_crd_schema_with_no_unknown_fields(path, doc):
    schema = kserve_schema(doc["kind"])
    jsonschema.validate(doc, schema)
    assert list(unknown_fields(doc, schema)) == []


def test_unknown_field_walk_catches_a_typo():
    doc = load(DOCKER / "kserve/inferenceservice-model-id.yaml")[0]
    doc["spec"]["predictor"]["model"]["storageUrl"] = "pvc://x"
    assert list(unknown_fields(doc, kserve_schema("InferenceService"))) == [".spec.predictor.model.storageUrl"]


def _runtimes():
    return {d["metadata"]["name"]: d for _, d in _docs() if d["kind"] == "ClusterServingRuntime"}


def _runtime_pods():
    """(id, pod-like spec) of every runtime: its containers, and a multi-node runtime's workerSpec."""
    out = []
    for name, runtime in _runtimes().items():
        out.append((name, runtime["spec"]))
        if "workerSpec" in runtime["spec"]:
            out.append((f"{name}:worker", runtime["spec"]["workerSpec"]))
    return out


@pytest.mark.parametrize("name,spec", _runtime_pods(), ids=lambda x: x if isinstance(x, str) else "")
def test_runtime_container_is_valid_kubernetes_pod_material(name, spec):
    # The runtime's containers are plain core/v1 Containers: check them with the Kubernetes schema too.
    validate_pod_spec({"containers": spec["containers"], "volumes": spec["volumes"]})


def test_runtime_serves_the_model_format_the_services_ask_for():
    runtimes = _runtimes()
    for path, doc in _docs():
        if doc["kind"] == "InferenceService":
            model = doc["spec"]["predictor"]["model"]
            runtime = runtimes[model["runtime"]]["spec"]
            assert model["modelFormat"]["name"] in {f["name"] for f in runtime["supportedModelFormats"]}, path
            # KServe offers a multi-node runtime (one with a workerSpec) only to a service with a
            # workerSpec, and a single-node one only to a service without (GetSupportingRuntimes).
            assert ("workerSpec" in runtime) == ("workerSpec" in doc["spec"]["predictor"]), path
            # Two ports (API + probes) need RawDeployment; Knative allows one.
            assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_runtimes_auto_selecting_one_format_have_different_priorities():
    # KServe's runtime webhook (validateServingRuntimePriority) refuses a runtime that auto-selects
    # a format another runtime auto-selects with the same priority.
    seen = {}
    for name, runtime in _runtimes().items():
        for fmt in runtime["spec"]["supportedModelFormats"]:
            if fmt.get("autoSelect"):
                key = (fmt["name"], fmt.get("version"), fmt.get("priority"))
                assert key not in seen, f"{name} and {seen.get(key)} auto-select {fmt['name']} with one priority"
                seen[key] = name


def test_storage_uri_service_points_the_agent_at_the_mount():
    doc = load(DOCKER / "kserve/inferenceservice-storage-uri.yaml")[0]
    model = doc["spec"]["predictor"]["model"]
    env = {e["name"]: e.get("value") for e in model["env"]}
    assert model["storageUri"]
    assert env["AIM_MODEL_ID"] == "/mnt/models"
    assert env["AIM_SERVED_MODEL_NAME"]


@pytest.mark.parametrize("name,spec", _runtime_pods(), ids=lambda x: x if isinstance(x, str) else "")
def test_runtime_has_probes_and_shm(name, spec):
    container = spec["containers"][0]
    assert container["name"] == ("worker-container" if name.endswith(":worker") else "kserve-container")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in spec["volumes"])
