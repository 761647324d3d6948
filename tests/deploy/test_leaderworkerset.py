"""The multi-node LeaderWorkerSet manifests (docker/kubernetes/multinode/): valid against the real
LWS CRD schema with the unknown-key walk, pod templates valid as strict core/v1 pods, and the
group's shape the agent relies on (docs/multinode.md): one image and one command on every rank,
the whole group recreated when a rank restarts, workers started with the leader, one shared
cache volume, and a Service that reaches the leader only."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from tests.deploy.manifests import (
    DOCKER,
    load,
    lws_schema,
    pod_templates,
    unknown_fields,
    validate_kubernetes,
    validate_pod_spec,
)

MULTINODE = DOCKER / "kubernetes/multinode"
# LWS's own label keys (api/leaderworkerset/v1/leaderworkerset_types.go: SetNameLabelKey,
# WorkerIndexLabelKey); the controller puts both on every pod, worker index "0" on the leader.
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


def _docs():
    return [(p, d) for p in sorted(MULTINODE.glob("*.yaml")) for d in load(p)]


def _by_kind(kind):
    return [d for _, d in _docs() if d["kind"] == kind]


def _lws():
    [lws] = _by_kind("LeaderWorkerSet")
    return lws


def test_the_multinode_directory_holds_a_leaderworkerset_and_its_leader_service():
    kinds = sorted(d["kind"] for _, d in _docs())
    assert kinds == ["LeaderWorkerSet", "Service"]


def test_leaderworkerset_is_valid_against_the_crd_schema_with_no_unknown_keys():
    lws = _lws()
    schema = lws_schema()
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    jsonschema.validators.validator_for(schema)(schema).validate(lws)
    assert list(unknown_fields(lws, schema)) == []


def test_the_unknown_key_walk_catches_a_typo():
    lws = copy.deepcopy(_lws())
    lws["spec"]["leaderWorkerTemplate"]["restartPolicyy"] = "RecreateGroupOnPodRestart"
    lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert sorted(unknown_fields(lws, lws_schema())) == [
        ".spec.leaderWorkerTemplate.restartPolicyy",
        ".spec.leaderWorkerTemplate.workerTemplate.spec.containers[0].readinesProbe",
    ]


def test_the_schema_rejects_a_restart_policy_lws_does_not_know():
    lws = copy.deepcopy(_lws())
    lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "RecreateGroup"
    schema = lws_schema()
    with pytest.raises(jsonschema.ValidationError, match="RecreateGroup"):
        jsonschema.validators.validator_for(schema)(schema).validate(lws)


@pytest.mark.parametrize("role", ["leader", "worker"])
def test_each_pod_template_is_a_valid_strict_kubernetes_pod(role):
    validate_pod_spec(dict(pod_templates(_lws()))[role])


def test_group_restarts_whole_and_workers_start_with_the_leader():
    spec = _lws()["spec"]
    lwt = spec["leaderWorkerTemplate"]
    assert lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lwt["size"] >= 2
    # LeaderReady would deadlock: the leader is ready only once every worker has joined it.
    assert spec.get("startupPolicy", "LeaderCreated") == "LeaderCreated"


def _container(role):
    return dict(pod_templates(_lws()))[role]["containers"][0]


def test_leader_and_workers_run_the_same_image_command_and_settings():
    leader, worker = _container("leader"), _container("worker")
    assert leader["image"] == worker["image"]
    assert leader.get("command") is None and worker.get("command") is None   # the image's aim-engine
    assert leader["args"] == worker["args"] == ["serve"]
    # Every rank plans the same model the same way; the agent finds its rank in LWS's variables.
    assert leader["env"] == worker["env"]
    names = {e["name"] for e in leader["env"]}
    assert not names & {"LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX"}, "LWS sets these itself"
    assert any(e["name"] == "POD_IP" and e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
               for e in leader["env"])


def test_every_rank_has_the_gpus_shm_and_the_shared_cache_volume():
    [pvc] = load(DOCKER / "kubernetes/pvc.yaml")
    for role, pod in pod_templates(_lws()):
        container = pod["containers"][0]
        assert container["resources"]["limits"]["amd.com/gpu"] >= 1, role
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory", role
        assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"], role
    assert _container("leader")["resources"] == _container("worker")["resources"]
    # One download for the whole group needs a volume every node mounts at once.
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]


@pytest.mark.parametrize("role", ["leader", "worker"])
def test_startup_budget_covers_a_large_download(role):
    startup = _container(role)["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60 * 60


def test_leader_service_selects_the_leader_pod_only():
    [service] = _by_kind("Service")
    validate_kubernetes(service)
    lws = _lws()
    assert service["spec"]["selector"] == {LWS_NAME_LABEL: lws["metadata"]["name"], LWS_WORKER_INDEX_LABEL: "0"}
    # LWS creates a headless Service named after the set (its leader address resolves through it).
    assert service["metadata"]["name"] != lws["metadata"]["name"]
    leader_ports = {p["name"] for p in _container("leader")["ports"]}
    worker_ports = {p["name"] for p in _container("worker")["ports"]}
    targets = {p["targetPort"] for p in service["spec"]["ports"]}
    assert targets <= leader_ports
    assert "http" in targets and "http" not in worker_ports
