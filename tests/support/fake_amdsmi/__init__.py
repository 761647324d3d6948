"""A fake `amdsmi` (ROCm's management library bindings) for machines without an AMD GPU.

Two import roots, put first on sys.path / PYTHONPATH by tests:
- `WORKING`: follows the real Python API (function names, argument checks, return shapes:
  hex-string ids, "gfx942" targets, "N/A" for unsupported fields, AmdSmiLibraryException with
  err_code). Its machine is described by a JSON file named in `AIM_TEST_FAKE_AMDSMI` (read at
  `amdsmi_init()`, so one process can switch configs) or by `amdsmi._fake_configure(dict)`.
- `BROKEN`: the bindings without libamd_smi.so — prints to stdout, raises KeyError on import.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKING = HERE / "working"
BROKEN = HERE / "broken"
CONFIG_VAR = "AIM_TEST_FAKE_AMDSMI"


def gpu(model_device_id: int, gfx: str, memory: int, *, node_id: int, compute_units: int, market_name: str,
        uuid: str | None = None, drm_render: int | None = None, bdf: str = "0000:05:00.0",
        compute_partition: str = "SPX", memory_partition: str = "NPS1") -> dict[str, Any]:
    """One GPU entry of a fake machine."""
    return {"device_id": model_device_id, "gfx": gfx, "memory": memory, "node_id": node_id,
            "num_compute_units": compute_units, "market_name": market_name, "hip_uuid": uuid,
            "drm_render": drm_render, "bdf": bdf, "compute_partition": compute_partition,
            "memory_partition": memory_partition}


def from_tree(tree, *, cpu_nodes: int = 2, market_name: str = "AMD Instinct MI300X",
              with_enumeration: bool = True) -> dict[str, Any]:
    """A fake amdsmi machine matching a `tests.support.sysfs_tree.Tree` (same GPUs, same KFD
    nodes), listing *every* GPU as the real library does, including other containers' ones."""
    gpus = []
    for i, g in enumerate(tree.gpus):
        gpus.append(gpu(g.device_id, f"gfx{g.gfx_target_version // 10000}{(g.gfx_target_version // 100) % 100:x}"
                        f"{g.gfx_target_version % 100:x}", g.memory_bytes, node_id=cpu_nodes + i,
                        compute_units=g.compute_units, market_name=market_name,
                        uuid=g.uuid if with_enumeration else None, drm_render=g.render_minor, bdf=g.bdf,
                        compute_partition=g.compute_partition or "N/A", memory_partition=g.memory_partition or "N/A"))
    return {"gpus": gpus, "enumeration_info": with_enumeration}


def write_config(path: Path | str, config: dict[str, Any]) -> dict[str, str]:
    """Write a machine description; returns the environment that points the fake at it."""
    Path(path).write_text(json.dumps(config))
    return {CONFIG_VAR: str(path)}


def pythonpath(root: Path, environ: dict[str, str] | None = None) -> str:
    existing = (environ or os.environ).get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(root), existing) if p)
