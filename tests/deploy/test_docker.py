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


FLAVOURS = DOCKER / "flavours.tsv"


def flavour_table() -> dict[str, str]:
    """flavour -> default base image, from docker/flavours.tsv (what scripts/image-build.sh reads)."""
    rows = [line.split("\t") for line in FLAVOURS.read_text().splitlines() if line and not line.startswith("#")]
    return {row[0]: row[1] for row in rows}


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (FROM excluded)."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, args in instructions():
        if word == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"stage{len(out)}"
            current = out.setdefault(name, [])
        elif current is not None:
            current.append((word, args))
    return out


def test_every_flavour_is_a_stage_that_says_its_name_installs_once_and_drops_root():
    table = flavour_table()
    assert set(table) == {"rocm-vllm", "rocm-sglang", "cpu"}
    found = stages()
    for flavour in table:
        body = found[flavour]
        envs = " ".join(args for word, args in body if word == "ENV")
        assert f"AIM_IMAGE_FLAVOUR={flavour}" in envs
        runs = [args for word, args in body if word == "RUN"]
        assert len(runs) == 1 and runs[0].endswith("/opt/aim-engine/install-flavour.sh"), runs
        assert body[-1][0] == "USER" and body[-1][1] not in ("root", "0")
    # The default target (the last stage) is the default flavour, on its default base.
    assert list(found)[-1] == "rocm-vllm"
    default = next(args for word, args in instructions() if word == "ARG" and args.startswith("BASE_IMAGE="))
    assert default.split("=", 1)[1] == table["rocm-vllm"]

