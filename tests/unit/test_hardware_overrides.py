"""AIM_GPU_MODEL / AIM_GPU_COUNT have the last word, within what is allowed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aim_engine.errors import AimError, SettingsError
from aim_engine.hardware import detect, gpus
from aim_engine.settings import Settings
from tests.support import sysfs_tree


@pytest.fixture(autouse=True)
def no_amdsmi(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)


@pytest.fixture
def mi300x_node(tmp_path) -> Path:
    sysfs_tree.build("mi300x-8", tmp_path)
    return tmp_path


@pytest.fixture
def gpu_less(tmp_path) -> Path:
    sysfs_tree.build("gpu-less", tmp_path)
    return tmp_path


def run(root: Path, **aim: str):
    return detect(Settings.from_env({"AIM_SYSFS_ROOT": str(root), **aim}), {})


def test_count_shrinks_what_is_visible(mi300x_node):
    hw = run(mi300x_node, AIM_GPU_COUNT="4")
    assert [d.index for d in hw.devices] == [0, 1, 2, 3]
    assert hw.visible_count == 8 and hw.hip_visible_devices() == "0,1,2,3"
    assert any("AIM_GPU_COUNT=4: using 4 of 8" in n for n in hw.notes)


def test_count_equal_to_visible_changes_nothing(mi300x_node):
    hw = run(mi300x_node, AIM_GPU_COUNT="8")
    assert hw.gpu_count == 8 and hw.hip_visible_devices() is None


def test_count_above_visible_is_a_clear_error(mi300x_node):
    with pytest.raises(AimError) as err:
        run(mi300x_node, AIM_GPU_COUNT="16")
    assert "AIM_GPU_COUNT=16" in err.value.message and "8 visible MI300X" in err.value.message
    assert "allowed: 0 to 8" in err.value.hint


def test_negative_count_is_rejected_with_the_allowed_values(mi300x_node):
    with pytest.raises(SettingsError) as err:  # parsed by Settings: never reaches detection
        run(mi300x_node, AIM_GPU_COUNT="-1")
    assert "AIM_GPU_COUNT='-1'" in str(err.value) and "from 0 to 64" in str(err.value)
    # and detection defends itself when handed a Settings built another way
    with pytest.raises(AimError) as err:
        detect(Settings(sysfs_root=mi300x_node, gpu_count=-2), {})
    assert "AIM_GPU_COUNT=-2 is negative" in err.value.message and "allowed" in err.value.hint


def test_count_zero_means_cpu_only(mi300x_node):
    hw = run(mi300x_node, AIM_GPU_COUNT="0")
    assert hw.is_cpu and hw.source == "sysfs"


def test_unknown_model_is_a_clear_error_listing_the_models(mi300x_node):
    with pytest.raises(AimError) as err:
        run(mi300x_node, AIM_GPU_MODEL="MI400X")
    assert "AIM_GPU_MODEL='MI400X'" in err.value.message
    assert all(name in err.value.hint for name in gpus.names())


def test_model_override_relabels_detected_gpus_and_keeps_real_memory(mi300x_node):
    hw = run(mi300x_node, AIM_GPU_MODEL="mi325x")
    assert hw.gpu_model == "MI325X" and hw.gpu_count == 8
    assert hw.memory_per_gpu_bytes == sysfs_tree.MEMORY["MI300X"]
    assert any("overrides the detected MI300X" in n for n in hw.notes)
    assert hw.warnings == ()  # same gfx942: nothing to warn about


def test_model_override_across_gfx_warns(mi300x_node):
    hw = run(mi300x_node, AIM_GPU_MODEL="MI355X")
    assert hw.gfx == "gfx950"
    assert any("gfx950" in w and "gfx942" in w for w in hw.warnings)


def test_gpu_less_planning_job_declares_any_count(gpu_less):
    hw = run(gpu_less, AIM_GPU_MODEL="mi300x", AIM_GPU_COUNT="16")
    assert (hw.source, hw.gpu_model, hw.gpu_count) == ("override", "MI300X", 16)
    assert hw.memory_per_gpu_bytes == gpus.spec("MI300X").memory_bytes
    assert hw.hip_visible_devices() is None


def test_gpu_less_model_alone_plans_one_gpu(gpu_less):
    hw = run(gpu_less, AIM_GPU_MODEL="MI210")
    assert hw.gpu_count == 1 and any("AIM_GPU_COUNT" in n for n in hw.notes)


def test_gpu_less_count_without_model_is_an_error(gpu_less):
    with pytest.raises(AimError) as err:
        run(gpu_less, AIM_GPU_COUNT="2")
    assert "no GPU is visible" in err.value.message and "AIM_GPU_MODEL" in err.value.hint
    assert "MI300X" in err.value.hint


def test_to_dict_is_json_ready(mi300x_node):
    import json

    data = json.loads(json.dumps(run(mi300x_node, AIM_GPU_COUNT="2").to_dict()))
    assert data["gpu_count"] == 2 and data["gpu_model"] == "MI300X" and data["gfx"] == "gfx942"
    assert data["devices"][1]["index"] == 1 and data["cpu"]["cores"] >= 1
