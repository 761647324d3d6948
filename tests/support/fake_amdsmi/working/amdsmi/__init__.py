"""Fake `amdsmi` following the real Python bindings (amdsmi_interface.py, ROCm 6.x/7.x).

Shapes copied from the real interface: `amdsmi_get_gpu_asic_info` returns hex strings for
vendor_id/device_id ("0x74a1"), "gfx" + hex digits for target_graphics_version ("gfx942"),
"N/A" for unsupported fields; every call before `amdsmi_init()` or with a foreign handle raises;
unsupported getters raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED).

The machine comes from the JSON file named by AIM_TEST_FAKE_AMDSMI (see tests.support.fake_amdsmi),
read at amdsmi_init(). Config keys: "gpus": [...], "init_error": str (amdsmi_init raises),
"enumeration_info": bool (False: the getter is absent, as in releases before it existed),
"partition_error": bool (partition getters raise NOT_SUPPORTED).
"""

from __future__ import annotations

import json
import os
from enum import IntEnum
from typing import Any

# A subset of amdsmi_status_t; the agent relies on names and exception types, not on values.
AMDSMI_STATUS_SUCCESS = 0
AMDSMI_STATUS_INVAL = 1
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_DRM_ERROR = 6
AMDSMI_STATUS_INIT_ERROR = 18
AMDSMI_STATUS_NOT_INIT = 32


class AmdSmiException(Exception):
    """Base class of every amdsmi error."""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int, err_info: str = "") -> None:
        super().__init__(err_code, err_info)
        self.err_code = err_code
        self.err_info = err_info or f"AMDSMI status {err_code}"

    def get_error_code(self) -> int:
        return self.err_code

    def get_error_info(self) -> str:
        return self.err_info

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"


class AmdSmiParameterException(AmdSmiException):
    def __init__(self, received: Any, expected_type: Any) -> None:
        super().__init__(f"Invalid parameter: expected {expected_type}, got {type(received).__name__}")


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1
    INIT_NON_AMD_CPUS = 1 << 2
    INIT_NON_AMD_GPUS = 1 << 3
    INIT_AMD_APUS = INIT_AMD_CPUS | INIT_AMD_GPUS


class AmdSmiMemoryType(IntEnum):
    VRAM = 0
    VIS_VRAM = 1
    GTT = 2


class amdsmi_processor_handle:  # noqa: N801 - the real bindings' ctypes type name
    def __init__(self, index: int) -> None:
        self._index = index

    def __repr__(self) -> str:
        return f"<amdsmi_processor_handle {self._index}>"


_state: dict[str, Any] = {"initialized": False, "config": None, "override": None, "init_calls": 0, "shutdowns": 0}


def _fake_configure(config: dict[str, Any] | None) -> None:
    """Tests running in-process: describe the machine directly (None: go back to the env var)."""
    _state["override"] = config


def _config() -> dict[str, Any]:
    if _state["override"] is not None:
        return _state["override"]
    path = os.environ.get("AIM_TEST_FAKE_AMDSMI")
    if not path:
        return {"gpus": []}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _gpu(handle: Any) -> dict[str, Any]:
    if not _state["initialized"]:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT, "AMDSMI_STATUS_NOT_INIT - Device not initialized")
    if not isinstance(handle, amdsmi_processor_handle):
        raise AmdSmiParameterException(handle, amdsmi_processor_handle)
    gpus = _state["config"]["gpus"]
    if not 0 <= handle._index < len(gpus):
        raise AmdSmiLibraryException(AMDSMI_STATUS_INVAL, "AMDSMI_STATUS_INVAL - Invalid parameters")
    return gpus[handle._index]


def amdsmi_init(flag: int = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
    config = _config()
    _state["init_calls"] += 1
    if config.get("init_error"):
        raise AmdSmiLibraryException(AMDSMI_STATUS_INIT_ERROR, config["init_error"])
    _state["config"] = config
    _state["initialized"] = True


def amdsmi_shut_down() -> None:
    if not _state["initialized"]:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT, "AMDSMI_STATUS_NOT_INIT - Device not initialized")
    _state["initialized"] = False
    _state["shutdowns"] += 1


def amdsmi_get_processor_handles() -> list[amdsmi_processor_handle]:
    if not _state["initialized"]:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT, "AMDSMI_STATUS_NOT_INIT - Device not initialized")
    return [amdsmi_processor_handle(i) for i in range(len(_state["config"]["gpus"]))]


def amdsmi_get_gpu_asic_info(processor_handle: amdsmi_processor_handle) -> dict[str, Any]:
    g = _gpu(processor_handle)
    gfx_digits = g["gfx"][3:]
    info = {
        "market_name": g.get("market_name") or "N/A",
        "vendor_id": hex(0x1002),
        "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
        "subvendor_id": hex(0x1002),
        "device_id": hex(g["device_id"]) if g.get("device_id") else "N/A",
        "rev_id": "0x00",
        "asic_serial": f"0x{g.get('serial', 0xD1C0FFEE0000 + processor_handle._index):016X}",
        "oam_id": processor_handle._index,
        "num_compute_units": g.get("num_compute_units", "N/A"),
        "target_graphics_version": "gfx" + hex(int(gfx_digits, 16))[2:],
    }
    return info


def amdsmi_get_gpu_memory_total(processor_handle: amdsmi_processor_handle, mem_type: AmdSmiMemoryType) -> int:
    g = _gpu(processor_handle)
    if not isinstance(mem_type, AmdSmiMemoryType):
        raise AmdSmiParameterException(mem_type, AmdSmiMemoryType)
    if mem_type != AmdSmiMemoryType.VRAM:
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED, "AMDSMI_STATUS_NOT_SUPPORTED")
    return int(g["memory"])


def _partition(processor_handle: amdsmi_processor_handle, key: str) -> str:
    g = _gpu(processor_handle)
    if _state["config"].get("partition_error") or g.get(key) in (None, "N/A"):
        raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED, "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported")
    return g[key]


def amdsmi_get_gpu_compute_partition(processor_handle: amdsmi_processor_handle) -> str:
    return _partition(processor_handle, "compute_partition")


def amdsmi_get_gpu_memory_partition(processor_handle: amdsmi_processor_handle) -> str:
    return _partition(processor_handle, "memory_partition")


def amdsmi_get_gpu_kfd_info(processor_handle: amdsmi_processor_handle) -> dict[str, Any]:
    g = _gpu(processor_handle)
    return {"kfd_id": 10000 + g["node_id"], "node_id": g["node_id"], "current_partition_id": 0}


def amdsmi_get_gpu_device_bdf(processor_handle: amdsmi_processor_handle) -> str:
    return _gpu(processor_handle).get("bdf", "0000:00:00.0")


def amdsmi_get_gpu_device_uuid(processor_handle: amdsmi_processor_handle) -> str:
    _gpu(processor_handle)
    return f"{processor_handle._index:02x}ff74a1-0000-1000-8000-000000000000"


def _enumeration_info(processor_handle: amdsmi_processor_handle) -> dict[str, Any]:
    g = _gpu(processor_handle)
    return {
        "drm_render": g.get("drm_render") if g.get("drm_render") is not None else "N/A",
        "drm_card": processor_handle._index,
        "hsa_id": g["node_id"],
        "hip_id": processor_handle._index,
        "hip_uuid": g.get("hip_uuid") or "N/A",
    }


def __getattr__(name: str) -> Any:
    # amdsmi_get_gpu_enumeration_info only exists in newer releases; a config can hide it.
    if name == "amdsmi_get_gpu_enumeration_info":
        config = _state["config"] if _state["config"] is not None else _config()
        if config.get("enumeration_info", True):
            return _enumeration_info
    raise AttributeError(f"module 'amdsmi' has no attribute {name!r}")
