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


def stage_bases() -> dict[str, str]:
    """Stage name -> what it is FROM."""
    out: dict[str, str] = {}
    for word, args in instructions():
        if word == "FROM":
            parts = args.split()
            out[parts[2] if len(parts) == 3 else f"stage{len(out)}"] = parts[0]
    return out


def global_arg(name: str) -> str:
    return next(args.split("=", 1)[1] for word, args in instructions() if word == "ARG" and args.startswith(f"{name}="))


def test_every_flavour_has_an_engine_stage_and_the_agent_stage_comes_last():
    table = flavour_table()
    assert set(table) == {"rocm-vllm", "rocm-sglang", "cpu"}
    found = stages()
    for flavour in table:
        runs = [args for word, args in found[f"engine-{flavour}"] if word == "RUN"]
        assert len(runs) == 1 and runs[0].endswith(f"/opt/aim-engine/install-engine.sh {flavour}"), runs
    # The agent stage: on the chosen engine, says its flavour, installs once, drops root.
    assert list(found)[-1] == "aim-engine"
    assert stage_bases()["aim-engine"] == "${ENGINE:-engine-${FLAVOUR}}"
    body = found["aim-engine"]
    envs = " ".join(args for word, args in body if word == "ENV")
    assert "AIM_IMAGE_FLAVOUR=${FLAVOUR}" in envs
    runs = [args for word, args in body if word == "RUN"]
    assert len(runs) == 1 and runs[0].endswith("/opt/aim-engine/install-agent.sh"), runs
    users = [args for word, args in body if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    # The default flavour is the default base's.
    assert global_arg("FLAVOUR") == "rocm-vllm"
    assert global_arg("BASE_IMAGE") == table["rocm-vllm"]


def test_the_engine_stages_copy_nothing_of_the_agent_and_the_key_covers_what_they_copy():
    """The engine layer is reused while its key is unchanged (scripts/image-engine-key.sh): every
    file an engine stage copies must be in that key, and no agent source may be among them."""
    found = stages()
    key_script = (REPO / "scripts/image-engine-key.sh").read_text()
    engine_stages = [name for name in found if name != "aim-engine"]
    copied = [p for name in engine_stages for word, args in found[name] if word == "COPY"
              for p in shlex.split(args)[:-1] if not p.startswith("--")]
    assert copied
    for path in copied:
        assert not path.startswith(("entrypoint", "recipes", "models", "pyproject")), path
        assert path in key_script, f"{path} is copied by an engine stage but not in the engine key"


def _key(tree: Path, flavour: str, **env: str) -> str:
    result = subprocess.run(["bash", str(tree / "scripts/image-engine-key.sh"), flavour, "example/base:1"],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_engine_key_changes_with_the_engine_inputs_and_only_with_them(tmp_path):
    import shutil

    for rel in ("docker/Dockerfile", "docker/install-engine.sh", "scripts/image-engine-key.sh",
                "scripts/setup-vllm-cpu.sh", "scripts/make_demo_model.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    cpu, rocm = _key(tmp_path, "cpu"), _key(tmp_path, "rocm-vllm")
    assert len(cpu) == 16 and cpu != rocm and _key(tmp_path, "cpu") == cpu
    # The agent's stage and files are not engine inputs.
    with open(tmp_path / "docker/Dockerfile", "a") as f:
        f.write("LABEL changed=agent-stage\n")
    assert (_key(tmp_path, "cpu"), _key(tmp_path, "rocm-vllm")) == (cpu, rocm)
    # The CPU engine's own script is an input of the cpu engine only.
    with open(tmp_path / "scripts/setup-vllm-cpu.sh", "a") as f:
        f.write("# changed\n")
    assert _key(tmp_path, "cpu") != cpu and _key(tmp_path, "rocm-vllm") == rocm
    cpu = _key(tmp_path, "cpu")
    # Build arguments the engine stages read.
    assert _key(tmp_path, "cpu", VLLM_CPU_VERSION="0.33.0") != cpu
    assert _key(tmp_path, "rocm-vllm", EXTRA_CA_CERTS="-----BEGIN CERTIFICATE-----") != rocm
    # A wheelhouse, once complete, is part of the cpu engine.
    (tmp_path / "docker/wheelhouse").mkdir()
    (tmp_path / "docker/wheelhouse/torch-2.13.0-cp311-none-linux_x86_64.whl").write_bytes(b"x")
    assert _key(tmp_path, "cpu") == cpu
    (tmp_path / "docker/wheelhouse/.complete").write_text("k")
    assert _key(tmp_path, "cpu") != cpu
    # An engine stage's change is an input.
    text = (tmp_path / "docker/Dockerfile").read_text()
    (tmp_path / "docker/Dockerfile").write_text(text.replace("ARG VLLM_CPU_VERSION=0.32.0", "ARG VLLM_CPU_VERSION=0.31.0"))
    assert _key(tmp_path, "rocm-vllm") != rocm
