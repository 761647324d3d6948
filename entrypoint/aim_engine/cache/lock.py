"""One warm-up per model at a time, across processes and pods, that a SIGKILL can't wedge.

Two layers, both from `filelock`, taken in this order and released in reverse:

1. `FileLock` (flock(2)) on `locks/<repo>.lock`. On local disks and most block-backed PVCs the
   kernel drops it the instant its holder dies, SIGKILL included, so a waiter takes over at once.
2. `SoftFileLease` on `locks/<repo>.lease`: a marker file created with O_EXCL and touched by a
   heartbeat thread. It holds where flock is a silent no-op (some NFS/Lustre/GPFS/FUSE mounts). A
   waiter takes it over when its holder is a dead process on the same host (pid + start time), or
   when the marker has not changed for `lease_duration` seconds measured on the waiter's own
   monotonic clock (no clock agreement between pods needed).

When we hold the flock and a self-test shows flock really excludes (a second open file
description of the lock file cannot take it), any lease marker left behind belongs to a dead
holder: it is removed at once instead of waiting out its duration.

Correctness never depends on the lock: huggingface_hub writes each blob to a unique temp file
and renames it, and the completeness marker is written only after verification. A lock failure
costs duplicated bandwidth, not a corrupt model.

`holder.json` (written by the holder, atomically) says who holds the lock — host, pid, start
time — and its latest progress, so waiters in other pods can log and report it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aim_engine.atomic import read_json, write_json
from aim_engine.cache.layout import Layout
from aim_engine.cache.types import Progress
from aim_engine.errors import AimError

LEASE_DURATION = 30.0
HEARTBEAT = 10.0
POLL = 0.5


class LockTimeout(AimError):
    pass


class ReadOnlyCache(AimError):
    pass


@dataclass(frozen=True)
class LockOptions:
    lease_duration: float = LEASE_DURATION
    heartbeat: float = HEARTBEAT
    poll: float = POLL
    use_flock: bool = True   # False emulates a filesystem where flock is a no-op (tests, docs)


HOLDER_MAX_BYTES = 64 << 10   # holder.json is ~300 bytes; anything larger is not ours


def read_holder(path: Path) -> dict[str, Any] | None:
    return read_json(path, limit=HOLDER_MAX_BYTES)


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e18
    return float(value) if ok and value == value else None


def _word(value: Any, limit: int = 64) -> str:
    """A holder-file value as a message shows it: printable, short (the file is cache content)."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[:limit] + "..."


def describe_holder(info: dict[str, Any] | None) -> str:
    """Who holds the lock, for waiters' logs and errors. `info` is read from the shared volume, so
    any value may be of any type: it is shown, never trusted."""
    if not info:
        return "an unknown process"
    started = _number(info.get("started"))
    since = time.strftime("%H:%M:%S", time.gmtime(started)) if started is not None and started >= 0 else "?"
    text = f"pid {_word(info.get('pid'))} on {_word(info.get('host'))} (since {since} UTC"
    prog = info.get("progress") if isinstance(info.get("progress"), dict) else {}
    total, done = _number(prog.get("bytes_total")), _number(prog.get("bytes_done")) or 0.0
    if total:
        text += f", {_word(prog.get('phase', '?'))} {100.0 * done / total:.0f}% of {total / 1e9:.2f} GB"
    elif prog.get("phase"):
        text += f", {_word(prog['phase'])}"
    return text + ")"


def _flock_excludes(path: Path) -> bool:
    """True if flock on `path` really excludes: a second open file description can't take it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        # It succeeded although we hold the lock: flock is not exclusive here. (On filesystems that
        # map flock to per-process POSIX locks, closing this fd drops ours too; the lease still holds.)
        return False
    finally:
        os.close(fd)


class ModelLock:
    """The per-model warm-up lock. `acquire()` waits (reporting the holder) up to `timeout`."""

    def __init__(self, layout: Layout, repo_id: str, options: LockOptions | None = None) -> None:
        import filelock  # light, but only needed on the slow path

        self.options = options or LockOptions()
        self.repo_id = repo_id
        self.layout = layout
        self.lock_path = layout.lock(repo_id)
        self.lease_path = layout.lease(repo_id)
        self.holder_path = layout.holder(repo_id)
        self._filelock = filelock
        self._flock: Any = None
        self._lease: Any = None
        self._held = False
        self._info: dict[str, Any] = {}
        self._last_publish = 0.0

    # -- acquire / release

    def _prepare(self) -> None:
        folder = self.lock_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            pass   # not a folder: said below
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnlyCache(f"cannot write to the model cache at {folder} ({exc.strerror})")
            raise AimError(f"cannot create the cache's lock folder {folder}: {exc.strerror or exc}",
                           hint="check AIM_CACHE_PATH and the volume mounted there") from None
        if folder.is_symlink():
            self.layout.confined(folder, target=self.layout.aim, what="lock folder")   # "outside the cache"
        if folder.is_symlink() or not folder.is_dir():
            raise AimError(f"the cache's lock folder {folder} is not a folder",
                           hint=f"remove {folder} (the lock files are recreated); the cached models are kept")
        for path in (self.lock_path, self.lease_path, self.holder_path):
            self.layout.confined(path, folder=folder, what="lock file")
        try:
            # No O_TRUNC, and never through a symlink: a planted link must not create or touch a
            # file outside the cache (filelock itself opens with O_NOFOLLOW).
            os.close(os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644))
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnlyCache(f"cannot write to the model cache at {folder} ({exc.strerror})")
            raise AimError(f"cannot open the cache lock {self.lock_path}: {exc.strerror or exc}",
                           hint=f"remove {self.lock_path} if it is not a plain file (it is recreated)") from None
        fl = self._filelock
        self._flock = fl.FileLock(str(self.lock_path), thread_local=False) if self.options.use_flock else None
        self._lease = fl.SoftFileLease(str(self.lease_path), lease_duration=self.options.lease_duration,
                                       heartbeat_interval=self.options.heartbeat, thread_local=False)

    def acquire(self, timeout: float, on_wait: Callable[[dict[str, Any] | None, float], None] | None = None) -> None:
        """Take both layers; call `on_wait(holder_info, waited_s)` while waiting; raise LockTimeout.

        `timeout` 0 means: try once, do not wait (a free lock is taken, a held one fails at once).
        """
        self._prepare()
        fl = self._filelock
        started = time.monotonic()
        tries = 0
        while True:
            waited = time.monotonic() - started
            remaining = timeout - waited
            tries += 1
            if remaining <= 0 and tries > 1:
                info = read_holder(self.holder_path)
                waited_text = (f"timed out after {timeout:.0f}s waiting for" if timeout > 0 else
                               "AIM_LOCK_TIMEOUT is 0 (try once, do not wait) and another process holds")
                raise LockTimeout(
                    f"{waited_text} the cache lock of {self.repo_id}, held by {describe_holder(info)}",
                    hint="raise AIM_LOCK_TIMEOUT, or check that process; a killed holder's lock frees itself "
                         f"(at once on local disks, after {self.options.lease_duration:.0f}s on network filesystems)")
            step = max(0.0, min(self.options.poll, remaining))
            if self._flock is not None:
                try:
                    self._flock.acquire(timeout=step, poll_interval=min(0.05, step))
                except fl.Timeout:
                    if on_wait:
                        on_wait(read_holder(self.holder_path), waited)
                    continue
                if _flock_excludes(self.lock_path) and os.path.lexists(self.lease_path):
                    # A real flock is ours, so whoever left the lease marker no longer runs.
                    self.layout.confined(self.lease_path, folder=self.lock_path.parent, what="lease file")
                    self.lease_path.unlink(missing_ok=True)
            try:
                self._lease.acquire(timeout=step, poll_interval=min(0.05, step))
            except fl.Timeout:
                if self._flock is not None:
                    self._flock.release()
                if on_wait:
                    on_wait(read_holder(self.holder_path), waited)
                if self._flock is not None:
                    time.sleep(min(self.options.poll, max(remaining - step, 0)))
                continue
            break
        self._held = True
        self._info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                      "repo_id": self.repo_id, "progress": None}
        try:
            write_json(self.holder_path, self._info, inside=self.layout.cache_path)
        except BaseException:
            self.release()
            raise

    def publish(self, progress: Progress, force: bool = False) -> None:
        """Record our progress in holder.json for waiters: on phase/file changes, else at most every second."""
        if not self._held:
            return
        now = time.monotonic()
        previous = self._info.get("progress") or {}
        changed = (previous.get("phase"), previous.get("files_done")) != (progress.phase, progress.files_done)
        if not force and not changed and now - self._last_publish < 1.0:
            return
        self._last_publish = now
        self._info["progress"] = progress.to_dict()
        try:
            write_json(self.holder_path, self._info, inside=self.layout.cache_path)
        except (OSError, AimError):
            pass

    @property
    def lost(self) -> bool:
        """True if our lease was taken over (we were presumed dead): duplicated work is possible."""
        return self._lease is not None and self._lease.compromise is not None

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        info = read_holder(self.holder_path)
        if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
            try:
                self.layout.confined(self.holder_path, folder=self.lock_path.parent, what="holder file")
                self.holder_path.unlink(missing_ok=True)
            except (OSError, AimError):
                pass   # a stale holder file only misleads a waiter's log line
        try:
            self._lease.release()
        finally:
            if self._flock is not None:
                self._flock.release()

    def __enter__(self) -> "ModelLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
