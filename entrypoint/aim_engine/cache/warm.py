"""`warm()`: make one model revision complete in the persistent cache, or prove it already is.

Fast path (every boot after the first): read the completeness marker and stat its files — no
network, no huggingface_hub import, no lock. Slow path: take the model's lock, check again (a
peer may have finished meanwhile), resolve the revision to a commit with one hub call, pick the
files the engine needs, repair what is damaged, check free space, download what is missing in
parallel, verify, then write the marker last.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from aim_engine.atomic import write_text
from aim_engine.confine import read_bounded
from aim_engine.cache import marker as markers
from aim_engine.cache.layout import Layout, check_cache_root, check_repo_id, check_revision, is_local_model
from aim_engine.cache.types import Progress, WarmResult, size_text
from aim_engine.errors import AimError
from aim_engine.logs import get_logger


def free_space(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _default_lock_options() -> Any:
    from aim_engine.cache.lock import LockOptions

    return LockOptions()


def _default_retry() -> Any:
    from aim_engine.cache.download import RetryPolicy

    return RetryPolicy()


@dataclass(frozen=True)
class WarmOptions:
    """Knobs that are not user settings (tests shorten timings; `refresh` re-resolves a branch)."""

    lock: Any = field(default_factory=_default_lock_options)
    retry: Any = field(default_factory=_default_retry)
    max_workers: int = 8
    free_space: Callable[[Path], int] = free_space
    log_every: float = 10.0
    refresh: bool = False


def _result(layout: Layout, marker: markers.Marker, already_warm: bool, downloaded: int = 0) -> WarmResult:
    return WarmResult(path=str(layout.snapshot(marker.repo_id, marker.commit)), commit=marker.commit,
                      already_warm=already_warm, files=tuple(f.path for f in marker.files), bytes=marker.bytes,
                      downloaded_bytes=downloaded, revision=marker.revision, offline=True, repo_id=marker.repo_id)


def local_model(model_id: str) -> WarmResult:
    """A local model directory is used in place: never copied, never locked, never downloaded."""
    path = Path(model_id).expanduser()
    if not path.is_dir():
        raise AimError(f"AIM_MODEL_ID={model_id!r} is a local path but no such directory exists",
                       hint="mount the model there (KServe: /mnt/models) or use a Hugging Face id like org/name")
    files = tuple(sorted(e.name for e in os.scandir(path) if e.is_file()))
    size = sum((path / f).stat().st_size for f in files)
    return WarmResult(path=str(path.resolve()), commit=None, already_warm=True, files=files, bytes=size,
                      offline=True, local=True, repo_id=model_id)


def warm(repo_id: str, settings: Any, revision: str | None = None,
         on_progress: Callable[[Progress], None] | None = None, *, options: WarmOptions | None = None) -> WarmResult:
    """Make `repo_id`@`revision` (default `settings.model_revision`) complete in `settings.hub_cache`."""
    revision = revision or settings.model_revision or "main"
    if is_local_model(repo_id):
        return local_model(repo_id)
    check_repo_id(repo_id)
    check_revision(revision)
    layout = Layout.of(settings)
    log = get_logger("aim_engine.cache", model=repo_id, revision=revision)

    started = time.perf_counter()
    found, why = markers.quick_check(layout, repo_id, revision)
    if found is not None and not (options and options.refresh):
        log.info("model cache is warm", commit=found.commit, files=len(found.files), size=size_text(found.bytes),
                 check_ms=round(1000 * (time.perf_counter() - started), 2))
        if on_progress:
            on_progress(Progress("complete", found.bytes, found.bytes, 0.0, None, repo_id, len(found.files),
                                 len(found.files)))
        return _result(layout, found, already_warm=True)

    check_cache_root(settings.cache_path)
    if settings.offline:
        raise AimError(f"AIM_OFFLINE is set and {repo_id}@{revision} is not complete in the cache at "
                       f"{settings.cache_path}: {why}",
                       hint="warm the cache where the hub is reachable (`aim-engine download` in a Job or init "
                            "container) and mount the same volume, or unset AIM_OFFLINE")
    if found is None:
        log.info("model cache is cold", reason=why)
    options = options or WarmOptions()   # not before: its defaults import the lock and download modules
    return _warm_locked(repo_id, revision, settings, layout, options, on_progress, log, why)


def _warm_locked(repo_id: str, revision: str, settings: Any, layout: Layout, options: WarmOptions,
                 on_progress: Callable[[Progress], None] | None, log: Any, why: str) -> WarmResult:
    from aim_engine.cache.lock import ModelLock, ReadOnlyCache, describe_holder
    from aim_engine.cache.progress import Tracker

    lock = ModelLock(layout, repo_id, options.lock)
    tracker = Tracker(repo_id, [on_progress] if on_progress else [], log, log_every=options.log_every)
    tracker.listeners.append(lock.publish)
    last_wait_log = [0.0]

    def on_wait(info: dict[str, Any] | None, waited: float) -> None:
        holder = describe_holder(info)
        tracker.waiting(holder, (info or {}).get("progress"))
        if waited - last_wait_log[0] >= options.log_every or last_wait_log[0] == 0.0:
            last_wait_log[0] = max(waited, 1e-9)
            log.info("waiting for another warm-up of this model", holder=holder, waited_s=round(waited, 1),
                     timeout_s=settings.lock_timeout)

    wait_started = time.monotonic()
    try:
        lock.acquire(settings.lock_timeout, on_wait=on_wait)
    except ReadOnlyCache as exc:
        raise AimError(f"the model cache at {settings.cache_path} is read-only and {repo_id}@{revision} is not "
                       f"complete in it ({why}); {exc.message}",
                       hint="pre-warm the volume with a Job or init container running `aim-engine download` "
                            f"(AIM_MODEL_ID={repo_id}, same AIM_CACHE_PATH) on a writable mount, then mount it "
                            "read-only") from None
    waited = round(time.monotonic() - wait_started, 3)
    try:
        if not options.refresh:
            found, why = markers.quick_check(layout, repo_id, revision)
            if found is not None:
                log.info("model cache was completed by another process", commit=found.commit)
                tracker.set_phase("complete", bytes_done=found.bytes, bytes_total=found.bytes)
                return replace(_result(layout, found, already_warm=True), lock_wait_s=waited)
        return replace(_download(repo_id, revision, settings, layout, options, tracker, log), lock_wait_s=waited)
    finally:
        if lock.lost:
            log.warning("the cache lease was taken over while we held it (we looked dead to a peer); the "
                        "download stayed correct but may have been duplicated")
        lock.release()


def _remove_file(layout: Layout, repo_id: str, snapshot: Path, f: Any) -> None:
    """Remove a damaged file: its snapshot entry and, if it is the wrong size, its blob. Both
    paths go through the confinement check (the entry's folders and the blob must be in the cache)."""
    pointer = layout.inside(snapshot, f.path, what="file path", source=f"the listing of {repo_id}", nested=True)
    if os.path.islink(pointer) or os.path.isfile(pointer):
        pointer.unlink()
    if f.etag:
        blob = layout.inside(layout.repo_dir(repo_id) / "blobs", f.etag, what="blob hash",
                             source=f"the listing of {repo_id}")
        try:
            if os.path.islink(blob) or blob.stat().st_size != f.size:
                blob.unlink()
        except FileNotFoundError:
            pass


def check_model_folders(layout: Layout, repo_id: str, commit: str | None = None) -> None:
    """The model's folders in the hub cache, where they exist, are real folders inside the cache
    (not files, not symlinks out): huggingface_hub writes into them, and we remove from them."""
    repo_dir = layout.repo_dir(repo_id)
    hub_locks = layout.hub_cache / ".locks"    # huggingface_hub's own lock files
    folders = [layout.hub_cache, repo_dir, hub_locks, hub_locks / repo_dir.name]
    folders += [repo_dir / sub for sub in ("blobs", "snapshots", "refs")]
    if commit is not None:
        folders.append(layout.snapshot(repo_id, commit))
    for folder in folders:
        if not os.path.lexists(folder):
            continue
        if os.path.islink(folder) and folder != layout.hub_cache:
            layout.confined(folder, target=layout.hub_cache, what="folder")
        if not folder.is_dir():
            raise AimError(f"{folder} in the model cache is not a folder",
                           hint=f"remove it, or the whole model with `aim-engine cache remove {repo_id}`; the next "
                                "warm-up downloads what is missing")
        layout.confined(folder, target=layout.cache_path, what="folder")


def _download(repo_id: str, revision: str, settings: Any, layout: Layout, options: WarmOptions, tracker: Any,
              log: Any) -> WarmResult:
    from aim_engine.cache import download
    from aim_engine.cache.select import filter_by_index, select_files, weights_format

    def hub_call(fn: Callable[[], Any], path: str | None = None) -> Any:
        try:
            return fn()
        except AimError:
            raise
        except Exception as exc:
            raise download.translate(exc, settings, repo_id, revision, path) from None

    started = time.monotonic()
    stop = threading.Event()   # set when the download is abandoned: workers end at their next chunk
    tracker.set_phase("resolving")
    commit, listing = hub_call(lambda: download.resolve(settings, repo_id, revision, options.retry, log))
    selected = select_files(listing)
    fmt = weights_format(f.path for f in listing)
    snapshot = layout.inside(layout.repo_dir(repo_id) / "snapshots", commit, what="commit",
                             source=f"the hub's answer for {repo_id}@{revision}")
    check_model_folders(layout, repo_id, commit)

    def fetch(f: Any) -> None:
        counted = [0]

        def uncount() -> None:
            tracker.add(-counted[0])
            counted[0] = 0

        hub_call(lambda: download.fetch(settings, repo_id, commit, f.path, tracker.tqdm_class(counted, stop),
                                        options.retry, log, on_failed_attempt=uncount, stop=stop), f.path)
        tracker.file_done()

    by_path = {f.path: f for f in selected}
    prefetched = 0
    if fmt is not None and fmt[1] in by_path:
        # The index says which shards the engine loads; anything else is a duplicate copy.
        index = by_path[fmt[1]]
        repo_dir = layout.repo_dir(repo_id)
        if markers.content_problem(snapshot / index.path, index.size, None, None, full=False,
                                   within=repo_dir) is not None:
            _remove_file(layout, repo_id, snapshot, index)
            fetch(index)
            prefetched = index.size
        try:
            raw = read_bounded(layout.confined(snapshot / fmt[1], folder=snapshot, target=repo_dir,
                                               what="weights index"), max(index.size, 1))
            weight_map = json.loads(raw).get("weight_map", {})
            selected = filter_by_index(selected, {v for v in weight_map.values() if isinstance(v, str)}, fmt[0])
        except (OSError, ValueError, AttributeError, RecursionError, AimError) as exc:
            log.warning("unreadable weights index; fetching every shard", index=fmt[1], error=str(exc))
    if not any(f.path == "config.json" for f in selected):
        log.warning("the model has no config.json at its root; the engine may not load it")

    missing = _triage(layout, repo_id, snapshot, selected, log)
    _check_space(layout, repo_id, settings, missing, options, log)

    total = sum(f.size for f in missing)
    log.info("downloading model", commit=commit, files=len(missing), size=size_text(total),
             kept=len(selected) - len(missing), skipped=len(listing) - len(selected))
    tracker.set_phase("downloading", bytes_total=total, bytes_done=0, files_total=len(missing), files_done=0)
    _run_parallel(fetch, missing, options.max_workers, stop)

    tracker.set_phase("verifying")
    full = settings.cache_verify == "full"
    bad = _verify(snapshot, selected, full, options.max_workers, stop)
    if bad:
        log.warning("files failed verification; fetching them again", files={f.path: p for f, p in bad})
        for f, _ in bad:
            _remove_file(layout, repo_id, snapshot, f)
            if full and f.etag:
                layout.inside(layout.repo_dir(repo_id) / "blobs", f.etag, what="blob hash",
                              source=f"the listing of {repo_id}").unlink(missing_ok=True)
        _run_parallel(fetch, [f for f, _ in bad], options.max_workers, stop)
        bad = _verify(snapshot, [f for f, _ in bad], full, options.max_workers, stop)
        if bad:
            raise AimError(f"{repo_id}@{commit[:12]}: downloaded files do not match the hub's listing: "
                           + "; ".join(f"{f.path} {p}" for f, p in bad[:5]),
                           hint="the hub or a proxy is serving different content; retry later")

    if revision != commit:
        ref = layout.inside(layout.repo_dir(repo_id) / "refs", revision, what="revision", source="the revision",
                            nested=True)
        ref.parent.mkdir(parents=True, exist_ok=True)
        write_text(ref, commit, keep_mode=True, inside=layout.cache_path)
    marker = markers.Marker(repo_id, revision, commit,
                            tuple(markers.MarkedFile(f.path, f.size, f.sha256, f.blob_id) for f in selected),
                            verified="full" if full else "size", created=time.time())
    markers.write(layout, marker)
    elapsed = time.monotonic() - started
    tracker.set_phase("complete")
    log.info("model cache complete", commit=commit, files=len(selected), size=size_text(marker.bytes),
             downloaded=size_text(total), seconds=round(elapsed, 1),
             rate_mb_s=round(total / elapsed / 1e6, 1) if elapsed > 0 else None)
    return _result(layout, marker, already_warm=False, downloaded=total + prefetched)


def _triage(layout: Layout, repo_id: str, snapshot: Path, selected: list[Any], log: Any) -> list[Any]:
    """Files to fetch: missing or damaged ones (damaged ones are removed first); stale temp files go."""
    missing = []
    repo_dir = layout.repo_dir(repo_id)
    blobs = repo_dir / "blobs"
    for f in selected:
        problem = markers.content_problem(snapshot / f.path, f.size, f.sha256, f.blob_id, full=False, within=repo_dir)
        if problem is None:
            continue
        if problem != "missing":
            log.warning("damaged file in the cache; fetching it again", file=f.path, problem=problem)
        _remove_file(layout, repo_id, snapshot, f)
        if f.etag and blobs.is_dir():
            for tmp in blobs.glob(f"{f.etag}.*.incomplete"):   # left by a killed download (we hold the lock)
                layout.confined(tmp, folder=blobs, what="temp file").unlink(missing_ok=True)
        missing.append(f)
    return missing


def _check_space(layout: Layout, repo_id: str, settings: Any, missing: list[Any], options: WarmOptions,
                 log: Any) -> None:
    need = 0
    for f in missing:
        blob = layout.blob(repo_id, f.etag) if f.etag else None
        if blob is None or not os.path.isfile(blob):
            need += f.size
    if not need:
        return
    free = options.free_space(settings.hub_cache)
    if need > free:
        raise AimError(f"not enough disk space for {repo_id}: need {size_text(need)} ({need} bytes) for "
                       f"{len(missing)} files, only {size_text(free)} ({free} bytes) free at {settings.hub_cache}",
                       hint="grow the volume behind AIM_CACHE_PATH or remove unused models with "
                            "`aim-engine cache remove`")
    log.debug("disk space ok", need=need, free=free)


def _run_parallel(fn: Callable[[Any], Any], items: list[Any], workers: int,
                  stop: threading.Event | None = None) -> list[Any]:
    """`fn` over `items` in a thread pool; the results in order, or the first failure.

    On a failure or an interrupt (SIGTERM arrives as `Stopped` in this, the main thread) the pool
    is not waited for: `stop` is set so the workers end at their next chunk or retry, queued
    items are cancelled, and the exception propagates at once, so the lock is released and the
    boot stops promptly. A file a worker was writing stays a huggingface_hub `.incomplete` temp
    file, never a snapshot entry, and the marker is only written after everything verified.
    """
    if not items:
        return []
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    stop = stop or threading.Event()
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix="aim-dl")
    try:
        futures = [pool.submit(fn, item) for item in items]
        wait(futures, return_when=FIRST_EXCEPTION)
        for fut in futures:
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                raise fut.exception()  # type: ignore[misc]
        results = [fut.result() for fut in futures]
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def _verify(snapshot: Path, files: list[Any], full: bool, workers: int,
            stop: threading.Event | None = None) -> list[tuple[Any, str]]:
    repo_dir = snapshot.parent.parent

    def check(f: Any) -> tuple[Any, str | None]:
        return f, markers.content_problem(snapshot / f.path, f.size, f.sha256, f.blob_id, full, within=repo_dir)

    return [(f, p) for f, p in _run_parallel(check, files, workers, stop) if p is not None]
