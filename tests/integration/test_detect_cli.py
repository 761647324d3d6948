"""`aim-engine detect [--json]` through real subprocesses, on generated sysfs trees.

Every run puts a fake `amdsmi` first on PYTHONPATH (the working one, or the one that fails at
import like the real bindings without libamd_smi.so), so the result never depends on whether
the machine running the tests has ROCm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import fake_amdsmi, sysfs_tree

REPO = Path(__file__).resolve().parents[2]


def cli(args: list[str], env: dict[str, str], amdsmi_root: Path = fake_amdsmi.BROKEN) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AIM_", "HF_", "ROCR_", "HIP_", "CUDA_"))}
    base.update(env)
    base["PYTHONPATH"] = os.pathsep.join([str(amdsmi_root), str(REPO / "entrypoint")])
    return subprocess.run([sys.executable, "-m", "aim_engine", "detect", *args], env=base,
                          capture_output=True, text=True, timeout=60)


def test_json_on_eight_mi300x(tmp_path):
    tree = sysfs_tree.build("mi300x-8", tmp_path)
    proc = cli(["--json"], {"AIM_SYSFS_ROOT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout is only the JSON, even though amdsmi printed at import
    assert (data["source"], data["gpu_model"], data["gpu_count"], data["gfx"]) == ("sysfs", "MI300X", 8, "gfx942")
    assert [d["uuid"] for d in data["devices"]] == [g.uuid for g in tree.gpus]
    assert any("KeyError" in n for n in data["notes"])
    assert "Unable to find libamd_smi.so" not in proc.stdout and "Unable to find" not in proc.stderr


def test_human_table(tmp_path):
    sysfs_tree.build("mi300x-cpx", tmp_path)
    proc = cli([], {"AIM_SYSFS_ROOT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("8× MI300X (gfx942), 24.0 GiB per GPU")
    assert "CPX/NPS1" in proc.stdout and "/dev/dri/renderD135" in proc.stdout
    assert any(line.startswith("CPU: AMD EPYC 9654") for line in lines)


def test_json_through_the_fake_amdsmi_with_visibility(tmp_path):
    tree = sysfs_tree.build("mi355x-8", tmp_path)
    env = fake_amdsmi.write_config(tmp_path / "amdsmi.json", fake_amdsmi.from_tree(tree, market_name="AMD Instinct MI355X"))
    env.update(AIM_SYSFS_ROOT=str(tmp_path), ROCR_VISIBLE_DEVICES="4,5,6,7", HIP_VISIBLE_DEVICES="1,3",
               CUDA_VISIBLE_DEVICES="1,3")
    proc = cli(["--json"], env, amdsmi_root=fake_amdsmi.WORKING)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["source"], data["gpu_model"], data["gpu_count"]) == ("amdsmi", "MI355X", 2)
    assert [d["uuid"] for d in data["devices"]] == [tree.gpus[5].uuid, tree.gpus[7].uuid]
    assert data["warnings"] == []


def test_hip_and_cuda_disagreeing_is_a_warning(tmp_path):
    sysfs_tree.build("mi300x-8", tmp_path)
    proc = cli([], {"AIM_SYSFS_ROOT": str(tmp_path), "HIP_VISIBLE_DEVICES": "0", "CUDA_VISIBLE_DEVICES": "1"})
    assert proc.returncode == 0
    assert "warnings:" in proc.stdout and "vLLM refuses to start" in proc.stdout


def test_gpu_less_node_shows_the_cpu(tmp_path):
    sysfs_tree.build("gpu-less", tmp_path)
    proc = cli(["--json"], {"AIM_SYSFS_ROOT": str(tmp_path)})
    data = json.loads(proc.stdout)
    assert data["devices"] == [] and data["gpu_count"] == 0
    assert data["cpu"]["model"] == "AMD EPYC 9654 96-Core Processor" and data["cpu"]["memory_bytes"] == 64 * 1024**3


@pytest.mark.parametrize("env, code, needles", [
    ({"AIM_GPU_MODEL": "B200"}, 1, ["AIM_GPU_MODEL='B200' is not a known GPU model", "allowed: MI210"]),
    ({"AIM_GPU_COUNT": "9"}, 1, ["AIM_GPU_COUNT=9 is more than the 8 visible MI300X", "allowed: 0 to 8"]),
    ({"AIM_GPU_COUNT": "-1"}, 2, ["AIM_GPU_COUNT='-1'", "a whole number from 0 to 64"]),
    ({"AIM_GPU_COUNT": "two"}, 2, ["AIM_GPU_COUNT='two' is not a whole number"]),
])
def test_bad_overrides_are_clear_errors_without_traceback(tmp_path, env, code, needles):
    sysfs_tree.build("mi300x-8", tmp_path)
    proc = cli(["--json"], {"AIM_SYSFS_ROOT": str(tmp_path), **env})
    assert proc.returncode == code
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr


def test_malformed_tree_still_answers(tmp_path):
    sysfs_tree.build("truncated", tmp_path)
    proc = cli([], {"AIM_SYSFS_ROOT": str(tmp_path)})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "KFD node 3 skipped" in proc.stdout
