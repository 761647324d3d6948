"""The host CPU as the vLLM CPU backend will see it: model name, usable cores, usable memory.

Cores are the CPUs this process may run on (`sched_getaffinity`: a container's cpuset, not the
host's count). Memory is MemTotal from `/proc/meminfo`, capped by the cgroup v2 `memory.max` when
the container has a limit. Files are read under the sysfs root, so fixture trees describe a CPU too.
"""

from __future__ import annotations

import os
from pathlib import Path

from aim_engine.hardware.types import Cpu

_MODEL_KEYS = ("model name", "hardware", "cpu model", "processor")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def model_name(root: Path) -> str:
    text = _read(root / "proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in _MODEL_KEYS:
        value = fields.get(key)
        if value and not value.isdigit():  # x86 "processor : 0" is an index, not a name
            return value
    # No name in cpuinfo (aarch64 kernels write none; a fixture root has no /proc): the machine
    # type from uname(2). platform.processor() said the same, but forks `uname -p` (~15 ms).
    return os.uname().machine or "unknown CPU"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_bytes(root: Path) -> int:
    total = 0
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                total = int(parts[1]) * 1024  # the kernel writes kB (KiB)
            break
    limit = (_read(root / "sys/fs/cgroup/memory.max") or "").strip()
    if limit.isdigit() and (total == 0 or int(limit) < total):
        total = int(limit)
    return total


def detect_cpu(root: Path | str = "/") -> Cpu:
    root = Path(root)
    return Cpu(model=model_name(root), cores=cores(), memory_bytes=memory_bytes(root))
