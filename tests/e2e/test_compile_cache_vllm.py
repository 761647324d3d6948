"""End to end: the compile cache with the real vLLM CPU build, torch.compile ON (not eager).

One test, three rounds (four real vLLM boots, each ~30-90 s on a loaded 2-core machine):
1. two "pods" boot at once on an empty volume: both compile, both come up, exactly one publishes
   the per-model cache, the shared Inductor cache holds no temp file;
2. a third boot on the same volume: `/status` says warm (hit) and the engine wrote no compile
   artefact at all (it skipped compiling), and it serves completions;
3. every Inductor FX-graph entry corrupted: the next boot recompiles (torch logs it), comes up,
   and `/status` shows it wrote artefacts again; no crash, no loop.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, base_env, build_demo_model, start_agent, wait_until

pytestmark = [pytest.mark.engine, pytest.mark.slow]

READY_TIMEOUT = 900
COMPILE_ON = json.dumps({"--enforce-eager": None})    # the CPU target renders --enforce-eager by default


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import engine_venv

    venv = engine_venv("vllm")
    root = tmp_path_factory.mktemp("compile-e2e")
    model = build_demo_model(venv / "bin" / "python", root / "demo-model")
    return {"venv": venv, "root": root, "model": model, "cache": root / "cache"}


def _start(world: dict, name: str) -> Agent:
    env = base_env({"AIM_MODEL_ID": str(world["model"]), "AIM_SERVED_MODEL_NAME": "demo",
                    "AIM_CACHE_PATH": str(world["cache"]), "AIM_ENGINE_ARGS": COMPILE_ON},
                   path_prefix=[world["venv"] / "bin"])
    return start_agent(world["root"] / name, env)


def _settled(agent: Agent) -> dict:
    """/status once the engine is ready and the probe finished its compile-cache step."""
    # A loaded 2-core machine can take long to start Python (/status: once the engine is ready,
    # /health/live is the engine's own /health).
    wait_until(lambda: agent.proc.poll() is not None or agent.probe("/status", timeout=1)[0] == 200,
               120, 0.05, "the probes to answer")
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if agent.proc.poll() is not None:
            raise AssertionError(f"agent/engine exited {agent.proc.returncode}:\n{agent.log()}")
        status = agent.status() or {}
        cc = status.get("compile_cache") or {}
        if status.get("ready") and ("published" in cc or "ready_with" in cc):
            return status
        time.sleep(0.5)
    raise AssertionError(f"not ready after {READY_TIMEOUT}s:\n{agent.log()}")


def _stop(agent: Agent) -> None:
    agent.signal()
    try:
        agent.wait(120)
    finally:
        agent.kill_tree()


def _full_log(agent: Agent) -> str:
    return agent.log_path.read_text(errors="replace")


def _events(agent: Agent) -> list[str]:
    return [json.loads(line).get("event", "") for line in _full_log(agent).splitlines()
            if line.startswith("{")]


def test_cold_pods_at_once_then_a_warm_boot_skips_compiling_then_a_corrupted_entry_recompiles(world):
    # 1. two pods, empty volume, at once
    pods = [_start(world, "pod-a"), _start(world, "pod-b")]
    try:
        first = [_settled(p) for p in pods]
    finally:
        for p in pods:
            _stop(p)
    ccs = [s["compile_cache"] for s in first]
    assert [c["state"] for c in ccs] == ["cold", "cold"] and all(c["hit"] is False for c in ccs)
    assert sorted(bool(c["published"]) for c in ccs) == [False, True], ccs
    model_dir = Path(ccs[0]["model_dir"])
    assert ccs[1]["model_dir"] == str(model_dir) and (model_dir / ".aim-ready.json").is_file()
    inductor = Path(ccs[0]["env"]["TORCHINDUCTOR_CACHE_DIR"])
    entries = [p for p in (inductor / "fxgraph").rglob("*") if p.is_file()]
    assert entries, "the compile wrote no Inductor FX-graph entry"
    assert not [p for p in inductor.rglob(".*.tmp")], "a temp file was left in the shared cache"
    assert all("compile cache cold (miss)" in _events(p) for p in pods)

    # 2. the same volume again: warm, and nothing compiled
    warm = _start(world, "warm")
    try:
        status = _settled(warm)
        cc = status["compile_cache"]
        assert cc["state"] == "warm" and cc["hit"] is True and cc["model_dir"] == str(model_dir)
        assert cc["engine_wrote_files"] == 0, f"the warm boot compiled again:\n{warm.log()}"
        assert "compile cache warm (hit)" in _events(warm)
        code, body = warm.engine("/v1/completions", {"model": "demo", "prompt": "Hello", "max_tokens": 3})
        assert code == 200 and body["choices"], body
    finally:
        _stop(warm)

    # 3. a corrupted entry: recompiled, logged, up again
    for entry in entries:
        entry.write_bytes(b"\x80\x04corrupt")
    again = _start(world, "corrupted")
    try:
        status = _settled(again)
        assert status["compile_cache"]["state"] == "warm"
        assert status["compile_cache"]["engine_wrote_files"] > 0          # it compiled again
        assert "fx graph cache unable to load compiled graph" in _full_log(again), again.log()
    finally:
        _stop(again)
    wait_until(lambda: not list((model_dir.parents[2] / "staging").iterdir()), 60, 0.5, "staging cleaned")
