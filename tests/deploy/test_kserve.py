"""KServe manifests against the real KServe CRD schemas, including unknown-field checks."""

from __future__ import annotations

import jsonschema
import pytest

from tests.deploy.manifests import DOCKER, kserve_schema, load, unknown_fields, validate_kubernetes

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


def test_runtime_container_is_valid_kubernetes_pod_material():
    # The runtime's container is a plain core/v1 Container: check it with the Kubernetes schema too.
    runtime = load(DOCKER / "kserve/clusterservingruntime.yaml")[0]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": runtime["spec"]["containers"], "volumes": runtime["spec"]["volumes"]}}
    validate_kubernetes(pod)


def test_runtime_serves_the_model_format_the_services_ask_for():
    runtime = load(DOCKER / "kserve/clusterservingruntime.yaml")[0]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    for path, doc in _docs():
        if doc["kind"] == "InferenceService":
            model = doc["spec"]["predictor"]["model"]
            assert model["runtime"] == runtime["metadata"]["name"], path
            assert model["modelFormat"]["name"] in formats, path
            # Two ports (API + probes) need RawDeployment; Knative allows one.
            assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_storage_uri_service_points_the_agent_at_the_mount():
    doc = load(DOCKER / "kserve/inferenceservice-storage-uri.yaml")[0]
    model = doc["spec"]["predictor"]["model"]
    env = {e["name"]: e.get("value") for e in model["env"]}
    assert model["storageUri"]
    assert env["AIM_MODEL_ID"] == "/mnt/models"
    assert env["AIM_SERVED_MODEL_NAME"]


def test_runtime_has_probes_and_shm():
    runtime = load(DOCKER / "kserve/clusterservingruntime.yaml")[0]
    container = runtime["spec"]["containers"][0]
    assert container["name"] == "kserve-container"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in runtime["spec"]["volumes"])
