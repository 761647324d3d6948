"""`/metrics` on the probe port during a real boot, read with prometheus_client's own parser.

The real entrypoint, the real probe process, the real huggingface_hub client against the local
hub, and a fake engine binary (the real vLLM is scraped by a real Prometheus in tests/e2e). The
slow phases are held open by real means, never by sleeps in the agent: detection reads a FIFO
(the test writes it when it has scraped), the download is throttled by the hub, the engine takes
a few seconds to answer. The millisecond phases (selecting, rendering) show up as durations.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import Agent, base_env, fake_engine_dir, http_json, pid_running, start_agent, wait_until
from tests.support.hf_server import Fault, HubServer
from tests.support.tiny_repo import make_repo

REPO_ID = "aim-test/metrics-tiny"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    # One 25 MB shard: huggingface_hub reports progress per 10 MB chunk, so a throttled download
    # shows a rate before it ends.
    repo = make_repo(tmp_path_factory.mktemp("repo") / "tiny", shards=1, shard_bytes=25_000_000).path
    with HubServer() as server:
        server.add_repo(REPO_ID, repo)
        yield server


def scrape(agent: Agent) -> dict[str, dict[tuple, float]]:
    """One /metrics scrape, parsed by prometheus_client: {sample name: {sorted labels: value}}."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{agent.health_port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    out["_text"] = {(): 0.0, ("text", text): 0.0}
    return out


def phase_of(metrics: dict[str, Any]) -> str:
    on = [dict(k)["aim_boot_phase"] for k, v in metrics["aim_boot_phase"].items() if v == 1]
    assert len(on) == 1, metrics["aim_boot_phase"]
    return on[0]


def one(metrics: dict[str, Any], name: str, **labels: str) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


def _blocking_sysfs(root: Path) -> Path:
    node = root / "sys/class/kfd/kfd/topology/nodes/0"
    node.mkdir(parents=True)
    os.mkfifo(node / "properties")
    return root


def test_metrics_follow_a_real_boot_phase_by_phase(tmp_path, hub):
    sysfs = _blocking_sysfs(tmp_path / "sysfs")
    token = "hf_" + "q" * 32
    hub.add_token(token, grant=[REPO_ID])
    hub.add_fault(Fault(path="*.safetensors", rate=5_000_000))     # 25 MB: about 5 s
    env = base_env({"AIM_MODEL_ID": REPO_ID, "HF_ENDPOINT": hub.url, "HF_TOKEN": token,
                    "AIM_SYSFS_ROOT": str(sysfs), "FAKE_ENGINE_MODE": "serve", "FAKE_ENGINE_DELAY": "3"},
                   path_prefix=[fake_engine_dir(tmp_path / "bin")])
    agent = start_agent(tmp_path / "run", env)
    try:
        # detecting: held by the FIFO until we have scraped it.
        agent.wait_phase("detecting", timeout=30)
        m = scrape(agent)
        assert phase_of(m) == "detecting"
        assert one(m, "aim_boot_phase_duration_seconds", phase="starting") >= 0
        assert "aim_engine_info" not in m                       # nothing planned yet
        assert one(m, "aim_download_done_bytes") == 0
        (sysfs / "sys/class/kfd/kfd/topology/nodes/0/properties").write_text("simd_count 0\n")  # a CPU node

        # downloading: throttled by the hub.
        wait_until(lambda: ((agent.status() or {}).get("download") or {}).get("phase") == "downloading", 60, 0.05,
                   "the download")
        m = scrape(agent)
        assert phase_of(m) == "downloading"
        for closed in ("starting", "detecting", "selecting"):
            assert one(m, "aim_boot_phase_duration_seconds", phase=closed) >= 0
        expected = one(m, "aim_download_expected_bytes")
        assert expected >= 25_000_000 and 0 <= one(m, "aim_download_done_bytes") <= expected
        (labels, value), = m["aim_engine_info"].items()
        info = dict(labels)
        assert value == 1 and info["model"] == REPO_ID and info["engine"] == "vllm" and info["gpu_model"] == "cpu"
        assert info["recipe"] and info["tensor_parallel_size"] == "1" and info["data_parallel_size"] == "1"
        rates = []
        while phase_of(m) == "downloading":
            rates.append(one(m, "aim_download_rate_bytes_per_second"))
            time.sleep(0.3)
            m = scrape(agent)
        assert max(rates) > 0

        # engine_starting: after the exec, served by the probe process alone.
        status = agent.wait_phase("engine_starting", "ready", timeout=60)
        m = scrape(agent)
        if phase_of(m) == "engine_starting":
            assert one(m, "aim_boot_phase_duration_seconds", phase="engine_starting") >= 0
            m = scrape(agent)
        assert one(m, "aim_download_done_bytes") == one(m, "aim_download_expected_bytes") == expected
        assert one(m, "aim_cache_lookups_total", cache="weights", result="miss") == 1
        assert one(m, "aim_cache_lookups_total", cache="weights", result="hit") == 0
        assert one(m, "aim_cache_lock_wait_seconds") >= 0
        assert one(m, "aim_boot_phase_duration_seconds", phase="downloading") > 1
        assert one(m, "aim_boot_phase_duration_seconds", phase="rendering") >= 0

        # ready: the boot time stops growing.
        agent.wait_phase("ready", timeout=60)
        m = scrape(agent)
        assert phase_of(m) == "ready"
        first = one(m, "aim_boot_elapsed_seconds")
        time.sleep(0.3)
        assert one(scrape(agent), "aim_boot_elapsed_seconds") == first
        assert set(m["aim_boot_failures_total"].values()) == {0.0}
        assert token not in str(m["_text"]) and "q" * 32 not in str(m["_text"])

        probe_pid = int(status["probe"]["pid"])
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        wait_until(lambda: not pid_running(probe_pid), 10, 0.1, "the probe process to leave with the engine")
    finally:
        hub.clear_faults()
        agent.kill_tree()


@pytest.mark.parametrize("case", ["unknown_model", "engine_exits"])
def test_a_scrape_during_a_failed_boot_answers_with_the_reason_class(tmp_path, hub, case):
    extra = {"AIM_MODEL_ID": "aim-test/no-such-model"} if case == "unknown_model" else \
        {"AIM_MODEL_ID": REPO_ID, "FAKE_ENGINE_MODE": "exit:4", "FAKE_ENGINE_DELAY": "1"}
    env = base_env({"HF_ENDPOINT": hub.url, "AIM_FAIL_GRACE": "60", **extra},
                   path_prefix=[fake_engine_dir(tmp_path / "bin")])
    agent = start_agent(tmp_path / "run", env)
    try:
        wait_until(lambda: (agent.status() or {}).get("phase") == "failed", 60, 0.1, "the boot to fail")
        m = scrape(agent)
        assert phase_of(m) == "failed"
        failures = {dict(k)["reason"]: v for k, v in m["aim_boot_failures_total"].items()}
        expected = "selection" if case == "unknown_model" else "engine_exited"
        assert failures[expected] == 1 and sum(failures.values()) == 1, failures
        message = agent.status()["error"]["message"]
        assert message not in str(m["_text"]).replace("\\n", "\n")       # no error text as a label
        assert http_json(f"http://127.0.0.1:{agent.health_port}/status")[0] == 200
    finally:
        agent.kill_tree()


def test_a_real_prometheus_sees_a_failed_boot_and_the_boot_failed_alert_fires(tmp_path, hub):
    """Debian's Prometheus scrapes a boot that fails (an unknown model): the chart's
    AimEngineBootFailed expression returns the pod's series, with the reason class."""
    from tests.e2e.harness import free_port
    from tests.support.prometheus import Prometheus, alert_queries

    health = free_port()
    env = base_env({"HF_ENDPOINT": hub.url, "AIM_FAIL_GRACE": "120", "AIM_MODEL_ID": "aim-test/no-such-model",
                    "AIM_HEALTH_PORT": str(health)}, path_prefix=[fake_engine_dir(tmp_path / "bin")])
    with Prometheus(tmp_path / "prometheus", {"aim-agent": f"127.0.0.1:{health}"}) as prometheus:
        agent = start_agent(tmp_path / "run", env)
        try:
            wait_until(lambda: (agent.status() or {}).get("phase") == "failed", 60, 0.1, "the boot to fail")
            expr = alert_queries({"monitoring": {"rules": {"enabled": True}}})["AimEngineBootFailed"]
            series = wait_until(lambda: prometheus.query(expr), 30, 0.5, "the alert expression to return a series")
            assert [(s["metric"]["reason"], s["value"][1]) for s in series] == [("selection", "1")]
            assert prometheus.targets_up() == {"aim-agent": "up"}
            assert prometheus.query('aim_boot_phase{aim_boot_phase="failed"} == 1')
        finally:
            agent.kill_tree()
