"""Runs INSIDE an engine environment (vLLM CPU venv or SGLang parser venv), never in the agent's.

Builds the engine's real `serve` argument parser once, parses every argv of a batch with it and
writes one JSON result per argv:

    python engine_parser_worker.py ENGINE IN.json OUT.json
    IN.json:  [["MODEL", "--max-num-seqs", "8", ...], ...]   (engine arguments, no command)
    OUT.json: [{"ok": true, "values": {dest: value, ...}}, {"ok": false, "error": "..."}, ...]

Results go to a file, not stdout, because the engines log to stdout while importing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys


def vllm_parser() -> tuple[argparse.ArgumentParser, object]:
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:  # vLLM 0.32
        from vllm.entrypoints.launchers import cli_args
    except ImportError:
        try:  # 0.33 moved it
            from vllm.entrypoints.common import cli_args  # type: ignore[no-redef]
        except ImportError:  # up to 0.31
            from vllm.entrypoints.openai import cli_args  # type: ignore[no-redef]
    parser = cli_args.make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    return parser, getattr(cli_args, "validate_parsed_serve_args", None)


def sglang_parser() -> tuple[argparse.ArgumentParser, object]:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="python3 -m sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    return parser, None


def jsonable(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def parse_one(parser: argparse.ArgumentParser, validate: object, argv: list[str]) -> dict:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            namespace = parser.parse_args(argv)
    except SystemExit as exc:
        lines = err.getvalue().strip().splitlines()   # drop the (very long) usage text
        error = next((line for line in lines if ": error:" in line), lines[-1] if lines else "")
        return {"ok": False, "error": error or f"exit {exc.code}"}
    result: dict = {"ok": True, "values": {k: jsonable(v) for k, v in vars(namespace).items()}}
    if callable(validate):
        try:
            validate(namespace)
        except Exception as exc:  # the engine's own post-parse checks
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return result


def main() -> int:
    engine, in_path, out_path = sys.argv[1:4]
    parser, validate = {"vllm": vllm_parser, "sglang": sglang_parser}[engine]()
    with open(in_path, encoding="utf-8") as f:
        batch = json.load(f)
    results = [parse_one(parser, validate, argv) for argv in batch]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
