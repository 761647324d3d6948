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
from pathlib import Path
from urllib.parse import quote, unquote


def repo_folder(repo_id: str) -> str:
    """huggingface_hub's folder name for a model repo (`org/name` -> `models--org--name`)."""
    return "models--" + repo_id.replace("/", "--")


def repo_id_from_folder(folder: str) -> str | None:
    if not folder.startswith("models--"):
        return None
    return folder[len("models--"):].replace("--", "/")


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
        return self.hub_cache / repo_folder(repo_id)

    def snapshot(self, repo_id: str, commit: str) -> Path:
        return self.repo_dir(repo_id) / "snapshots" / commit

    def blob(self, repo_id: str, etag: str) -> Path:
        return self.repo_dir(repo_id) / "blobs" / etag

    def ref(self, repo_id: str, revision: str) -> Path:
        return self.repo_dir(repo_id) / "refs" / revision

    def markers_dir(self, repo_id: str) -> Path:
        return self.aim / "markers" / repo_folder(repo_id)

    def marker(self, repo_id: str, revision: str) -> Path:
        # Revisions may contain "/" (refs/pr/1): one flat, reversible file name per revision.
        return self.markers_dir(repo_id) / (quote(revision, safe="") + ".json")

    @staticmethod
    def revision_from_marker(path: Path) -> str:
        return unquote(path.name[: -len(".json")])

    def locks_dir(self) -> Path:
        return self.aim / "locks"

    def lock(self, repo_id: str) -> Path:
        return self.locks_dir() / (repo_folder(repo_id) + ".lock")

    def lease(self, repo_id: str) -> Path:
        return self.locks_dir() / (repo_folder(repo_id) + ".lease")

    def holder(self, repo_id: str) -> Path:
        return self.locks_dir() / (repo_folder(repo_id) + ".holder.json")


def is_local_model(model_id: str) -> bool:
    """True when `model_id` names a directory (KServe's /mnt/models, ./my-model) rather than a hub id.

    Hub ids never start with "/", "." or "~"; anything else is local only if it is an existing
    directory (so a relative `org/name` directory in the working dir also counts).
    """
    if model_id.startswith(("/", "./", "../", "~")) or model_id in (".", ".."):
        return True
    return os.path.isdir(model_id)
