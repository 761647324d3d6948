"""Compile caches through `aim-engine serve` as real processes: the real agent, the real probe
process and a fake engine that compiles like vLLM 0.32 does (an index file under VLLM_CACHE_ROOT
written with a plain open("w") and read back with ast.literal_eval, no guard). Real tmpfs mounts
for the read-only and full volumes. The real vLLM CPU build runs in tests/e2e/test_compile_cache_vllm.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, base_env, fake_engine_prefix, start_agent, wait_until
from tests.support.tiny_repo import make_repo

pytestmark = pytest.mark.slow

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not Path("/bin/mount").exists(),
                                reason="mounting a tmpfs (real full/read-only filesystems) needs root")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("model") / "tiny", shards=1, shard_bytes=100_000).path


@pytest.fixture
def engine_bin(tmp_path: Path) -> Path:
    return fake_engine_prefix(tmp_path / "engine-env")


def _start(tmp: Path, name: str, model: Path, cache: Path, engine_bin: Path, **extra: str) -> tuple[Agent, Path]:
    outcomes = tmp / f"{name}.outcome"
    env = base_env({"AIM_MODEL_ID": str(model), "AIM_CACHE_PATH": str(cache), "AIM_SERVED_MODEL_NAME": "tiny",
                    "FAKE_ENGINE_MODE": "serve", "FAKE_ENGINE_COMPILE": str(outcomes), "AIM_FAIL_GRACE": "0",
                    **extra}, path_prefix=[engine_bin])
    return start_agent(tmp / name, env), outcomes


def _ready(agent: Agent) -> dict:
    # A loaded 2-core machine can take long to start Python; an agent that exited says why at once.
    # (/status, not /health/live: once the engine is ready, liveness is the engine's own /health,
    # which the fake engine does not serve.)
    wait_until(lambda: agent.proc.poll() is not None or agent.probe("/status", timeout=1)[0] == 200,
               120, 0.05, "the probes to answer")
    assert agent.proc.poll() is None, agent.log()
    wait_until(lambda: agent.probe("/health/ready")[0] == 200 or agent.proc.poll() is not None, 60, 0.1,
               "ready")
    assert agent.proc.poll() is None, agent.log()
    return agent.status()


def _stop(agent: Agent) -> None:
    agent.signal()
    agent.wait(30)
    agent.kill_tree()


def _published(status: dict) -> dict:
    """The /status compile_cache once the probe has published (it does so just after ready)."""
    return status["compile_cache"]


def _full_log(agent: Agent) -> str:
    return agent.log_path.read_text(errors="replace")


def _events(agent: Agent) -> list[dict]:
    return [json.loads(line) for line in _full_log(agent).splitlines()
            if line.startswith("{")]


def test_two_cold_boots_at_once_both_come_up_and_one_complete_cache_is_published(tmp_path, model, engine_bin):
    cache = tmp_path / "cache"
    pods = [_start(tmp_path, f"pod{i}", model, cache, engine_bin, FAKE_ENGINE_COMPILE_S="1.5") for i in (0, 1)]
    try:
        statuses = [_ready(agent) for agent, _ in pods]
        assert [s["compile_cache"]["state"] for s in statuses] == ["cold", "cold"]
        for agent, outcomes in pods:
            assert outcomes.read_text().split() == ["compiled"]
        final = [wait_until(lambda a=a: "published" in (a.status() or {}).get("compile_cache", {}) and a.status(),
                            30, 0.1, "publish") for a, _ in pods]
        results = sorted(bool(f["compile_cache"]["published"]) for f in final)
        assert results == [False, True]              # exactly one publisher, the other dropped its copy
        model_dir = Path(statuses[0]["compile_cache"]["model_dir"])
        assert statuses[1]["compile_cache"]["model_dir"] == str(model_dir)
        assert (model_dir / ".aim-ready.json").is_file()
        index = model_dir / "torch_compile_cache" / "vllm_compile_cache.py"
        assert index.read_text().startswith("{'graph': ")
        assert sorted(p.name for p in model_dir.parent.iterdir()) == [model_dir.name]   # no temp copies
        assert any(e.get("event") == "compile cache cold (miss)" for e in _events(pods[0][0]))
    finally:
        for agent, _ in pods:
            _stop(agent)
    staging = model_dir.parents[2] / "staging"
    wait_until(lambda: not list(staging.iterdir()), 30, 0.1, "staging directories removed at engine exit")

    record = tmp_path / "warm-engine.json"
    warm, outcomes = _start(tmp_path, "warm", model, cache, engine_bin, FAKE_ENGINE_RECORD=str(record))
    try:
        status = _ready(warm)
        assert status["compile_cache"]["state"] == "warm" and status["compile_cache"]["hit"] is True
        assert outcomes.read_text().split() == ["hit"]           # the engine skipped compiling
        assert json.loads(record.read_text())["env"]["VLLM_CACHE_ROOT"] == str(model_dir)
        assert any(e.get("event") == "compile cache warm (hit)" for e in _events(warm))
        attempt = Path(status["compile_cache"]["attempt"])
        wait_until(lambda: not attempt.exists(), 30, 0.1, "the attempt record removed at ready")
    finally:
        _stop(warm)


def _publish_once(tmp_path: Path, model: Path, cache: Path, engine_bin: Path) -> Path:
    agent, _ = _start(tmp_path, "first", model, cache, engine_bin)
    try:
        _ready(agent)
        status = wait_until(lambda: "published" in (agent.status() or {}).get("compile_cache", {}) and agent.status(),
                            30, 0.1, "publish")
        assert status["compile_cache"]["published"] is True
        return Path(status["compile_cache"]["model_dir"])
    finally:
        _stop(agent)


def test_a_corrupted_entry_costs_one_recompile_never_a_crash_loop(tmp_path, model, engine_bin):
    cache = tmp_path / "cache"
    model_dir = _publish_once(tmp_path, model, cache, engine_bin)
    index = model_dir / "torch_compile_cache" / "vllm_compile_cache.py"
    index.write_text("{'graph': ")                          # half-written, as a killed writer leaves it

    crashed, _ = _start(tmp_path, "crash", model, cache, engine_bin)
    assert crashed.wait(60) != 0                            # the engine dies on the entry, like vLLM
    crashed.kill_tree()
    # In a container the probe dies with the engine (PID 1), so the next boot must find out by
    # itself: the warm boot's attempt record is left, its process is gone.
    wait_until(lambda: not model_dir.exists() or list((model_dir.parents[2] / "attempts").glob("*.json")),
               30, 0.1, "the quarantine or the attempt record")

    again, outcomes = _start(tmp_path, "again", model, cache, engine_bin)
    try:
        status = _ready(again)
        assert status["compile_cache"]["state"] == "cold"
        assert outcomes.read_text().split() == ["compiled"]
    finally:
        _stop(again)


def test_the_next_boot_quarantines_a_cache_whose_boot_died_when_the_probe_could_not(tmp_path, model, engine_bin):
    cache = tmp_path / "cache"
    model_dir = _publish_once(tmp_path, model, cache, engine_bin)
    (model_dir / "torch_compile_cache" / "vllm_compile_cache.py").write_text("{'graph': ")
    gone = subprocess.Popen(["true"])
    gone.wait()
    attempts = model_dir.parents[2] / "attempts"
    attempts.mkdir(parents=True, exist_ok=True)
    import socket

    (attempts / f"{model_dir.parent.name}--{model_dir.name}--killed.json").write_text(
        json.dumps({"host": socket.gethostname(), "pid": gone.pid, "start": 1}))

    agent, outcomes = _start(tmp_path, "after-kill", model, cache, engine_bin)
    try:
        status = _ready(agent)
        assert status["compile_cache"]["state"] == "cold" and "quarantined" in status["compile_cache"]["reason"]
        assert outcomes.read_text().split() == ["compiled"]
        warning = [e for e in _events(agent) if e.get("event", "").startswith("compile cache quarantined")]
        assert warning and warning[0]["level"] == "warning"
    finally:
        _stop(agent)


def test_the_users_cache_variable_wins(tmp_path, model, engine_bin):
    mine = tmp_path / "mine"
    agent, outcomes = _start(tmp_path, "user", model, tmp_path / "cache", engine_bin, VLLM_CACHE_ROOT=str(mine),
                             TRITON_CACHE_DIR=str(tmp_path / "my-triton"))
    try:
        status = _ready(agent)
        cc = status["compile_cache"]
        assert cc["state"] == "user" and cc["user_set"] == ["TRITON_CACHE_DIR", "VLLM_CACHE_ROOT"]
        assert "VLLM_CACHE_ROOT" not in cc["env"] and (mine / "torch_compile_cache").is_dir()
    finally:
        _stop(agent)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


@needs_root
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_read_only_or_full_volume_boots_without_compile_caching_and_says_so(tmp_path, model, engine_bin, fault):
    mnt = tmp_path / "volume"
    _mount_tmpfs(mnt, "2m")
    try:
        if fault == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        else:
            filler = mnt / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        agent, outcomes = _start(tmp_path, fault, model, mnt, engine_bin, HOME=str(tmp_path / "home"))
        try:
            status = _ready(agent)                         # the boot still works
            cc = status["compile_cache"]
            assert cc["state"] == "off" and cc["env"] == {}
            expected = "read-only" if fault == "read-only" else "free on the cache volume"
            assert expected in cc["reason"]
            warnings = [e for e in _events(agent) if e.get("event", "").startswith("compile cache off")]
            assert warnings and warnings[0]["level"] == "warning" and expected in warnings[0]["reason"]
            assert outcomes.read_text().split() == ["compiled"]   # compiled where the engine defaults to
        finally:
            _stop(agent)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _cli(cache: Path, *args: str) -> subprocess.CompletedProcess:
    import sys

    env = base_env({"AIM_CACHE_PATH": str(cache)})
    return subprocess.run([sys.executable, "-m", "aim_engine", "cache", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def _fake_published(cache: Path, key: str, folder: str, cfg: str = "c0ffee", size: int = 1000) -> Path:
    model_dir = cache / "compile" / key / "models" / folder / cfg
    model_dir.mkdir(parents=True)
    (model_dir / "artefact").write_bytes(b"x" * size)
    (model_dir / ".aim-ready.json").write_text(json.dumps({"published_at": 1.0}))
    shared = cache / "compile" / key / "shared" / "triton"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "kernel").write_bytes(b"k" * 500)
    return model_dir


def test_cache_list_shows_and_cache_remove_removes_compile_caches(tmp_path):
    cache = tmp_path / "cache"
    old = _fake_published(cache, "vllm-0.32.0_torch-2.13.0+cpu_cpu-avx512", "models--org--a")
    new_a = _fake_published(cache, "vllm-0.33.0_torch-2.13.0+cpu_cpu-avx512", "models--org--a")
    new_b = _fake_published(cache, "vllm-0.33.0_torch-2.13.0+cpu_cpu-avx512", "models--org--b", size=3_000_000)
    outside = tmp_path / "outside"
    outside.mkdir()
    (cache / "compile" / "vllm-0.33.0_torch-2.13.0+cpu_cpu-avx512" / "models" / "models--org--c").symlink_to(outside)

    listed = _cli(cache, "list").stdout
    assert "models--org--b" in listed and "3.0 MB" in listed and "published" in listed
    data = json.loads(_cli(cache, "list", "--compile", "--json").stdout)
    assert {k["key"] for k in data} == {old.parents[2].name, new_a.parents[2].name}

    assert _cli(cache, "remove", "--compile", "org/a").returncode == 0       # one model, every build
    assert not old.exists() and not new_a.exists() and new_b.is_dir()
    missing = _cli(cache, "remove", "--compile", "org/a")
    assert missing.returncode != 0 and "no compile cache of org/a" in missing.stderr

    assert _cli(cache, "remove", "--compile", "--engine", "vllm-0.32.0").returncode == 0   # one engine build
    assert not old.parents[2].exists() and new_b.is_dir()

    removed = _cli(cache, "remove", "--compile", "--all")
    assert removed.returncode == 0 and "freed" in removed.stdout
    assert list((cache / "compile").iterdir()) == [] and outside.is_dir()      # a symlink is never followed
    bad = _cli(cache, "remove", "--all")
    assert bad.returncode != 0 and "--compile" in bad.stderr


def test_warm_only_boots_until_ready_publishes_and_exits_zero(tmp_path, model, engine_bin):
    cache = tmp_path / "cache"
    outcomes = tmp_path / "job.outcome"
    env = base_env({"AIM_MODEL_ID": str(model), "AIM_CACHE_PATH": str(cache), "AIM_SERVED_MODEL_NAME": "tiny",
                    "FAKE_ENGINE_MODE": "serve", "FAKE_ENGINE_COMPILE": str(outcomes), "FAKE_ENGINE_DELAY": "1"},
                   path_prefix=[engine_bin])
    job = start_agent(tmp_path / "job", env, args=["--warm-only"])
    try:
        assert job.wait(120) == 0, job.log()
    finally:
        job.kill_tree()
    assert outcomes.read_text().split() == ["compiled"]
    published = list((cache / "compile").glob("*/models/*/*/.aim-ready.json"))
    assert len(published) == 1
    events = _events(job)
    assert any(e.get("event") == "warm-only: engine was ready; stopped it" and e.get("published") is True
               for e in events), job.log()

    agent, served = _start(tmp_path, "after-job", model, cache, engine_bin)
    try:
        assert _ready(agent)["compile_cache"]["state"] == "warm"
        assert served.read_text().split() == ["hit"]
    finally:
        _stop(agent)


def test_warm_only_fails_when_the_engine_never_gets_ready(tmp_path, model, engine_bin):
    env = base_env({"AIM_MODEL_ID": str(model), "AIM_CACHE_PATH": str(tmp_path / "cache"),
                    "FAKE_ENGINE_MODE": "exit:3", "AIM_FAIL_GRACE": "0"}, path_prefix=[engine_bin])
    job = start_agent(tmp_path / "job", env, args=["--warm-only"])
    try:
        assert job.wait(120) != 0
        assert "exited with code 3 before it was ready" in _full_log(job)
    finally:
        job.kill_tree()
