"""The completeness marker: written last, checked with nothing but `os.stat`.

A marker at `aim/markers/<repo>/<revision>.json` says: revision R of repo X is commit C, and the
snapshot holds exactly these files with these sizes (and hashes). It is written with
write-to-temp + fsync + rename, only after every file is in place and verified, so a reader sees
either no marker or a whole one. `quick_check` is the boot fast path: read one small JSON file and
stat each file (following the snapshot symlinks to the blobs); no network, no huggingface_hub.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from aim_engine.atomic import fsync_dir, write_text
from aim_engine.cache.layout import Layout
from aim_engine.errors import AimError
from aim_engine.confine import RULE_NAME, RULE_RELATIVE, problem_with_name, problem_with_relative, read_bounded, shown

FORMAT = 1


@dataclass(frozen=True)
class MarkedFile:
    path: str
    size: int
    sha256: str | None = None     # LFS files
    blob_id: str | None = None    # git blob sha1 (regular files)


@dataclass(frozen=True)
class Marker:
    repo_id: str
    revision: str
    commit: str
    files: tuple[MarkedFile, ...]
    verified: str = "size"        # "size" or "full" (hashes checked when written)
    created: float = 0.0

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
            "verified": self.verified, "created": self.created,
            "files": [{k: v for k, v in vars(f).items() if v is not None} for f in self.files],
        }, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Marker":
        """Parse and check a marker; MarkerError (a ValueError) says what is wrong with it.

        The marker is cache content, so anyone who can write to the volume can write it: every
        value that later names a path (commit, files[].path, sha256, blob_id) must pass the
        confinement rules here, before anything is joined to a path (see aim_engine.confine).
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise MarkerError(f"is not valid JSON ({str(exc)[:120]})") from None
        if not isinstance(data, dict):
            raise MarkerError(f"holds a JSON {type(data).__name__}, not an object")
        if data.get("format") != FORMAT:
            raise MarkerError(f"has unknown format {shown(data.get('format'))} (expected {FORMAT})")
        for key in ("repo_id", "revision"):
            if not isinstance(data.get(key), str):
                raise MarkerError(f"has no text {key!r}")
        bad = problem_with_name(data.get("commit"))
        if bad:
            raise MarkerError(f"commit {shown(data.get('commit'))} {bad} (allowed: {RULE_NAME})")
        files = data.get("files")
        if not isinstance(files, list):
            raise MarkerError("has no 'files' list")
        if len(files) > MAX_FILES:
            raise MarkerError(f"lists {len(files)} files, more than the {MAX_FILES} allowed")
        parsed = tuple(_marked_file(i, f) for i, f in enumerate(files))
        verified = data.get("verified", "size")
        if verified not in ("size", "full"):
            raise MarkerError(f"verified {shown(verified)} is not 'size' or 'full'")
        created = data.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, (int, float)) or not math.isfinite(created):
            raise MarkerError(f"created {shown(created)} is not a number")
        return cls(data["repo_id"], data["revision"], data["commit"], parsed, verified, float(created))


class MarkerError(ValueError):
    """What is wrong with a marker's content (it then counts as no marker: the model is re-fetched)."""


MAX_FILES = 100_000          # files one marker may list
MAX_MARKER_BYTES = 64 << 20  # a marker is ~100 bytes a file
MAX_FILE_SIZE = 1 << 50      # 1 PiB: larger sizes in a marker are not real
_HEX = {"sha256": (64, re.compile("[0-9a-f]{64}")), "blob_id": (40, re.compile("[0-9a-f]{40}"))}


def _marked_file(i: int, f: object) -> MarkedFile:
    where = f"files[{i}]"
    if not isinstance(f, dict):
        raise MarkerError(f"{where} is a {type(f).__name__}, not an object")
    bad = problem_with_relative(f.get("path"))
    if bad:
        raise MarkerError(f"{where}.path {shown(f.get('path'))} {bad} (allowed: {RULE_RELATIVE})")
    size = f.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
        raise MarkerError(f"{where}.size {shown(size)} is not a whole number of bytes (0 to {MAX_FILE_SIZE})")
    for key, (digits, pattern) in _HEX.items():
        value = f.get(key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise MarkerError(f"{where}.{key} {shown(value)} is not {digits} lowercase hex digits")
    return MarkedFile(f["path"], size, f.get("sha256"), f.get("blob_id"))


def load(layout: Layout, repo_id: str, revision: str) -> tuple[Marker | None, str]:
    """(the marker, "") or (None, why not): missing, unreadable, or damaged (named: file and value).

    A damaged marker is no marker: the model is not warm and the slow path fetches it again.
    """
    path = layout.marker(repo_id, revision)
    try:
        raw = read_bounded(path, MAX_MARKER_BYTES)
    except FileNotFoundError:
        return None, "it was never completely downloaded"
    except OSError as exc:
        return None, f"its completeness marker {layout.rel(path)} cannot be read ({exc.strerror or exc})"
    try:
        marker = Marker.from_json(raw)
    except MarkerError as exc:
        return None, f"its completeness marker {layout.rel(path)} is damaged: it {exc}"
    if (marker.repo_id, marker.revision) != (repo_id, revision):
        return None, (f"its completeness marker {layout.rel(path)} is damaged: it is for "
                      f"{shown(marker.repo_id)}@{shown(marker.revision)}")
    return marker, ""


def read(layout: Layout, repo_id: str, revision: str) -> Marker | None:
    """The marker, or None if it is missing, unreadable or damaged (a damaged marker is no marker)."""
    return load(layout, repo_id, revision)[0]


def problems(layout: Layout, marker: Marker, limit: int = 5) -> list[str]:
    """Files of `marker` missing from the snapshot or of the wrong size (stat only)."""
    snapshot = layout.snapshot(marker.repo_id, marker.commit)
    found: list[str] = []
    for f in marker.files:
        try:
            st = os.stat(snapshot / f.path)
        except (OSError, ValueError):
            found.append(f"{f.path} is missing")
        else:
            if not S_ISREG(st.st_mode):
                found.append(f"{f.path} is not a regular file")
            elif st.st_size != f.size:
                found.append(f"{f.path} has {st.st_size} bytes, expected {f.size}")
        if len(found) >= limit:
            break
    return found


def quick_check(layout: Layout, repo_id: str, revision: str) -> tuple[Marker | None, str]:
    """(marker, "") when the cache is complete for this revision, else (None, why not)."""
    marker, why = load(layout, repo_id, revision)
    if marker is None:
        return None, why
    bad = problems(layout, marker, limit=3)
    if bad:
        return None, "; ".join(bad)
    return marker, ""


def write(layout: Layout, marker: Marker) -> Path:
    """Atomically and durably write `marker` (temp file, fsync, rename, fsync of the directory)."""
    path = layout.marker(marker.repo_id, marker.revision)
    layout.confined(path.parent, what="markers folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, marker.to_json(), durable=True, inside=layout.cache_path)
    except OSError as exc:
        raise AimError(f"cannot write the completeness marker {path}: {exc.strerror or exc}",
                       hint=f"{layout.aim / 'markers'} and the folders in it must be writable folders; remove "
                            "whatever stands in their place (the downloaded files are kept)") from None
    return path


def remove(layout: Layout, repo_id: str) -> int:
    """Delete every marker of `repo_id` (first step of removing or repairing a model); how many."""
    folder = layout.markers_dir(repo_id)
    if not folder.is_dir():
        return 0
    layout.confined(folder, target=layout.aim / "markers", what="markers folder")
    removed = 0
    for p in folder.glob("*.json"):
        layout.confined(p, folder=folder, what="marker")
        if not p.is_symlink() and p.is_dir():
            continue
        p.unlink(missing_ok=True)
        removed += 1
    fsync_dir(folder)
    return removed


def remove_one(layout: Layout, repo_id: str, revision: str) -> bool:
    """Delete the marker of one revision (a damaged one); True if there was one."""
    path = layout.confined(layout.marker(repo_id, revision), what="marker")
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def now() -> float:
    return time.time()


# -- content hashes (for AIM_CACHE_VERIFY=full and `aim-engine cache verify`)

def _hash_file(path: Path, h: "hashlib._Hash", size: int) -> str:
    """Feed at most `size` bytes of `path` (a regular file) to `h`: a file that grows while being
    read, or a device a symlink was swapped to, cannot make the hash read forever."""
    left = size
    with open(path, "rb") as f:
        if not S_ISREG(os.fstat(f.fileno()).st_mode):
            return ""
        while left > 0 and (chunk := f.read(min(8 << 20, left))):
            h.update(chunk)
            left -= len(chunk)
        if left or f.read(1):
            return ""
    return h.hexdigest()


def sha256_of(path: Path, size: int | None = None) -> str:
    return _hash_file(path, hashlib.sha256(), os.stat(path).st_size if size is None else size)


def git_blob_sha1_of(path: Path, size: int | None = None) -> str:
    size = os.stat(path).st_size if size is None else size
    return _hash_file(path, hashlib.sha1(f"blob {size}\0".encode()), size)


def content_problem(path: Path, size: int, sha256: str | None, blob_id: str | None, full: bool,
                    within: Path | None = None) -> str | None:
    """Why the file at `path` does not match (size; with `full`, its sha256 or git blob id), or None.

    With `within` (the model's folder), a snapshot entry that points outside it is a problem too:
    it is then never hashed, and a repair removes the entry (not what it points to).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "missing"
    if within is not None:
        real, folder = os.path.realpath(path), os.path.realpath(within)
        if not real.startswith(folder.rstrip(os.sep) + os.sep):
            return f"points outside the model's folder (to {shown(real)})"
    if not S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_size != size:
        return f"has {st.st_size} bytes, expected {size}"
    if full:
        try:
            if sha256 is not None and sha256_of(path, size) != sha256:
                return "sha256 does not match"
            if sha256 is None and blob_id is not None and git_blob_sha1_of(path, size) != blob_id:
                return "git blob id does not match"
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
    return None
