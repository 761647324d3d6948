"""`aim-engine`: the command line. Parsing and dispatch only; each subcommand lives in
`aim_engine.commands.<name>` as `add_arguments(parser)` and `run(args) -> int`.

Command modules are imported only to build their own parser, and import their heavy
dependencies inside `run`, so `aim-engine --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from aim_engine import __version__
from aim_engine.errors import AimError, os_error_text
from aim_engine.redact import masked_std_streams

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("aim_engine.commands.serve", "boot: detect GPUs, choose a recipe, warm the cache, exec the engine (default)"),
    "plan": ("aim_engine.commands.plan", "dry run: show the hardware, the chosen recipe and why, and the exact engine command"),
    "detect": ("aim_engine.commands.detect", "show the GPUs (or CPU) the agent sees"),
    "validate": ("aim_engine.commands.validate", "check recipe and model files against their schemas and the hardware"),
    "recipes": ("aim_engine.commands.recipes", "list recipes for this hardware, or generate the catalog's recipes"),
    "models": ("aim_engine.commands.models", "model catalog tools (fetch-cards)"),
    "download": ("aim_engine.commands.download", "pre-warm the model cache (for an init container or a Job)"),
    "cache": ("aim_engine.commands.cache", "inspect the model cache: list, verify, remove"),
    "engines": ("aim_engine.commands.engines", "the engines installed here and their flag lists; refresh them (image build)"),
}
DEFAULT_COMMAND = "serve"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` (argparse takes ~1 ms per subparser: a boot
    that names its command does not build the seven others)."""
    parser = argparse.ArgumentParser(
        prog="aim-engine",
        description="Boot agent for vLLM/SGLang on AMD Instinct GPUs. Settings come from AIM_* variables "
        "(see the README); with no command, `serve` runs.",
    )
    parser.add_argument("--version", action="version", version=f"aim-engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, DEFAULT_COMMAND)
    with masked_std_streams():     # every line the command prints goes through the one masking pass
        parser = build_parser(args_list[0] if args_list[0] in COMMANDS else None)
        args = parser.parse_args(args_list)
        try:
            return int(args._run(args) or 0)
        except AimError as exc:
            print(f"aim-engine: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("aim-engine: interrupted", file=sys.stderr)
            return 130
        except OSError as exc:     # the file system said no: name the file, not a traceback
            print(f"aim-engine: error: {os_error_text(exc)}", file=sys.stderr)
            return 1
