"""The amdsmi probe against the fake amdsmi (tests/support/fake_amdsmi), and its fall-through."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from aim_engine.hardware import detect
from aim_engine.settings import Settings
from tests.support import fake_amdsmi, sysfs_tree
from tests.support.sysfs_tree import MEMORY

REPO = Path(__file__).resolve().parents[2]


def _load(monkeypatch, root: Path):
    monkeypatch.syspath_prepend(str(root))
    saved = sys.modules.pop("amdsmi", None)
    try:
        module = importlib.import_module("amdsmi")
    except Exception:
        module = None
    return module, saved


@pytest.fixture
def amdsmi(monkeypatch):
    module, saved = _load(monkeypatch, fake_amdsmi.WORKING)
    assert module is not None and Path(module.__file__).is_relative_to(fake_amdsmi.WORKING)
    yield module
    module._fake_configure(None)
    sys.modules.pop("amdsmi", None)
    if saved is not None:
        sys.modules["amdsmi"] = saved


def run(root: Path, environ=None, **aim: str):
    return detect(Settings.from_env({"AIM_SYSFS_ROOT": str(root), **aim}), environ or {})


def test_amdsmi_is_the_first_probe(tmp_path, amdsmi):
    tree = sysfs_tree.build("mi300x-8", tmp_path)
    amdsmi._fake_configure(fake_amdsmi.from_tree(tree))
    hw = run(tmp_path)
    assert (hw.source, hw.gpu_count, hw.gpu_model) == ("amdsmi", 8, "MI300X")
    assert [d.uuid for d in hw.devices] == [g.uuid for g in tree.gpus]
    assert [d.render_node for d in hw.devices] == [f"/dev/dri/renderD{g.render_minor}" for g in tree.gpus]
    assert all(d.memory_bytes == MEMORY["MI300X"] for d in hw.devices)
    assert {(d.compute_partition, d.memory_partition) for d in hw.devices} == {("SPX", "NPS1")}
    assert amdsmi._state["shutdowns"] == 1 and not amdsmi._state["initialized"]


def test_devices_follow_kfd_order_not_library_order(tmp_path, amdsmi):
    tree = sysfs_tree.build("mi300x-8", tmp_path)
    config = fake_amdsmi.from_tree(tree)
    config["gpus"].reverse()
    amdsmi._fake_configure(config)
    assert [d.uuid for d in run(tmp_path).devices] == [g.uuid for g in tree.gpus]


def test_without_enumeration_info_the_uuid_comes_from_kfd(tmp_path, amdsmi):
    tree = sysfs_tree.build("mi300x-8", tmp_path)
    amdsmi._fake_configure(fake_amdsmi.from_tree(tree, with_enumeration=False))
    assert not hasattr(amdsmi, "amdsmi_get_gpu_enumeration_info")
    hw = run(tmp_path)
    assert hw.source == "amdsmi"
    assert [d.uuid for d in hw.devices] == [g.uuid for g in tree.gpus]


def test_visibility_uuids_work_on_amdsmi_devices(tmp_path, amdsmi):
    tree = sysfs_tree.build("mi300x-8", tmp_path)
    amdsmi._fake_configure(fake_amdsmi.from_tree(tree))
    hw = run(tmp_path, {"ROCR_VISIBLE_DEVICES": tree.gpus[4].uuid})
    assert [d.uuid for d in hw.devices] == [tree.gpus[4].uuid]


def test_unsupported_partition_getters_cost_only_the_partition(tmp_path, amdsmi):
    tree = sysfs_tree.build("mi300x-8", tmp_path)
    amdsmi._fake_configure(dict(fake_amdsmi.from_tree(tree), partition_error=True))
    hw = run(tmp_path)
    assert hw.gpu_count == 8 and {d.compute_partition for d in hw.devices} == {None}


def test_cpx_partition_reported_with_whole_package_memory_gets_its_share(tmp_path, amdsmi):
    tree = sysfs_tree.build("mi300x-cpx", tmp_path)
    config = fake_amdsmi.from_tree(tree)
    for g in config["gpus"]:
        g["memory"] = MEMORY["MI300X"]  # a library reporting the package, not the partition
    amdsmi._fake_configure(config)
    hw = run(tmp_path)
    assert hw.gpu_count == 8 and hw.memory_per_gpu_bytes == MEMORY["MI300X"] // 8
    assert any("1/8 per partition" in n for n in hw.notes)


def test_init_failure_falls_through_to_sysfs(tmp_path, amdsmi):
    sysfs_tree.build("mi300x-8", tmp_path)
    amdsmi._fake_configure({"gpus": [], "init_error": "AMDSMI_STATUS_INIT_ERROR - driver not loaded"})
    hw = run(tmp_path)
    assert (hw.source, hw.gpu_count) == ("sysfs", 8)
    assert any("amdsmi unavailable (AmdSmiLibraryException" in n for n in hw.notes)


def test_amdsmi_seeing_no_gpu_falls_through_to_sysfs(tmp_path, amdsmi):
    sysfs_tree.build("mi325x-8", tmp_path)
    amdsmi._fake_configure({"gpus": []})
    hw = run(tmp_path)
    assert (hw.source, hw.gpu_model) == ("sysfs", "MI325X")
    assert any("amdsmi sees no GPU" in n for n in hw.notes)


def test_keyerror_at_import_falls_through_and_prints_nothing(tmp_path, monkeypatch, capfd):
    module, saved = _load(monkeypatch, fake_amdsmi.BROKEN)
    assert module is None  # the broken bindings really raise at import
    capfd.readouterr()
    try:
        sysfs_tree.build("mi355x-8", tmp_path)
        hw = run(tmp_path)
    finally:
        sys.modules.pop("amdsmi", None)
        if saved is not None:
            sys.modules["amdsmi"] = saved
    out = capfd.readouterr().out
    assert (hw.source, hw.gpu_model) == ("sysfs", "MI355X")
    assert any("KeyError" in n and "libamd_smi.so" in n for n in hw.notes)
    assert "libamd_smi" not in out and out == ""




def test_amdsmi_lists_every_gpu_but_the_pod_counts_only_its_own(shared_tmp):
    """amdsmi sees all 8 GPUs of the machine; the 7 whose KFD node answers EPERM are dropped."""
    tree = sysfs_tree.build("pod-1-of-8-mi300x", shared_tmp)
    env = fake_amdsmi.write_config(shared_tmp / "amdsmi.json", fake_amdsmi.from_tree(tree))
    (shared_tmp / "amdsmi.json").chmod(0o644)
    env.update(AIM_SYSFS_ROOT=str(shared_tmp), PYTHONPATH=f"{fake_amdsmi.WORKING}:{REPO / 'entrypoint'}")
    result = sysfs_tree.run_detect_unprivileged(env)
    assert result["euid"] != 0
    assert (result["source"], result["gpu_count"]) == ("amdsmi", 1)
    assert result["devices"][0]["uuid"] == tree.visible[0].uuid
    assert any("7 GPU(s) answered EPERM" in n for n in result["notes"])


def test_unknown_device_id_through_amdsmi(tmp_path, amdsmi):
    radeon = sysfs_tree.unknown_radeon()
    sysfs_tree.Tree([radeon]).write(tmp_path)
    amdsmi._fake_configure(fake_amdsmi.from_tree(sysfs_tree.Tree([radeon]), market_name="AMD Radeon RX 7900 XTX"))
    (device,) = run(tmp_path).devices
    assert (device.model, device.known, device.memory_bytes) == ("gfx1100", False, MEMORY["gfx1100"])


def test_mi250_through_amdsmi_uses_compute_units(tmp_path, amdsmi):
    tree = sysfs_tree.Tree([replace(g, compute_units=110) for g in sysfs_tree.mi250(2)])
    tree.write(tmp_path)
    amdsmi._fake_configure(fake_amdsmi.from_tree(tree))
    hw = run(tmp_path)
    assert (hw.source, hw.gpu_model, hw.gpu_count) == ("amdsmi", "MI250X", 4)


def test_amdsmi_not_installed_is_a_plain_note(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    if importlib.util.find_spec("amdsmi") is not None:
        pytest.skip(reason="a real amdsmi module is importable here, so the not-installed path cannot be shown")
    hw = run(tmp_path)
    assert any(n.startswith("amdsmi unavailable (not installed)") for n in hw.notes)
