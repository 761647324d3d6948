"""Detection policy: probes in order, then visibility, homogeneity and overrides.

    amdsmi  ->  KFD sysfs  ->  ROCR/HIP/CUDA_VISIBLE_DEVICES  ->  largest homogeneous group
            ->  AIM_GPU_MODEL / AIM_GPU_COUNT (the last word)  ->  Hardware (CPU when no GPU)

Every decision that changes what the agent will use is written to `Hardware.notes` (or
`warnings` when the user should act), so `aim-engine detect` explains itself.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from aim_engine.errors import AimError
from aim_engine.hardware import gpus, visibility
from aim_engine.hardware.cpu import detect_cpu
from aim_engine.hardware.raw import ProbeResult, RawGpu
from aim_engine.hardware.types import Device, Hardware

# Devices one package splits into, per compute partition mode (CPX = one per XCD).
_PARTITION_WAYS = {"SPX": 1, "DPX": 2, "TPX": 3, "QPX": 4}


def _run_probes(root: Path, use_amdsmi: bool) -> tuple[ProbeResult, list[str]]:
    from aim_engine.hardware import sysfs_probe

    notes: list[str] = []
    if use_amdsmi:
        from aim_engine.hardware import amdsmi_probe

        result, why = amdsmi_probe.probe(root)
        if result is not None:
            return result, notes
        notes.append(f"{why}; reading KFD sysfs instead")
    return sysfs_probe.probe(root), notes


def _partition_share(raw: RawGpu, spec: gpus.GpuSpec | None) -> tuple[int | None, str | None]:
    """The memory one partition may use. The kfd driver already reports the share; an older
    driver (or amdsmi) reporting the whole package for a partition is divided here."""
    memory = raw.memory_bytes
    mode = (raw.compute_partition or "SPX").upper()
    if memory is None or spec is None or mode == "SPX":
        return memory, None
    ways = spec.xcds if mode == "CPX" else _PARTITION_WAYS.get(mode)
    if ways and ways > 1 and memory > 0.75 * spec.memory_bytes:
        return memory // ways, f"{mode}: the driver reports the whole package's memory; using 1/{ways} per partition"
    return memory, None


def _sane_memory(index: int, memory: int, spec: gpus.GpuSpec | None, notes: list[str]) -> int:
    """A memory size the planner can believe: a known GPU never has more than its spec-table
    size (a damaged or hostile sysfs saying 10^30 bytes is capped, with a note); an unknown one
    claiming more than twice the largest GPU in the table is an error, not a plan."""
    if spec is not None:
        if memory > spec.memory_bytes:
            notes.append(f"GPU {index}: reports {memory:,} bytes of memory, more than a {spec.name} has; "
                         f"using the spec table's {spec.memory_bytes:,}")
            return spec.memory_bytes
        return memory
    largest = max(s.memory_bytes for s in gpus.all_specs())
    if memory > 2 * largest:
        raise AimError(f"GPU {index} reports {memory:,} bytes of memory, more than twice the largest Instinct GPU "
                       f"({largest:,} bytes): the sysfs or amdsmi reading is not believable",
                       hint="check the node's driver (KFD topology mem_banks) or set AIM_GPU_MODEL to plan for a known GPU")
    return memory


def _to_device(index: int, rocr_index: int, raw: RawGpu, notes: list[str]) -> Device:
    spec = gpus.by_device_id(raw.device_id, raw.compute_units) if raw.device_id else None
    if spec is not None and spec.gfx != raw.gfx:
        notes.append(f"GPU {index}: device id {raw.device_id} is {spec.name} ({spec.gfx}) but reports {raw.gfx}; "
                     "treated as unknown")
        spec = None
    memory, note = _partition_share(raw, spec)
    if note:
        notes.append(f"GPU {index}: {note}")
    if memory is None:
        memory = spec.memory_bytes if spec else 0
    memory = _sane_memory(index, memory, spec, notes)
    return Device(
        index=index,
        model=spec.name if spec else raw.gfx,
        gfx=raw.gfx,
        memory_bytes=memory,
        device_id=raw.device_id,
        uuid=raw.uuid,
        render_node=raw.render_node,
        compute_partition=raw.compute_partition,
        memory_partition=raw.memory_partition,
        known=spec is not None,
        compute_units=raw.compute_units,
        pci_bus=raw.pci_bus,
        rocr_index=rocr_index,
    )


def _largest_group(devices: Sequence[Device], preferred: str | None, notes: list[str]) -> list[Device]:
    """The GPUs of one model: the preferred model when present, else the largest group
    (ties: the group that comes first in ROCm order)."""
    counts = Counter(d.model for d in devices)
    if len(counts) <= 1:
        return list(devices)
    if preferred and preferred in counts:
        model, why = preferred, "AIM_GPU_MODEL"
    else:
        model, why = max(counts, key=lambda m: (counts[m], -min(d.index for d in devices if d.model == m))), "largest group"
    chosen = [d for d in devices if d.model == model]
    mix = ", ".join(f"{n}× {m}" for m, n in counts.items())
    notes.append(f"mixed node ({mix}): using the {len(chosen)}× {model} ({why}); the others are left unused")
    return chosen


def _allowed_models() -> str:
    return ", ".join(gpus.names())


def _override_model(value: str | None) -> gpus.GpuSpec | None:
    if not value:
        return None
    spec = gpus.find(value)
    if spec is None:
        raise AimError(f"AIM_GPU_MODEL={value!r} is not a known GPU model", hint=f"allowed: {_allowed_models()}")
    return spec


def _synthesize(spec: gpus.GpuSpec, count: int) -> tuple[Device, ...]:
    return tuple(
        Device(index=i, model=spec.name, gfx=spec.gfx, memory_bytes=spec.memory_bytes,
               compute_units=spec.compute_units, rocr_index=i)
        for i in range(count)
    )


def detect(settings, environ: Mapping[str, str] | None = None, *, use_amdsmi: bool = True) -> Hardware:
    """Detect the GPUs this container may use (see the module docstring for the order).

    `environ` supplies the visibility variables (ROCR/HIP/CUDA_VISIBLE_DEVICES); default
    `os.environ`. Raises `AimError` for unusable overrides.
    """
    environ = os.environ if environ is None else environ
    from aim_engine.hardware.group import resolve

    group = resolve(settings)      # the topology first: a group that cannot be is a settings error (exit 2)
    root = Path(settings.sysfs_root)
    model_override = _override_model(settings.gpu_model)
    count = settings.gpu_count
    if count is not None and count < 0:
        raise AimError(f"AIM_GPU_COUNT={count} is negative", hint="allowed: 0 (CPU only) or a positive number of GPUs")

    probe, notes = _run_probes(root, use_amdsmi)
    notes += probe.notes
    warnings = list(probe.warnings)
    visible = visibility.apply([g.uuid for g in probe.gpus], environ)
    notes += visible.notes
    warnings += visible.warnings
    if probe.gpus and not visible.final and visible.warnings:
        # A malformed visibility list that hides every GPU would silently plan for the CPU on a
        # GPU node (exit 0): that is a mistake to report, not a plan.
        raise AimError("the GPU visibility variables hide every GPU because of an unusable entry: "
                       + "; ".join(visible.warnings),
                       hint="list GPU indices (0,1,...) or GPU-<hex> UUIDs; set ROCR_VISIBLE_DEVICES=-1 "
                            "(or empty) to use no GPU on purpose")
    devices = [
        _to_device(index, rocr_index, probe.gpus[position], notes)
        for index, (position, rocr_index) in enumerate(visible.selected())
    ]
    visible_count = len(devices)
    for d in devices:
        if not d.known:
            notes.append(f"GPU {d.index}: device id {d.device_id} is not in the spec table; "
                         f"reported as {d.gfx} with its real memory (generic recipes apply)")
    devices = _largest_group(devices, model_override.name if model_override else None, notes)
    source = probe.source if probe.gpus else "none"

    if devices:
        if model_override and model_override.name != devices[0].model:
            detected = devices[0].model
            notes.append(f"AIM_GPU_MODEL={model_override.name} overrides the detected {detected}")
            if model_override.gfx != devices[0].gfx:
                warnings.append(f"AIM_GPU_MODEL={model_override.name} ({model_override.gfx}) differs from the "
                                f"detected {detected} ({devices[0].gfx}): kernels built for {model_override.gfx} "
                                "may not run here")
            devices = [replace(d, model=model_override.name, gfx=model_override.gfx, known=True) for d in devices]
        if count is not None:
            if count > len(devices):
                raise AimError(
                    f"AIM_GPU_COUNT={count} is more than the {len(devices)} visible {devices[0].model} GPU(s)",
                    hint=f"allowed: 0 to {len(devices)} (AIM_GPU_COUNT can only shrink what is visible)",
                )
            if count < len(devices):
                notes.append(f"AIM_GPU_COUNT={count}: using {count} of {len(devices)} GPU(s)")
                devices = devices[:count]
    elif model_override is not None:
        count = 1 if count is None else count
        devices = list(_synthesize(model_override, count))
        source = "override"
        visible_count = count
        notes.append(f"no GPU detected: planning for {count}× {model_override.name} from AIM_GPU_MODEL"
                     + ("" if settings.gpu_count is not None else " (set AIM_GPU_COUNT for more than one)"))
    elif count:
        raise AimError(
            f"AIM_GPU_COUNT={count} but no GPU is visible",
            hint=f"set AIM_GPU_MODEL too (one of: {_allowed_models()}) to plan for GPUs that are not here, "
                 "or unset AIM_GPU_COUNT to use the CPU",
        )
    if count == 0 and devices:
        devices = []
    if not devices:
        notes.append("no GPU in use: the target is the CPU (vLLM CPU backend)")

    if group.is_multi_node:
        notes.append(f"group: {group.role} rank {group.rank} of {group.nodes} nodes (from {group.source}), "
                     f"leader {group.leader_address}, backend {group.backend}")
    cpu = detect_cpu(root)
    if not devices and cpu.memory_bytes == 0:
        warnings.append(f"could not read the CPU's memory from {root / 'proc/meminfo'}")
    return Hardware(
        source=source,
        devices=tuple(devices),
        cpu=cpu,
        notes=tuple(notes),
        warnings=tuple(warnings),
        visible_count=visible_count,
        group=group,
    )
