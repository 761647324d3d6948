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
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aim_engine.atomic import fsync_dir, write_text
from aim_engine.cache.layout import Layout

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
    def from_json(cls, text: str) -> "Marker":
        data: dict[str, Any] = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown marker format {data.get('format')!r}")
        files = tuple(MarkedFile(f["path"], int(f["size"]), f.get("sha256"), f.get("blob_id")) for f in data["files"])
        return cls(data["repo_id"], data["revision"], data["commit"], files, data.get("verified", "size"),
                   float(data.get("created", 0.0)))


def read(layout: Layout, repo_id: str, revision: str) -> Marker | None:
    """The marker, or None if it is missing or unreadable (a damaged marker is no marker)."""
    try:
        return Marker.from_json(layout.marker(repo_id, revision).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def problems(layout: Layout, marker: Marker, limit: int = 5) -> list[str]:
    """Files of `marker` missing from the snapshot or of the wrong size (stat only)."""
    snapshot = layout.snapshot(marker.repo_id, marker.commit)
    found: list[str] = []
    for f in marker.files:
        try:
            size = os.stat(snapshot / f.path).st_size
        except OSError:
            found.append(f"{f.path} is missing")
        else:
            if size != f.size:
                found.append(f"{f.path} has {size} bytes, expected {f.size}")
        if len(found) >= limit:
            break
    return found


def quick_check(layout: Layout, repo_id: str, revision: str) -> tuple[Marker | None, str]:
    """(marker, "") when the cache is complete for this revision, else (None, why not)."""
    marker = read(layout, repo_id, revision)
    if marker is None:
        exists = layout.marker(repo_id, revision).exists()
        return None, "its completeness marker is damaged" if exists else "it was never completely downloaded"
    bad = problems(layout, marker, limit=3)
    if bad:
        return None, "; ".join(bad)
    return marker, ""


def write(layout: Layout, marker: Marker) -> Path:
    """Atomically and durably write `marker` (temp file, fsync, rename, fsync of the directory)."""
    path = layout.marker(marker.repo_id, marker.revision)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, marker.to_json(), durable=True)
    return path


def remove(layout: Layout, repo_id: str) -> None:
    """Delete every marker of `repo_id` (first step of removing or repairing a model)."""
    folder = layout.markers_dir(repo_id)
    if folder.is_dir():
        for p in folder.glob("*.json"):
            p.unlink(missing_ok=True)
        fsync_dir(folder)


def now() -> float:
    return time.time()


# -- content hashes (for AIM_CACHE_VERIFY=full and `aim-engine cache verify`)

def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1_of(path: Path) -> str:
    size = os.stat(path).st_size
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def content_problem(path: Path, size: int, sha256: str | None, blob_id: str | None, full: bool) -> str | None:
    """Why the file at `path` does not match (size; with `full`, its sha256 or git blob id), or None."""
    try:
        actual = os.stat(path).st_size
    except OSError:
        return "missing"
    if actual != size:
        return f"has {actual} bytes, expected {size}"
    if full:
        if sha256 is not None and sha256_of(path) != sha256:
            return "sha256 does not match"
        if sha256 is None and blob_id is not None and git_blob_sha1_of(path) != blob_id:
            return "git blob id does not match"
    return None
