"""Generate fixture sysfs trees in the format the amdgpu/amdkfd driver writes.

Formats (drivers/gpu/drm/amd/amdkfd/kfd_topology.c):
- `sys/class/kfd/kfd/topology/nodes/N/properties`: one "key value" line per property, unsigned
  decimal integers, in the driver's order; CPU nodes report `simd_count 0`. GPU nodes add
  `unique_id`, `local_mem_size 0` etc.
- `.../nodes/N/mem_banks/M/properties`: heap_type, size_in_bytes, flags, width, mem_clk_max.
  In a partition mode the driver reports each partition's share (memory partition / partitions
  per memory partition).
- `sys/bus/pci/devices/<bdf>/current_compute_partition` / `current_memory_partition` ("SPX",
  "NPS1"), also reachable as `sys/class/drm/renderD<minor>/device/...` for the primary node.
- `proc/cpuinfo`, `proc/meminfo` for the CPU fallback.

A node "owned by another container" has its `properties` files mode 000: read by an
unprivileged process, that fails with PermissionError, as the real driver's EPERM does (root
ignores file modes, so such tests drop privileges; see `run_detect_unprivileged`).

Usage: `python -m tests.support.sysfs_tree PRESET DIR` (`--list` for the presets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

GIB = 1024**3
AMD = 0x1002
NOBODY = 65534

# Memory the driver reports for a whole device (a little under the marketing figure): the
# figures every test of detection and selection runs on. MI250X, MI308X and MI350X carry the same
# HBM stacks as MI250, MI300X and MI355X (same nominal 64/192/288 GiB), so they report the same.
MEMORY = {
    "MI210": 68_702_699_520,
    "MI250": 68_702_699_520,
    "MI250X": 68_702_699_520,
    "MI300X": 205_822_885_888,
    "MI308X": 205_822_885_888,
    "MI325X": 274_877_906_944,
    "MI350X": 309_220_868_096,
    "MI355X": 309_220_868_096,
    "gfx1100": 25_753_026_560,
}


@dataclass
class Gpu:
    """One KFD GPU node as the driver would describe it."""

    device_id: int
    gfx_target_version: int
    compute_units: int
    memory_bytes: int
    unique_id: int
    render_minor: int
    location_id: int
    domain: int = 0
    simd_per_cu: int = 4
    num_xcc: int = 1
    compute_partition: str | None = None
    memory_partition: str | None = None
    denied: bool = False               # another container's GPU: files unreadable
    properties_override: str | None = None   # write this text instead (malformed/truncated cases)
    mem_bank_override: str | None = None

    @property
    def bdf(self) -> str:
        bus, devfn = self.location_id >> 8, self.location_id & 0xFF
        return f"{self.domain:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"

    @property
    def uuid(self) -> str:
        return f"GPU-{self.unique_id:016x}"

    def properties(self) -> str:
        if self.properties_override is not None:
            return self.properties_override
        p = [
            ("cpu_cores_count", 0), ("simd_count", self.compute_units * self.simd_per_cu),
            ("mem_banks_count", 1), ("caches_count", 0), ("io_links_count", 1), ("p2p_links_count", 0),
            ("cpu_core_id_base", 0), ("simd_id_base", 2147487744), ("max_waves_per_simd", 8),
            ("lds_size_in_kb", 64), ("gds_size_in_kb", 0), ("num_gws", 64), ("wave_front_size", 64),
            ("array_count", 4 * self.num_xcc), ("simd_arrays_per_engine", 1), ("cu_per_simd_array", 10),
            ("simd_per_cu", self.simd_per_cu), ("max_slots_scratch_cu", 32),
            ("gfx_target_version", self.gfx_target_version), ("vendor_id", AMD), ("device_id", self.device_id),
            ("location_id", self.location_id), ("domain", self.domain),
            ("drm_render_minor", self.render_minor), ("hive_id", 0), ("num_sdma_engines", 2),
            ("num_sdma_xgmi_engines", 6), ("num_sdma_queues_per_engine", 8), ("num_cp_queues", 24),
            ("max_engine_clk_fcompute", 2100), ("local_mem_size", 0), ("fw_version", 177),
            ("capability", 746218112), ("sdma_fw_version", 24), ("unique_id", self.unique_id),
            ("num_xcc", self.num_xcc), ("max_engine_clk_ccompute", 3700),
        ]
        return "".join(f"{k} {v}\n" for k, v in p)

    def mem_bank(self) -> str:
        if self.mem_bank_override is not None:
            return self.mem_bank_override
        return f"heap_type 1\nsize_in_bytes {self.memory_bytes}\nflags 0\nwidth 8192\nmem_clk_max 1300\n"


@dataclass
class Tree:
    """A whole machine: CPU nodes, GPU nodes (in node order), CPU facts."""

    gpus: list[Gpu] = field(default_factory=list)
    cpu_nodes: int = 2
    cpu_model: str = "AMD EPYC 9654 96-Core Processor"
    mem_total_kb: int = 1_584_000_000
    cgroup_memory_max: str | None = None

    @property
    def visible(self) -> list[Gpu]:
        return [g for g in self.gpus if not g.denied]

    def write(self, root: Path | str) -> Path:
        root = Path(root)
        nodes = root / "sys/class/kfd/kfd/topology/nodes"
        nodes.mkdir(parents=True, exist_ok=True)
        index = 0
        for _ in range(self.cpu_nodes):
            node = nodes / str(index)
            (node / "mem_banks/0").mkdir(parents=True, exist_ok=True)
            (node / "properties").write_text(
                "cpu_cores_count 96\nsimd_count 0\nmem_banks_count 1\ncaches_count 0\nio_links_count 4\n"
                "p2p_links_count 0\ncpu_core_id_base 0\nsimd_id_base 0\nmax_waves_per_simd 0\nlds_size_in_kb 0\n"
                "gds_size_in_kb 0\nnum_gws 0\nwave_front_size 0\narray_count 0\nsimd_arrays_per_engine 0\n"
                "cu_per_simd_array 0\nsimd_per_cu 0\nmax_slots_scratch_cu 0\ngfx_target_version 0\nvendor_id 0\n"
                "device_id 0\nlocation_id 0\ndomain 0\ndrm_render_minor 0\nhive_id 0\nnum_sdma_engines 0\n"
                "num_sdma_xgmi_engines 0\nnum_sdma_queues_per_engine 0\nnum_cp_queues 0\nmax_engine_clk_ccompute 3700\n")
            (node / "mem_banks/0/properties").write_text(
                "heap_type 0\nsize_in_bytes 811138879488\nflags 0\nwidth 72\nmem_clk_max 4800\n")
            index += 1
        for gpu in self.gpus:
            node = nodes / str(index)
            (node / "mem_banks/0").mkdir(parents=True, exist_ok=True)
            files = [(node / "properties", gpu.properties()), (node / "mem_banks/0/properties", gpu.mem_bank()),
                     (node / "gpu_id", f"{10000 + index}\n")]
            for path, text in files:
                path.write_text(text)
                if gpu.denied:
                    path.chmod(0)
            if gpu.compute_partition or gpu.memory_partition:
                pci = root / "sys/bus/pci/devices" / gpu.bdf
                pci.mkdir(parents=True, exist_ok=True)
                for name, value in (("current_compute_partition", gpu.compute_partition),
                                    ("current_memory_partition", gpu.memory_partition)):
                    if value:
                        (pci / name).write_text(value + "\n")
                (pci / "available_compute_partition").write_text("SPX, DPX, QPX, CPX\n")
                (pci / "available_memory_partition").write_text("NPS1, NPS4\n")
                drm = root / "sys/class/drm" / f"renderD{gpu.render_minor}"
                drm.mkdir(parents=True, exist_ok=True)
                if not (drm / "device").exists():
                    (drm / "device").symlink_to(os.path.relpath(pci, drm))
            index += 1
        proc = root / "proc"
        proc.mkdir(parents=True, exist_ok=True)
        (proc / "cpuinfo").write_text(
            "".join(f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nmodel name\t: {self.cpu_model}\n\n" for i in range(2)))
        (proc / "meminfo").write_text(f"MemTotal:       {self.mem_total_kb} kB\nMemFree:        1000 kB\n")
        if self.cgroup_memory_max is not None:
            cgroup = root / "sys/fs/cgroup"
            cgroup.mkdir(parents=True, exist_ok=True)
            (cgroup / "memory.max").write_text(self.cgroup_memory_max + "\n")
        return root


# --- building blocks -----------------------------------------------------------------------

_BUSES = [0x05, 0x26, 0x46, 0x65, 0x85, 0xA6, 0xC6, 0xE5]


def _package(model: str, n: int, device_id: int, gfx: int, cus: int, xcc: int, memory: int,
             compute: str | None = "SPX", memory_mode: str | None = "NPS1") -> list[Gpu]:
    return [
        Gpu(device_id=device_id, gfx_target_version=gfx, compute_units=cus, memory_bytes=memory,
            unique_id=0x5A00_0000_0000_0000 + (i + 1) * 0x1111_0000 + cus, render_minor=128 + 8 * i,
            location_id=_BUSES[i % len(_BUSES)] << 8, domain=i // len(_BUSES), num_xcc=xcc,
            compute_partition=compute, memory_partition=memory_mode)
        for i in range(n)
    ]


def mi300x(n: int = 8) -> list[Gpu]:
    return _package("MI300X", n, 0x74A1, 90402, 304, 8, MEMORY["MI300X"])


def mi325x(n: int = 8) -> list[Gpu]:
    return _package("MI325X", n, 0x74A5, 90402, 304, 8, MEMORY["MI325X"])


def mi355x(n: int = 8) -> list[Gpu]:
    return _package("MI355X", n, 0x75A3, 90500, 256, 8, MEMORY["MI355X"])


def mi210(n: int = 2, start: int = 0) -> list[Gpu]:
    return [replace(g, location_id=(_BUSES[(start + i) % 8] + 1) << 8, render_minor=200 + 8 * i,
                    unique_id=0x2100_0000_0000_0000 + i)
            for i, g in enumerate(_package("MI210", n, 0x740F, 90010, 104, 1, MEMORY["MI210"], None, None))]


def mi250(cards: int = 4) -> list[Gpu]:
    """Each MI250 card is two GCDs, each its own PCI function, KFD node and 64 GB device."""
    out = []
    for card in range(cards):
        for gcd in range(2):
            i = 2 * card + gcd
            out.append(Gpu(device_id=0x740C, gfx_target_version=90010, compute_units=104,
                           memory_bytes=MEMORY["MI250"], unique_id=0x2500_0000_0000_0000 + i,
                           render_minor=128 + i, location_id=(_BUSES[card] + gcd * 3) << 8))
    return out


def cpx(gpus: list[Gpu], xcds: int = 8, memory_mode: str = "NPS1") -> list[Gpu]:
    """Each package in CPX mode: one KFD node per XCD, each with 1/xcds of the CUs and memory."""
    out = []
    for g in gpus:
        for part in range(xcds):
            out.append(replace(g, compute_units=g.compute_units // xcds, memory_bytes=g.memory_bytes // xcds,
                               num_xcc=1, render_minor=g.render_minor + part, unique_id=g.unique_id + part,
                               compute_partition="CPX", memory_partition=memory_mode))
    return out


def unknown_radeon() -> Gpu:
    return Gpu(device_id=0x744C, gfx_target_version=110000, compute_units=96, memory_bytes=MEMORY["gfx1100"],
               unique_id=0x7900_0000_0000_0001, render_minor=250, location_id=0x0300, simd_per_cu=2)


_BY_MODEL: dict[str, Callable[[int], list[Gpu]]] = {
    "MI300X": mi300x, "MI325X": mi325x, "MI355X": mi355x, "MI210": mi210,
    "MI250": lambda n: mi250((n + 1) // 2)[:n],
}


def of_model(model: str, count: int) -> Tree:
    """`count` devices of one GPU model as its driver describes them (reported memory, ids):
    what tests of selection plan on instead of the spec table's nominal figures."""
    return Tree(_BY_MODEL[model.upper()](count))


# --- presets (the fixture list) ----------------------------------------------------

def _pod_one_of_eight() -> Tree:
    g = mi300x()
    return Tree([replace(x, denied=(i != 3)) for i, x in enumerate(g)])


def _malformed() -> Tree:
    g = mi300x(4)
    g[1] = replace(g[1], properties_override=g[1].properties().replace("simd_count 1216", "simd_count twelve"))
    return Tree(g)


def _truncated() -> Tree:
    g = mi300x(4)
    text = g[1].properties()
    g[1] = replace(g[1], properties_override=text[: text.index("gfx_target_version") + 7])  # cut mid-key
    g[2] = replace(g[2], properties_override="")                                        # empty file
    g[3] = replace(g[3], mem_bank_override="heap_type 1\nsize_in_by")                   # bank cut short
    return Tree(g)


PRESETS: dict[str, Callable[[], Tree]] = {
    "mi300x-8": lambda: Tree(mi300x(8)),
    "pod-1-of-8-mi300x": _pod_one_of_eight,
    "mi250-4-cards": lambda: Tree(mi250(4)),
    "mi325x-8": lambda: Tree(mi325x(8)),
    "mi355x-8": lambda: Tree(mi355x(8)),
    "mi300x-cpx": lambda: Tree(cpx(mi300x(1))),
    "mi300x-cpx-nps4-8": lambda: Tree(cpx(mi300x(8), memory_mode="NPS4")),
    "mixed": lambda: Tree(mi300x(4) + mi210(2) + [unknown_radeon()]),
    "gpu-less": lambda: Tree([], cgroup_memory_max="68719476736"),
    "malformed": _malformed,
    "truncated": _truncated,
}


def build(preset: str, root: Path | str) -> Tree:
    tree = PRESETS[preset]()
    tree.write(root)
    return tree


# --- running detection as an unprivileged user (for the EPERM fixture) ----------------------

_RUNNER = """
import json, os, sys
from aim_engine.settings import Settings
from aim_engine.hardware import detection, sysfs_probe, amdsmi_probe, cpu, visibility, gpus
import aim_engine.errors, tempfile, enum
gpus.all_specs()              # load everything while we may still read the interpreter's files
env = json.loads(sys.argv[1])
if os.geteuid() == 0:
    os.setgroups([]); os.setgid(%(uid)d); os.setuid(%(uid)d)
try:
    hardware = detection.detect(Settings.from_env(env), env)
except aim_engine.errors.AimError as exc:
    print(json.dumps({"error": str(exc)})); sys.exit(1)
print(json.dumps(dict(hardware.to_dict(), euid=os.geteuid())))
"""


def run_detect_unprivileged(environ: dict[str, str]) -> dict:
    """Run `detect` in a child that drops root (if it has it) before reading the tree, so
    mode-000 files fail with PermissionError. The tree must be traversable by uid 65534.
    `environ` is both added to the child's environment and passed to detect() as its mapping."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "ROCR_", "HIP_", "CUDA_"))}
    child_env.update(environ)  # PYTHONPATH, AIM_TEST_FAKE_AMDSMI reach the child; detection reads `environ`
    proc = subprocess.run([sys.executable, "-c", _RUNNER % {"uid": NOBODY}, json.dumps(environ)],
                          capture_output=True, text=True, timeout=60, env=child_env)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"unprivileged detect failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if not argv or argv[0] == "--list":
        print("\n".join(PRESETS))
        return 0
    if len(argv) != 2 or argv[0] not in PRESETS:
        print(f"usage: python -m tests.support.sysfs_tree PRESET DIR   (presets: {', '.join(PRESETS)})", file=sys.stderr)
        return 2
    tree = build(argv[0], argv[1])
    print(f"wrote {argv[0]} to {argv[1]}: {len(tree.gpus)} GPU node(s), {len(tree.visible)} readable")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
