"""amdsmi probe: ROCm's management library, when it is installed and can talk to the driver.

`import amdsmi` is fragile outside a full ROCm install: without `libamd_smi.so` it raises
KeyError (not ImportError) and prints to stdout, which would corrupt `detect --json`. So the
import and `amdsmi_init()` run with stdout (the Python object and file descriptor 1) diverted,
and *any* exception makes the probe step aside (`None`) so the sysfs probe runs instead.

API used (amdsmi Python bindings, ROCm 6.x/7.x): `amdsmi_init`, `amdsmi_get_processor_handles`,
`amdsmi_get_gpu_asic_info` (market_name, device_id "0x74a1", num_compute_units,
target_graphics_version "gfx942"), `amdsmi_get_gpu_memory_total(h, AmdSmiMemoryType.VRAM)`,
`amdsmi_get_gpu_compute_partition` / `amdsmi_get_gpu_memory_partition`, `amdsmi_get_gpu_kfd_info`
(node_id), `amdsmi_get_gpu_enumeration_info` (drm_render, hsa_id, hip_uuid; newer releases),
`amdsmi_get_gpu_device_bdf`, `amdsmi_shut_down`. Optional getters may be missing or raise:
each is asked separately and a failure only loses that one fact.

amdsmi lists every GPU of the machine, including other containers' GPUs; each device is checked
against its KFD node, and a node that answers EPERM is dropped, as the sysfs probe does.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from aim_engine.hardware import gpus, sysfs_probe
from aim_engine.hardware.raw import ProbeResult, RawGpu

_NOT_AVAILABLE = ("", "N/A", "NA", None)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[io.StringIO]:
    """Divert stdout (Python-level and fd 1, for the C library) while amdsmi loads and starts."""
    captured = io.StringIO()
    saved_fd = None
    sink = None
    try:
        import tempfile  # lazily: only needed when amdsmi is tried

        sys.stdout.flush()
        saved_fd = os.dup(1)
        sink = tempfile.TemporaryFile()
        os.dup2(sink.fileno(), 1)
    except Exception:
        if saved_fd is not None:  # half set up: undo, then fall back to Python-level diversion only
            with contextlib.suppress(OSError):
                os.dup2(saved_fd, 1)
                os.close(saved_fd)
        saved_fd = None  # no real fd 1 (embedded, captured): Python-level only
    try:
        with contextlib.redirect_stdout(captured):
            yield captured
    finally:
        if saved_fd is not None:
            with contextlib.suppress(OSError):
                os.dup2(saved_fd, 1)
                os.close(saved_fd)
        if sink is not None:
            with contextlib.suppress(OSError):
                sink.seek(0)
                captured.write(sink.read().decode(errors="replace"))
                sink.close()


def _optional(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except Exception:  # an unsupported getter costs one fact, never the probe
        return None


def _text(value: Any) -> str | None:
    if value in _NOT_AVAILABLE:
        return None
    return str(value).strip() or None


def _int(value: Any) -> int | None:
    if value in _NOT_AVAILABLE:
        return None
    try:
        return int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        return None


def _gfx(value: Any) -> str | None:
    """`target_graphics_version` is "gfx942" in current bindings; older ones gave a number."""
    if isinstance(value, str) and value.lower().startswith("gfx"):
        return value.lower().split(":")[0]
    number = _int(value)
    if number is None:
        return None
    return gpus.gfx_name(number) if number >= 10000 else f"gfx{number:x}"


def _device(amdsmi: Any, handle: Any, root: Path, read: sysfs_probe.Reader) -> tuple[RawGpu | None, str | None, int]:
    """One handle -> (RawGpu or None, a warning or None, sort key)."""
    asic = amdsmi.amdsmi_get_gpu_asic_info(handle)
    gfx = _gfx(asic.get("target_graphics_version"))
    if gfx is None:
        return None, f"amdsmi: {asic.get('market_name') or 'a GPU'} reports no gfx target; skipped", 0
    kfd = _optional(amdsmi.amdsmi_get_gpu_kfd_info, handle) or {}
    node_id = _int(kfd.get("node_id"))
    node: dict[str, int] = {}
    if node_id is not None:
        try:
            node = sysfs_probe.node_properties(root, node_id, read) or {}
        except PermissionError:
            return None, None, -1  # another container's GPU
    enumeration = {}
    if hasattr(amdsmi, "amdsmi_get_gpu_enumeration_info"):
        enumeration = _optional(amdsmi.amdsmi_get_gpu_enumeration_info, handle) or {}
    memory_type = getattr(getattr(amdsmi, "AmdSmiMemoryType", None), "VRAM", 0)
    memory = _int(_optional(amdsmi.amdsmi_get_gpu_memory_total, handle, memory_type))
    device_id = _int(asic.get("device_id"))
    uuid = _text(enumeration.get("hip_uuid")) or sysfs_probe.rocm_uuid(node.get("unique_id"))
    render = _int(enumeration.get("drm_render"))
    compute_mode = _text(_optional(amdsmi.amdsmi_get_gpu_compute_partition, handle))
    memory_mode = _text(_optional(amdsmi.amdsmi_get_gpu_memory_partition, handle))
    raw = RawGpu(
        gfx=gfx,
        device_id=gpus.normalize_device_id(device_id & 0xFFFF) if device_id is not None else None,
        memory_bytes=memory or None,
        compute_units=_int(asic.get("num_compute_units")),
        uuid=uuid,
        render_node=f"/dev/dri/renderD{render}" if render else None,
        pci_bus=_text(_optional(amdsmi.amdsmi_get_gpu_device_bdf, handle)),
        compute_partition=compute_mode.upper() if compute_mode else None,
        memory_partition=memory_mode.upper() if memory_mode else None,
        node_id=node_id,
        market_name=_text(asic.get("market_name")),
    )
    order = _int(enumeration.get("hsa_id"))
    return raw, None, order if order is not None else (node_id if node_id is not None else 0)


def probe(root: Path | str = "/", read: sysfs_probe.Reader = sysfs_probe.read_text) -> tuple[ProbeResult | None, str]:
    """(result, why) — result is None when amdsmi is unusable or sees no GPU; `why` says which."""
    root = Path(root)
    # Not installed (CPU hosts, CI): say so without diverting stdout around an import that
    # cannot succeed (that costs a temporary file and ~5 ms of every boot).
    if "amdsmi" not in sys.modules and importlib.util.find_spec("amdsmi") is None:
        return None, "amdsmi unavailable (not installed)"
    printed = io.StringIO()
    try:
        with quiet_stdout() as printed:
            amdsmi = importlib.import_module("amdsmi")
            init_flags = getattr(getattr(amdsmi, "AmdSmiInitFlags", None), "INIT_AMD_GPUS", None)
            amdsmi.amdsmi_init(init_flags) if init_flags is not None else amdsmi.amdsmi_init()
    except Exception as exc:  # KeyError without libamd_smi.so, AmdSmiException without a driver, ...
        del printed  # what the library printed while failing is noise for the user; the reason is returned
        return None, f"amdsmi unavailable ({type(exc).__name__}: {str(exc)[:120] or 'no detail'})"
    result = ProbeResult(source="amdsmi")
    ordered: list[tuple[int, int, RawGpu]] = []
    try:
        handles = list(amdsmi.amdsmi_get_processor_handles())
        for position, handle in enumerate(handles):
            try:
                raw, warning, order = _device(amdsmi, handle, root, read)
            except Exception as exc:
                result.warnings.append(f"amdsmi: GPU handle {position} skipped ({type(exc).__name__}: {exc})")
                continue
            if warning:
                result.warnings.append(warning)
            if raw is None:
                result.denied += order == -1
                continue
            ordered.append((order, position, raw))
    except Exception as exc:
        return None, f"amdsmi failed while listing GPUs ({type(exc).__name__}: {str(exc)[:120]})"
    finally:
        with contextlib.suppress(Exception):
            amdsmi.amdsmi_shut_down()
    result.gpus = [raw for _, _, raw in sorted(ordered, key=lambda item: (item[0], item[1]))]
    if result.denied:
        result.notes.append(
            f"{result.denied} GPU(s) answered EPERM on their KFD node: they belong to other containers and are not counted"
        )
    if not result.gpus and not result.denied:
        return None, "amdsmi sees no GPU"
    return result, "amdsmi"
