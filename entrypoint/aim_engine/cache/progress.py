"""Download progress: thread-safe byte counting, a windowed rate, throttled logs and callbacks.

Logs go out every `log_every` seconds or at each 10% step, whichever comes first; callbacks
(`on_progress`, the lock's holder file) at most a few times a second and on every phase change.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from aim_engine.cache.types import Progress

Listener = Callable[[Progress], None]


class Tracker:
    def __init__(self, model: str, listeners: list[Listener], log: Any, log_every: float = 10.0,
                 notify_every: float = 0.25) -> None:
        self.model = model
        self.listeners = listeners
        self.log = log
        self.log_every = log_every
        self.notify_every = notify_every
        self._lock = threading.Lock()
        self.phase = "checking"
        self.bytes_total = 0
        self.bytes_done = 0
        self.files_total = 0
        self.files_done = 0
        self.holder: str | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._last_log = time.monotonic()
        self._last_decile = 0
        self._last_notify = 0.0
        self.started = time.monotonic()

    def _rate(self, now: float) -> float:
        while len(self._samples) > 2 and now - self._samples[0][0] > 5.0:
            self._samples.popleft()
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self) -> Progress:
        with self._lock:
            return self._snapshot(time.monotonic())

    def _snapshot(self, now: float) -> Progress:
        return Progress(self.phase, self.bytes_done, self.bytes_total, self._rate(now), self.holder, self.model,
                        self.files_done, self.files_total)

    def _emit(self, progress: Progress) -> None:
        for listener in self.listeners:
            try:
                listener(progress)
            except Exception as exc:  # a broken listener must not break the download
                self.log.warning("progress listener failed", error=str(exc))

    def set_phase(self, phase: str, **fields: Any) -> None:
        with self._lock:
            self.phase = phase
            for k, v in fields.items():
                setattr(self, k, v)
            if phase == "downloading":
                self._samples.clear()
                self._samples.append((time.monotonic(), self.bytes_done))
            snap = self._snapshot(time.monotonic())
        self._emit(snap)

    def add(self, n: int) -> None:
        if not n:
            return
        log_now = notify = False
        with self._lock:
            self.bytes_done += n
            now = time.monotonic()
            self._samples.append((now, self.bytes_done))
            decile = int(10 * self.bytes_done / self.bytes_total) if self.bytes_total else 0
            if now - self._last_log >= self.log_every or decile > self._last_decile:
                self._last_log, self._last_decile, log_now = now, max(decile, self._last_decile), True
            if now - self._last_notify >= self.notify_every:
                self._last_notify, notify = now, True
            snap = self._snapshot(now)
        if log_now:
            self.log.info("download progress", model=self.model, done_mb=round(snap.bytes_done / 1e6, 1),
                          total_mb=round(snap.bytes_total / 1e6, 1), percent=round(100 * snap.fraction, 1),
                          rate_mb_s=round(snap.rate / 1e6, 1), files=f"{snap.files_done}/{snap.files_total}")
        if notify:
            self._emit(snap)

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
            self._last_notify = time.monotonic()
            snap = self._snapshot(self._last_notify)
        self._emit(snap)   # never throttled: bytes arrive in 10 MB chunks, so a file's end matters

    def waiting(self, holder: str, holder_progress: dict[str, Any] | None) -> None:
        """Report that another process holds the lock, with its progress if it published one."""
        with self._lock:
            self.phase, self.holder = "waiting", holder
            if holder_progress:
                self.bytes_done = int(holder_progress.get("bytes_done", 0))
                self.bytes_total = int(holder_progress.get("bytes_total", 0))
                self.files_done = int(holder_progress.get("files_done", 0))
                self.files_total = int(holder_progress.get("files_total", 0))
            snap = self._snapshot(time.monotonic())
            if holder_progress:
                snap = Progress(snap.phase, snap.bytes_done, snap.bytes_total, float(holder_progress.get("rate", 0.0)),
                                holder, self.model, snap.files_done, snap.files_total)
        self._emit(snap)

    def tqdm_class(self, counted: list[int], stop: threading.Event | None = None) -> type:
        """A tqdm look-alike for huggingface_hub's per-file progress (`tqdm_class=`) feeding this tracker.

        `counted[0]` accumulates this file's bytes, so a failed attempt can be un-counted. Once
        `stop` is set, the next chunk raises `Cancelled`: huggingface_hub leaves its `.incomplete`
        temp file (never renamed into the snapshot) and the worker thread ends.
        """
        tracker = self

        class _Bar:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                pass

            def __enter__(self) -> "_Bar":
                return self

            def __exit__(self, *exc: Any) -> None:
                pass

            def update(self, n: int | float | None = 1) -> None:
                if stop is not None and stop.is_set():
                    from aim_engine.cache.download import Cancelled

                    raise Cancelled()
                counted[0] += int(n or 0)
                tracker.add(int(n or 0))

            def close(self) -> None:
                pass

            def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
                pass

            def refresh(self) -> None:
                pass

        return _Bar
