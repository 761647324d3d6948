"""The real vLLM CPU build split across two nodes by the renderer's own commands, without the
agent's boot: what the engine itself does.

Two network namespaces joined by a veth pair (tests/support/netns.py) stand for two hosts; the
tiny demo Llama is split by tensor parallelism (TP=2, one rank per node) with vLLM's native
multi-node path. Each rank's argv AND environment come from `engines.render(plan, settings, model,
warm, rank)` for one hand-built group plan, with nothing added: `--nnodes 2 --node-rank R
--master-addr LEADER --master-port P` on both, `mp` instead of the CPU target's `uni`,
`--headless` on the worker, gloo over the veth. This pins the engine facts docs/multinode.md and
the agent's group coordination rely on:

- the pair serves a chat completion from the leader, and the traffic crosses the "network" (the
  worker's own loopback does not reach the leader);
- both VLLM_HOST_IP and GLOO_SOCKET_IFNAME are needed (without the interface gloo advertises the
  hostname's address, 127.0.0.1 here, and the group never forms — the findings in
  docs/multinode.md; not re-run here, it costs a boot);
- vLLM itself does not notice a dead worker node while idle: the leader's /health stays 200, only
  the next request fails (gloo: "Connection closed/reset by peer") and then the leader's engine exits. So the
  agent's heartbeat, not vLLM, must turn the leader not ready.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import time
from pathlib import Path

import pytest

from aim_engine.engines import render
from aim_engine.hardware.group import Group
from aim_engine.settings import Settings
from tests.e2e.harness import base_env, build_demo_model, free_port
from tests.multinode.cluster import NodeProcess, chat, nodes_for_test, wait_http_ok
from tests.support.engine_plans import plan

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def rendered(nodes, rank: int, model: Path, root: Path, port: int, dist_port: int, venv: Path):
    """Rank `rank`'s argv and environment exactly as the agent renders them for one group plan (CPU
    target, tensor parallel 2 over 2 nodes, the planner's contract), with nothing added by hand."""
    node = nodes.leader if rank == 0 else nodes.worker
    group = Group(nodes=2, rank=rank, leader_address=nodes.leader.address, dist_port=dist_port, source="AIM_*",
                  node_address=node.address, interface=node.interface)
    one_node = plan({"--max-context-len": "512", "--max-batch-size": "4"}, target="cpu", hardware="CPU", gpus=2,
                    served_model_name="demo")
    p = dataclasses.replace(one_node, nodes=2, pipeline_parallel=1, group=group)
    settings = Settings.from_env({"AIM_PORT": str(port), "AIM_CACHE_PATH": str(root / "cache")})
    return render(p, settings, str(model), True, rank, base_env=base_env(path_prefix=[venv / "bin"]))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import engine_venv

    venv = engine_venv("vllm")
    root = tmp_path_factory.mktemp("two-node-vllm")
    model = build_demo_model(venv / "bin" / "python", root / "demo-model")   # one copy, read by both ranks
    with nodes_for_test() as nodes:
        yield {"venv": venv, "root": root, "model": model, "nodes": nodes}


def test_tensor_parallel_across_two_nodes_then_a_dead_worker(world: dict) -> None:
    nodes, venv, model, root = world["nodes"], world["venv"], world["model"], world["root"]
    port, dist_port = free_port(), free_port()
    leader_launch, worker_launch = (rendered(nodes, r, model, root, port, dist_port, venv) for r in (0, 1))
    # The forms docs/multinode.md names: --headless on the worker, no API there, and both
    # VLLM_HOST_IP and GLOO_SOCKET_IFNAME set to each node's own address and interface.
    assert "--headless" in worker_launch.args and worker_launch.models_url is None
    for launch, node in ((leader_launch, nodes.leader), (worker_launch, nodes.worker)):
        assert launch.env["GLOO_SOCKET_IFNAME"] == node.interface and launch.env["VLLM_HOST_IP"] == node.address
    leader = NodeProcess.start(nodes.leader, leader_launch.argv, leader_launch.env, root / "leader.log")
    worker = NodeProcess.start(nodes.worker, worker_launch.argv, worker_launch.env, root / "worker.log")
    try:
        wait_http_ok(leader, port, "/health", [leader, worker])

        code, body = chat(leader, port, "demo")
        assert code == 200, body
        assert body["choices"][0]["message"]["content"], body
        assert body["usage"]["completion_tokens"] >= 1
        assert "tp2" in body.get("system_fingerprint", ""), body   # the served model is the TP=2 one
        # The worker really is rank 1 of the TP group, and it joined over the veth.
        assert "rank 1 in world size 2" in worker.log(60000) and "TP rank 1" in worker.log(60000), worker.log()
        assert f"distributed_init_method=tcp://{nodes.leader.address}:{dist_port}" in worker.log(60000)
        if nodes.isolated:
            # Two hosts, not one: the worker's own loopback has no leader on it; its address does.
            assert worker.get(port, "/health")[0] == 0
            assert worker.get(port, "/health", host=nodes.leader.address)[0] == 200

        worker.kill_group(signal.SIGKILL)
        worker.proc.wait(timeout=30)
        # vLLM has no heartbeat between nodes: idle, the leader does not notice.
        time.sleep(5)
        assert leader.get(port, "/health")[0] == 200, "vLLM noticed the dead worker by itself (update docs/multinode.md)"
        code, body = chat(leader, port, "demo")
        assert code == 500, body
        assert leader.proc.wait(timeout=120) is not None
        # gloo names the dead peer: "Connection closed by peer [ADDR]:PORT" or "Read error
        # [ADDR]:PORT: Connection reset by peer", depending on how the socket went down.
        log = leader.log(10**6)
        assert re.search(r"Connection (closed|reset) by peer", log) and f"[{nodes.worker.address}]:" in log, log
        assert "EngineDeadError" in log
    finally:
        worker.stop()
        leader.stop()
