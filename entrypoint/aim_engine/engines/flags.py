"""The real command-line flags of each engine, as data (`engines/flags/<engine>.json`).

The agent never imports vLLM or SGLang, yet must know which flags they accept: both parsers
reject unknown flags (exit 2) *and* accept unambiguous prefixes, so an unchecked typo in a
recipe either kills the engine at boot or silently becomes another flag. The JSON files are
generated from the real parsers by `scripts/gen-engine-flags.py` (each file records the engine
version and the regenerate command); this module only reads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

FLAGS_DIR = Path(__file__).resolve().parent / "flags"
ENGINES: tuple[str, ...] = ("vllm", "sglang")


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


@lru_cache(maxsize=None)
def load(engine: str) -> EngineFlags:
    """The flag table of `engine` (read once per process)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
    data = json.loads((FLAGS_DIR / f"{engine}.json").read_text(encoding="utf-8"))
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
    return EngineFlags(engine, str(data["version"]), str(data.get("regenerate", "")), flags)


def known_flags(engine: str) -> frozenset[str]:
    """Every long option (`--xyz`) the engine's parser accepts, spelled exactly."""
    return frozenset(load(engine).flags)


def flag_info(engine: str, flag: str) -> FlagInfo | None:
    """What the engine's parser knows about `flag` (exact spelling), or None if it is not a flag."""
    return load(engine).flags.get(flag)


def engine_version(engine: str) -> str:
    """The engine version the flag list was generated from."""
    return load(engine).version
