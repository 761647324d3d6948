"""Detection over generated KFD sysfs trees (tests/support/sysfs_tree.py), amdsmi absent."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from aim_engine.hardware import detect, sysfs_probe
from aim_engine.settings import Settings
from tests.support import sysfs_tree
from tests.support.sysfs_tree import GIB, MEMORY, Tree

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_amdsmi(monkeypatch):
    """amdsmi absent (even on a ROCm machine): these tests are about the sysfs probe."""
    monkeypatch.setitem(sys.modules, "amdsmi", None)


def run(root: Path, environ: dict[str, str] | None = None, **aim: str):
    settings = Settings.from_env({"AIM_SYSFS_ROOT": str(root), **aim})
    return detect(settings, environ or {})


def build(tmp_path: Path, preset: str) -> tuple[Path, Tree]:
    return tmp_path, sysfs_tree.build(preset, tmp_path)


def test_eight_mi300x(tmp_path):
    root, tree = build(tmp_path, "mi300x-8")
    hw = run(root)
    assert (hw.source, hw.gpu_count, hw.gpu_model, hw.gfx) == ("sysfs", 8, "MI300X", "gfx942")
    assert [d.index for d in hw.devices] == list(range(8))
    for device, node in zip(hw.devices, tree.gpus):
        assert device.memory_bytes == node.memory_bytes
        assert device.uuid == node.uuid
        assert device.render_node == f"/dev/dri/renderD{node.render_minor}"
        assert device.pci_bus == node.bdf
        assert (device.compute_partition, device.memory_partition) == ("SPX", "NPS1")
        assert device.compute_units == 304 and device.known and device.device_id == "0x74a1"
    assert hw.warnings == ()
    assert hw.hip_visible_devices() is None


def test_cpu_nodes_are_not_gpus(tmp_path):
    root, _ = build(tmp_path, "mi300x-8")
    nodes = sorted(int(p.name) for p in (root / sysfs_probe.TOPOLOGY).iterdir())
    assert len(nodes) == 10  # 2 CPU nodes + 8 GPUs
    assert run(root).gpu_count == 8


def test_four_mi250_cards_are_eight_64_gib_gcds(tmp_path):
    root, _ = build(tmp_path, "mi250-4-cards")
    hw = run(root)
    assert (hw.gpu_count, hw.gpu_model, hw.gfx) == (8, "MI250", "gfx90a")
    assert all(d.memory_bytes == MEMORY["MI250"] for d in hw.devices)
    assert all(d.compute_partition is None for d in hw.devices)  # no partition files on CDNA2


def test_mi250x_is_told_from_mi250_by_compute_units(tmp_path):
    from dataclasses import replace

    Tree([replace(g, compute_units=110) for g in sysfs_tree.mi250(1)]).write(tmp_path)
    assert run(tmp_path).gpu_model == "MI250X"


@pytest.mark.parametrize("preset, model, gfx, memory", [
    ("mi325x-8", "MI325X", "gfx942", MEMORY["MI325X"]),
    ("mi355x-8", "MI355X", "gfx950", MEMORY["MI355X"]),
])
def test_eight_of_the_newer_models(tmp_path, preset, model, gfx, memory):
    root, _ = build(tmp_path, preset)
    hw = run(root)
    assert (hw.gpu_count, hw.gpu_model, hw.gfx, hw.memory_per_gpu_bytes) == (8, model, gfx, memory)


def test_mi300x_in_cpx_mode_is_eight_devices_with_an_eighth_of_the_memory(tmp_path):
    root, _ = build(tmp_path, "mi300x-cpx")
    hw = run(root)
    assert hw.gpu_count == 8 and hw.gpu_model == "MI300X"
    assert {d.compute_partition for d in hw.devices} == {"CPX"}
    assert hw.memory_per_gpu_bytes == MEMORY["MI300X"] // 8
    assert hw.devices[0].compute_units == 38
    assert len({d.render_node for d in hw.devices}) == 8


def test_cpx_nps4_node_has_sixty_four_devices(tmp_path):
    root, _ = build(tmp_path, "mi300x-cpx-nps4-8")
    hw = run(root)
    assert hw.gpu_count == 64
    assert {(d.compute_partition, d.memory_partition) for d in hw.devices} == {("CPX", "NPS4")}


def test_partition_modes_found_through_the_drm_render_node_too(tmp_path):
    root, tree = build(tmp_path, "mi300x-cpx")
    shutil.rmtree(root / "sys/bus")  # only sys/class/drm/renderD128/device is left (a dangling link now)
    pci = root / "sys/class/drm/renderD128/device"
    pci.unlink()
    pci.mkdir()
    (pci / "current_compute_partition").write_text("CPX\n")
    (pci / "current_memory_partition").write_text("NPS1\n")
    hw = run(root)
    # partition render nodes (renderD129...) have no such files; they share the package's PCI id
    assert {(d.compute_partition, d.memory_partition) for d in hw.devices} == {("CPX", "NPS1")}


def test_mixed_node_uses_the_largest_group_and_says_so(tmp_path):
    root, _ = build(tmp_path, "mixed")
    hw = run(root)
    assert (hw.gpu_model, hw.gpu_count, hw.visible_count) == ("MI300X", 4, 7)
    assert any("mixed node" in n and "4× MI300X" in n and "2× MI210" in n for n in hw.notes)
    assert hw.hip_visible_devices() == "0,1,2,3"  # the engine must not see the MI210s and the Radeon


def test_mixed_node_prefers_the_overridden_model_and_restricts_the_engine(tmp_path):
    root, _ = build(tmp_path, "mixed")
    hw = run(root, AIM_GPU_MODEL="mi210")
    assert (hw.gpu_model, hw.gpu_count) == ("MI210", 2)
    assert [d.index for d in hw.devices] == [4, 5]
    assert hw.hip_visible_devices() == "4,5"


def test_unknown_amd_device_is_its_gfx_with_real_memory(tmp_path):
    Tree([sysfs_tree.unknown_radeon()]).write(tmp_path)
    hw = run(tmp_path)
    device = hw.devices[0]
    assert (device.model, device.gfx, device.known, device.device_id) == ("gfx1100", "gfx1100", False, "0x744c")
    assert device.memory_bytes == MEMORY["gfx1100"]
    assert any("not in the spec table" in n for n in hw.notes)


def test_gpu_less_node_reports_the_cpu(tmp_path):
    root, tree = build(tmp_path, "gpu-less")
    hw = run(root)
    assert hw.is_cpu and hw.source == "none" and hw.devices == ()
    assert hw.cpu.model == tree.cpu_model
    assert hw.cpu.cores == len(os.sched_getaffinity(0))
    assert hw.cpu.memory_bytes == 64 * GIB  # the cgroup limit, below MemTotal
    assert any("CPU" in n for n in hw.notes)


def test_no_kfd_at_all_is_a_cpu_target_not_an_error(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal:       16384000 kB\n")
    hw = run(tmp_path)
    assert hw.is_cpu and hw.cpu.memory_bytes == 16384000 * 1024
    assert any("no KFD topology" in n for n in hw.notes)


def test_malformed_node_is_skipped_with_a_clear_warning(tmp_path):
    root, _ = build(tmp_path, "malformed")
    hw = run(root)
    assert hw.gpu_count == 3
    (warning,) = hw.warnings
    assert "KFD node 3 skipped" in warning and "simd_count twelve" in warning and "properties" in warning


def test_truncated_files_never_crash(tmp_path):
    root, _ = build(tmp_path, "truncated")
    hw = run(root)
    # node 3 cut mid-key and node 4 empty are skipped; node 5's memory bank is cut short: table value
    assert hw.gpu_count == 2
    text = "\n".join(hw.warnings)
    assert "KFD node 3 skipped" in text and "'gfx_tar'" in text
    assert "KFD node 4 skipped" in text and "empty" in text
    assert "KFD node 5" in text and "assuming the MI300X table value" in text
    assert hw.devices[1].memory_bytes == 192 * GIB


def test_missing_required_key_is_reported_as_truncated(tmp_path):
    g = sysfs_tree.mi300x(1)[0]
    g.properties_override = "".join(l + "\n" for l in g.properties().splitlines() if not l.startswith("device_id"))
    Tree([g]).write(tmp_path)
    hw = run(tmp_path)
    assert hw.is_cpu and "missing device_id" in hw.warnings[0]


def test_visibility_variables_apply_to_sysfs_devices(tmp_path):
    root, tree = build(tmp_path, "mi300x-8")
    hw = run(root, {"ROCR_VISIBLE_DEVICES": f"{tree.gpus[6].uuid},2,5", "HIP_VISIBLE_DEVICES": "2,0"})
    assert [d.uuid for d in hw.devices] == [tree.gpus[5].uuid, tree.gpus[6].uuid]
    assert [d.index for d in hw.devices] == [0, 1]
    assert [d.rocr_index for d in hw.devices] == [2, 0]


# --- EPERM: a pod given 1 of 8 GPUs ----------------------------------------------------------



def test_pod_given_one_of_eight_counts_only_its_gpu(shared_tmp):
    """Other containers' nodes are mode 000 here; an unprivileged reader gets PermissionError,
    as with the driver's EPERM. Root ignores modes, so the child drops to uid 65534 first."""
    tree = sysfs_tree.build("pod-1-of-8-mi300x", shared_tmp)
    env = {"AIM_SYSFS_ROOT": str(shared_tmp), "PYTHONPATH": str(REPO / "entrypoint")}
    result = sysfs_tree.run_detect_unprivileged(env)
    assert result["euid"] != 0
    assert result["gpu_count"] == 1
    (gpu,) = result["devices"]
    assert gpu["index"] == 0 and gpu["uuid"] == tree.visible[0].uuid
    assert any("7 GPU node(s) answered EPERM" in n for n in result["notes"])
    assert result["warnings"] == []


def test_pod_cannot_ask_for_more_than_it_was_given(shared_tmp):
    sysfs_tree.build("pod-1-of-8-mi300x", shared_tmp)
    result = sysfs_tree.run_detect_unprivileged({"AIM_SYSFS_ROOT": str(shared_tmp), "AIM_GPU_COUNT": "2"})
    assert "AIM_GPU_COUNT=2 is more than the 1 visible MI300X" in result["error"]


def test_permission_error_from_the_reader_means_not_ours(tmp_path):
    """The probe's one reading function, raising EPERM for node 3 as the driver would."""
    root, tree = build(tmp_path, "mi300x-8")

    def read(path: Path) -> str:
        if f"{os.sep}nodes{os.sep}3{os.sep}" in str(path):
            raise PermissionError(1, "Operation not permitted", str(path))
        return sysfs_probe.read_text(path)

    result = sysfs_probe.probe(root, read=read)
    assert (len(result.gpus), result.denied, result.warnings) == (7, 1, [])
    assert tree.gpus[1].uuid not in [g.uuid for g in result.gpus]


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.text(alphabet=st.sampled_from("abc_ 0123456789\n\t-x\x00é"), max_size=200))
def test_any_bytes_in_a_properties_file_parse_or_are_reported_malformed(text):
    try:
        values = sysfs_probe.parse_properties(text, "p")
    except sysfs_probe.Malformed as exc:
        assert str(exc).startswith("p: ")
    else:
        assert values and all(isinstance(v, int) and v >= 0 for v in values.values())
