"""End to end: `aim-engine serve` execs the real `vllm serve` (CPU build) on the tiny demo Llama.

The model is served as a repo by the local HF-compatible hub, so the boot does everything it does
in production: detect (no GPU -> CPU plan), select (a synthesized recipe from config.json),
warm the cache under its lock, render, exec. Two real vLLM boots in total (each costs 20-60 s of
CPU on a 2-core machine), with the assertions grouped:

1. cold cache: probes gate readiness on /v1/models, the OpenAI API answers (completions, chat,
   streaming), /status shows the phases, SIGTERM exits 0 and leaves no process behind; a real
   Prometheus (Debian's) scrapes the agent's /metrics and vLLM's all along, and every query of the
   Helm chart's Grafana dashboard and alert rules returns series from it;
2. warm cache: zero hub requests, and the engine process runs with HF_HUB_OFFLINE=1; liveness
   follows the engine's own /health (a frozen engine is not live); the engine killed after it was
   ready is a failed boot in /status (signal, time), and the probe process leaves after the grace.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest

from tests.e2e.harness import (Agent, base_env, build_demo_model, descendants, environ_of, free_port,
                               pid_running, start_agent, wait_until)
from tests.support.hf_server import HubServer

pytestmark = [pytest.mark.engine, pytest.mark.slow]

REPO_ID = "aim-test/tiny-llama"
READY_TIMEOUT = 600     # a loaded 2-core machine can take minutes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import engine_venv

    venv = engine_venv("vllm")
    root = tmp_path_factory.mktemp("serve-e2e")
    model = build_demo_model(venv / "bin" / "python", root / "demo-model")
    with HubServer() as hub:
        hub.add_repo(REPO_ID, model)
        yield {"venv": venv, "root": root, "hub": hub, "cache": root / "cache"}


def _start(world: dict, name: str, **extra: str) -> Agent:
    env = base_env({"AIM_MODEL_ID": REPO_ID, "HF_ENDPOINT": world["hub"].url,
                    "AIM_CACHE_PATH": str(world["cache"]), **extra}, path_prefix=[world["venv"] / "bin"])
    return start_agent(world["root"] / name, env)


def _wait_ready_watching_the_gate(agent: Agent) -> dict:
    """Poll until ready; every 200 from /health/ready must be backed by /v1/models listing the
    model (the probe checked first, and a started engine does not un-list it)."""
    agent.wait_listening()
    not_ready = 0
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if agent.proc.poll() is not None:
            raise AssertionError(f"agent/engine exited {agent.proc.returncode}:\n{agent.log()}")
        agent.status()
        code, body = agent.probe("/health/ready")
        if code == 200:
            models = agent.engine("/v1/models")[1]
            assert REPO_ID in [m["id"] for m in models["data"]]
            assert not_ready > 0, "never saw the probe say not-ready before the engine was up"
            return body
        assert code == 503 and body["ready"] is False
        not_ready += 1
        time.sleep(0.25)
    raise AssertionError(f"not ready after {READY_TIMEOUT}s:\n{agent.log()}")


def _stream_chat(agent: Agent) -> list[dict]:
    payload = {"model": REPO_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stream": True}
    request = urllib.request.Request(f"http://127.0.0.1:{agent.port}/v1/chat/completions",
                                     data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    chunks, done = [], False
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().strip()
            if not line:
                continue
            assert line.startswith("data: ")
            if line == "data: [DONE]":
                done = True
                break
            chunks.append(json.loads(line[len("data: "):]))
    assert done
    return chunks


def _stop_and_check_nothing_is_left(agent: Agent, status: dict) -> None:
    tree = descendants(agent.pid) | {int(status["probe"]["pid"])}
    agent.signal(signal.SIGTERM)
    assert agent.wait(120) == 0, agent.log()
    wait_until(lambda: not any(pid_running(p) for p in tree), 30, 0.2, f"processes {sorted(tree)} to exit")


def _boot_seen_by_prometheus(prometheus, agent: Agent) -> None:
    """While vLLM loads: the agent's series are scraped after the exec, and the boot-slow alert
    (budget 1 s here) returns the booting pod."""
    from tests.support.prometheus import alert_queries

    wait_until(lambda: agent.proc.poll() is None and prometheus.query(
        'aim_boot_phase{aim_boot_phase="engine_starting"} == 1'), 120, 0.5, "Prometheus to see engine_starting")
    assert prometheus.query(alert_queries()["AimEngineBootSlow"])


def _queries_return_series(prometheus) -> None:
    """Every dashboard query and every engine alert expression returns series from the real
    scrapes of the agent and vLLM (the boot-failed alert: tests/integration/test_metrics_boot.py)."""
    from tests.support.prometheus import alert_queries, dashboard_queries

    try:
        wait_until(lambda: prometheus.targets_up() == {"aim-agent": "up", "vllm": "up"}, 30, 1.0, "both targets up")
    except AssertionError:
        raise AssertionError(f"Prometheus targets: {prometheus.targets_up()}") from None
    queries = {**dashboard_queries(), **{k: v for k, v in alert_queries().items()
                                         if k not in ("AimEngineBootFailed", "AimEngineBootSlow")}}

    def empty() -> list[str]:
        return [name for name, expr in queries.items() if not prometheus.query(expr)]

    try:
        wait_until(lambda: not empty(), 60, 1.0, "every dashboard and alert query to return series")
    except AssertionError:
        raise AssertionError(f"queries without series: {empty()}") from None
    assert prometheus.query('aim_boot_phase{aim_boot_phase="ready"} == 1')
    assert prometheus.query('vllm:num_requests_waiting')
    info = prometheus.query("aim_engine_info")[0]["metric"]
    assert (info["model"], info["engine"], info["gpu_model"]) == (REPO_ID, "vllm", "cpu")
    assert float(prometheus.query("sum(vllm:generation_tokens_total)")[0]["value"][1]) > 0


def _cold_boot(world: dict) -> None:
    from tests.support.prometheus import Prometheus

    port, health = free_port(), free_port()
    prometheus = Prometheus(world["root"] / "prometheus",
                            {"aim-agent": f"127.0.0.1:{health}", "vllm": f"127.0.0.1:{port}"}, interval="2s")
    agent = _start(world, "cold", AIM_PORT=str(port), AIM_HEALTH_PORT=str(health))
    try:
        _boot_seen_by_prometheus(prometheus, agent)
        _wait_ready_watching_the_gate(agent)
        assert agent.probe("/health/startup")[0] == 200
        assert agent.probe("/health/live")[0] == 200

        code, completion = agent.engine("/v1/completions", {"model": REPO_ID, "prompt": "Hello", "max_tokens": 5})
        assert code == 200, completion
        assert completion["object"] == "text_completion" and isinstance(completion["choices"][0]["text"], str)
        assert 0 < completion["usage"]["completion_tokens"] <= 5

        code, chat = agent.engine("/v1/chat/completions", {
            "model": REPO_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5})
        assert code == 200, chat
        assert chat["object"] == "chat.completion"
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert isinstance(chat["choices"][0]["message"]["content"], str)

        chunks = _stream_chat(agent)
        assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")

        status = agent.status()
        assert status["phase"] == "ready" and status["ready"] is True
        assert [p["name"] for p in status["phases"]] == [
            "starting", "detecting", "selecting", "downloading", "rendering", "engine_starting"]
        assert status["hardware"]["devices"] == [] and status["plan"]["target"] == "cpu"
        assert status["download"]["phase"] == "complete" and status["cache"]["already_warm"] is False
        assert status["timings"]["to_ready"] > 0
        assert agent.seen_phases[-1] == "ready" and "engine_starting" in agent.seen_phases

        env = environ_of(agent.pid)          # the engine holds the agent's PID
        assert env["VLLM_TARGET_DEVICE"] == "cpu" and env["HF_HUB_OFFLINE"] == "1"
        _queries_return_series(prometheus)
        _stop_and_check_nothing_is_left(agent, status)
    finally:
        agent.kill_tree()
        prometheus.close()


def _liveness_follows_the_engines_health(agent: Agent) -> None:
    """A frozen engine (SIGSTOP: its port still accepts, /health never answers) is not live."""
    assert agent.probe("/health/live") == (200, {"live": True, "phase": "ready"})
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        code, body = agent.probe("/health/live")
        assert code == 503 and "timed out" in body["engine_health"], body
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    wait_until(lambda: agent.probe("/health/live")[0] == 200, 30, 0.2, "liveness to come back")


def _engine_killed_after_ready(agent: Agent, status: dict) -> None:
    tree = descendants(agent.pid)
    probe_pid = int(status["probe"]["pid"])
    os.kill(agent.pid, signal.SIGKILL)
    assert agent.wait(60) == -signal.SIGKILL
    failed = wait_until(lambda: (s := agent.status()) and s["phase"] == "failed" and s, 20, 0.1, "/status: failed")
    assert failed["engine_exit"]["signal"] == "SIGKILL" and failed["engine_exit"]["code"] is None
    assert failed["engine_exit"]["at"] > failed["ready_at"]
    assert failed["error"]["kind"] == "engine_exited" and "after it was ready" in failed["error"]["message"]
    assert agent.probe("/health/live")[0] == 503 and agent.probe("/health/ready")[0] == 503
    for pid in tree:                          # the engine's own workers are not the probe's business
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not pid_running(probe_pid), 60, 0.2, "the probe process to leave after the grace")


def _warm_boot(world: dict) -> None:
    world["hub"].reset_stats()
    agent = _start(world, "warm", AIM_FAIL_GRACE="15")
    try:
        _wait_ready_watching_the_gate(agent)
        assert world["hub"].stats()["requests"] == 0
        assert environ_of(agent.pid)["HF_HUB_OFFLINE"] == "1"
        status = agent.status()
        assert status["cache"]["already_warm"] is True
        assert status["engine"]["argv"][2].startswith(str(world["cache"]))   # the engine reads the warmed cache
        _liveness_follows_the_engines_health(agent)
        _engine_killed_after_ready(agent, status)
    finally:
        agent.kill_tree()


def test_the_same_boot_twice_cold_then_warm(world):
    """One test (not two) so that pytest-xdist cannot split the boots across workers: the warm
    boot needs the cache the cold one filled."""
    _cold_boot(world)
    _warm_boot(world)
