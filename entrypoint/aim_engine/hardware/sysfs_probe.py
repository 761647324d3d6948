"""KFD sysfs probe: the GPUs of `/sys/class/kfd/kfd/topology/nodes` this container may use.

Each node directory holds `properties` ("key value" lines of unsigned integers, written by the
amdkfd driver), `mem_banks/M/properties` (`size_in_bytes`, `heap_type`, ...). CPU nodes have
`simd_count 0`. Inside a container, the driver answers reads of another container's GPU nodes
with EPERM (its device-cgroup check): those nodes are not ours and are not counted, exactly as
ROCm's own runtime skips them.

A node whose files are malformed or truncated is skipped with a warning naming the file and
the bad line; the probe never raises for bad data. All file reads go through `read_text`, so
callers (and tests) can see every path that was touched.

Compute/memory partition modes come from the PCI device's `current_compute_partition` and
`current_memory_partition` (the files `amd-smi` reads, also reachable as
`/sys/class/drm/cardN/device/...`). The driver already reports each partition's share of the
memory in the node's memory bank.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from aim_engine.hardware import gpus
from aim_engine.hardware.raw import ProbeResult, RawGpu

TOPOLOGY = Path("sys/class/kfd/kfd/topology/nodes")
AMD_VENDOR_ID = 0x1002
# HSA heap types of device memory banks: FB_PUBLIC (1) and FB_PRIVATE (2). Banks of other types
# (system memory on an APU) count only when a node has no framebuffer bank at all.
_FRAMEBUFFER_HEAPS = (1, 2)
_REQUIRED = ("simd_count", "gfx_target_version", "vendor_id", "device_id")

# A whole well-formed file, checked in one pass; the line-by-line parser runs only to explain a bad one.
_WELL_FORMED = re.compile(r"(?:[a-z0-9_]+ [0-9]+\n)*[a-z0-9_]+ [0-9]+\n?")

Reader = Callable[[str], str]   # paths are plain strings: the walk touches ~2 files per node


class Malformed(ValueError):
    """A properties file we cannot trust (bad line, missing key, empty)."""


def read_text(path: str | Path) -> str:
    """The one place the probe reads a file. Raises OSError (PermissionError for EPERM/EACCES)."""
    with open(path, "rb") as fh:
        return fh.read().decode("utf-8", "replace")


def parse_properties(text: str, path: Path | str = "properties") -> dict[str, int]:
    """Parse a KFD properties file; `Malformed` names the file and the first bad line."""
    if _WELL_FORMED.fullmatch(text):
        tokens = text.split()
        return dict(zip(tokens[::2], map(int, tokens[1::2])))
    values: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        if not (value.isdigit() and value.isascii() and key.replace("_", "").isalnum() and key.islower()):
            raise Malformed(f"{path}: line {number} {line!r} is not 'key <unsigned integer>'")
        values[key] = int(value)
    if not values:
        raise Malformed(f"{path}: empty")
    return values


def pci_bus_id(domain: int, location_id: int) -> str:
    """KFD `domain` + `location_id` (bus << 8 | devfn) -> `0000:0c:00.0`."""
    bus, devfn = (location_id >> 8) & 0xFF, location_id & 0xFF
    return f"{domain:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7}"


def _node_ids(directory: str) -> list[int]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(int(name) for name in names if name.isdigit())


def _memory(node_dir: str, read: Reader) -> tuple[int | None, str | None]:
    """Total device memory of a node's banks; (None, reason) when it cannot be read."""
    banks_dir = os.path.join(node_dir, "mem_banks")
    framebuffer = other = 0
    seen = False
    for bank in _node_ids(banks_dir):
        path = os.path.join(banks_dir, str(bank), "properties")
        try:
            values = parse_properties(read(path), path)  # PermissionError propagates: not our GPU
        except Malformed as exc:
            return None, str(exc)
        if "size_in_bytes" not in values:
            return None, f"{path}: no size_in_bytes (truncated?)"
        seen = True
        if values.get("heap_type") in _FRAMEBUFFER_HEAPS:
            framebuffer += values["size_in_bytes"]
        else:
            other += values["size_in_bytes"]
    if not seen:
        return None, f"{banks_dir}: no memory bank"
    return (framebuffer or other), None


class _Partitions:
    """Reads (and caches per PCI device) the partition modes of the package a node belongs to."""

    FILES = ("current_compute_partition", "current_memory_partition")

    def __init__(self, root: Path, read: Reader) -> None:
        self.root, self.read, self.cache = str(root), read, {}

    def _first(self, dirs: list[str], name: str) -> str | None:
        for directory in dirs:
            try:
                value = self.read(os.path.join(directory, name)).strip().upper()
            except OSError:
                continue
            if value:
                return value
        return None

    def modes(self, bus: str | None, render_minor: int | None) -> tuple[str | None, str | None]:
        """Partition modes of the package; cached per PCI device (all of a package's partition
        nodes share its bus id), falling back to the node's render node when there is no bus id."""
        key = bus or render_minor
        if key not in self.cache:
            dirs = []
            if bus:
                dirs.append(os.path.join(self.root, "sys/bus/pci/devices", bus))
            if render_minor:
                dirs.append(os.path.join(self.root, "sys/class/drm", f"renderD{render_minor}", "device"))
            self.cache[key] = tuple(self._first(dirs, name) for name in self.FILES)
        return self.cache[key]


def probe(root: Path | str = "/", read: Reader = read_text) -> ProbeResult:
    """Every GPU node under `root`'s KFD topology that this process may read, in node order."""
    root = Path(root)
    result = ProbeResult(source="sysfs")
    nodes_dir = str(root / TOPOLOGY)
    if not os.path.isdir(nodes_dir):
        result.notes.append(f"no KFD topology at {nodes_dir} (amdgpu driver not loaded, or /sys not mounted)")
        return result
    partitions = _Partitions(root, read)
    for node in _node_ids(nodes_dir):
        node_dir = os.path.join(nodes_dir, str(node))
        path = os.path.join(node_dir, "properties")
        try:
            props = parse_properties(read(path), path)
            if props.get("simd_count", 1) == 0:
                continue  # a CPU node
            missing = [key for key in _REQUIRED if key not in props]
            if missing:
                raise Malformed(f"{path}: missing {', '.join(missing)} (truncated?)")
            if props["vendor_id"] != AMD_VENDOR_ID:
                result.notes.append(f"KFD node {node}: vendor 0x{props['vendor_id']:04x} is not AMD; ignored")
                continue
            memory, memory_problem = _memory(node_dir, read)
        except PermissionError:
            result.denied += 1  # another container's GPU: the driver says EPERM
            continue
        except Malformed as exc:
            result.warnings.append(f"KFD node {node} skipped: {exc}")
            continue
        except OSError as exc:
            result.warnings.append(f"KFD node {node} skipped: cannot read {exc.filename or path}: {exc.strerror or exc}")
            continue
        gfx = gpus.gfx_name(props["gfx_target_version"])
        device_id = gpus.normalize_device_id(props["device_id"] & 0xFFFF)
        simd_per_cu = props.get("simd_per_cu") or 0
        compute_units = props["simd_count"] // simd_per_cu if simd_per_cu else None
        if memory_problem:
            spec = gpus.by_device_id(device_id, compute_units)
            if spec is None:
                result.warnings.append(f"KFD node {node} ({gfx}, {device_id}) skipped: {memory_problem}")
                continue
            result.warnings.append(f"KFD node {node}: {memory_problem}; assuming the {spec.name} table value")
        minor = props.get("drm_render_minor") or None
        bus = pci_bus_id(props.get("domain", 0), props["location_id"]) if "location_id" in props else None
        compute_mode, memory_mode = partitions.modes(bus, minor)
        result.gpus.append(
            RawGpu(
                gfx=gfx,
                device_id=device_id,
                memory_bytes=memory,
                compute_units=compute_units,
                uuid=rocm_uuid(props.get("unique_id")),
                render_node=f"/dev/dri/renderD{minor}" if minor else None,
                pci_bus=bus,
                compute_partition=compute_mode,
                memory_partition=memory_mode,
                node_id=node,
            )
        )
    if result.denied:
        result.notes.append(
            f"{result.denied} GPU node(s) answered EPERM: they belong to other containers and are not counted"
        )
    return result


def rocm_uuid(unique_id: int | None) -> str | None:
    """ROCm's UUID of a GPU from KFD's `unique_id` ("GPU-" + 16 hex digits), None without one."""
    return f"GPU-{unique_id:016x}" if unique_id else None


def node_properties(root: Path | str, node_id: int, read: Reader = read_text) -> dict[str, int] | None:
    """The properties of KFD node `node_id` (to cross-check amdsmi), or None when they cannot be
    read or parsed. PermissionError propagates: the node is another container's GPU (EPERM)."""
    path = os.path.join(root, TOPOLOGY, str(node_id), "properties")
    try:
        return parse_properties(read(path), path)
    except PermissionError:
        raise
    except (OSError, Malformed):
        return None
