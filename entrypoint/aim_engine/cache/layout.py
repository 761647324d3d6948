"""Where things live in the cache volume (pure path arithmetic, no I/O).

    <AIM_CACHE_PATH>/
      huggingface/                 HF_HOME (agent and engine)
        hub/                       HF_HUB_CACHE: huggingface_hub's own layout
          models--org--name/{blobs,snapshots/<commit>,refs/<revision>}
      aim/
        markers/models--org--name/<revision>.json   completeness markers (written last)
        locks/models--org--name.lock                 flock: one warm-up per model
        locks/models--org--name.lease                lease with heartbeat (network filesystems)
        locks/models--org--name.holder.json          who holds the lock, and its progress
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, unquote

from aim_engine.confine import shown
from aim_engine.errors import AimError

# huggingface_hub's rule for repo ids (utils/_validators.py), in ASCII: `name` or `org/name`, each
# part 1-96 of letters, digits, '_', '-', '.', not starting or ending with '-' or '.', no '--' or
# '..' anywhere, not ending in '.git'. The '--' rule is what keeps `models--org--name` reversible:
# `org--name` would otherwise name the folder of `org/name`.
_REPO_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
REPO_ID = re.compile(rf"(?:{_REPO_PART}/)?{_REPO_PART}")
REPO_ID_RULE = ("a Hugging Face id: name or org/name, each part 1-96 letters, digits, '_', '-' or '.', "
                "not starting or ending with '-' or '.', without '--' or '..', not ending in '.git'")
# A revision is a branch, tag or commit; it names a ref file (`refs/<revision>`, possibly nested
# like `refs/pr/1`) and, quoted, a marker file, so it must stay short and free of path tricks.
REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*")
REVISION_MAX = 200
REVISION_RULE = (f"a branch, tag or commit: 1-{REVISION_MAX} characters, letters, digits, '_', '-', '.', '+' and "
                 "'/' between parts, each part starting with a letter, digit or '_', without '..'")


class BadCacheId(AimError):
    """A model id or revision that cannot name anything in the cache."""


def repo_id_problem(repo_id: object) -> str | None:
    if not isinstance(repo_id, str):
        return f"is a {type(repo_id).__name__}, not text"
    return _repo_id_problem(repo_id)


@lru_cache(maxsize=256)   # the warm check asks about the same id for every path it builds
def _repo_id_problem(repo_id: str) -> str | None:
    if not REPO_ID.fullmatch(repo_id):
        return "is not " + REPO_ID_RULE.split(":")[0]
    if "--" in repo_id or ".." in repo_id:
        return "holds '--' or '..'"
    if repo_id.endswith(".git"):
        return "ends in '.git'"
    return None


def check_repo_id(repo_id: str, what: str = "model id") -> str:
    """`repo_id` if it is a real Hugging Face id (`REPO_ID_RULE`), else BadCacheId."""
    bad = repo_id_problem(repo_id)
    if bad:
        raise BadCacheId(f"{what} {shown(repo_id)} {bad} (allowed: {REPO_ID_RULE})",
                         hint="see `aim-engine cache list` for the ids in the cache")
    return repo_id


def revision_problem(revision: object) -> str | None:
    if not isinstance(revision, str):
        return f"is a {type(revision).__name__}, not text"
    return _revision_problem(revision)


@lru_cache(maxsize=256)
def _revision_problem(revision: str) -> str | None:
    if len(revision) > REVISION_MAX:
        return f"is {len(revision)} characters long"
    if not REVISION.fullmatch(revision) or ".." in revision:
        return "is not a plain branch, tag or commit name"
    return None


def check_revision(revision: str, what: str = "revision") -> str:
    bad = revision_problem(revision)
    if bad:
        raise BadCacheId(f"{what} {shown(revision)} {bad} (allowed: {REVISION_RULE})")
    return revision


def repo_folder(repo_id: str) -> str:
    """huggingface_hub's folder name for a model repo (`org/name` -> `models--org--name`)."""
    return "models--" + repo_id.replace("/", "--")


def repo_id_from_folder(folder: str) -> str | None:
    """The id a `models--...` folder holds, or None when the name is not one a real id makes."""
    if not folder.startswith("models--"):
        return None
    repo_id = folder[len("models--"):].replace("--", "/")
    return repo_id if repo_id_problem(repo_id) is None else None


class Layout:
    """Paths for one cache root (`Settings.cache_path`); `hub_cache` must be `Settings.hub_cache`."""

    def __init__(self, cache_path: Path, hub_cache: Path) -> None:
        self.cache_path = Path(cache_path)
        self.hub_cache = Path(hub_cache)
        self.aim = self.cache_path / "aim"

    @classmethod
    def of(cls, settings: object) -> "Layout":
        return cls(settings.cache_path, settings.hub_cache)  # type: ignore[attr-defined]

    def repo_dir(self, repo_id: str) -> Path:
        return self.hub_cache / repo_folder(check_repo_id(repo_id))

    def snapshot(self, repo_id: str, commit: str) -> Path:
        return self.repo_dir(repo_id) / "snapshots" / commit

    def blob(self, repo_id: str, etag: str) -> Path:
        return self.repo_dir(repo_id) / "blobs" / etag

    def ref(self, repo_id: str, revision: str) -> Path:
        return self.repo_dir(repo_id) / "refs" / check_revision(revision)

    def markers_dir(self, repo_id: str) -> Path:
        return self.aim / "markers" / repo_folder(check_repo_id(repo_id))

    def marker(self, repo_id: str, revision: str) -> Path:
        # Revisions may contain "/" (refs/pr/1): one flat, reversible file name per revision.
        return self.markers_dir(repo_id) / (quote(check_revision(revision), safe="") + ".json")

    @staticmethod
    def revision_from_marker(path: Path) -> str:
        return unquote(path.name[: -len(".json")])

    def locks_dir(self) -> Path:
        return self.aim / "locks"

    def lock(self, repo_id: str) -> Path:
        return self.locks_dir() / (repo_folder(check_repo_id(repo_id)) + ".lock")

    def lease(self, repo_id: str) -> Path:
        return self.locks_dir() / (repo_folder(check_repo_id(repo_id)) + ".lease")

    def holder(self, repo_id: str) -> Path:
        return self.locks_dir() / (repo_folder(check_repo_id(repo_id)) + ".holder.json")

    # -- confinement: every path built from cache content goes through aim_engine.confine

    def confined(self, path: Path, *, folder: Path | None = None, target: Path | None = None, what: str = "path",
                 source: str | None = None) -> Path:
        """`path` (built by this layout) if it resolves inside `folder` (default: the cache root)
        and that inside the cache root, else UnsafePath; see `aim_engine.confine.check`."""
        from aim_engine.confine import check

        return check(path, root=self.cache_path, folder=folder, target=target, what=what, source=source)

    def inside(self, folder: Path, value: object, *, what: str, source: str, nested: bool = False,
               target: Path | None = None) -> Path:
        """`folder`/`value` for a value read from the cache (commit, blob hash, file path), checked
        by syntax and by place; `folder` itself must resolve inside the cache root."""
        from aim_engine.confine import inside

        return inside(folder, value, root=self.cache_path, what=what, source=source, nested=nested, target=target)

    def rel(self, path: Path) -> str:
        """`path` relative to the cache root, for messages (the root is said once, elsewhere)."""
        try:
            return str(Path(path).relative_to(self.cache_path))
        except ValueError:
            return str(path)


# Kernel filesystems: a folder there is never a volume (AIM_CACHE_PATH=/proc/self is a mistake).
KERNEL_FILESYSTEMS = ("/proc", "/sys")


def cache_root_problem(cache_path: Path) -> str | None:
    """Why `cache_path` (AIM_CACHE_PATH) cannot hold the cache, or None (a missing folder is fine:
    it is created on first use)."""
    real = os.path.realpath(cache_path)
    for kernel in KERNEL_FILESYSTEMS:
        if real == kernel or real.startswith(kernel + "/"):
            return f"is on {kernel}, a kernel filesystem, not a volume"
    try:
        st = os.stat(cache_path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder" + ("" if stat.S_ISREG(st.st_mode) else " (it is a device, FIFO or socket)")
    return None


def check_cache_root(cache_path: Path) -> None:
    """Raise SettingsError (exit 2) when AIM_CACHE_PATH cannot hold the cache."""
    from aim_engine.errors import SettingsError

    bad = cache_root_problem(cache_path)
    if bad:
        raise SettingsError([f"AIM_CACHE_PATH={str(cache_path)!r} {bad} (allowed: a folder on a persistent volume, "
                             "or a path where one can be created; default /workspace/model-cache)"])


def is_local_model(model_id: str) -> bool:
    """True when `model_id` names a directory (KServe's /mnt/models, ./my-model) rather than a hub id.

    Hub ids never start with "/", "." or "~"; anything else is local only if it is an existing
    directory (so a relative `org/name` directory in the working dir also counts).
    """
    if model_id.startswith(("/", "./", "../", "~")) or model_id in (".", ".."):
        return True
    return os.path.isdir(model_id)
