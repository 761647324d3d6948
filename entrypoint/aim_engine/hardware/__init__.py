"""Hardware detection: which AMD GPUs (or which CPU) this container may use.

`detect(settings)` runs the probes (amdsmi, then KFD sysfs), applies ROCm's visibility variables,
keeps the largest homogeneous group and lets AIM_GPU_MODEL/AIM_GPU_COUNT have the last word.
`aim_engine.hardware.gpus` is the GPU spec table. Probes are imported lazily: importing this
package costs next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from aim_engine.hardware.types import Cpu, Device, Hardware

if TYPE_CHECKING:
    from aim_engine.settings import Settings

__all__ = ["Cpu", "Device", "Hardware", "detect"]


def detect(settings: "Settings", environ: Mapping[str, str] | None = None, *, use_amdsmi: bool = True) -> Hardware:
    """Detect the hardware; `environ` (default `os.environ`) supplies ROCR/HIP/CUDA_VISIBLE_DEVICES."""
    from aim_engine.hardware.detection import detect as _detect

    return _detect(settings, environ, use_amdsmi=use_amdsmi)
