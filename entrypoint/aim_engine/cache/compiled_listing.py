"""`aim-engine cache list|remove` for the compile caches (layout: `aim_engine.cache.compiled`).

Removal never deletes in place: the directory is first renamed out of the way (one rename, so a
booting engine sees the whole cache or none of it), then deleted, and only inside the compile
root. An engine that is running from a removed cache keeps its open files; its next boot compiles.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from aim_engine.cache.compiled import COMPILE_DIR, READY_MARKER, model_folder, new_token, remove_tree, safe_name
from aim_engine.cache.layout import is_local_model
from aim_engine.cache.types import size_text
from aim_engine.probes.compiled import tree_size
from aim_engine.text_table import align
from aim_engine.errors import AimError


@dataclass
class CompiledModel:
    model: str                  # the per-model folder (models--org--name, local--name-hash)
    config: str                 # the engine configuration hash
    bytes: int
    files: int
    published_at: float | None


@dataclass
class CompileKey:
    key: str                    # engine-version_torch-version_device
    shared_bytes: int
    staging: int                # boots compiling now (or killed while compiling)
    models: list[CompiledModel] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return self.shared_bytes + sum(m.bytes for m in self.models)


def _dirs(path: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def scan(cache_path: Path) -> list[CompileKey]:
    out = []
    for key_dir in _dirs(Path(cache_path) / COMPILE_DIR):
        entry = CompileKey(key_dir.name, tree_size(key_dir / "shared")[1], len(_dirs(key_dir / "staging")))
        for folder in _dirs(key_dir / "models"):
            for cfg in _dirs(folder):
                if cfg.name.startswith("."):
                    continue        # a copy being published
                files, size = tree_size(cfg)
                try:
                    marker = json.loads((cfg / READY_MARKER).read_text()[:65536])
                except (OSError, ValueError):
                    marker = {}
                published = marker.get("published_at") if isinstance(marker, dict) else None
                entry.models.append(CompiledModel(folder.name, cfg.name, size, files,
                                                  published if isinstance(published, (int, float)) else None))
        out.append(entry)
    return out


def rows(keys: list[CompileKey]) -> list[tuple[str, ...]]:
    table = [("ENGINE BUILD", "MODEL", "CONFIG", "SIZE", "STATUS")]
    for k in keys:
        table.append((k.key, "(shared kernels)", "-", size_text(k.shared_bytes),
                      f"{k.staging} compiling" if k.staging else "-"))
        for m in k.models:
            table.append((k.key, m.model, m.config, size_text(m.bytes),
                          "published" if m.published_at else "no ready marker"))
    return table


def main_list(settings: Any, out: Callable[[str], None], as_json: bool = False) -> int:
    """`cache list --compile`; `out` is the CLI's (masked) print, as for `listing.main_list`."""
    keys = scan(settings.cache_path)
    if as_json:
        out(json.dumps([{**asdict(k), "bytes": k.bytes} for k in keys], indent=1))
        return 0
    if not keys:
        out(f"no compile caches in {Path(settings.cache_path) / COMPILE_DIR}")
        return 0
    for line in align(rows(keys)):
        out(line)
    return 0


def _take_away(path: Path, root: Path) -> int:
    """Rename `path` aside inside `root`, then delete it; the bytes freed."""
    if not path.is_dir() or path.is_symlink():
        return 0
    size = tree_size(path)[1]
    aside = root / f".removing-{new_token()}"
    try:
        os.rename(path, aside)
    except OSError as exc:
        raise AimError(f"cannot remove {path}: {exc.strerror or exc}",
                       hint="check that the cache volume is mounted writable") from None
    remove_tree(aside, root)
    return size


def remove(settings: Any, *, model: str | None = None, engine: str | None = None, everything: bool = False) -> int:
    """Remove compile caches: of one model (in every engine build), of one engine build (a key or a
    key prefix such as `vllm-0.32.0`), or all of them. Returns the bytes freed."""
    root = Path(settings.cache_path) / COMPILE_DIR
    if sum(x is not None and x is not False for x in (model, engine, everything or None)) != 1:
        raise AimError("say what to remove: a model, --engine BUILD, or --all")
    if everything:
        if not root.is_dir():
            return 0
        freed = 0
        for key_dir in _dirs(root):
            freed += _take_away(key_dir, root)
        return freed
    if engine is not None:
        prefix = safe_name(engine)
        matched = [d for d in _dirs(root) if d.name == prefix or d.name.startswith(prefix + "_")
                   or d.name.startswith(prefix + "-")]
        if not matched:
            raise AimError(f"no compile cache of engine build {engine!r} in {root}",
                           hint="see `aim-engine cache list`: the ENGINE BUILD column (a prefix such as "
                                "vllm-0.32.0 is enough)")
        return sum(_take_away(d, root) for d in matched)
    assert model is not None
    folders = {model_folder(model, is_local_model(model)), safe_name(model)}
    matched = [folder for key_dir in _dirs(root) for folder in _dirs(key_dir / "models") if folder.name in folders]
    if not matched:
        raise AimError(f"no compile cache of {model} in {root}", hint="see `aim-engine cache list`")
    return sum(_take_away(folder, folder.parents[1]) for folder in matched)


def main_remove(settings: Any, out: Callable[[str], None], **what: Any) -> int:
    freed = remove(settings, **what)
    label = what.get("model") or what.get("engine") or "all engine builds"
    out(f"removed the compile caches of {label} ({size_text(freed)} freed)")
    return 0
