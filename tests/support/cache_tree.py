"""A real, complete model cache on disk without a hub, and a canary tree to prove nothing outside it changed.

`build(root)` writes what a finished warm-up leaves for `org/tiny`@main: blobs, snapshot symlinks
into them, `refs/main`, and the completeness marker (written by the agent's own marker code), so
`aim-engine cache ...` and the warm check see a warm model. Tests then plant hostile or damaged
content in it. `Canary` is a small tree of files next to the cache (and one the cache's hostile
paths aim at): `changes()` lists every file created, removed or altered since it was planted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from aim_engine.cache import marker as markers
from aim_engine.cache.layout import Layout

REPO = "org/tiny"
COMMIT = "c0ffee" + "0" * 34
FILES = {"config.json": b'{"architectures": ["LlamaForCausalLM"]}', "tokenizer.json": b"{}" * 50,
         "model.safetensors": b"\x01" * 4096}


@dataclass
class Cache:
    root: Path
    layout: Layout
    repo_dir: Path
    snapshot: Path
    marker: Path
    blobs: dict[str, Path] = field(default_factory=dict)   # file path -> blob


def build(root: Path, repo: str = REPO, commit: str = COMMIT) -> Cache:
    layout = Layout(root, root / "huggingface" / "hub")
    repo_dir = layout.repo_dir(repo)
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    marked, blobs = [], {}
    for name, data in FILES.items():
        sha = hashlib.sha256(data).hexdigest()
        blob = repo_dir / "blobs" / sha
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
        marked.append(markers.MarkedFile(name, len(data), sha256=sha))
        blobs[name] = blob
    markers.write(layout, markers.Marker(repo, "main", commit, tuple(marked), created=1.0))
    return Cache(root, layout, repo_dir, snapshot, layout.marker(repo, "main"), blobs)


def tree_state(top: Path) -> dict[str, tuple]:
    """Every entry under `top` (not following symlinks): kind, size, content hash, link target."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(top))
            st = path.lstat()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                state[rel] = ("dir", st.st_mode & 0o7777)
            else:
                state[rel] = ("file", st.st_size, st.st_mode & 0o7777, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


class Canary:
    """Files the tests aim hostile cache content at; they must stay exactly as planted."""

    def __init__(self, top: Path) -> None:
        self.top = top
        (top / "sub").mkdir(parents=True, exist_ok=True)
        for name in ("x", "config.json", "tokenizer.json", "model.safetensors", "sub/y", "main"):
            (top / name).write_bytes(b"canary " + name.encode() * 7)
        (top / ("f" * 64)).write_bytes(b"canary blob")
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple]:
        return tree_state(self.top)

    def changes(self) -> dict[str, tuple]:
        after = self.snapshot()
        keys = set(after) | set(self.before)
        return {k: (self.before.get(k), after.get(k)) for k in sorted(keys) if self.before.get(k) != after.get(k)}


def up_to(start: Path, target: Path) -> str:
    """A relative path with enough '..' to reach `target` from `start` (what an attacker writes)."""
    return os.path.relpath(target, start)
