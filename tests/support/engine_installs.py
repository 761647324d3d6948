"""Fixture engine installs: a prefix laid out as pip leaves one (bin/, lib/pythonX.Y/site-packages/
with `<dist>-<version>.dist-info`), so the inventory (aim_engine.engines.inventory) reads a known
version from real files without a real engine. The interpreter is a symlink to this machine's
real Python, so scripts in bin/ run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
REAL_PYTHON = os.path.realpath(sys.executable)   # the base interpreter: its own stdlib, no venv


def make_prefix(root: Path, distributions: dict[str, str] | None = None) -> Path:
    """`root` as an install prefix holding `distributions` (name -> version); returns root/bin."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in (PY, "python3"):
        link = bin_dir / name
        if not link.exists():
            link.symlink_to(REAL_PYTHON)
    site = root / "lib" / PY / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    for name, version in (distributions or {}).items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return bin_dir


def console_script(bin_dir: Path, name: str, body: str = "import sys\nsys.exit(0)\n") -> Path:
    """An executable `name` in `bin_dir` run by the prefix's interpreter (as pip writes one)."""
    script = bin_dir / name
    script.write_text(f"#!{bin_dir / PY}\n{body}")
    script.chmod(0o755)
    return script
