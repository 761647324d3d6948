"""The compile cache's second half, in the probe process (it outlives the agent's exec).

When the engine is ready:
- cold boot with a staging directory: copy it next to its published name, write the ready marker
  into the copy, and publish the copy with ONE rename. A published directory therefore only ever
  appears complete, and never half-written by an engine whose writer is not atomic (vLLM's
  `vllm_compile_cache.py`). If another boot published first, the rename fails and our copy is
  dropped: both boots came up, the published cache is one complete copy.
- cold boot without a per-model directory (SGLang): write the ready marker.
- warm boot: remove this boot's attempt record (the crash-loop guard: a record left behind by a
  boot that died before ready makes the next boot on this host quarantine the cache).

When the engine is gone (if this process gets to run then: as PID 1's sibling in a container it is
killed with it, hence the attempt records): the staging directory is removed, and a warm cache the
engine died with before ready is quarantined.

Stdlib only, like the rest of the probe process; paths come from the agent's state file and are
only touched inside the compile root the agent recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

READY_MARKER = ".aim-ready.json"     # = aim_engine.cache.compiled.READY_MARKER
OWNER_FILE = ".aim-owner.json"


def _inside(path: Path, root: Path) -> bool:
    """The cache's one confinement check (`aim_engine.confine.check`), plus: not the root itself,
    not a symlink (a path recorded in the state file is still only touched inside the root)."""
    from aim_engine.confine import UnsafePath, check

    try:
        check(path, root=root, what="compile cache path")
        return os.path.realpath(path) != os.path.realpath(root) and not path.is_symlink()
    except (UnsafePath, OSError):
        return False


def _remove(path: Path, root: Path) -> None:
    if path.exists() and _inside(path, root):
        shutil.rmtree(path, ignore_errors=True)


def log(event: str, level: str = "info", **fields: Any) -> None:
    """One JSON log line on stderr (the container log), in the agent's shape."""
    line = {"event": event, "level": level, "logger": "aim_engine.probes.compiled",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
    try:
        sys.stderr.write(json.dumps(line, default=str) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def tree_size(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`, symlinks not followed; files that vanish meanwhile are skipped."""
    files = size = 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(base, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


def _written_since(path: Path, since: float) -> int:
    """Files under `path` changed since `since` (epoch s): 0 means the engine only read the cache."""
    count = 0
    for base, _dirs, names in os.walk(path):
        for name in names:
            try:
                if os.lstat(os.path.join(base, name)).st_mtime >= since:
                    count += 1
            except OSError:
                pass
    return count


def _write_marker(directory: Path, cc: dict[str, Any], files: int, size: int) -> None:
    marker = {"id": cc.get("id"), "engine": cc.get("engine"), "host": socket.gethostname(),
              "published_at": time.time(), "files": files, "bytes": size}
    with open(directory / READY_MARKER, "w", encoding="utf-8") as handle:
        json.dump(marker, handle)
        handle.flush()
        os.fsync(handle.fileno())


def publish(cc: dict[str, Any]) -> dict[str, Any]:
    """Publish a cold boot's staging directory (see the module docstring); the result for /status."""
    root, work, target = Path(cc["root"]), Path(cc["work_dir"]), Path(cc["model_dir"])
    if not (_inside(work, root) and _inside(target, root)) or not work.is_dir():
        return {"published": False, "publish_error": "staging directory missing or outside the compile root"}
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(work, tmp, symlinks=True, ignore=shutil.ignore_patterns(OWNER_FILE, "*.tmp"))
        files, size = tree_size(tmp)
        _write_marker(tmp, cc, files, size)
    except OSError as exc:
        _remove(tmp, root)
        log("compile cache not published: copying it failed; the next boot compiles again", "warning",
            error=str(exc), path=str(target))
        return {"published": False, "publish_error": str(exc)}
    try:
        os.rename(tmp, target)
    except OSError:
        _remove(tmp, root)
        log("compile cache already published by another boot; ours is dropped", path=str(target))
        return {"published": False, "published_by_other": True}
    log("compile cache published", path=str(target), files=files, bytes=size)
    return {"published": True, "published_files": files, "published_bytes": size}


def on_ready(state: dict[str, Any] | None) -> dict[str, Any]:
    """Called once, when the engine first lists the model."""
    cc = (state or {}).get("compile_cache") or {}
    if not cc.get("root"):
        return {}
    root = Path(cc["root"])
    if cc.get("state") == "warm":
        attempt = cc.get("attempt")
        if attempt and _inside(Path(attempt), root):
            Path(attempt).unlink(missing_ok=True)
        since = float((state or {}).get("started_at") or 0)
        dirs = {Path(d) for d in [cc.get("model_dir"), *(cc.get("env") or {}).values()] if d}
        written = sum(_written_since(d, since) for d in sorted(dirs) if _inside(d, root))
        if written:
            log("the engine wrote to the compile cache during a warm boot (it compiled part of what it "
                "needed again)", files=written)
        return {"ready_with": "warm", "engine_wrote_files": written}
    if cc.get("state") != "cold":
        return {}
    if cc.get("staging"):
        return publish(cc)
    target = Path(cc["model_dir"])
    if _inside(target, root):
        try:
            target.mkdir(parents=True, exist_ok=True)
            _write_marker(target, cc, 0, 0)
            return {"published": True}
        except OSError as exc:
            return {"published": False, "publish_error": str(exc)}
    return {}


def on_exit(state: dict[str, Any] | None, ever_ready: bool) -> None:
    """Called when the engine is gone (best effort: in a container this process may die first)."""
    cc = (state or {}).get("compile_cache") or {}
    if not cc.get("root") or (state or {}).get("phase") not in ("engine_starting", "ready"):
        return      # the agent stopped before the exec: the engine never used the cache
    root = Path(cc["root"])
    if cc.get("staging") and cc.get("work_dir"):
        _remove(Path(cc["work_dir"]), root)
    if cc.get("state") == "warm" and not ever_ready and cc.get("model_dir"):
        target = Path(cc["model_dir"])
        if not _inside(target, root):
            return
        aside = root / "quarantine" / f"{target.parent.name}--{target.name}--{os.getpid()}"
        try:
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.rename(target, aside)
        except OSError:
            return
        _remove(aside, root)
        attempt = cc.get("attempt")
        if attempt and _inside(Path(attempt), root):
            Path(attempt).unlink(missing_ok=True)
        log("compile cache quarantined: the engine exited before ready with it; the next boot recompiles",
            "warning", path=str(target))
