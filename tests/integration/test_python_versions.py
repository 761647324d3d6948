"""The agent runs on every Python the issue names (3.10–3.12; the ROCm vLLM images ship 3.12):
the wheel, installed with its real dependencies into a fresh venv of each interpreter, validates
the shipped catalog and plans a deployment."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.wheel import build_wheel, venv_with

VERSIONS = ("3.10", "3.12")   # 3.11 is the interpreter of the test suite itself


def interpreter(version: str) -> str:
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
        return found
    candidates = sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}.*/bin/python{version}")))
    if candidates:
        return candidates[-1]
    message = f"no Python {version} interpreter on this machine"
    if os.environ.get("AIM_REQUIRE_ENGINES") == "1":
        pytest.fail(message)
    pytest.skip(reason=message)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheels"))


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_wheel_with_its_dependencies_works_on(version, wheel, tmp_path):
    python = interpreter(version)
    env_dir = tmp_path / "venv"
    venv_with(wheel, env_dir, python)
    aim = env_dir / "bin/aim-engine"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AIM_LOG_FORMAT": "json",
           "AIM_SYSFS_ROOT": str(tmp_path / "no-sysfs")}

    validate = subprocess.run([str(aim), "validate", "--format", "json"], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)
    assert validate.returncode == 0, validate.stdout[-2000:] + validate.stderr[-2000:]

    plan = subprocess.run([str(aim), "plan", "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**env, "AIM_MODEL_ID": "Qwen/Qwen3-32B", "AIM_GPU_MODEL": "MI300X",
                               "AIM_GPU_COUNT": "2"})
    assert plan.returncode == 0, plan.stderr[-2000:]
    data = json.loads(plan.stdout)
    assert data["plan"]["recipe_id"].startswith("qwen3-32b-mi300x-")
    assert data["launch"]["argv"][:2] == ["vllm", "serve"]
