"""What a probe reports about one GPU before any policy is applied.

Probes (amdsmi, KFD sysfs) only *observe*: they list the GPUs this container can open, in
ROCm's enumeration order, with whatever facts the source offers. Visibility variables,
homogeneity and overrides are applied afterwards by `detection`, the same way for every probe.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RawGpu:
    gfx: str                              # "gfx942"
    device_id: str | None = None          # "0x74a1"
    memory_bytes: int | None = None       # what the driver reports for this device (a partition's share)
    compute_units: int | None = None
    uuid: str | None = None               # ROCm form: "GPU-" + 16 hex digits of KFD unique_id
    render_node: str | None = None        # "/dev/dri/renderD128"
    pci_bus: str | None = None            # "0000:0c:00.0"
    compute_partition: str | None = None  # SPX, DPX, TPX, QPX, CPX
    memory_partition: str | None = None   # NPS1, NPS2, NPS4
    node_id: int | None = None            # KFD topology node
    market_name: str | None = None


@dataclass
class ProbeResult:
    """GPUs a probe saw (only those this container may use), plus what it wants to tell the user."""

    source: str
    gpus: list[RawGpu] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    denied: int = 0                       # GPU nodes that belong to another container (EPERM)
