"""Runs INSIDE an engine environment (vLLM CPU venv or SGLang parser venv), never in the agent's.

Builds the engine's real `serve` argument parser ONCE (importing vLLM costs 15-25 s of CPU), then
answers batch after batch until the test process closes its end of the channel:

    python engine_parser_worker.py ENGINE FD
    request: {"argvs": [["MODEL", "--max-num-seqs", "8", ...], ...], "checks": ["parallel_config"]}
    answer:  [{"ok": true, "values": {dest: value, ...}}, {"ok": false, "error": "..."}, ...]
             or {"error": "TRACEBACK"} for a request it could not answer (it keeps serving)

FD is a private socket inherited from the test process (tests/support/engine_parsers.py), each
message one length-prefixed JSON document: the engines log to stdout/stderr while importing and
parsing, so those only go to a log file. Every argv is parsed by the same parser, as one batch
always was: argparse keeps its results in a fresh namespace per parse_args call. The optional
`checks` (engine_parser_checks.py) check more of each accepted argv than the parser does.

The framing functions are imported by the test process too: this module imports no engine at
module level.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import socket
import struct
import sys
import traceback
from typing import BinaryIO

HEADER = struct.Struct(">Q")      # the length of the JSON document that follows


def encode(message: object) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return HEADER.pack(len(body)) + body


def read_message(stream: BinaryIO) -> object | None:
    """The next message, or None when the other side closed the channel."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return json.loads(body.decode("utf-8"))


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


PARSERS = {"vllm": vllm_parser, "sglang": sglang_parser}


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


def answer(engine: str, parser: argparse.ArgumentParser, validate: object, request: dict) -> list[dict]:
    checks = []
    if request.get("checks"):
        from engine_parser_checks import checks_for   # (this script's directory is on sys.path)

        checks = checks_for(engine, request["checks"])
    results = []
    for argv in request["argvs"]:
        result = parse_one(parser, validate, argv)
        if result["ok"]:
            for key, check in checks:
                result["values"][key] = check(result["values"])
        results.append(result)
    return results


def serve(engine: str, channel: socket.socket) -> int:
    parser, validate = PARSERS[engine]()
    with channel.makefile("rb") as requests, channel.makefile("wb") as answers:
        while (request := read_message(requests)) is not None:
            try:
                reply: object = answer(engine, parser, validate, request)
            except Exception:     # a bad request or a parser bug: say so, and stay up for the next one
                reply = {"error": traceback.format_exc(limit=-4)}
            answers.write(encode(reply))
            answers.flush()
    return 0


def main() -> int:
    engine, fd = sys.argv[1], int(sys.argv[2])
    with socket.socket(fileno=fd) as channel:
        return serve(engine, channel)


if __name__ == "__main__":
    sys.exit(main())
