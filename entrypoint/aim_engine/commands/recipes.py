"""`aim-engine recipes list|generate`: dispatch only; the work lives in the planner."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="recipes_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="recipes for this hardware: runnable, needs less context, or incompatible")
    listing.add_argument("--model", help="only recipes of this model (id, alias or variant)")
    listing.add_argument("--all", action="store_true", help="include recipes for other hardware")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(_action="list")
    generate = sub.add_parser("generate", help="regenerate recipes/ from models/, the GPU table and recipes/templates/")
    generate.add_argument("--models-dir", help="model catalog directory (default: the shipped one)")
    generate.add_argument("--out", help="output directory (default: the shipped recipes/)")
    generate.add_argument("--check", action="store_true", help="exit 1 if the output would change (no writes)")
    generate.set_defaults(_action="generate")


def run(args: argparse.Namespace) -> int:
    if args._action == "list":
        from aim_engine.planner.listing import main as list_main

        return list_main(args)
    from aim_engine.planner.generate import main as generate_main

    return generate_main(args)
