"""`aim-engine detect` and `plan` with the real engine environments on PATH, or none: the
inventory as the CLI shows it (real subprocesses, the real vLLM CPU and SGLang installs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEM = "/usr/bin:/bin"


def aim(clean_env: dict[str, str], path: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(clean_env, PATH=path, AIM_LOG_LEVEL="warning", **extra)
    return subprocess.run([sys.executable, "-m", "aim_engine", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _path(*venvs: Path) -> str:
    return os.pathsep.join([*(str(v / "bin") for v in venvs), SYSTEM])


@pytest.mark.engine
def test_detect_lists_the_real_engines(clean_env, vllm_venv, sglang_venv):
    out = json.loads(aim(clean_env, _path(vllm_venv), "detect", "--json", AIM_IMAGE_FLAVOUR="cpu").stdout)
    engines = out["engines"]
    assert engines["flavour"] == "cpu" and engines["missing"] == ["sglang"]
    assert engines["installed"]["vllm"]["version"] == "0.32.0"
    assert engines["installed"]["vllm"]["executable"] == str(vllm_venv / "bin" / "vllm")
    text = aim(clean_env, _path(sglang_venv), "detect").stdout
    assert "sglang  0.5.23" in text and str(sglang_venv / "bin" / "python3") in text
    assert "vllm    -       not installed here" in text


def test_detect_on_a_machine_without_engines(clean_env):
    proc = aim(clean_env, SYSTEM, "detect", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engines"]["installed"] == {}


@pytest.mark.engine
def test_plan_shows_the_chosen_engine_and_its_version(clean_env, vllm_venv, sglang_venv):
    model = dict(AIM_MODEL_ID="Qwen/Qwen3-8B", AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="1")
    out = json.loads(aim(clean_env, _path(sglang_venv), "plan", "--json", **model).stdout)
    assert out["plan"]["engine"] == "sglang" and out["plan"]["engine_version"] == "0.5.23"
    assert out["launch"]["argv"][0] == str(sglang_venv / "bin" / "python3")
    assert any(r["engine"] == "vllm" and "vLLM is not installed here" in r["reason"] for r in out["plan"]["rejected"])
    text = aim(clean_env, _path(vllm_venv), "plan", **model).stdout
    assert "engine:    vllm 0.32.0," in text


def test_plan_on_a_laptop_plans_and_says_not_installed(clean_env):
    proc = aim(clean_env, SYSTEM, "plan", AIM_MODEL_ID="Qwen/Qwen3-8B", AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="1")
    assert proc.returncode == 0, proc.stderr
    assert "engine:    vllm (not installed here)," in proc.stdout
    assert "engine vllm is not installed here" in proc.stdout


@pytest.mark.engine
def test_plan_with_aim_engine_sglang_in_a_vllm_image_fails_naming_the_flavour(clean_env, vllm_venv):
    proc = aim(clean_env, _path(vllm_venv), "plan", AIM_MODEL_ID="Qwen/Qwen3-8B", AIM_GPU_MODEL="MI300X",
               AIM_ENGINE="sglang", AIM_IMAGE_FLAVOUR="rocm-vllm")
    assert proc.returncode == 1
    assert "SGLang is not installed in this image (flavour rocm-vllm)" in proc.stderr
    assert "use the rocm-sglang image flavour" in proc.stderr and "Traceback" not in proc.stderr
