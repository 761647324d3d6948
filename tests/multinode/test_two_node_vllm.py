"""The real vLLM CPU build split across two nodes, without the agent: what the engine itself does.

Two network namespaces joined by a veth pair (tests/support/netns.py) stand for two hosts; the
tiny demo Llama is split by tensor parallelism (TP=2, one rank per node) with vLLM's native
multi-node path: `--nnodes 2 --node-rank R --master-addr LEADER --master-port P` on both,
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

import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.harness import base_env, build_demo_model, free_port
from tests.multinode.cluster import NodeProcess, chat, nodes_for_test, wait_http_ok

pytestmark = [pytest.mark.engine, pytest.mark.slow]


def engine_env(node, venv: Path) -> dict[str, str]:
    """What a rank needs on a CPU node: its own address and interface for vLLM and gloo, the
    CPU backend's small KV cache, and no network (the model is a local directory)."""
    return base_env({
        "VLLM_HOST_IP": node.address, "GLOO_SOCKET_IFNAME": node.interface,
        "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_USE_AOT_COMPILE": "0",
        "HF_HUB_OFFLINE": "1",
    }, path_prefix=[venv / "bin"])


def vllm_argv(model: Path, rank: int, leader: str, dist_port: int, port: int) -> list[str]:
    argv = ["vllm", "serve", str(model), "--served-model-name", "demo", "--dtype", "float32",
            "--enforce-eager", "--max-model-len", "512", "--max-num-seqs", "4",
            "--tensor-parallel-size", "2", "--distributed-executor-backend", "mp",
            "--nnodes", "2", "--node-rank", str(rank), "--master-addr", leader, "--master-port", str(dist_port)]
    return argv + (["--port", str(port)] if rank == 0 else ["--headless"])


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
    leader = NodeProcess.start(nodes.leader, vllm_argv(model, 0, nodes.leader.address, dist_port, port),
                               engine_env(nodes.leader, venv), root / "leader.log")
    worker = NodeProcess.start(nodes.worker, vllm_argv(model, 1, nodes.leader.address, dist_port, port),
                               engine_env(nodes.worker, venv), root / "worker.log")
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
