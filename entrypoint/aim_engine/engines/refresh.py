"""Flag lists from the engines' real parsers: the outer half, shared by `aim-engine engines
refresh` (the image build step) and scripts/gen-engine-flags.py (the lists packaged with the agent).

`generate(engine, interpreter)` runs parser_dump.py (the inner half, stdlib + the engine only)
with the engine's own interpreter and returns the list as data; `refresh(inventory, out_dir)`
does that for every installed engine and writes `<out_dir>/<engine>-<version>.json`, which the
agent reads at boot before its packaged lists (engines/flags.py). Nothing here runs at boot.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from aim_engine.errors import AimError

DUMP_SCRIPT = Path(__file__).resolve().parent / "parser_dump.py"
# Set for the dump only, and only when the caller did not: vLLM builds its parser only once it
# knows its platform, and an image build (or a laptop) has no GPU to tell it.
DUMP_ENV: dict[str, dict[str, str]] = {"vllm": {"VLLM_TARGET_DEVICE": "cpu"}, "sglang": {}}
DUMP_TIMEOUT_S = 600


def file_name(engine: str, version: str) -> str:
    return f"{engine}-{version}.json"


def generate(engine: str, interpreter: str | Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`engine`'s flag list, dumped from its real parser by `interpreter` (an AimError when that
    fails: the interpreter is missing, the engine does not import, the output is not the dump)."""
    base = dict(os.environ if env is None else env)
    for name, value in DUMP_ENV.get(engine, {}).items():
        base.setdefault(name, value)
    try:
        # Its text through -c, from /, not the file by path: a script's directory goes first on
        # sys.path, and this one's neighbours (vllm.py, sglang.py) would shadow the engines.
        proc = subprocess.run([str(interpreter), "-c", DUMP_SCRIPT.read_text(encoding="utf-8"), engine], env=base,
                              cwd="/", capture_output=True, text=True, timeout=DUMP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AimError(f"could not run {engine}'s parser with {interpreter}: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise AimError(f"building {engine}'s parser with {interpreter} failed (exit {proc.returncode}):\n{tail}",
                       hint="the engine must import in that interpreter; see docs/engines.md")
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("engine") != engine or not isinstance(data.get("flags"), dict):
        raise AimError(f"{engine}'s parser dump from {interpreter} is not a flag list: {proc.stdout[-300:]!r}")
    return data


def render(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def same(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Two lists hold the same facts (the `regenerate` note may differ)."""
    return a is not None and a.get("version") == b.get("version") and a.get("flags") == b.get("flags")


def write(data: Mapping[str, Any], directory: Path) -> Path:
    """Write one list into `directory` (made 0755 if missing), readable by every user (0644):
    the image writes it as root at build time, the agent reads it as the runtime user."""
    from aim_engine import atomic

    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    path = directory / file_name(str(data["engine"]), str(data["version"]))
    atomic.write_text(path, render(data))
    os.chmod(path, 0o644)
    return path


@dataclass(frozen=True)
class Refreshed:
    engine: str
    version: str
    path: Path
    flags: int
    status: str          # "written" | "up to date" | "stale" (with --check)

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "version": self.version, "path": str(self.path), "flags": self.flags,
                "status": self.status}


def refresh(inventory: Any, out_dir: Path, *, check: bool = False) -> list[Refreshed]:
    """Regenerate the list of every installed engine into `out_dir` (or, with `check`, compare)."""
    done: list[Refreshed] = []
    for name, found in inventory.engines.items():
        if not found.interpreter:
            raise AimError(f"{name} at {found.executable}: cannot tell which Python runs it, so its parser "
                           "cannot be read", hint="install the engine with pip (a console script or a python3)")
        data = generate(name, found.interpreter)
        if found.version and data["version"] != found.version:
            raise AimError(f"{name}: {found.location} says {found.version} but the interpreter {found.interpreter} "
                           f"imports {data['version']}", hint="remove the stale dist-info, or reinstall the engine")
        data["regenerate"] = "aim-engine engines refresh"
        path = out_dir / file_name(name, str(data["version"]))
        if check:
            current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            status = "up to date" if same(current, data) else "stale"
        else:
            write(data, out_dir)
            status = "written"
        done.append(Refreshed(name, str(data["version"]), path, len(data["flags"]), status))
    return done
