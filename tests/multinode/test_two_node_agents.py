"""Two `aim-engine serve` agents, leader and worker, each on its own "node" (a network namespace;
tests/support/netns.py), serving the tiny demo Llama with the real vLLM CPU build split across
them — issue 14's "real two-node run here" (docs/multinode.md, "Two-node run here").

Everything is the production path: the local HF-compatible hub listens on the leader's node and
both agents download from it into ONE shared cache directory (the shared RWX volume: one download),
each detects its group from AIM_NODE_COUNT/AIM_NODE_RANK/AIM_LEADER_ADDRESS, finds its own address
and interface, plans the group (TP=2 across the nodes on CPU), joins over the probe port, renders
its rank (`--nnodes 2 --node-rank R`, `--headless` on the worker) and execs vLLM. Then:

1. the leader is ready only with the whole group, its /group lists the worker at its address,
   and the leader's OpenAI API answers a chat completion computed by both nodes;
2. the worker node goes away (every process on it SIGKILLed): the leader's /health/ready turns
   503 with `group_lost` (vLLM itself would not notice: tests/multinode/test_two_node_vllm.py),
   its probe ends the engine, and the leader's boot ends — the container restart that
   LeaderWorkerSet's RecreateGroupOnPodRestart turns into a new group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import base_env, build_demo_model, free_port, pid_running, wait_until
from tests.multinode.cluster import READY_TIMEOUT, NodeProcess, chat, nodes_for_test, wait_http_ok
from tests.support.hf_server import HubServer

pytestmark = [pytest.mark.engine, pytest.mark.slow]

REPO_ID = "aim-test/tiny-llama"
LOST_AND_ENDED = 120    # the leader notices (10 s), waits (5 s), then vLLM shuts down (seconds on a loaded machine)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import engine_venv

    venv = engine_venv("vllm")
    root = tmp_path_factory.mktemp("two-node-agents")
    model = build_demo_model(venv / "bin" / "python", root / "demo-model")
    with nodes_for_test() as nodes:
        # The hub listens on the leader's node, reachable by both at the leader's address.
        hub = nodes.leader.call(HubServer, host="0.0.0.0" if nodes.isolated else nodes.leader.address)
        with hub:
            hub.add_repo(REPO_ID, model)
            hub_url = f"http://{nodes.leader.address}:{hub.url.rsplit(':', 1)[1]}"
            yield {"venv": venv, "root": root, "model": model, "nodes": nodes, "hub": hub, "hub_url": hub_url}


def _agent_env(world: dict, rank: int, ports: dict[str, int]) -> dict[str, str]:
    nodes = world["nodes"]
    node = nodes.leader if rank == 0 else nodes.worker
    env = {"AIM_MODEL_ID": REPO_ID, "HF_ENDPOINT": world["hub_url"], "AIM_CACHE_PATH": str(world["root"] / "cache"),
           "AIM_NODE_COUNT": "2", "AIM_NODE_RANK": str(rank), "AIM_LEADER_ADDRESS": nodes.leader.address,
           "AIM_DIST_PORT": str(ports["dist"]), "AIM_PEER_TIMEOUT": str(READY_TIMEOUT),
           "AIM_PORT": str(ports[f"api{rank}"]), "AIM_HEALTH_PORT": str(ports[f"probe{rank}"])}
    if not nodes.isolated:
        # One host: the worker's own address and the leader's probe port must be told.
        env.update(AIM_NODE_ADDRESS=node.address, AIM_LEADER_HEALTH_PORT=str(ports["probe0"]))
    # The agent from this checkout (a wheel is not needed: `ip netns exec` keeps the environment).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "entrypoint"),
                                         os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return base_env(env, path_prefix=[world["venv"] / "bin"])


def _status(agent: NodeProcess, probe_port: int) -> dict:
    code, body = agent.get(probe_port, "/status", timeout=5)
    return body if code == 200 and isinstance(body, dict) else {}


def _events(agent: NodeProcess) -> list[dict]:
    out = []
    for line in agent.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _kill_node(nodes, worker: NodeProcess, probe_pid: int | None) -> None:
    """The worker node goes away: every process on it dies at once (its namespace's processes; on
    the loopback fallback, the worker's process group and its probe process)."""
    if nodes.isolated:
        listed = subprocess.run(["ip", "netns", "pids", nodes.worker.netns], capture_output=True, text=True).stdout
        pids = {int(p) for p in listed.split()}
    else:
        pids = {probe_pid} if probe_pid else set()
        worker.kill_group(signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.proc.wait(timeout=30)
    wait_until(lambda: not any(pid_running(p) for p in pids), 30, 0.2, "every process of the worker node to die")


def test_two_agents_serve_one_model_and_the_leader_ends_when_its_worker_dies(world: dict) -> None:
    nodes, root, hub = world["nodes"], world["root"], world["hub"]
    same = nodes.isolated     # two hosts can use the same ports; one host cannot
    api, probe = free_port(), free_port()
    ports = {"dist": free_port(), "api0": api, "probe0": probe,
             "api1": api if same else free_port(), "probe1": probe if same else free_port()}
    serve = [sys.executable, "-m", "aim_engine", "serve"]
    leader = NodeProcess.start(nodes.leader, serve, _agent_env(world, 0, ports), root / "leader.log", cwd=root)
    worker = NodeProcess.start(nodes.worker, serve, _agent_env(world, 1, ports), root / "worker.log", cwd=root)
    try:
        wait_http_ok(leader, ports["probe0"], "/health/ready", [leader, worker])

        # 1. The whole group serves, and the leader knows its worker by its node's address.
        status = _status(leader, ports["probe0"])
        assert status["phase"] == "ready", status
        group = status["group"]
        assert group["role"] == "leader" and group["complete"], group
        assert [(m["rank"], m["address"]) for m in group["joined"]] == [(1, nodes.worker.address)], group
        assert "waiting_for_workers" in [p["name"] for p in status["phases"]]
        assert status["plan"]["tensor_parallel"] == 2 and status["plan"]["nodes"] == 2, status["plan"]
        wait_http_ok(worker, ports["probe1"], "/health/ready", [leader, worker], timeout=60)
        worker_status = _status(worker, ports["probe1"])
        worker_probe = int(worker_status["probe"]["pid"])
        assert worker_status["group"]["role"] == "worker" and worker_status["group"]["joined"], worker_status

        code, body = chat(leader, ports["api0"], REPO_ID)
        assert code == 200, body
        assert body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] >= 1, body
        assert "tp2" in body.get("system_fingerprint", ""), body
        # Each rank ran vLLM with its own node's address and interface, rendezvous at the leader.
        assert "rank 1 in world size 2" in worker.log(10**6) and "TP rank 1" in worker.log(10**6)
        assert f"tcp://{nodes.leader.address}:{ports['dist']}" in worker.log(10**6)
        # One shared cache: each file was downloaded once for both nodes.
        for name in ("config.json", "model-00001-of-00002.safetensors", "tokenizer.json"):
            assert hub.file_requests(REPO_ID, name) == 1, (name, hub.stats()["paths"])

        # 2. The worker node goes away.
        _kill_node(nodes, worker, worker_probe)
        broken = wait_until(lambda: (lambda cb: cb[1] if cb[0] == 503 and isinstance(cb[1], dict) else None)(
            leader.get(ports["probe0"], "/health/ready", timeout=5)), LOST_AND_ENDED, 0.5,
            "the leader to stop being ready")
        assert broken["error"]["kind"] == "group_lost", broken
        assert "worker rank 1" in broken["error"]["message"], broken
        # Its probe ends the engine; the leader's boot (PID = the engine) ends.
        leader.proc.wait(timeout=LOST_AND_ENDED)
        events = _events(leader)
        assert any(e.get("event") == "worker lost" and e.get("rank") == 1 for e in events), leader.log()
        ending = [e for e in events if e.get("event") == "ending the engine: the group is broken"]
        assert ending and ending[0]["pid"] == leader.pid, leader.log()
    finally:
        # The probe processes outlive the exec by design (and leave on their own after a grace);
        # none may outlive the test.
        probes = [_status(a, ports[f"probe{r}"]).get("probe", {}).get("pid") for r, a in ((0, leader), (1, worker))]
        worker.stop()
        leader.stop()
        for pid in filter(None, probes):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
