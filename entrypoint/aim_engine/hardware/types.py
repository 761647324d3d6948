"""What the agent believes about the machine: one typed, JSON-able result of detection."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(gpu_model=self.gpu_model, gpu_count=self.gpu_count, gfx=self.gfx)
        return data
