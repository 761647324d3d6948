"""The Helm chart, rendered by Helm's own engine, yields valid Kubernetes objects."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.manifests import CHART, render_chart, validate_kubernetes

OVERRIDES = {
    "defaults": {},
    "prewarm and 8 GPUs": {"prewarm": {"enabled": True}, "gpus": 8,
                           "aim": {"AIM_MODEL_ID": "meta-llama/Llama-3.1-405B-Instruct", "AIM_PRECISION": "fp8"}},
    "existing claim, token secret": {"cache": {"path": "/cache", "existingClaim": "shared-models"},
                                     "hfToken": {"secretName": "hf", "secretKey": "token"}},
    "every setting": {"aim": {"AIM_ENGINE": "sglang", "AIM_METRIC": "throughput", "AIM_GPU_COUNT": 4,
                              "AIM_ENGINE_ARGS": {"--max-model-len": "8192"}, "AIM_OFFLINE": True,
                              "AIM_DEBUG": True, "AIM_LOCK_TIMEOUT": 600}},
    "cpu only": {"gpus": 0, "ports": {"http": 9000, "health": 9001}},
}


@pytest.mark.parametrize("values", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_rendered_objects_are_valid_kubernetes(values):
    docs = render_chart(values)
    kinds = sorted(d["kind"] for d in docs)
    assert "Deployment" in kinds and "Service" in kinds
    for doc in docs:
        validate_kubernetes(doc)


def _env(docs, kind="Deployment"):
    pod = next(d for d in docs if d["kind"] == kind)["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def test_values_reach_the_agent_environment_by_their_real_names():
    docs = render_chart(OVERRIDES["every setting"])
    env = _env(docs)
    assert env["AIM_ENGINE"]["value"] == "sglang"
    assert env["AIM_GPU_COUNT"]["value"] == "4"
    assert json.loads(env["AIM_ENGINE_ARGS"]["value"]) == {"--max-model-len": "8192"}
    assert env["AIM_OFFLINE"]["value"] == "true"


def test_token_comes_from_a_secret_never_a_value():
    env = _env(render_chart(OVERRIDES["existing claim, token secret"]))
    assert "value" not in env["HF_TOKEN"]
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}


def test_prewarm_job_uses_the_same_claim_and_settings():
    docs = render_chart(OVERRIDES["prewarm and 8 GPUs"])
    job = next(d for d in docs if d["kind"] == "Job")
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    claim = lambda d: [v["persistentVolumeClaim"]["claimName"] for v in d["spec"]["template"]["spec"]["volumes"]
                       if "persistentVolumeClaim" in v]
    assert claim(job) == claim(deploy)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["download"]
    assert _env(docs, "Job")["AIM_MODEL_ID"] == _env(docs)["AIM_MODEL_ID"]
    limits = deploy["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["amd.com/gpu"] == 8


def test_existing_claim_means_no_new_pvc():
    docs = render_chart(OVERRIDES["existing claim, token secret"])
    assert "PersistentVolumeClaim" not in [d["kind"] for d in docs]


@pytest.mark.parametrize("bad", [
    {"aim": {"AIM_PRECISION": "fp3"}},
    {"aim": {"AIM_MODLE_ID": "typo"}},
    {"ports": {"http": 0, "health": 8001}},
    {"cache": {"path": "relative/path"}},
])
def test_schema_rejects_bad_values(bad):
    import helm_python as helm

    with pytest.raises(helm.HelmError):
        render_chart(bad)


def test_values_schema_lists_every_agent_setting():
    from aim_engine.settings import VARIABLES

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    routed = {"AIM_CACHE_PATH", "AIM_PORT", "AIM_HEALTH_PORT"}  # from cache.path / ports
    routed |= {"AIM_IMAGE_FLAVOUR", "AIM_ENGINE_FLAGS_DIR"}   # the image build sets these, not users
    # A pod's place in a group differs per pod: LeaderWorkerSet / KServe give it (or POD_IP for
    # the node address); one chart value for every pod would be wrong.
    routed |= {"AIM_NODE_COUNT", "AIM_NODE_RANK", "AIM_LEADER_ADDRESS", "AIM_NODE_ADDRESS"}
    # The leader's probe port: the chart's ports.health, the same on every rank (its default).
    routed |= {"AIM_LEADER_HEALTH_PORT"}
    settings = {v.name for v in VARIABLES if v.name.startswith("AIM_")} - routed
    assert set(schema["properties"]["aim"]["properties"]) == settings
    assert set(values["aim"]) == settings
