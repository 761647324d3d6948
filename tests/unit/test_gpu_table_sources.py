"""The GPU table's memory, compute-unit and gfx figures, pinned by sources outside this project.

The numbers below are copied by hand from vendor documents (not read from gpus.yaml), so an edit
of the table that a data sheet does not back fails here:
- ROCm "GPU hardware specifications" table, https://rocmdocs.amd.com/en/develop/reference/gpu-arch-specs.html
  (2026-02-20; VRAM in GiB per package, compute units, LLVM target) — MI355X, MI350X, MI325X,
  MI300X, MI300A, MI250X, MI250, MI210. An MI250/MI250X package holds two GCDs, which the table
  lists per visible device (half of the package's 128 GiB, 104/110 of 208/220 CUs).
- MLCommons inference v6.0, AMD's MI355X system: "AMD Instinct MI355X 288GB HBM3e".
- Microsoft Azure ND MI300X v5 size table: 8 x MI300X, "GPU Memory GiB 192" per GPU.
MI308X (a China-market MI300X variant) has no public data sheet among the searchable sources; it
is the one row left unpinned (its memory is the MI300X's HBM3 stack) and is named as such here.
"""

from __future__ import annotations

import pytest

from aim_engine.hardware import gpus

GIB = 1024**3

# name: (VRAM GiB per package, packages' visible devices, compute units per package, gfx)
DATA_SHEET = {
    "MI355X": (288, 1, 256, "gfx950"),
    "MI350X": (288, 1, 256, "gfx950"),
    "MI325X": (256, 1, 304, "gfx942"),
    "MI300X": (192, 1, 304, "gfx942"),
    "MI300A": (128, 1, 228, "gfx942"),
    "MI250X": (128, 2, 220, "gfx90a"),
    "MI250": (128, 2, 208, "gfx90a"),
    "MI210": (64, 1, 104, "gfx90a"),
}
UNPINNED = {"MI308X": "no independent data sheet found"}


@pytest.mark.parametrize("name", sorted(DATA_SHEET))
def test_memory_and_compute_units_match_the_data_sheet(name: str) -> None:
    vram_gib, devices, cus, gfx = DATA_SHEET[name]
    spec = gpus.spec(name)
    assert spec.memory_bytes * spec.devices_per_card == vram_gib * GIB
    assert spec.devices_per_card == devices
    assert spec.compute_units * spec.devices_per_card == cus
    assert spec.gfx == gfx


def test_every_gpu_is_pinned_or_named_as_unpinned() -> None:
    assert set(gpus.names()) == set(DATA_SHEET) | set(UNPINNED)
