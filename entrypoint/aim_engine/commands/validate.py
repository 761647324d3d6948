"""`aim-engine validate`: check recipe and model files; report every problem.

Exit codes: 0 clean, 1 problems found, 2 usage error (a path that does not exist, an empty
directory, a bad option). The work happens in `aim_engine.catalog.validator`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", action="append", type=Path, default=[], metavar="FILE",
                        help="a recipe YAML file (repeatable)")
    parser.add_argument("--recipes-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="a directory of recipe YAML files (repeatable; subdirectories are ignored)")
    parser.add_argument("--model", action="append", type=Path, default=[], metavar="FILE",
                        help="a model YAML file (repeatable)")
    parser.add_argument("--models-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="a directory of model YAML files (repeatable)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text for people (default), json for machines")
    parser.epilog = ("With no files or directories, the shipped catalog is validated. Recipes resolve their "
                     "model_id against the given models plus the shipped ones. Exit 0: clean; 1: problems; 2: usage error.")


def inputs_from(args: argparse.Namespace) -> "object":
    from aim_engine.catalog.validator import Inputs

    return Inputs(recipe_files=list(args.recipe), recipe_dirs=list(args.recipes_dir),
                  model_files=list(args.model), model_dirs=list(args.models_dir))


def run_validation(inputs: object, fmt: str, out=None) -> int:
    """Validate and print the report; shared with `aim-recipe-selector`."""
    from aim_engine.catalog.validator import validate

    out = out or sys.stdout
    report = validate(inputs)  # type: ignore[arg-type]
    if fmt == "json":
        out.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        out.write(report.render_text() + "\n")
    return 0 if report.ok else 1


def run(args: argparse.Namespace) -> int:
    return run_validation(inputs_from(args), args.format)
