"""What is in the cache, is it intact, and removing a model safely (`aim-engine cache ...`)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aim_engine.cache import marker as markers
from aim_engine.cache.layout import Layout, repo_folder, repo_id_from_folder
from aim_engine.cache.types import size_text
from aim_engine.columns import align
from aim_engine.errors import AimError


@dataclass
class CachedRevision:
    revision: str
    commit: str | None
    complete: bool
    files: int = 0
    bytes: int = 0
    problem: str = ""


@dataclass
class CachedModel:
    repo_id: str
    disk_bytes: int
    snapshots: list[str] = field(default_factory=list)
    revisions: list[CachedRevision] = field(default_factory=list)


def _disk_bytes(repo_dir: Path) -> int:
    total = 0
    blobs = repo_dir / "blobs"
    if blobs.is_dir():
        for entry in os.scandir(blobs):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass
    return total


def scan(layout: Layout) -> list[CachedModel]:
    models: dict[str, CachedModel] = {}
    if layout.hub_cache.is_dir():
        for entry in sorted(os.scandir(layout.hub_cache), key=lambda e: e.name):
            repo_id = repo_id_from_folder(entry.name)
            if repo_id is None or not entry.is_dir():
                continue
            repo_dir = Path(entry.path)
            snaps = sorted(p.name for p in (repo_dir / "snapshots").glob("*")) if (repo_dir / "snapshots").is_dir() else []
            model = models[repo_id] = CachedModel(repo_id, _disk_bytes(repo_dir), snaps)
            refs = repo_dir / "refs"
            marked = set()
            for mpath in sorted(layout.markers_dir(repo_id).glob("*.json")) if layout.markers_dir(repo_id).is_dir() else []:
                revision = Layout.revision_from_marker(mpath)
                marked.add(revision)
                found, why = markers.quick_check(layout, repo_id, revision)
                m = found or markers.read(layout, repo_id, revision)
                model.revisions.append(CachedRevision(revision, m.commit if m else None, found is not None,
                                                      len(m.files) if m else 0, m.bytes if m else 0, why))
            if refs.is_dir():
                for ref in sorted(p for p in refs.rglob("*") if p.is_file()):
                    name = ref.relative_to(refs).as_posix()
                    if name not in marked:
                        model.revisions.append(CachedRevision(name, ref.read_text().strip(), False,
                                                              problem="no completeness marker (partial download?)"))
    return list(models.values())


def main_list(settings: Any, as_json: bool = False) -> int:
    models = scan(Layout.of(settings))
    if as_json:
        print(json.dumps([asdict(m) for m in models], indent=1))
        return 0
    if not models:
        print(f"no models in {settings.hub_cache}")
        return 0
    rows = [("MODEL", "REVISION", "COMMIT", "SIZE", "STATUS")]
    for m in models:
        for r in m.revisions or [CachedRevision("-", None, False, problem="no revision recorded")]:
            status = "complete" if r.complete else f"incomplete: {r.problem}"
            rows.append((m.repo_id, r.revision, (r.commit or "-")[:12], size_text(m.disk_bytes), status))
    for line in align(rows):
        print(line)
    return 0


def verify(layout: Layout, repo_id: str, revision: str, full: bool) -> tuple[markers.Marker | None, list[tuple[Any, str]]]:
    m = markers.read(layout, repo_id, revision)
    if m is None:
        return None, []
    snapshot = layout.snapshot(repo_id, m.commit)
    bad = []
    for f in m.files:
        problem = markers.content_problem(snapshot / f.path, f.size, f.sha256, f.blob_id, full)
        if problem:
            bad.append((f, problem))
    return m, bad


def main_verify(settings: Any, model: str | None = None, full: bool = False, repair: bool = False) -> int:
    layout = Layout.of(settings)
    models = [m for m in scan(layout) if model is None or m.repo_id == model]
    if model is not None and not models:
        raise AimError(f"{model} is not in the cache at {settings.hub_cache}", hint="see `aim-engine cache list`")
    failures = 0
    for m in models:
        for r in m.revisions:
            if r.commit is None or r.files == 0:
                print(f"{m.repo_id}@{r.revision}: not complete ({r.problem}); nothing to verify")
                continue
            marker, bad = verify(layout, m.repo_id, r.revision, full)
            if not bad:
                print(f"{m.repo_id}@{r.revision}: ok ({r.files} files, {'sha256' if full else 'sizes'} checked)")
                continue
            failures += 1
            for f, problem in bad:
                print(f"{m.repo_id}@{r.revision}: {f.path} {problem}")
            if repair and marker is not None:
                markers.remove(layout, m.repo_id)
                snapshot = layout.snapshot(m.repo_id, marker.commit)
                for f, _ in bad:
                    (snapshot / f.path).unlink(missing_ok=True)
                    etag = f.sha256 or f.blob_id
                    if etag:
                        layout.blob(m.repo_id, etag).unlink(missing_ok=True)
                print(f"{m.repo_id}: removed {len(bad)} damaged files and the marker; the next warm-up re-fetches them")
    return 1 if failures else 0


def remove(settings: Any, repo_id: str) -> int:
    """Delete `repo_id` under its lock: markers first (nobody trusts it any more), then the files."""
    from aim_engine.cache.lock import ModelLock

    layout = Layout.of(settings)
    repo_dir = layout.repo_dir(repo_id)
    if not repo_dir.exists() and not layout.markers_dir(repo_id).exists():
        raise AimError(f"{repo_id} is not in the cache at {settings.hub_cache}", hint="see `aim-engine cache list`")
    freed = _disk_bytes(repo_dir)
    lock = ModelLock(layout, repo_id)
    lock.acquire(settings.lock_timeout)
    try:
        markers.remove(layout, repo_id)
        shutil.rmtree(layout.markers_dir(repo_id), ignore_errors=True)
        shutil.rmtree(repo_dir, ignore_errors=True)
        shutil.rmtree(layout.hub_cache / ".locks" / repo_folder(repo_id), ignore_errors=True)
    finally:
        lock.release()
    return freed


def main_remove(settings: Any, repo_id: str) -> int:
    freed = remove(settings, repo_id)
    print(f"removed {repo_id} ({size_text(freed)} freed)")
    return 0
