"""The plain Kubernetes manifests are valid against the real Kubernetes schemas (offline)."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import DOCKER, load, validate_kubernetes

MANIFESTS = sorted((DOCKER / "kubernetes").glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path):
    docs = load(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        validate_kubernetes(doc)


def test_validator_rejects_a_misspelt_field():
    # The check above is only worth something if a typo fails it.
    doc = load(DOCKER / "kubernetes/deployment.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    with pytest.raises(Exception, match="readinesProbe"):
        validate_kubernetes(doc)


def _container(kind: str):
    docs = {d["kind"]: d for p in MANIFESTS for d in load(p)}
    return docs[kind]["spec"]["template"]["spec"]


def test_deployment_has_gpu_shm_cache_and_probes():
    pod = _container("Deployment")
    container = pod["containers"][0]
    assert "amd.com/gpu" in container["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert "persistentVolumeClaim" in volumes["model-cache"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in container


def test_startup_budget_covers_a_large_download_and_rollout_deadline_matches():
    docs = {d["kind"]: d for p in MANIFESTS for d in load(p)}
    deployment = docs["Deployment"]
    startup = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= 30 * 60
    assert deployment["spec"]["progressDeadlineSeconds"] > budget


def _jobs() -> dict:
    return {d["metadata"]["name"]: d for p in MANIFESTS for d in load(p) if d["kind"] == "Job"}


@pytest.mark.parametrize("name,args", [("aim-engine-prewarm", ["download"]),
                                       ("aim-engine-prewarm-compile", ["serve", "--warm-only"])])
def test_prewarm_jobs_run_on_the_same_claim(name, args):
    docs = {d["kind"]: d for p in MANIFESTS for d in load(p)}
    job_pod = _jobs()[name]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["args"] == args
    claim = {v["persistentVolumeClaim"]["claimName"] for v in job_pod["volumes"] if "persistentVolumeClaim" in v}
    deploy_claim = {v["persistentVolumeClaim"]["claimName"] for v in _container("Deployment")["volumes"]
                    if "persistentVolumeClaim" in v}
    assert claim == deploy_claim == {docs["PersistentVolumeClaim"]["metadata"]["name"]}
    assert "ReadWriteMany" in docs["PersistentVolumeClaim"]["spec"]["accessModes"]


def test_compile_prewarm_job_runs_on_the_serving_gpu_with_the_serving_model():
    """Compile artefacts are only produced on the target GPU, for the exact model: the Job must ask
    for the same GPU resource and serve the same model as the Deployment, and never restart a
    half-done warm-up in place (restartPolicy Never: a fresh pod retries)."""
    job = _jobs()["aim-engine-prewarm-compile"]["spec"]["template"]["spec"]
    serving = _container("Deployment")["containers"][0]
    container = job["containers"][0]
    assert container["resources"]["limits"]["amd.com/gpu"] == serving["resources"]["limits"]["amd.com/gpu"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    serving_env = {e["name"]: e.get("value") for e in serving["env"]}
    assert env["AIM_MODEL_ID"] == serving_env["AIM_MODEL_ID"]
    assert env["AIM_CACHE_PATH"] == serving_env["AIM_CACHE_PATH"]
    assert job["restartPolicy"] == "Never"
