"""`aim-recipe-selector`: the seed document's command line, kept working.

The seed's commands are flags, not subcommands:

    aim-recipe-selector --validate --recipe F            one recipe
    aim-recipe-selector --validate --recipes-dir D       a directory of recipes
    aim-recipe-selector --validate-model --model F       one model file
    aim-recipe-selector --validate-models --models-dir D a directory of model files

Each mode is a row of `MODES` (flag -> handler); they all route to the same validator as
`aim-engine validate`, with the same exit codes (0 clean, 1 problems, 2 usage error). Another
mode (e.g. `--fetch-model-cards --models-dir D`) is one more row and one more handler.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from aim_engine.errors import AimError


@dataclass(frozen=True)
class Mode:
    flag: str
    help: str
    handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int]


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from aim_engine.catalog.validator import Inputs
    from aim_engine.commands.validate import run_validation

    if not (args.recipe or args.recipes_dir):
        parser.error("--validate needs --recipe FILE or --recipes-dir DIR")
    return run_validation(Inputs(recipe_files=args.recipe, recipe_dirs=args.recipes_dir,
                                 model_files=args.model, model_dirs=args.models_dir), args.format)


def _validate_models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from aim_engine.catalog.validator import Inputs
    from aim_engine.commands.validate import run_validation

    if not (args.model or args.models_dir):
        parser.error(f"{args.mode} needs --model FILE or --models-dir DIR")
    return run_validation(Inputs(model_files=args.model, model_dirs=args.models_dir), args.format)


def _fetch_model_cards(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Routed to `aim-engine models fetch-cards` (owned by the models area)."""
    from aim_engine.commands.models import fetch_cards

    dirs = args.models_dir or [None]
    return max(fetch_cards(d, check=args.check) for d in dirs)


MODES: tuple[Mode, ...] = (
    Mode("--validate", "validate recipes (with --recipe FILE and/or --recipes-dir DIR)", _validate),
    Mode("--validate-model", "validate model files (with --model FILE)", _validate_models),
    Mode("--validate-models", "validate model files (with --models-dir DIR)", _validate_models),
    Mode("--fetch-model-cards", "update model files from the hub's config.json and safetensors index "
         "(with --models-dir DIR; --check reports drift, exit 1)", _fetch_model_cards),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aim-recipe-selector",
        description="The seed's recipe tool. Same validator as `aim-engine validate`; exit 0 clean, 1 problems, 2 usage.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    for mode in MODES:
        group.add_argument(mode.flag, dest="mode", action="store_const", const=mode.flag, help=mode.help)
    parser.add_argument("--recipe", action="append", type=Path, default=[], metavar="FILE")
    parser.add_argument("--recipes-dir", action="append", type=Path, default=[], metavar="DIR")
    parser.add_argument("--model", action="append", type=Path, default=[], metavar="FILE")
    parser.add_argument("--models-dir", action="append", type=Path, default=[], metavar="DIR")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--check", action="store_true", help="with --fetch-model-cards: only report drift (exit 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from aim_engine.redact import masked_std_streams

    with masked_std_streams():     # the one masking pass over everything printed
        parser = build_parser()
        args = parser.parse_args(argv)
        handler = next(m.handler for m in MODES if m.flag == args.mode)
        try:
            return handler(args, parser)
        except AimError as exc:
            print(f"aim-recipe-selector: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
