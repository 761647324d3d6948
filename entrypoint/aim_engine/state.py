"""The boot's state, shared between the agent and its probe process through one JSON file.

The agent is the only writer; the probe process (`python -m aim_engine.probes`) only reads. Each
write replaces the file atomically (temp file + rename in the same directory), so the probe never
sees a half-written document. The file outlives the agent's `execve`: the last thing the agent
writes is the `engine_starting` phase with the engine's URL and the served model name, and from
then on the probe watches the engine itself.

Stdlib only: the probe process imports this module and must start in milliseconds.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The state file is written and read through the shared atomic-file helpers (one rename per
# write; a reader gets None rather than an error for a missing or unreadable file).
from aim_engine.atomic import read_json as read_state
from aim_engine.atomic import write_json as write_json_atomic

__all__ = ["PHASES", "TERMINAL", "BootState", "read_state", "write_json_atomic"]

# Phases in boot order. `ready` is computed by the probe (the engine lists the model); `failed`
# and `stopped` are terminal for the agent.
PHASES: tuple[str, ...] = (
    "starting",         # settings parsed, probes coming up
    "detecting",        # GPUs (or the CPU)
    "selecting",        # catalog + recipe selection
    "joining",          # a group's worker joins its leader (docs/multinode.md)
    "downloading",      # cache warm-up under the lock (skipped for local directories)
    "rendering",        # recipe -> engine argv and environment
    "prelude",          # the launch's prelude commands (e.g. `ray start --head`) run and are waited for
    "waiting_for_workers",  # a group's leader waits for every worker to join and be ready to start
    "waiting_for_leader",   # a group's worker waits for its leader's go before its exec
    "engine_starting",  # the agent has exec'd the engine; waiting for /v1/models
    "ready",            # the engine lists the model
    "failed",           # the boot failed; `error` says why; the process exits non-zero soon
    "stopped",          # SIGTERM/SIGINT before the exec
)
TERMINAL = frozenset({"failed", "stopped"})
PROGRESS_INTERVAL_S = 0.5   # at most two progress writes a second


@dataclass
class BootState:
    """What the agent knows about its boot, written to `path` on every change.

    `masker` (e.g. `aim_engine.redact.mask`) is applied to the whole document before it is
    written, so a secret can't reach `/status` whatever a caller stores here.
    """

    path: Path
    masker: Any = None
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    phase: str = "starting"
    phases: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)   # hardware, plan, engine, download, ...
    error: dict[str, Any] | None = None
    _phase_t0: float = field(default_factory=time.monotonic)
    _last_progress_write: float = 0.0
    _lock: Any = field(default_factory=threading.RLock, repr=False)   # progress arrives from download threads

    def __post_init__(self) -> None:
        self.phases.append({"name": self.phase, "started_at": self.started_at, "duration_s": None})

    # --- phases ------------------------------------------------------------------------------

    def enter(self, phase: str) -> float:
        """Close the current phase (recording its duration) and open `phase`; returns the
        closed phase's duration in seconds."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        duration = self._close_phase()
        self.phase = phase
        self.phases.append({"name": phase, "started_at": time.time(), "duration_s": None})
        self._phase_t0 = time.monotonic()
        self.write()
        return duration

    def _close_phase(self) -> float:
        duration = time.monotonic() - self._phase_t0
        if self.phases and self.phases[-1]["duration_s"] is None:
            self.phases[-1]["duration_s"] = round(duration, 4)
        return duration

    def fail(self, message: str, hint: str | None = None, kind: str = "error") -> None:
        self.error = {"message": message, "hint": hint, "kind": kind, "phase": self.phase}
        self.enter("failed")

    # --- data ----------------------------------------------------------------------------------

    def update(self, **items: Any) -> None:
        self.data.update(items)
        self.write()

    def progress(self, **items: Any) -> None:
        """Download progress: written at most every PROGRESS_INTERVAL_S, except that a change of
        its `phase` (resolving -> downloading -> complete) and `final=True` are always written."""
        final = items.pop("final", False)
        previous = self.data.get("download") or {}
        self.data["download"] = items
        now = time.monotonic()
        if final or items.get("phase") != previous.get("phase") \
                or now - self._last_progress_write >= PROGRESS_INTERVAL_S:
            self._last_progress_write = now
            self.write()

    def timings(self) -> dict[str, float]:
        return {p["name"]: p["duration_s"] for p in self.phases if p["duration_s"] is not None}

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "phase": self.phase,
            "pid": self.pid,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "phases": self.phases,
            "timings": self.timings(),
            "error": self.error,
            **self.data,
        }
        return self.masker(doc) if self.masker else doc

    def write(self) -> None:
        with self._lock:
            write_json_atomic(self.path, self.to_dict())
