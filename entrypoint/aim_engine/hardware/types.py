"""What the agent believes about the machine: one typed, JSON-able result of detection."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aim_engine.hardware.group import SINGLE, Group

GIB = 1024**3


@dataclass(frozen=True)
class Device:
    """One visible GPU (or partition), numbered as ROCm numbers it inside the container."""

    index: int
    model: str                 # spec-table name ("MI300X"), or the gfx name when unknown
    gfx: str                   # "gfx942"
    memory_bytes: int          # usable by this device (a partition's share in CPX/NPS4)
    device_id: str | None = None        # PCI device id, "0x74a1"
    uuid: str | None = None
    render_node: str | None = None      # "/dev/dri/renderD128"
    compute_partition: str | None = None  # SPX, DPX, QPX, CPX
    memory_partition: str | None = None   # NPS1, NPS2, NPS4
    known: bool = True                  # False: device id not in the spec table
    compute_units: int | None = None
    pci_bus: str | None = None          # "0000:0c:00.0"
    rocr_index: int | None = None       # index in the ROCR-visible list (what HIP_VISIBLE_DEVICES counts)

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB


@dataclass(frozen=True)
class Cpu:
    """The host CPU: the target when there is no GPU (vLLM's CPU backend)."""

    model: str
    cores: int
    memory_bytes: int


@dataclass(frozen=True)
class Hardware:
    """Detection result. `devices` are the GPUs the agent will use (already filtered by
    visibility, homogeneity and AIM_GPU_COUNT); `notes` say what was decided and why."""

    source: str                         # "amdsmi", "sysfs", "override", "none"
    devices: tuple[Device, ...]
    cpu: Cpu
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    visible_count: int = 0              # GPUs ROCm shows the engine before homogeneity/AIM_GPU_COUNT
    group: Group = SINGLE               # this node's place in a multi-node group (hardware/group.py)

    @property
    def gpu_count(self) -> int:
        return len(self.devices)

    @property
    def gpu_model(self) -> str | None:
        return self.devices[0].model if self.devices else None

    @property
    def gfx(self) -> str | None:
        return self.devices[0].gfx if self.devices else None

    @property
    def memory_per_gpu_bytes(self) -> int:
        return min((d.memory_bytes for d in self.devices), default=0)

    @property
    def is_cpu(self) -> bool:
        return not self.devices

    def hip_visible_devices(self, count: int | None = None) -> str | None:
        """The HIP_VISIBLE_DEVICES (= CUDA_VISIBLE_DEVICES) value that restricts the engine to
        `devices` (only the first `count` of them when given: the GPUs a plan really uses), or
        None when the engine may simply see every visible GPU. Set both variables to it: vLLM
        refuses to start when they differ. The indices are ROCR-relative (`rocr_index`), because
        HIP applies its list to what ROCR_VISIBLE_DEVICES left, which the engine inherits as is."""
        devices = self.devices if count is None else self.devices[:max(count, 0)]
        if not devices or [d.index for d in devices] == list(range(self.visible_count)):
            return None
        if any(d.rocr_index is None for d in devices):
            return None
        return ",".join(str(d.rocr_index) for d in devices)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(gpu_model=self.gpu_model, gpu_count=self.gpu_count, gfx=self.gfx)
        return data
