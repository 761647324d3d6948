"""The KServe multi-node runtime and InferenceService (docker/kserve/*-multinode.yaml) against the
rules KServe's own code applies (kserve/kserve: pkg/apis/serving/v1beta1/inference_service_validation.go
validateMultiNodeVariables, pkg/webhook/admission/servingruntime validateMultiNodeSpec,
pkg/controller/v1beta1/inferenceservice/components/predictor.go multiNodeProcess and
computeRayNodeAndGPUs), and the shape the agent relies on: one image and command on head and
workers, the same settings on every rank, the group's cache on the storageUri mount.
Schema validity with the unknown-key walk is in test_kserve.py (every file of docker/kserve)."""

from __future__ import annotations

import copy
import math

import pytest

from tests.deploy.manifests import DOCKER, load

RUNTIME = DOCKER / "kserve/clusterservingruntime-multinode.yaml"
SERVICE = DOCKER / "kserve/inferenceservice-multinode.yaml"
GPU = "amd.com/gpu"
KSERVE_MODEL_MOUNT = "/mnt/models"            # constants.DefaultModelLocalMountPath
SIZE_VARIABLES = ("TENSOR_PARALLEL_SIZE", "PIPELINE_PARALLEL_SIZE")


def _runtime():
    [doc] = load(RUNTIME)
    return doc


def _service():
    [doc] = load(SERVICE)
    return doc


def _env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def kserve_multinode_errors(isvc, runtime):
    """The refusals of KServe's multi-node validation (ISVC webhook and runtime webhook), as a list."""
    errors = []
    predictor = isvc["spec"]["predictor"]
    worker = predictor.get("workerSpec")
    if worker is None:
        return ["no workerSpec"]
    if len(worker.get("containers", [])) > 1:
        errors.append("more than one worker container")
    model = predictor["model"]
    for name in SIZE_VARIABLES:
        if name in _env(model):
            errors.append(f"{name} set as a variable")
    uri = model.get("storageUri")
    if uri is None:
        errors.append("no storageUri")
    elif uri.split("://")[0] not in ("pvc", "oci"):
        errors.append(f"storageUri protocol {uri.split('://')[0]}")
    if isvc["metadata"].get("annotations", {}).get("serving.kserve.io/autoscalerClass") != "none":
        errors.append("autoscaler class is not none")
    for size in ("tensorParallelSize", "pipelineParallelSize"):
        if worker.get(size, 1) < 1 or runtime["spec"]["workerSpec"].get(size, 1) < 1:
            errors.append(f"{size} < 1")
    for container in runtime["spec"]["containers"]:
        for name in SIZE_VARIABLES:
            if name in _env(container):
                errors.append(f"runtime sets {name}")
    if len(runtime["spec"]["workerSpec"]["containers"]) > 1:
        errors.append("runtime has more than one worker container")
    return errors


def kserve_ray_nodes(isvc, runtime):
    """(nodes, head GPUs, worker GPUs) as KServe's computeRayNodeAndGPUs decides them (Ray mode,
    the default): from tensorParallelSize x pipelineParallelSize and the containers' GPU *requests*."""
    rt_worker = runtime["spec"]["workerSpec"]
    worker = isvc["spec"]["predictor"]["workerSpec"]
    total = worker.get("tensorParallelSize", rt_worker.get("tensorParallelSize", 1)) * \
        worker.get("pipelineParallelSize", rt_worker.get("pipelineParallelSize", 1))

    def requested(resources):
        return int((resources or {}).get("requests", {}).get(GPU, 0))

    head = requested(isvc["spec"]["predictor"]["model"].get("resources"))
    per_worker = requested(worker["containers"][0].get("resources")) if worker.get("containers") else 0
    if per_worker > 0:
        nodes = math.ceil(total / per_worker)
        if head > 0 and math.ceil(total / head) == 1:
            nodes = 1
        elif head == 0:
            head = total - per_worker * (nodes - 1)
        if nodes == 1:
            per_worker, head = 0, total
    elif head > 0:
        per_worker = 1
        nodes = 1 + (math.ceil((total - head) / per_worker) if total > head else 0)
    else:
        return total, 1, 1
    assert total <= head + per_worker * (nodes - 1), "KServe: the Ray cluster has too few GPUs"
    return nodes, head, per_worker


def test_kserve_accepts_the_service_and_runtime():
    assert kserve_multinode_errors(_service(), _runtime()) == []


@pytest.mark.parametrize("change,error", [
    (lambda isvc: isvc["spec"]["predictor"]["model"].pop("storageUri"), "no storageUri"),
    (lambda isvc: isvc["spec"]["predictor"]["model"].update(storageUri="hf://meta-llama/x"), "storageUri protocol hf"),
    (lambda isvc: isvc["metadata"]["annotations"].pop("serving.kserve.io/autoscalerClass"),
     "autoscaler class is not none"),
    (lambda isvc: isvc["spec"]["predictor"]["model"]["env"].append({"name": "TENSOR_PARALLEL_SIZE", "value": "8"}),
     "TENSOR_PARALLEL_SIZE set as a variable"),
])
def test_the_rules_check_refuses_what_kserve_refuses(change, error):
    isvc = copy.deepcopy(_service())
    change(isvc)
    assert error in kserve_multinode_errors(isvc, _runtime())


def test_kserve_sizes_a_group_of_two_nodes_with_every_gpu_requested_as_amd():
    isvc = _service()
    nodes, head, per_worker = kserve_ray_nodes(isvc, _runtime())
    assert nodes == 2
    predictor = isvc["spec"]["predictor"]
    head_resources = predictor["model"]["resources"]
    worker_resources = predictor["workerSpec"]["containers"][0]["resources"]
    # KServe writes its head/worker GPU counts into the resource the container already asks for
    # (else nvidia.com/gpu): both ask for amd.com/gpu, and KServe keeps the counts asked.
    assert int(head_resources["requests"][GPU]) == int(head_resources["limits"][GPU]) == head
    assert int(worker_resources["requests"][GPU]) == int(worker_resources["limits"][GPU]) == per_worker


def test_the_node_count_follows_kserve_when_gpus_per_worker_change():
    isvc = copy.deepcopy(_service())
    worker = isvc["spec"]["predictor"]["workerSpec"]
    worker["containers"][0]["resources"]["requests"][GPU] = "4"
    isvc["spec"]["predictor"]["model"]["resources"]["requests"][GPU] = "4"
    assert kserve_ray_nodes(isvc, _runtime()) == (4, 4, 4)


def test_head_and_worker_run_the_same_image_command_and_settings():
    spec = _runtime()["spec"]
    head, worker = spec["containers"][0], spec["workerSpec"]["containers"][0]
    assert (head["name"], worker["name"]) == ("kserve-container", "worker-container")
    assert head["image"] == worker["image"]
    assert head["args"] == worker["args"] == ["serve"]
    assert head.get("command") is None and worker.get("command") is None
    assert head["env"] == worker["env"]
    # KServe injects HEAD_SVC and the sizes; the runtime must not shadow them.
    assert not set(_env(head)) & {"HEAD_SVC", "RAY_NODE_COUNT", *SIZE_VARIABLES}
    assert {"POD_IP", "POD_NAMESPACE"} <= set(_env(head))
    isvc = _service()["spec"]["predictor"]
    model_env, worker_env = _env(isvc["model"]), _env(isvc["workerSpec"]["containers"][0])
    assert model_env == worker_env, "every rank must plan the same model with the same settings"


def test_the_group_cache_is_the_writable_shared_volume_kserve_mounts():
    [pvc] = load(DOCKER / "kubernetes/pvc.yaml")
    runtime_env = _env(_runtime()["spec"]["containers"][0])
    isvc = _service()
    assert runtime_env["AIM_CACHE_PATH"] == KSERVE_MODEL_MOUNT
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{pvc['metadata']['name']}"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    # KServe mounts a pvc:// read-only unless told otherwise; the cache is written once, by the group.
    assert isvc["metadata"]["annotations"]["storage.kserve.io/readonly"] == "false"
