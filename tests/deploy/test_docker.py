"""The Dockerfile: linted by hadolint, and consistent with the files and the package it installs."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tests.deploy.manifests import DOCKER, REPO

DOCKERFILE = DOCKER / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def first(name: str) -> str:
    return next(args for word, args in instructions() if word == name)


def test_hadolint_is_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists():
    copies = [shlex.split(args) for word, args in instructions() if word == "COPY"]
    assert copies
    for parts in copies:
        sources = [p for p in parts[:-1] if not p.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def test_entrypoint_is_the_installed_console_script():
    entrypoint = json.loads(first("ENTRYPOINT"))
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert entrypoint == ["aim-engine"]
    assert scripts["aim-engine"] == "aim_engine.cli:main"
    assert json.loads(first("CMD")) == ["serve"]


def test_base_image_is_pinned_not_latest():
    base = next(args for word, args in instructions() if word == "ARG" and args.startswith("BASE_IMAGE="))
    image = base.split("=", 1)[1]
    assert ":" in image and not image.endswith(":latest")


def test_runs_as_non_root_with_healthcheck():
    user = first("USER")
    assert user not in ("root", "0")
    assert "/health/live" in first("HEALTHCHECK")
