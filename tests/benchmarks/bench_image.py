"""The CPU image: build time (cold base / cached base) and size.

A rebuild takes minutes of I/O, so the bench reads the figures of the last real build instead:
the image test (`make test-image`, part of `make test`) writes them to
$AIM_IMAGE_STORE/last-cpu-image.json, and scripts/image-base.sh writes the base's own build time
to base-build.json when it really builds one. "Cold base" = debootstrap + commit of the base, plus
the image build; "cached base" = the image build alone (the usual `make test` case).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from result import Result

STORE = Path(os.environ.get("AIM_IMAGE_STORE") or Path.home() / ".cache/aim-engine/image")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run() -> list[Result]:
    path = STORE / "last-cpu-image.json"
    if not path.exists():
        return [Result("image: CPU image build", "n/a", "report", f"no build recorded at {path} (run make test-image)")]
    facts = json.loads(path.read_text())
    base = facts.get("base_build") or {}
    build = float(facts["build_seconds"])
    detail = (f"buildah {facts['tag']} on {facts['base']}, --isolation chroot, vfs; last build "
              f"{facts.get('measured_at', '?')}, not rebuilt by the bench")
    engine = facts.get("engine_build") or {}
    if facts.get("engine_cached"):
        rows = [Result("image: CPU image build, cached engine", _minutes(build), "report",
                       f"the agent stage on the cached engine image; {detail}")]
        cold = build + float(engine["seconds"]) if engine.get("seconds") is not None else None
    else:
        rows = []
        cold = build
    if cold is not None:
        rows.append(Result("image: CPU image build, cached base", _minutes(cold), "report",
                           f"engine stage (vLLM CPU venv + demo model) then the agent stage; {detail}"))
        if base.get("seconds") is not None:
            rows.append(Result("image: CPU image build, cold base", _minutes(cold + float(base["seconds"])), "report",
                               f"debootstrap bookworm minbase + commit {base['seconds']} s, then the build above"))
    size = int(facts["image_bytes"])
    rows.append(Result("image: CPU image size", f"{size / 1e9:.2f} GB", "report",
                       f"{facts['layers']} layers, uncompressed (vfs stores each in full)"))
    if facts.get("ready_seconds") is not None:
        rows.append(Result("image: CPU image, start -> /health/ready", f"{facts['ready_seconds']:.0f} s", "report",
                           "buildah run of the entrypoint, demo model, measured from outside the container"))
    return rows
