"""The Helm chart's multi-node mode (`multiNode.enabled`), rendered by Helm's own engine: a
LeaderWorkerSet valid against the real LWS CRD schema with the unknown-key walk instead of the
Deployment, a Service that reaches each group's leader only, every other object valid Kubernetes;
and the single-node chart unchanged when the value is off."""

from __future__ import annotations

import jsonschema
import pytest

from tests.deploy.manifests import (
    lws_schema,
    monitoring_schema,
    pod_templates,
    render_chart,
    unknown_fields,
    validate_kubernetes,
    validate_pod_spec,
)

# The labels LWS's controller adds to every pod (api/leaderworkerset/v1/leaderworkerset_types.go).
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"

MULTI = {"multiNode": {"enabled": True, "nodes": 2}, "gpus": 8,
         "aim": {"AIM_MODEL_ID": "meta-llama/Llama-3.1-405B-Instruct"}}
OVERRIDES = {
    "two nodes": MULTI,
    "four nodes, two groups, prewarm, token": {**MULTI, "multiNode": {"enabled": True, "nodes": 4}, "replicaCount": 2,
                                               "prewarm": {"enabled": True}, "hfToken": {"secretName": "hf"}},
    "with monitoring and keda": {**MULTI, "monitoring": {"serviceMonitor": {"enabled": True},
                                                         "podMonitor": {"enabled": True}},
                                 "autoscaling": {"keda": {"enabled": True}}},
}


def _validate_lws(lws):
    schema = lws_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(lws)
    assert list(unknown_fields(lws, schema)) == []
    for _, pod in pod_templates(lws):
        validate_pod_spec(pod)


@pytest.mark.parametrize("values", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_multinode_renders_a_valid_leaderworkerset_instead_of_the_deployment(values):
    docs = render_chart(values)
    kinds = [d["kind"] for d in docs]
    assert "Deployment" not in kinds and kinds.count("LeaderWorkerSet") == 1
    for doc in docs:
        if doc["kind"] == "LeaderWorkerSet":
            _validate_lws(doc)
        elif doc["kind"] in ("ServiceMonitor", "PodMonitor", "ScaledObject"):
            schema = monitoring_schema(doc["kind"])
            jsonschema.validators.validator_for(schema)(schema).validate(doc)
            assert list(unknown_fields(doc, schema)) == [], doc["kind"]
        else:
            validate_kubernetes(doc)


def _kind(docs, kind):
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def test_the_group_has_the_asked_size_restarts_whole_and_starts_workers_with_the_leader():
    values = OVERRIDES["four nodes, two groups, prewarm, token"]
    lws = _kind(render_chart(values), "LeaderWorkerSet")
    assert lws["spec"]["replicas"] == 2
    assert lws["spec"]["startupPolicy"] == "LeaderCreated"
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 4
    assert lwt["restartPolicy"] == "RecreateGroupOnPodRestart"


def test_every_rank_runs_the_same_image_and_settings_with_gpus_per_node_and_the_shared_cache():
    docs = render_chart(OVERRIDES["four nodes, two groups, prewarm, token"])
    pods = dict(pod_templates(_kind(docs, "LeaderWorkerSet")))
    leader, worker = pods["leader"]["containers"][0], pods["worker"]["containers"][0]
    assert leader["image"] == worker["image"] and leader["args"] == worker["args"] == ["serve"]
    assert leader["env"] == worker["env"]
    env = {e["name"]: e for e in leader["env"]}
    assert env["AIM_MODEL_ID"]["value"] == "meta-llama/Llama-3.1-405B-Instruct"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert "value" not in env["HF_TOKEN"]
    assert leader["resources"]["limits"]["amd.com/gpu"] == worker["resources"]["limits"]["amd.com/gpu"] == 8
    claims = {role: [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
              for role, pod in pods.items()}
    job = _kind(docs, "Job")["spec"]["template"]["spec"]
    assert claims["leader"] == claims["worker"] == [v["persistentVolumeClaim"]["claimName"]
                                                    for v in job["volumes"] if "persistentVolumeClaim" in v]
    assert {p["name"] for p in leader["ports"]} == {"http", "health"}
    assert {p["name"] for p in worker["ports"]} == {"health"}


def _selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_service_reaches_the_leaders_only():
    docs = render_chart(MULTI)
    lws, service = _kind(docs, "LeaderWorkerSet"), _kind(docs, "Service")
    name = lws["metadata"]["name"]
    # LWS creates a headless Service named after the set: the chart's Service must not collide.
    assert service["metadata"]["name"] != name
    pods = dict(pod_templates(lws))
    templates = lws["spec"]["leaderWorkerTemplate"]
    # The labels each pod carries at run time: its template's plus the ones LWS adds.
    leader = {**templates["leaderTemplate"]["metadata"]["labels"], LWS_NAME_LABEL: name, LWS_WORKER_INDEX_LABEL: "0"}
    worker = {**templates["workerTemplate"]["metadata"]["labels"], LWS_NAME_LABEL: name, LWS_WORKER_INDEX_LABEL: "1"}
    selector = service["spec"]["selector"]
    assert _selects(selector, leader) and not _selects(selector, worker)
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {p["name"] for p in pods["leader"]["containers"][0]["ports"]}


def test_keda_scales_whole_groups():
    docs = render_chart(OVERRIDES["with monitoring and keda"])
    target = _kind(docs, "ScaledObject")["spec"]["scaleTargetRef"]
    lws = _kind(docs, "LeaderWorkerSet")
    assert target == {"apiVersion": lws["apiVersion"], "kind": "LeaderWorkerSet", "name": lws["metadata"]["name"]}
    assert "replicas" not in lws["spec"]     # the HPA owns it


def test_off_by_default_the_chart_is_single_node():
    docs = render_chart({})
    kinds = [d["kind"] for d in docs]
    assert "LeaderWorkerSet" not in kinds and "Deployment" in kinds
    assert LWS_WORKER_INDEX_LABEL not in _kind(docs, "Service")["spec"]["selector"]
    pod = _kind(docs, "Deployment")["spec"]["template"]["spec"]
    assert "POD_IP" not in {e["name"] for e in pod["containers"][0]["env"]}


@pytest.mark.parametrize("bad", [
    {"multiNode": {"enabled": True, "nodes": 1}},
    {"multiNode": {"enabled": True, "nodes": 65}},
    {"multiNode": {"enabled": "yes"}},
    {"multiNode": {"enabled": True, "node": 2}},
])
def test_schema_rejects_bad_multinode_values(bad):
    import helm_python as helm

    with pytest.raises(helm.HelmError):
        render_chart(bad)


def test_multinode_settings_reach_every_rank_by_their_real_names():
    values = {**MULTI, "aim": {**MULTI["aim"], "AIM_MULTINODE_BACKEND": "ray", "AIM_DIST_PORT": 29600,
                               "AIM_PEER_TIMEOUT": 1800, "AIM_NETWORK_INTERFACE": "eth1"}}
    pods = dict(pod_templates(_kind(render_chart(values), "LeaderWorkerSet")))
    for role, pod in pods.items():
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert (env["AIM_MULTINODE_BACKEND"], env["AIM_DIST_PORT"], env["AIM_PEER_TIMEOUT"],
                env["AIM_NETWORK_INTERFACE"]) == ("ray", "29600", "1800", "eth1"), role
        # The place in the group is each pod's own: LWS gives it, never a chart value.
        assert not {"AIM_NODE_COUNT", "AIM_NODE_RANK", "AIM_LEADER_ADDRESS", "AIM_NODE_ADDRESS"} & set(env), role


@pytest.mark.parametrize("bad", [
    {"AIM_MULTINODE_BACKEND": "mpi"},
    {"AIM_DIST_PORT": 0},
    {"AIM_DIST_PORT": 70000},
    {"AIM_PEER_TIMEOUT": -1},
    {"AIM_NETWORK_INTERFACE": "an-interface-name-too-long"},
    {"AIM_NODE_RANK": 1},
])
def test_schema_rejects_bad_multinode_settings(bad):
    import helm_python as helm

    with pytest.raises(helm.HelmError):
        render_chart({**MULTI, "aim": {**MULTI["aim"], **bad}})
