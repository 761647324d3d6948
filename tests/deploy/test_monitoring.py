"""The Helm chart's monitoring and autoscaling parts: off by default; when on, each object is
valid against its real CRD schema (Prometheus Operator, KEDA) with the unknown-key walk, the
alert rules pass `promtool check rules`, and the dashboard holds the panels it promises.

Whether the dashboard's and the rules' PromQL return series is checked against a real Prometheus
scraping the agent and the real vLLM in tests/e2e/test_serve_vllm.py.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tests.deploy.manifests import CHART, monitoring_schema, render_chart, unknown_fields, validate_kubernetes
from tests.support.prometheus import promtool_check_rules

CRDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject")
ALL_ON = {"monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                         "podMonitor": {"enabled": True}, "dashboard": {"enabled": True},
                         "rules": {"enabled": True}},
          "autoscaling": {"keda": {"enabled": True}}}
DASHBOARD = CHART / "dashboards/aim-engine.json"


def by_kind(docs):
    return {d["kind"]: d for d in docs}


def test_monitoring_and_autoscaling_are_off_by_default():
    kinds = set(by_kind(render_chart({})))
    assert not kinds & {*CRDS, "ConfigMap"}


@pytest.mark.parametrize("values", [ALL_ON, {**ALL_ON, "monitoring": {**ALL_ON["monitoring"], "rules": {
    "enabled": True, "bootBudgetSeconds": 900, "kvCacheUsageAbove": 0.8, "queueWindow": "15m"}},
    "autoscaling": {"keda": {"enabled": True, "minReplicas": 2, "maxReplicas": 16, "bootSeconds": 1800}}}],
    ids=["defaults", "tuned"])
def test_every_object_is_valid_against_its_schema_with_no_unknown_keys(values):
    docs = render_chart(values)
    found = by_kind(docs)
    assert set(CRDS) <= set(found)
    for kind in CRDS:
        schema = monitoring_schema(kind)
        # Not jsonschema.validate: it checks the schema itself first, and the PrometheusRule CRD
        # holds a Go regex (`^(?i)(abort|warn)?$`) Python's re rejects, for a field we do not set.
        jsonschema.validators.validator_for(schema)(schema).validate(found[kind])
        assert list(unknown_fields(found[kind], schema)) == [], kind
    for doc in docs:
        if doc["kind"] not in CRDS:
            validate_kubernetes(doc)


def test_the_unknown_key_walk_catches_a_typo():
    monitor = by_kind(render_chart(ALL_ON))["ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "5s"        # the field is `interval`
    assert list(unknown_fields(monitor, monitoring_schema("ServiceMonitor"))) == [".spec.endpoints[0].scrapeInterval"]


def test_both_ports_are_scraped_at_metrics():
    found = by_kind(render_chart(ALL_ON))
    for endpoints in (found["ServiceMonitor"]["spec"]["endpoints"], found["PodMonitor"]["spec"]["podMetricsEndpoints"]):
        assert sorted((e["port"], e["path"]) for e in endpoints) == [("health", "/metrics"), ("http", "/metrics")]
    assert found["ServiceMonitor"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    ports = {p["name"] for p in found["Service"]["spec"]["ports"]}
    assert ports == {"http", "health"}


def test_alert_rules_pass_promtool(tmp_path):
    rules = by_kind(render_chart(ALL_ON))["PrometheusRule"]["spec"]
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts == {"AimEngineBootFailed", "AimEngineBootSlow", "AimEngineKVCacheNearFull", "AimEngineQueueGrowing"}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = promtool_check_rules(path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 4 rules found" in out.stdout


def test_a_broken_rule_fails_promtool(tmp_path):
    """promtool really parses the expressions (so the check above can fail)."""
    rules = by_kind(render_chart(ALL_ON))["PrometheusRule"]["spec"]
    rules["groups"][0]["rules"][0]["expr"] = "max by (pod (aim_boot_failures_total) > 0"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    assert promtool_check_rules(path).returncode != 0


def test_boot_budget_defaults_to_the_startup_probe_budget():
    rules = by_kind(render_chart({"monitoring": {"rules": {"enabled": True}},
                                  "probes": {"startup": {"periodSeconds": 10, "failureThreshold": 90}}}))
    slow = next(r for g in rules["PrometheusRule"]["spec"]["groups"] for r in g["rules"]
                if r["alert"] == "AimEngineBootSlow")
    assert "> 900)" in slow["expr"]


def test_keda_scales_on_waiting_requests_and_waits_a_boot_time_between_scale_ups():
    found = by_kind(render_chart({"autoscaling": {"keda": {"enabled": True, "bootSeconds": 420, "maxReplicas": 6}}}))
    scaled = found["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == found["Deployment"]["metadata"]["name"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 6)
    up = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]
    assert up["stabilizationWindowSeconds"] == 420
    assert up["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 420}]
    query = scaled["triggers"][0]["metadata"]["query"]
    assert "vllm:num_requests_waiting" in query and "sglang:num_queue_reqs" in query
    assert "replicas" not in found["Deployment"]["spec"]          # the HPA owns the count


@pytest.mark.parametrize("bad", [
    {"autoscaling": {"keda": {"enabled": True, "bootSeconds": 3600}}},     # above the HPA's 1800 s period limit
    {"autoscaling": {"keda": {"enabled": True, "waitingPerReplica": 0}}},
    {"autoscaling": {"keda": {"enabled": True, "minReplicas": 0}}},      # no replica, no queue to scale on
    {"monitoring": {"rules": {"enabled": True, "kvCacheUsageAbove": 1.5}}},
    {"monitoring": {"serviceMonitor": {"enabled": True, "interval": "soon"}}},
    {"monitoring": {"grafana": {"enabled": True}}},
])
def test_schema_rejects_bad_monitoring_values(bad):
    import helm_python as helm

    with pytest.raises(helm.HelmError):
        render_chart(bad)


def test_the_dashboard_has_the_panels_it_promises_and_ships_in_the_configmap():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    for promised in ("Boot timeline: seconds per phase", "Download progress", "Requests running and waiting",
                     "Time to first token (p50, p95)", "Generated tokens per second", "KV cache use"):
        assert promised in titles
    assert all(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    configmap = by_kind(render_chart(ALL_ON))["ConfigMap"]
    assert json.loads(configmap["data"]["aim-engine.json"]) == dashboard
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
