"""The renderer's own commands run the real vLLM CPU build across two nodes.

test_two_node_vllm.py pins what the engine does with argv written by hand; here each rank's argv
AND environment come from `engines.render(plan, settings, model, warm, rank)` for one hand-built
plan of a group (CPU target, tensor parallel 2 over 2 nodes, the planner's contract), with
nothing added: `--nnodes/--node-rank/--master-addr/--master-port`, `mp` instead of the CPU
target's `uni`, `--headless` on the worker, VLLM_HOST_IP and GLOO_SOCKET_IFNAME from the
group (both required, docs/multinode.md "Two-node run here"). The leader must answer a chat
completion computed by both nodes. Two nodes are two network namespaces (tests/support/netns.py),
or two loopback addresses where they cannot be made.
"""

from __future__ import annotations

import dataclasses
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
    root = tmp_path_factory.mktemp("rendered-two-node")
    model = build_demo_model(venv / "bin" / "python", root / "demo-model")   # one copy, read by both ranks
    with nodes_for_test() as nodes:
        yield {"venv": venv, "root": root, "model": model, "nodes": nodes}


def test_the_rendered_ranks_serve_a_chat_completion_together(world: dict) -> None:
    nodes, venv, model, root = world["nodes"], world["venv"], world["model"], world["root"]
    port, dist_port = free_port(), free_port()
    leader_launch, worker_launch = (rendered(nodes, r, model, root, port, dist_port, venv) for r in (0, 1))
    assert "--headless" in worker_launch.args and worker_launch.models_url is None
    assert worker_launch.env["GLOO_SOCKET_IFNAME"] == nodes.worker.interface
    assert worker_launch.env["VLLM_HOST_IP"] == nodes.worker.address

    leader = NodeProcess.start(nodes.leader, leader_launch.argv, leader_launch.env, root / "leader.log")
    worker = NodeProcess.start(nodes.worker, worker_launch.argv, worker_launch.env, root / "worker.log")
    try:
        wait_http_ok(leader, port, "/health", [leader, worker])
        code, body = chat(leader, port, "demo")
        assert code == 200, body
        assert body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] >= 1, body
        log = worker.log(60000)
        assert "rank 1 in world size 2" in log, log
        assert f"distributed_init_method=tcp://{nodes.leader.address}:{dist_port}" in log, log
    finally:
        worker.stop()
        leader.stop()
