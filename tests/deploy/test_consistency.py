"""Consistency by construction: every deployment file uses the agent's own ports, probe paths,
variable names and cache path. Both sides are read: the agent's defaults from its code, the
deployment values from the files."""

from __future__ import annotations

import re

import pytest
import yaml

from aim_engine import probes
from aim_engine.settings import DEFAULT_CACHE_PATH, DEFAULT_HEALTH_PORT, DEFAULT_PORT, VARIABLES
from tests.deploy.manifests import CHART, DOCKER, load, pod_templates, render_chart

KNOWN_VARIABLES = {v.name for v in VARIABLES}
AGENT_PROBE_PATHS = {probes.LIVE_PATH, probes.READY_PATH, probes.STARTUP_PATH}
# Where KServe mounts an InferenceService's storageUri (its DefaultModelLocalMountPath). The
# multi-node runtime keeps its cache there: KServe multi-node requires a pvc:// storageUri, so the
# shared cache volume is that mount.
KSERVE_MODEL_MOUNT = "/mnt/models"


def _pod_specs():
    """(source, role, pod spec) for every workload in docker/: plain manifests (multi-node ones
    included: a LeaderWorkerSet's leader and worker templates), the KServe runtimes (a multi-node
    runtime's head and workerSpec), Helm defaults. role: "single", "leader" or "worker"."""
    out = []
    for path in sorted((DOCKER / "kubernetes").rglob("*.yaml")):
        for doc in load(path):
            for role, pod in pod_templates(doc):
                out.append((f"{path.relative_to(DOCKER)}:{role}", role, pod))
    for path in sorted((DOCKER / "kserve").rglob("*.yaml")):
        for doc in load(path):
            if doc["kind"] in ("ClusterServingRuntime", "ServingRuntime"):
                spec = doc["spec"]
                source = str(path.relative_to(DOCKER))
                if "workerSpec" in spec:
                    out.append((f"{source}:head", "leader", spec))
                    out.append((f"{source}:worker", "worker", spec["workerSpec"]))
                else:
                    out.append((source, "single", spec))
    for mode, values in (("", {}), ("multiNode:", {"multiNode": {"enabled": True}})):
        for doc in render_chart(values):
            for role, pod in pod_templates(doc):
                out.append((f"helm:{mode}{doc['kind']}:{role}", role, pod))
    return out


def _env_names(container):
    return {e["name"] for e in container.get("env", [])}


@pytest.mark.parametrize("source,role,pod", [pytest.param(*spec, id=spec[0]) for spec in _pod_specs()])
def test_ports_probes_cache_and_names_match_the_agent(source, role, pod):
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    unknown = {n for n in env if n.startswith("AIM_")} - KNOWN_VARIABLES
    assert not unknown, f"{source} sets variables the agent does not read: {unknown}"
    allowed_cache = {DEFAULT_CACHE_PATH, KSERVE_MODEL_MOUNT} if source.startswith("kserve/") else {DEFAULT_CACHE_PATH}
    assert env.get("AIM_CACHE_PATH", DEFAULT_CACHE_PATH) in allowed_cache, source
    if "AIM_PORT" in env:
        assert int(env["AIM_PORT"]) == DEFAULT_PORT
    if "AIM_HEALTH_PORT" in env:
        assert int(env["AIM_HEALTH_PORT"]) == DEFAULT_HEALTH_PORT
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    if container.get("args") != ["serve"] or "model-cache" in {m["name"] for m in container.get("volumeMounts", [])}:
        assert DEFAULT_CACHE_PATH in mounts, f"{source} does not mount the cache at {DEFAULT_CACHE_PATH}"
    if container.get("args") == ["serve"]:
        ports = {p["containerPort"] for p in container["ports"]}
        # A worker rank serves no OpenAI API (vLLM --headless, SGLang rank >= 1): only the probes.
        assert ports == ({DEFAULT_HEALTH_PORT} if role == "worker" else {DEFAULT_PORT, DEFAULT_HEALTH_PORT}), source
        seen = set()
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            port = get["port"]
            if isinstance(port, str):
                port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
            assert port == DEFAULT_HEALTH_PORT, f"{source} {probe} targets port {port}"
            seen.add(get["path"])
        assert seen == AGENT_PROBE_PATHS


@pytest.mark.parametrize("source,role,pod", [pytest.param(*spec, id=spec[0]) for spec in _pod_specs()
                                             if spec[1] != "single"])
def test_a_group_rank_outwaits_its_peer_timeout_before_the_startup_probe_gives_up(source, role, pod):
    """A rank waits up to AIM_PEER_TIMEOUT for its leader or its workers and then ends its boot
    naming the missing peers; a startup budget shorter than that would have the kubelet kill it
    first, without that message."""
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    timeout = float(env.get("AIM_PEER_TIMEOUT") or next(v.default for v in VARIABLES if v.name == "AIM_PEER_TIMEOUT"))
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > timeout, source


def test_dockerfile_matches_the_agent_defaults():
    text = (DOCKER / "Dockerfile").read_text()
    assert f"AIM_CACHE_PATH={DEFAULT_CACHE_PATH}" in text
    assert f"AIM_PORT={DEFAULT_PORT}" in text and f"AIM_HEALTH_PORT={DEFAULT_HEALTH_PORT}" in text
    assert re.search(rf"^EXPOSE {DEFAULT_PORT} {DEFAULT_HEALTH_PORT}$", text, re.M)
    assert f'VOLUME ["{DEFAULT_CACHE_PATH}"]' in text
    assert probes.LIVE_PATH in text


def test_every_aim_variable_in_docker_material_is_one_the_agent_reads():
    for path in DOCKER.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".tpl", ".txt", "") :
            for name in set(re.findall(r"\bAIM_[A-Z_]+\b", path.read_text())):
                assert name in KNOWN_VARIABLES, f"{path.relative_to(DOCKER)} names {name}, unknown to the agent"


def test_helm_defaults_match_the_agent():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["ports"] == {"http": DEFAULT_PORT, "health": DEFAULT_HEALTH_PORT}
    assert values["cache"]["path"] == DEFAULT_CACHE_PATH
