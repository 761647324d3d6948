"""Replacing a file in one rename: a reader sees the old file or the new one, never half of one.

The one writer for every file another process (or the next boot) may read while it is being
replaced: the boot state the probe process serves, the cache's completeness markers, lock holder
file and refs, model files rewritten by `models fetch-cards`, generated recipes. The temp file is
created next to the target (same filesystem, so `os.replace` is atomic) and removed when anything
fails, so no half-written file and no stray temp file is ever left behind.

Stdlib only: the probe process imports `aim_engine.state`, which writes and reads through here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str, *, durable: bool = False, keep_mode: bool = False,
               inside: Path | None = None) -> None:
    """Replace `path` with `text` (UTF-8).

    `inside`: a root `path` must stay in once symlinks are resolved (the model cache, whose folders
    anyone with write access to the volume could replace with symlinks): checked with
    `aim_engine.confine.check` before anything is created, refused with `UnsafePath` otherwise.
    `durable`: fsync the file before the rename and its directory after it, for what must survive
    a crash of the machine, not only of the process (a completeness marker, a model file).
    `keep_mode`: give the new file the old one's permissions (0644 for a new file) instead of the
    temp file's private 0600, for files other users and tools read (catalog files, cache refs).
    """
    if inside is not None:
        from aim_engine.confine import check

        check(Path(path), root=inside)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if keep_mode:
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json(path: Path, data: Any, *, inside: Path | None = None, **dump_options: Any) -> None:
    """Replace `path` with `data` as JSON (values JSON cannot encode are written as `str`)."""
    write_text(path, json.dumps(data, default=str, **dump_options), inside=inside)


def read_json(path: Path, limit: int = 16 << 20) -> dict[str, Any] | None:
    """The JSON object last written to `path`, or None when there is none (yet) or it cannot be
    read as one (a reader never raises over a file another process owns). At most `limit` bytes
    of a regular file are read: a FIFO or a device planted in its place is not read at all."""
    from aim_engine.confine import read_bounded

    try:
        data = json.loads(read_bounded(Path(path), limit))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def fsync_dir(path: Path) -> None:
    """Make a rename (or removal) in directory `path` durable; best effort where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
