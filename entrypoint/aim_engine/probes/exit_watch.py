"""Seeing how the watched process (the agent, then the engine: same PID) ended.

The probe process is the engine's *child*, not its parent, so `waitpid` cannot tell it the exit
status. Linux can, two ways, and this module uses both:

- a pidfd opened while the process lives becomes readable the moment it exits, and from Linux
  6.15 `ioctl(PIDFD_GET_INFO)` with `PIDFD_INFO_EXIT` hands out the exit status once the parent
  has reaped it (a pidfd is not a child relationship, so this works from below);
- until it is reaped, `/proc/<pid>/stat` field 52 (`exit_code`) holds the same status.

On older kernels that reap before the probe reads `/proc`, the status is unknown and says so:
the time and the fact of the exit are still recorded.

Stdlib only: the probe process imports it.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import time
from dataclasses import dataclass
from typing import Any

# linux/pidfd.h: _IOWR(PIDFS_IOCTL_MAGIC 0xFF, 11, struct pidfd_info) with the 64-byte VER0 layout.
PIDFD_GET_INFO = 0xC040FF0B
PIDFD_INFO_EXIT = 1 << 3
PIDFD_INFO_SIZE_VER0 = 64
_EXIT_CODE_OFFSET = 60        # u64 mask, u64 cgroupid, 11 × u32 ids, then s32 exit_code
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: `code` (exit status) or `signal` (killed by it); both None when the
    kernel could not tell us any more."""

    at: float
    code: int | None = None
    signal: int | None = None

    @property
    def known(self) -> bool:
        return self.code is not None or self.signal is not None

    @property
    def clean(self) -> bool:
        """Exit 0, or ended by the stop signals an orchestrator sends: not a failure."""
        return self.code == 0 or (self.signal is not None and self.signal in STOP_SIGNALS)

    def describe(self) -> str:
        if self.signal is not None:
            return f"was killed by {signal_name(self.signal)}"
        if self.code is not None:
            return f"exited with code {self.code}"
        return "exited (status unknown: reaped before the probe could read it)"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "signal": signal_name(self.signal) if self.signal is not None else None,
                "signal_number": self.signal, "at": self.at, "description": self.describe()}


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal) from a waitpid-format status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def open_pidfd(pid: int) -> int | None:
    """A pidfd for `pid`, or None (old kernel, no permission, already gone)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def wait_readable(pidfd: int, timeout: float) -> bool:
    """True once the process behind `pidfd` has exited (a pidfd turns readable then)."""
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    except (OSError, ValueError):
        return False
    return bool(ready)


def _pidfd_exit_status(pidfd: int) -> int | None:
    import fcntl

    buf = bytearray(PIDFD_INFO_SIZE_VER0)
    struct.pack_into("Q", buf, 0, PIDFD_INFO_EXIT)
    try:
        fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf)
    except OSError:
        return None
    (mask,) = struct.unpack_from("Q", buf, 0)
    if not mask & PIDFD_INFO_EXIT:
        return None
    return int(struct.unpack_from("i", buf, _EXIT_CODE_OFFSET)[0])


def _zombie_exit_status(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    # fields[0] is field 3 (state); exit_code is field 52.
    if len(fields) < 50 or fields[0] not in (b"Z", b"X"):
        return None
    return int(fields[49])


def read_exit(pid: int, pidfd: int | None, patience: float = 1.0) -> ExitStatus:
    """The exit status of `pid`, which has just exited. Waits up to `patience` seconds for the
    parent to reap it (when only the pidfd can tell) before settling for "unknown"."""
    at = time.time()
    deadline = time.monotonic() + patience
    while True:
        status = _zombie_exit_status(pid)
        if status is None and pidfd is not None:
            status = _pidfd_exit_status(pidfd)
        if status is not None:
            code, sig = decode_wait_status(status)
            return ExitStatus(at=at, code=code, signal=sig)
        if time.monotonic() > deadline:
            return ExitStatus(at=at)
        time.sleep(0.02)
