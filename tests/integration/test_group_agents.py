"""Two real `aim-engine serve` agents forming a group on loopback (docs/multinode.md).

Real processes, real probe processes on real ports, the real join protocol and heartbeats over
HTTP; only the engine is the fake `vllm` of tests/e2e/harness.py (the real two-node vLLM run is
tests/multinode/, lane twonode). The leader and the worker run on 127.0.0.1 with their own ports:
the worker finds the leader's probe through AIM_LEADER_HEALTH_PORT.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from aim_engine.probes import group as protocol
from tests.e2e.harness import Agent, base_env, free_port, pid_running, start_agent, wait_until
from tests.support.tiny_repo import make_repo

LOST = protocol.LOST_AFTER_S + protocol.END_AFTER_S


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("models")
    # The third has 3 layers: a group of 3 CPU nodes can split it (3 pipeline stages); the tiny
    # repo's 2 heads and 2 layers split over neither 3 TP ranks nor 3 stages, which the planner refuses.
    three = make_repo(base / "three", shards=1, shard_bytes=10_000).path
    config = json.loads((three / "config.json").read_text())
    (three / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}, indent=2))
    return (make_repo(base / "tiny", shards=1, shard_bytes=10_000).path,
            make_repo(base / "other", shards=1, shard_bytes=10_000).path, three)


def _env(fake_bin: Path, model: Path, rank: int, leader_probe: int | None = None, **extra: str) -> dict[str, str]:
    env = {"AIM_MODEL_ID": str(model), "AIM_SERVED_MODEL_NAME": "tiny", "AIM_NODE_COUNT": "2",
           "AIM_NODE_RANK": str(rank), "AIM_LEADER_ADDRESS": "127.0.0.1", "AIM_PEER_TIMEOUT": "120",
           "AIM_FAIL_GRACE": "2", "FAKE_ENGINE_MODE": "serve", "AIM_DIST_PORT": "29511", **extra}
    if leader_probe is not None:
        env["AIM_LEADER_HEALTH_PORT"] = str(leader_probe)
    return base_env(env, path_prefix=[fake_bin])


def _events(agent: Agent) -> list[dict]:
    return [json.loads(line) for line in agent.log_path.read_text().splitlines() if line.startswith("{")]


def _waiting(agent: Agent, step: str | None = None) -> dict:
    """The agent's /status once its boot has written the wait it is in (the phase comes first)."""
    def check():
        status = agent.status() or {}
        waiting = (status.get("group") or {}).get("waiting") or {}
        return status if waiting and (step is None or waiting.get("step") == step) else None

    return wait_until(check, 30, 0.1, f"the wait's details{f' (step {step})' if step else ''}")


def _leader(tmp_path: Path, fake_bin: Path, model: Path, agents: list[Agent], **extra: str) -> Agent:
    leader = start_agent(tmp_path / "leader", _env(fake_bin, model, 0, **extra))
    agents.append(leader)
    return leader


def _worker(tmp_path: Path, fake_bin: Path, model: Path, leader: Agent | int, agents: list[Agent],
            rank: int = 1, **extra: str) -> Agent:
    port = leader.health_port if isinstance(leader, Agent) else leader
    worker = start_agent(tmp_path / f"worker{rank}", _env(fake_bin, model, rank, port, **extra))
    agents.append(worker)
    return worker


def test_the_leader_waits_for_its_worker_and_is_ready_only_with_it(tmp_path, fake_bin, models, agents):
    leader = _leader(tmp_path, fake_bin, models[0], agents)
    leader.wait_phase("waiting_for_workers", timeout=60)
    waiting = _waiting(leader)
    group = waiting["group"]
    assert (group["role"], group["nodes"], group["waiting"]["for"], group["missing"]) == ("leader", 2, "workers", [1])
    assert group["waiting"]["timeout_s"] == 120 and group["waiting"]["elapsed_s"] >= 0 and group["fingerprint"]
    assert leader.probe("/health/ready")[0] == 503 and leader.probe("/health/joined")[0] == 503

    worker = _worker(tmp_path, fake_bin, models[0], leader, agents)
    ready = leader.wait_phase("ready", timeout=60)
    assert [m["rank"] for m in ready["group"]["joined"]] == [1] and ready["group"]["complete"]
    code, body = leader.probe("/health/ready")
    assert (code, body["model"]) == (200, "tiny")
    worker_status = worker.wait_phase("ready", timeout=30)
    assert worker_status["group"]["joined"] and worker_status["group"]["role"] == "worker"
    assert worker.probe("/health/joined")[0] == 200 and worker.probe("/health/live")[0] == 200
    assert worker.probe("/health/startup")[0] == 200
    names = [p["name"] for p in worker_status["phases"]]
    assert names.index("joining") < names.index("rendering") < names.index("waiting_for_leader") \
        < names.index("engine_starting")
    assert "waiting_for_workers" in [p["name"] for p in ready["phases"]]

    # The worker dies: its heartbeats stop, the leader stops being ready, then ends its engine.
    worker_probe = worker.status()["probe"]["pid"]
    worker.signal(signal.SIGKILL)
    worker.wait(30)
    wait_until(lambda: not pid_running(worker_probe), 10, 0.1, "the worker's probe to follow its engine")
    broken = wait_until(lambda: (lambda c_b: c_b[0] == 503 and c_b[1])(leader.probe("/health/ready")),
                        LOST + 10, 0.2, "the leader to stop being ready")
    assert broken["error"]["kind"] == "group_lost" and "worker rank 1" in broken["error"]["message"]
    assert leader.wait(LOST + 30) == 0       # the fake engine exits 0 on the probe's SIGTERM
    events = _events(leader)
    lost = [e for e in events if e.get("event") == "worker lost"]
    ending = [e for e in events if e.get("event") == "ending the engine: the group is broken"]
    assert lost and lost[0]["rank"] == 1 and ending and ending[0]["pid"] == leader.pid


def test_a_worker_whose_leader_never_comes_ends_naming_address_port_and_timeout(tmp_path, fake_bin, models, agents):
    nobody = free_port()
    worker = _worker(tmp_path, fake_bin, models[0], nobody, agents, AIM_PEER_TIMEOUT="4")
    joining = worker.wait_phase("joining", timeout=60)
    waiting = wait_until(lambda: (worker.status() or {}).get("group", {}).get("waiting", {}).get("last_error"),
                         30, 0.2, "a join attempt")
    assert waiting
    status = worker.status()
    assert status["group"]["waiting"]["for"] == "leader" and status["group"]["waiting"]["timeout_s"] == 4
    assert f"127.0.0.1:{nobody}" in status["group"]["waiting"]["leader"]
    assert joining["group"]["role"] == "worker"
    assert worker.wait(60) == 1
    text = worker.log_path.read_text()
    assert "the leader never came" in text and f"http://127.0.0.1:{nobody}" in text and "within 4 s (AIM_PEER_TIMEOUT)" in text


@pytest.mark.parametrize("case", ["other model", "other size", "same rank"])
def test_a_worker_of_another_group_is_refused_on_both_sides(tmp_path, fake_bin, models, agents, case):
    nodes = {"AIM_NODE_COUNT": "3"} if case == "same rank" else {}
    model = models[2] if case in ("same rank", "other size") else models[0]   # splits over 3 nodes too
    leader = _leader(tmp_path, fake_bin, model, agents, **nodes)
    leader.wait_phase("waiting_for_workers", timeout=60)
    if case == "same rank":
        first = _worker(tmp_path, fake_bin, model, leader, agents, **nodes)
        wait_until(lambda: [m["rank"] for m in leader.status()["group"]["joined"]] == [1], 60, 0.2, "rank 1 joined")
        worker = start_agent(tmp_path / "second", _env(fake_bin, model, 1, leader.health_port,
                                                         AIM_NODE_ADDRESS="127.0.0.2", **nodes))
        agents.append(worker)
        said = "rank 1 has already joined from 127.0.0.1"
        assert first.status()["group"]["joined"]
    elif case == "other model":
        worker = _worker(tmp_path, fake_bin, models[1], leader, agents)
        said = "the worker's plan differs from the leader's"
    else:
        worker = _worker(tmp_path, fake_bin, model, leader, agents, rank=2, AIM_NODE_COUNT="3")
        said = "the worker plans a group of 3 nodes, the leader 2"
    assert worker.wait(60) == 1
    text = worker.log_path.read_text()
    assert "refused this worker" in text and said in text
    if case == "other model":
        assert str(models[1]) in text and str(models[0]) in text      # the differing facts, both sides' values
    refused = leader.status()["group"]["rejected"]
    assert refused and said in refused[-1]["error"]
    assert any(e.get("event") == "worker join refused" for e in _events(leader))
    assert leader.status()["phase"] == "waiting_for_workers"     # the leader keeps waiting for its real worker


def test_a_worker_whose_leader_dies_ends_its_engine(tmp_path, fake_bin, models, agents):
    leader = _leader(tmp_path, fake_bin, models[0], agents)
    worker = _worker(tmp_path, fake_bin, models[0], leader, agents)
    leader.wait_phase("ready", timeout=90)
    worker.wait_phase("ready", timeout=30)
    leader.signal(signal.SIGKILL)
    leader.wait(30)
    broken = wait_until(lambda: (lambda c_b: c_b[0] == 503 and c_b[1])(worker.probe("/health/ready")),
                        LOST + 10, 0.2, "the worker to stop being ready")
    assert broken["error"]["kind"] == "group_lost"
    assert worker.wait(LOST + 30) == 0
    assert any(e.get("event") == "leader lost: this worker ends" for e in _events(worker))


def test_a_waiting_worker_whose_leader_dies_ends_before_its_exec(tmp_path, fake_bin, models, agents):
    """Rank 1 has joined and waits for the go (the leader still misses rank 2); the leader dies:
    the worker's probe loses it and stops the boot, which ends as stopped (143), never exec'ing."""
    three = {"AIM_NODE_COUNT": "3"}
    leader = _leader(tmp_path, fake_bin, models[2], agents, **three)    # the model that splits over 3 nodes
    worker = _worker(tmp_path, fake_bin, models[2], leader, agents, **three)
    worker.wait_phase("waiting_for_leader", timeout=60)
    waiting = _waiting(worker, "go")
    assert waiting["group"]["joined"]
    wait_until(lambda: (leader.status() or {}).get("group", {}).get("ready_to_start") == [1], 30, 0.2,
               "the leader to see rank 1 ready")
    assert leader.status()["group"]["missing"] == [2] and leader.probe("/health/ready")[0] == 503
    leader.signal(signal.SIGKILL)
    leader.wait(30)
    assert worker.wait(LOST + 30) == 128 + signal.SIGTERM
    events = _events(worker)
    assert any(e.get("event") == "leader lost: this worker ends" for e in events)
    assert not any(e.get("event") == "exec engine" for e in events)
