"""The agent's wheel, built from this checkout, and a fresh venv that holds it: the form the
image installs (no editable-install hook; the catalog and compiled YAML inside the package)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]


def build_wheel(out: Path) -> Path:
    """`pip wheel --no-deps` of the checkout into `out`; the wheel's path.

    One build at a time per checkout: setuptools builds in the tree (`build/lib`), and two test
    workers building at once delete each other's files (seen: "No such file or directory:
    build/lib/aim_engine/_catalog/...")."""
    key = hashlib.sha256(str(REPO).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"aim-engine-wheel-build-{key}.lock"):
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                               capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        raise RuntimeError(f"building the wheel failed:\n{build.stderr[-4000:]}")
    [built] = Path(out).glob("aim_engine-*.whl")
    return built


def venv_with(wheel: Path, env_dir: Path, python: str = sys.executable) -> Path:
    """A new venv of `python` at `env_dir` with `wheel` and its dependencies; its interpreter."""
    subprocess.run([python, "-m", "venv", str(env_dir)], check=True, timeout=120)
    pip = subprocess.run([str(env_dir / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          str(wheel)], capture_output=True, text=True, timeout=900)
    if pip.returncode != 0:
        raise RuntimeError(f"installing {wheel.name} failed:\n{pip.stderr[-4000:]}")
    return env_dir / "bin/python"
