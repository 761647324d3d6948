"""What is in the cache, is it intact, and removing a model safely (`aim-engine cache ...`).

Everything read here is cache content, written by whoever can write to the shared volume: folder
names, markers, refs. It is reported, never trusted: an unreadable folder, a damaged marker or a
ref that is not text is a line in the report (and exit 1 from `verify`), and every removal goes
through the confinement check (`aim_engine.confine`), so nothing outside the cache is touched.
The report goes through the `out` callable the command passes (commands/cache.py prints); this
module never prints itself.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from aim_engine.cache import marker as markers
from aim_engine.cache.layout import Layout, check_cache_root, check_repo_id, repo_folder, repo_id_from_folder
from aim_engine.cache.types import size_text
from aim_engine.text_table import align
from aim_engine.confine import problem_with_name, read_bounded, shown
from aim_engine.errors import AimError

REF_MAX_BYTES = 4096   # a ref holds one commit hash (41 bytes with its newline)


@dataclass
class CachedRevision:
    revision: str
    commit: str | None
    complete: bool
    files: int = 0
    bytes: int = 0
    problem: str = ""
    damaged: bool = False          # a marker exists but cannot be trusted (verify exits 1)
    marker_file: str | None = None  # its path, for `verify --repair`


@dataclass
class CachedModel:
    repo_id: str
    disk_bytes: int
    snapshots: list[str] = field(default_factory=list)
    revisions: list[CachedRevision] = field(default_factory=list)
    problem: str = ""              # a folder of the model cannot be read


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _disk_bytes(repo_dir: Path) -> int:
    total = 0
    try:
        with os.scandir(repo_dir / "blobs") as entries:
            for entry in entries:
                try:
                    total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
    except OSError:
        pass
    return total


def _names(folder: Path) -> list[str]:
    """Entry names of `folder` (sorted); [] when it is missing; OSError when it cannot be read."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_ref(path: Path) -> str:
    """The commit a ref file names; ValueError/OSError saying why it is not one."""
    raw = read_bounded(path, REF_MAX_BYTES, follow=False)
    commit = raw.decode("utf-8").strip()
    bad = problem_with_name(commit)
    if bad:
        raise ValueError(f"holds {shown(commit)}, which {bad}")
    return commit


def _marker_revisions(layout: Layout, repo_id: str, model: CachedModel) -> set[str]:
    folder = layout.markers_dir(repo_id)
    marked: set[str] = set()
    try:
        names = [n for n in _names(folder) if n.endswith(".json")]
    except OSError as exc:
        model.problem = f"cannot read {layout.rel(folder)}: {_strerror(exc)}"
        return marked
    for name in names:
        mpath = folder / name
        revision = Layout.revision_from_marker(mpath)
        marked.add(revision)
        try:
            found, why = markers.quick_check(layout, repo_id, revision)
        except AimError as exc:   # the file name is not one a real revision makes
            model.revisions.append(CachedRevision(shown(revision), None, False, problem=f"marker {name}: {exc.message}",
                                                  damaged=True, marker_file=str(mpath)))
            continue
        m = found or markers.read(layout, repo_id, revision)
        damaged = m is None and "never completely downloaded" not in why
        model.revisions.append(CachedRevision(revision, m.commit if m else None, found is not None,
                                              len(m.files) if m else 0, m.bytes if m else 0, why, damaged,
                                              str(mpath)))
    return marked


def _ref_revisions(repo_dir: Path, marked: set[str], model: CachedModel) -> None:
    refs = repo_dir / "refs"
    try:
        paths = sorted(p for p in refs.rglob("*") if p.is_file() and not p.is_symlink()) if refs.is_dir() else []
    except OSError as exc:
        model.problem = f"cannot read {refs}: {_strerror(exc)}"
        return
    for ref in paths:
        name = ref.relative_to(refs).as_posix()
        if name in marked:
            continue
        try:
            commit: str | None = read_ref(ref)
            problem = "no completeness marker (partial download?)"
        except (OSError, ValueError) as exc:
            commit = None
            problem = f"its ref {ref.name} cannot be used: " + (_strerror(exc) if isinstance(exc, OSError) else
                                                                   str(exc))
        model.revisions.append(CachedRevision(shown(name) if len(name) > 200 else name, commit, False,
                                              problem=problem))


def scan(layout: Layout) -> list[CachedModel]:
    """Every model folder of the hub cache with its revisions; damage is reported, never raised."""
    try:
        folders = _names(layout.hub_cache)
    except OSError as exc:
        raise AimError(f"cannot read the hub cache folder {layout.hub_cache}: {_strerror(exc)}",
                       hint="the agent needs read access to the whole volume behind AIM_CACHE_PATH") from None
    models: list[CachedModel] = []
    for folder in folders:
        repo_id = repo_id_from_folder(folder)
        repo_dir = layout.hub_cache / folder
        if repo_id is None or repo_dir.is_symlink() or not repo_dir.is_dir():
            continue   # not a folder a real model id makes (huggingface_hub's own files, stray names)
        model = CachedModel(repo_id, _disk_bytes(repo_dir))
        try:
            model.snapshots = _names(repo_dir / "snapshots")
        except OSError as exc:
            model.problem = f"cannot read {layout.rel(repo_dir / 'snapshots')}: {_strerror(exc)}"
        marked = _marker_revisions(layout, repo_id, model)
        _ref_revisions(repo_dir, marked, model)
        models.append(model)
    return models


def main_list(settings: Any, out: Callable[[str], None], as_json: bool = False) -> int:
    check_cache_root(settings.cache_path)
    models = scan(Layout.of(settings))
    if as_json:
        out(json.dumps([asdict(m) for m in models], indent=1))
        return 0
    if not models:
        out(f"no models in {settings.hub_cache}")
        return 0
    rows = [("MODEL", "REVISION", "COMMIT", "SIZE", "STATUS")]
    for m in models:
        for r in m.revisions or [CachedRevision("-", None, False, problem=m.problem or "no revision recorded")]:
            status = "complete" if r.complete else f"{'damaged' if r.damaged else 'incomplete'}: {r.problem}"
            rows.append((m.repo_id, r.revision, (r.commit or "-")[:12], size_text(m.disk_bytes), status))
    for line in align(rows):
        out(line)
    return 0


def verify(layout: Layout, repo_id: str, revision: str, full: bool) -> tuple[markers.Marker | None, list[tuple[Any, str]]]:
    m = markers.read(layout, repo_id, revision)
    if m is None:
        return None, []
    snapshot = layout.snapshot(repo_id, m.commit)
    repo_dir = layout.repo_dir(repo_id)
    bad = []
    for f in m.files:
        problem = markers.content_problem(snapshot / f.path, f.size, f.sha256, f.blob_id, full, within=repo_dir)
        if problem:
            bad.append((f, problem))
    return m, bad


def _repair_files(layout: Layout, repo_id: str, marker: markers.Marker, bad: list[tuple[Any, str]],
                  full: bool) -> list[str]:
    """Remove the marker, then the damaged files' snapshot entries and those of their blobs that
    are damaged themselves (an intact blob is kept: the next warm-up links it again instead of
    downloading it). Every target is checked (confinement) before anything is removed; what
    cannot be removed is reported."""
    source = f"the marker of {repo_id}@{marker.revision}"
    repo_dir = layout.repo_dir(repo_id)
    snapshot = layout.inside(repo_dir / "snapshots", marker.commit, what="commit", source=source)
    targets: list[Path] = []
    for f, _ in bad:
        targets.append(layout.inside(snapshot, f.path, what="file path", source=source, nested=True))
        etag = f.sha256 or f.blob_id
        if etag:
            blob = layout.inside(repo_dir / "blobs", etag, what="blob hash", source=source)
            if markers.content_problem(blob, f.size, f.sha256, f.blob_id, full, within=repo_dir) not in (None, "missing"):
                targets.append(blob)
    markers.remove(layout, repo_id)
    failed = []
    for path in targets:
        try:
            if not os.path.isdir(path) or os.path.islink(path):
                path.unlink(missing_ok=True)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            failed.append(f"{layout.rel(path)}: {_strerror(exc)}")
    return failed


def main_verify(settings: Any, out: Callable[[str], None], model: str | None = None, full: bool = False,
                repair: bool = False) -> int:
    """Check every marked revision (or one model's); exit 1 when anything is damaged."""
    check_cache_root(settings.cache_path)
    layout = Layout.of(settings)
    if model is not None:
        check_repo_id(model, "--model")
    models = [m for m in scan(layout) if model is None or m.repo_id == model]
    if model is not None and not models:
        raise AimError(f"{model} is not in the cache at {settings.hub_cache}", hint="see `aim-engine cache list`")
    if not models:
        out(f"no models in {settings.hub_cache}: nothing to verify")
        return 0
    counts = {"ok": 0, "damaged": 0, "incomplete": 0}
    for m in models:
        if m.problem:
            counts["damaged"] += 1
            out(f"{m.repo_id}: damaged: {m.problem}")
        for r in m.revisions:
            label = f"{m.repo_id}@{r.revision}"
            if r.damaged:
                counts["damaged"] += 1
                out(f"{label}: damaged: {r.problem}")
                if repair and r.marker_file:
                    _remove_marker_file(layout, Path(r.marker_file))
                    out(f"{label}: removed the damaged marker; the next warm-up downloads this revision again")
                continue
            if r.commit is None or r.files == 0:
                counts["incomplete"] += 1
                out(f"{label}: not complete ({r.problem}); nothing to verify")
                continue
            marker, bad = verify(layout, m.repo_id, r.revision, full)
            if marker is None:
                counts["incomplete"] += 1
                out(f"{label}: its marker disappeared while checking; nothing to verify")
                continue
            if not bad:
                counts["ok"] += 1
                out(f"{label}: ok ({r.files} files, {'sha256' if full else 'sizes'} checked)")
                continue
            counts["damaged"] += 1
            for f, problem in bad:
                out(f"{label}: {f.path} {problem}")
            if repair:
                failed = _repair_files(layout, m.repo_id, marker, bad, full)
                out(f"{m.repo_id}: removed the marker and {len(bad)} damaged files; the next warm-up re-fetches them")
                for line in failed[:5]:
                    out(f"{m.repo_id}: could not remove {line}")
    total = sum(counts.values())
    what = "sha256 and sizes" if full else "sizes"
    out(f"checked {total} revision{'s' * (total != 1)} of {len(models)} model{'s' * (len(models) != 1)} "
          f"({what}): {counts['ok']} ok, {counts['damaged']} damaged, {counts['incomplete']} incomplete")
    return 1 if counts["damaged"] else 0


def _remove_marker_file(layout: Layout, path: Path) -> None:
    layout.confined(path, folder=layout.aim / "markers", what="marker")
    path.unlink(missing_ok=True)


def _remove_tree(layout: Layout, path: Path, failed: list[str]) -> None:
    """Remove `path` (inside the cache, checked): a symlink is removed itself, never followed;
    rmtree never follows the symlinks inside a tree either."""
    if not os.path.lexists(path):
        return
    layout.confined(path, what="folder")
    if os.path.islink(path) or not os.path.isdir(path):
        path.unlink()
        return

    def note(_fn: Any, where: str, exc: BaseException) -> None:
        failed.append(f"{where}: {exc}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=note)
    else:
        shutil.rmtree(path, onerror=lambda fn, where, info: note(fn, where, info[1]))


def remove(settings: Any, repo_id: str) -> int:
    """Delete `repo_id` under its lock: markers first (nobody trusts it any more), then the files."""
    from aim_engine.cache.lock import ModelLock

    check_repo_id(repo_id)
    check_cache_root(settings.cache_path)
    layout = Layout.of(settings)
    repo_dir = layout.repo_dir(repo_id)
    if not os.path.lexists(repo_dir) and not os.path.lexists(layout.markers_dir(repo_id)):
        raise AimError(f"{repo_id} is not in the cache at {settings.hub_cache}", hint="see `aim-engine cache list`")
    freed = _disk_bytes(repo_dir)
    lock = ModelLock(layout, repo_id)
    lock.acquire(settings.lock_timeout)
    failed: list[str] = []
    try:
        if os.path.isdir(layout.markers_dir(repo_id)) and not os.path.islink(layout.markers_dir(repo_id)):
            markers.remove(layout, repo_id)
        _remove_tree(layout, layout.markers_dir(repo_id), failed)
        _remove_tree(layout, repo_dir, failed)
        _remove_tree(layout, layout.hub_cache / ".locks" / repo_folder(repo_id), failed)
    finally:
        lock.release()
    if failed:
        raise AimError(f"{repo_id} was only partly removed from {settings.hub_cache} ({len(failed)} problems, first: "
                       f"{failed[0]})", hint="its markers are gone, so nothing trusts the rest; check the volume's "
                                             "permissions and run the command again")
    return freed


def main_remove(settings: Any, repo_id: str, out: Callable[[str], None]) -> int:
    freed = remove(settings, repo_id)
    out(f"removed {repo_id} ({size_text(freed)} freed)")
    return 0
