"""The real command-line flags of each engine version, as data (`flags/<engine>-<version>.json`).

The agent never imports vLLM or SGLang, yet must know which flags they accept: both parsers
reject unknown flags (exit 2) *and* accept unambiguous prefixes, so an unchecked typo in a
recipe either kills the engine at boot or silently becomes another flag. Flags also come and go
between versions (`--swap-space` is gone from recent vLLM, `--nnodes` is new), so there is one
list per engine version, generated from the real parser (engines/parser_dump.py, run by
scripts/gen-engine-flags.py for the packaged lists and by `aim-engine engines refresh` in the
image). This module only reads them.

Which list checks a launch (`choose`): the list of the installed version, looked up first among
the lists the image build refreshed (AIM_ENGINE_FLAGS_DIR), then among the packaged ones. When
there is none for that version, the nearest list (the newest one not newer than the installed
version, else the oldest) with a warning that says so; with no engine installed (planning on a
laptop), the newest list, and the plan says which.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

FLAGS_DIR = Path(__file__).resolve().parent / "flags"
ENGINES: tuple[str, ...] = ("vllm", "sglang")
_LIST_FILE = re.compile(r"^(?P<engine>[a-z]+)-(?P<version>\d[^/]*)\.json$")
_RELEASE = re.compile(r"^\d+(?:\.\d+)*")


@dataclass(frozen=True)
class FlagInfo:
    """One flag of one engine, as its argparse parser defines it."""

    flag: str
    dest: str
    option_strings: tuple[str, ...]
    takes_value: bool              # False: a switch (store_true, BooleanOptionalAction, ...)
    nargs: Any                     # argparse nargs as written (None, "?", "+", "*", 0, 1, ...)
    choices: tuple[str, ...] | None
    action: str


@dataclass(frozen=True)
class EngineFlags:
    """The exact flags of one engine version, generated from its real parser."""

    engine: str
    version: str
    regenerate: str
    flags: dict[str, FlagInfo]      # every long option string -> its info

    def get(self, flag: str) -> FlagInfo | None:
        return self.flags.get(flag)

    def close_matches(self, flag: str, n: int = 3) -> list[str]:
        import difflib  # lazily: only for an unknown flag

        return difflib.get_close_matches(flag, list(self.flags), n=n, cutoff=0.6)


# ------------------------------------------------------------------ the list files
def version_key(version: str) -> tuple[int, ...]:
    """Sortable release of a version string: `0.11.2+rocm700` -> (0, 11, 2); `0.5.15.post1` ->
    (0, 5, 15, 1) (a post release sorts after its release); unknown shapes sort first."""
    found = _RELEASE.match(version)
    release = tuple(int(p) for p in found.group(0).split(".")) if found else ()
    post = re.search(r"\.post(\d+)", version)
    return (*release, int(post.group(1)) if post else 0) if release else ()


@dataclass(frozen=True)
class ListFile:
    """One flag list on disk."""

    engine: str
    version: str
    path: Path
    refreshed: bool        # written by `aim-engine engines refresh` (the image's own engines)


def _list_dir(directory: Path, refreshed: bool) -> list[ListFile]:
    try:
        names = os.listdir(directory)
    except OSError:        # no refreshed lists (not an image, or refresh never ran): fine
        return []
    out = []
    for name in names:
        found = _LIST_FILE.match(name)
        if found and found.group("engine") in ENGINES:
            out.append(ListFile(found.group("engine"), found.group("version"), directory / name, refreshed))
    return out


def available(engine: str, refreshed_dir: Path | None = None) -> list[ListFile]:
    """Every list of `engine`, oldest version first; a refreshed list replaces a packaged one of
    the same version."""
    by_version = {f.version: f for f in _list_dir(FLAGS_DIR, False) if f.engine == engine}
    if refreshed_dir is not None:
        by_version.update({f.version: f for f in _list_dir(refreshed_dir, True) if f.engine == engine})
    return sorted(by_version.values(), key=lambda f: (version_key(f.version), f.version))


@lru_cache(maxsize=None)
def load_file(path: Path) -> EngineFlags:
    """One list file (read once per process)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    flags = {
        name: FlagInfo(
            flag=name,
            dest=info["dest"],
            option_strings=tuple(info["option_strings"]),
            takes_value=bool(info["takes_value"]),
            nargs=info.get("nargs"),
            choices=tuple(str(c) for c in info["choices"]) if info.get("choices") else None,
            action=info.get("action", ""),
        )
        for name, info in data["flags"].items()
    }
    return EngineFlags(str(data["engine"]), str(data["version"]), str(data.get("regenerate", "")), flags)


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")


def load(engine: str, version: str | None = None) -> EngineFlags:
    """The packaged list of `engine` at `version` (default: the newest packaged one); what the
    catalog validator checks recipe files against."""
    _check_engine(engine)
    lists = available(engine)
    if version is not None:
        lists = [f for f in lists if f.version == version]
    if not lists:
        raise ValueError(f"no packaged {engine} flag list" + (f" for {version}" if version else ""))
    return load_file(lists[-1].path)


def known_flags(engine: str) -> frozenset[str]:
    """Every long option (`--xyz`) the newest packaged list of `engine` accepts, spelled exactly."""
    return frozenset(load(engine).flags)


def flag_info(engine: str, flag: str) -> FlagInfo | None:
    """What the newest packaged list knows about `flag` (exact spelling), or None if it is not a flag."""
    return load(engine).flags.get(flag)


def engine_version(engine: str) -> str:
    """The engine version of the newest packaged list."""
    return load(engine).version


# ------------------------------------------------------------------ which list checks a launch
@dataclass(frozen=True)
class FlagChoice:
    """The list a launch is checked against, and why that one."""

    engine: str
    flags: EngineFlags
    installed: str | None        # the installed version; None: not installed here, or unknown
    basis: str                   # "exact" | "nearest" | "newest"
    refreshed: bool
    path: Path
    reason: str                  # in words, for the plan, the log and /status
    warn: bool                   # the check is not exact for an installed engine: say it loudly

    @property
    def label(self) -> str:
        """How an error names the list: `vllm 0.33.0`, or `vllm 0.32.0 (nearest list to the installed 0.32.5)`."""
        name = f"{self.engine} {self.flags.version}"
        if self.basis == "nearest":
            return f"{name} (the nearest list to the installed {self.installed})"
        if self.basis == "newest" and self.installed is None:
            return f"{name} (the newest list; {self.engine} is not installed here or its version is unknown)"
        return name

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "version": self.flags.version, "installed": self.installed,
                "basis": self.basis, "refreshed": self.refreshed, "path": str(self.path), "reason": self.reason,
                "warning": self.reason if self.warn else None}


def choose(engine: str, installed: bool, version: str | None, refreshed_dir: Path | None = None) -> FlagChoice:
    """The list to check `engine`'s argv against, given what is installed (see the module docstring)."""
    _check_engine(engine)
    lists = available(engine, refreshed_dir)
    if not lists:
        raise ValueError(f"no {engine} flag list at all (packaged: {FLAGS_DIR})")
    newest = lists[-1]
    if not installed:
        return _choice(engine, newest, None, "newest", False,
                       f"{engine} is not installed here: argv is checked against the newest list, "
                       f"{engine} {newest.version}")
    if version is None:
        return _choice(engine, newest, None, "newest", True,
                       f"the installed {engine}'s version is unknown (no dist-info found): argv is checked against "
                       f"the newest list, {engine} {newest.version}, which may not be what runs")
    exact = next((f for f in lists if f.version == version), None)
    if exact is not None:
        where = "refreshed by the image build" if exact.refreshed else "packaged with the agent"
        return _choice(engine, exact, version, "exact", False,
                       f"argv is checked against the flag list of the installed {engine} {version} ({where})")
    key = version_key(version)
    older = [f for f in lists if version_key(f.version) <= key]
    nearest = older[-1] if older else lists[0]
    return _choice(engine, nearest, version, "nearest", True,
                   f"no flag list for the installed {engine} {version}: argv is checked against the nearest list, "
                   f"{engine} {nearest.version}, so a flag new or removed since then is not caught exactly "
                   "(run `aim-engine engines refresh` where the engine is installed)")


def _choice(engine: str, found: ListFile, installed: str | None, basis: str, warn: bool, reason: str) -> FlagChoice:
    return FlagChoice(engine, load_file(found.path), installed, basis, found.refreshed, found.path, reason, warn)
