"""Plain data the cache hands out: warm-up results and progress snapshots (no heavy imports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One progress snapshot of a warm-up, for logs, `/status` and waiters in other pods.

    `phase` is one of: checking, resolving, waiting (another process holds the lock; the byte
    counts are then the holder's), downloading, verifying, complete. `rate` is bytes/s.
    """

    phase: str
    bytes_done: int = 0
    bytes_total: int = 0
    rate: float = 0.0
    holder: str | None = None
    model: str | None = None
    files_done: int = 0
    files_total: int = 0

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.bytes_total if self.bytes_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rate"] = round(self.rate, 1)
        return out


@dataclass(frozen=True)
class WarmResult:
    """What `cache.warm` produced.

    `path` is the directory to give the engine (the snapshot directory, or the local model
    directory). `offline` is True when the engine may run with HF_HUB_OFFLINE=1 (the cache holds
    everything it needs). `already_warm` is True when this call downloaded nothing.
    """

    path: str
    commit: str | None
    already_warm: bool
    files: tuple[str, ...] = ()
    bytes: int = 0
    downloaded_bytes: int = 0
    revision: str | None = None
    offline: bool = True
    local: bool = False
    repo_id: str | None = None
    lock_wait_s: float = 0.0     # time spent waiting for another process's warm-up of this model


def size_text(n: int) -> str:
    """Bytes for people, as the cache's logs, errors and `cache list` write them: GB from 0.1 GB
    up, MB below."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
