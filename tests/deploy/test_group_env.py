"""Each multi-node pod's environment, as it is at run time (the manifest's own variables, the
downward API's, and what the controller injects: LeaderWorkerSet's LWS_* on every pod, KServe's
sizes and HEAD_SVC as its predictor.go multiNodeProcess sets them), given to the agent's real
settings parser and topology resolver: every rank of every deployment finds the group it is in,
its role, the leader and its own address. Both sides are read: the manifests from docker/, the
resolver from the agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aim_engine.hardware.group import resolve
from aim_engine.settings import Settings
from tests.deploy.manifests import DOCKER, REPO, load, pod_templates, render_chart
from tests.deploy.test_kserve_multinode import kserve_ray_nodes

NAMESPACE = "serving"
# The chart in multi-node mode, with the plain manifest's model on three nodes.
HELM_MULTINODE = {"multiNode": {"enabled": True, "nodes": 3}, "gpus": 8,
                  "aim": {"AIM_MODEL_ID": "meta-llama/Llama-3.1-405B-Instruct"}}
POD_IPS = {"leader": "10.244.1.10", "worker": "10.244.2.20"}


class PodNetwork:
    """The pod's network as the resolver asks about it (only `interface_of` is needed: POD_IP gives
    the address). Not this machine's: the pods' addresses are not on it."""

    def interface_of(self, address):
        return "eth0" if address in POD_IPS.values() else None

    def interfaces(self):
        return {"lo", "eth0"}

    def route_source(self, host):
        raise AssertionError("POD_IP is set: the resolver must not look for a route")

    default_route_address = route_source


def _container_env(container, role):
    """The container's variables at run time: plain values, and the downward API's fields."""
    fields = {"status.podIP": POD_IPS[role], "metadata.namespace": NAMESPACE}
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        # secretKeyRef (HF_TOKEN, optional): no secret here
    return env


def _lws_pods(lws):
    """(role, env) of a group's leader and first worker, with the variables LWS adds
    (pkg/utils/pod/pod_utils.go AddLWSVariables: the leader through the set's headless Service)."""
    name, size = lws["metadata"]["name"], lws["spec"]["leaderWorkerTemplate"]["size"]
    lws_env = {"LWS_LEADER_ADDRESS": f"{name}-0.{name}.{NAMESPACE}", "LWS_GROUP_SIZE": str(size)}
    out = []
    for (role, pod), index in zip(pod_templates(lws), (0, 1)):
        env = _container_env(pod["containers"][0], role)
        out.append((role, {**env, **lws_env, "LWS_WORKER_INDEX": str(index)}))
    return out


def _kserve_pods():
    [runtime] = load(DOCKER / "kserve/clusterservingruntime-multinode.yaml")
    [isvc] = load(DOCKER / "kserve/inferenceservice-multinode.yaml")
    nodes, head_gpus, worker_gpus = kserve_ray_nodes(isvc, runtime)
    predictor = isvc["spec"]["predictor"]
    sizes = {"TENSOR_PARALLEL_SIZE": str(predictor["workerSpec"]["tensorParallelSize"]),
             "PIPELINE_PARALLEL_SIZE": str(predictor["workerSpec"]["pipelineParallelSize"]),
             "RAY_NODE_COUNT": str(nodes)}
    name = isvc["metadata"]["name"]
    # The InferenceService's container fields merge over the runtime's (its env wins by name).
    head = {**_container_env(runtime["spec"]["containers"][0], "leader"), **_container_env(predictor["model"], "leader"),
            **sizes, "REQUEST_GPU_COUNT": str(head_gpus), "MODEL_NAME": name}
    worker = {**_container_env(runtime["spec"]["workerSpec"]["containers"][0], "worker"),
              **_container_env(predictor["workerSpec"]["containers"][0], "worker"),
              **sizes, "REQUEST_GPU_COUNT": str(worker_gpus), "ISVC_NAME": name,
              "HEAD_SVC": f"{name}-head-1", "WORKER_SVC": f"{name}-predictor-worker-1"}
    return [("leader", head, head_gpus), ("worker", worker, worker_gpus)], nodes, \
        f"{name}-head-1.{NAMESPACE}.svc.cluster.local"


def _cases():
    [lws] = [d for d in load(DOCKER / "kubernetes/multinode/leaderworkerset.yaml") if d["kind"] == "LeaderWorkerSet"]
    cases = []
    for source, doc in (("kubernetes/multinode", lws),
                        ("helm multiNode", next(d for d in render_chart(HELM_MULTINODE)
                                                if d["kind"] == "LeaderWorkerSet"))):
        name, size = doc["metadata"]["name"], doc["spec"]["leaderWorkerTemplate"]["size"]
        gpus = dict(pod_templates(doc))
        for role, env in _lws_pods(doc):
            cases.append(pytest.param(env, role, size, f"{name}-0.{name}.{NAMESPACE}", "LeaderWorkerSet",
                                      int(gpus[role]["containers"][0]["resources"]["limits"]["amd.com/gpu"]),
                                      id=f"{source}:{role}"))
    pods, nodes, head = _kserve_pods()
    for role, env, gpus in pods:
        cases.append(pytest.param(env, role, nodes, head, "KServe", gpus, id=f"kserve:{role}"))
    return cases


@pytest.mark.parametrize("env,role,nodes,leader,source,gpus", _cases())
def test_every_rank_finds_its_group_role_leader_and_address(env, role, nodes, leader, source, gpus):
    settings = Settings.from_env(env)
    group = resolve(settings, network=PodNetwork())
    assert (group.source, group.nodes, group.role) == (source, nodes, role)
    assert group.node_address == POD_IPS[role]
    # The leader's own address is its pod IP on KServe (HEAD_SVC is on workers only).
    assert group.leader_address == (POD_IPS["leader"] if source == "KServe" and role == "leader" else leader)
    assert group.leader_probe_port == settings.health_port
    if source == "KServe":
        assert group.backend == "ray"         # the path KServe's multi-node runtime is built for
        assert (group.requested_tensor_parallel, group.requested_pipeline_parallel) == (
            int(env["TENSOR_PARALLEL_SIZE"]), int(env["PIPELINE_PARALLEL_SIZE"]))


def test_every_rank_of_a_group_has_the_same_agent_settings():
    """Ranks whose settings differ would plan differently and be refused when they join: in every
    deployment the worker's AIM_* settings are its leader's."""
    by_deployment = {}
    for case in _cases():
        env, role = case.values[0], case.values[1]
        by_deployment.setdefault(case.id.rsplit(":", 1)[0], {})[role] = {k: v for k, v in env.items() if k.startswith("AIM_")}
    assert sorted(by_deployment) == ["helm multiNode", "kserve", "kubernetes/multinode"]
    for deployment, roles in by_deployment.items():
        assert roles["leader"] == roles["worker"], deployment
        assert roles["leader"]["AIM_MODEL_ID"], deployment


@pytest.mark.parametrize("env,role,nodes,leader,source,gpus", _cases())
def test_aim_engine_plan_spreads_the_model_over_every_node_and_gpu_the_manifest_gives(env, role, nodes, leader, source,
                                                                                      gpus):
    """The real `aim-engine plan` in each rank's environment, on the GPUs its manifest asks for
    (amd.com/gpu; on KServe the count KServe computes). There is no GPU here, so AIM_GPU_MODEL=MI250
    and AIM_GPU_COUNT stand in for the device plugin. The group plan uses every node and every GPU
    of each: 405B in bf16 fits no single MI250 node."""
    run_env = {**env, "AIM_GPU_MODEL": "MI250", "AIM_GPU_COUNT": str(gpus), "PATH": os.environ.get("PATH", ""),
               "HOME": os.environ.get("HOME", "/tmp"), "AIM_LOG_LEVEL": "error",
               **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}}
    done = subprocess.run([sys.executable, "-m", "aim_engine", "plan", "--json"], env=run_env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    plan, launch = out["plan"], out["launch"]
    assert (plan["nodes"], plan["gpus_per_node"], plan["gpus_used"]) == (nodes, gpus, nodes * gpus)
    assert plan["tensor_parallel"] * plan["pipeline_parallel"] * plan.get("data_parallel", 1) == nodes * gpus
    # This rank's own command: the leader serves the API, a worker does not; peers reach it at POD_IP.
    assert (launch["role"], launch["serves_api"]) == (role, role == "leader")
    assert launch["env"]["VLLM_HOST_IP"] == POD_IPS[role]
    argv = launch["argv"]
    if source == "KServe":
        # Ray, as KServe's own multi-node runtime: the head's prelude starts Ray, a worker joins it.
        assert launch["backend"]["name"] == "ray"
        if role == "leader":
            assert launch["prelude"][0][:3] == ["ray", "start", "--head"]
            assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
        else:
            assert argv[:2] == ["ray", "start"] and "--block" in argv
            assert f"--address={leader}:{launch_ray_port(launch)}" in argv
    else:
        # vLLM's own multi-node runtime: one rank per pod, the leader's pod address from LWS.
        assert launch["backend"]["name"] == "native"
        assert argv[argv.index("--nnodes") + 1] == str(nodes)
        assert argv[argv.index("--node-rank") + 1] == env["LWS_WORKER_INDEX"]
        assert argv[argv.index("--master-addr") + 1] == leader
        assert ("--headless" in argv) == (role == "worker")


def launch_ray_port(launch):
    """The Ray head's port, as the head's prelude says it (`ray start --head --port=N`)."""
    head = [a for cmd in launch["prelude"] for a in cmd if a.startswith("--port=")]
    return head[0].split("=", 1)[1] if head else "6379"
