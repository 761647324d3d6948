"""`aim-engine recipes list|generate`: parse, call the planner with typed options, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
        return _list(args)
    return _generate(args)


def _list(args: argparse.Namespace) -> int:
    import json

    from aim_engine.logs import configure_from
    from aim_engine.planner.listing import ListOptions, list_recipes, text_lines
    from aim_engine.settings import Settings

    settings = Settings.from_env()
    configure_from(settings)
    listing = list_recipes(ListOptions(model=args.model, include_all=args.all), settings)
    if args.json:
        print(json.dumps(listing.to_dict(), indent=2))
    else:
        print("\n".join(text_lines(listing.rows, listing.header)))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from aim_engine.planner.generate import GenerateOptions, generate

    report = generate(GenerateOptions(models_dir=Path(args.models_dir) if args.models_dir else None,
                                      out=Path(args.out) if args.out else None, check=args.check))
    if not report.check:
        print(f"{report.total} recipes in {report.out_dir}: {len(report.changed)} written, "
              f"{report.total - len(report.changed)} unchanged, {len(report.stale)} removed")
        return 0
    if report.up_to_date:
        print(f"recipes up to date: {report.total} recipes in {report.out_dir}")
        return 0
    for path in report.changed:
        print(f"would {'create' if path in report.created else 'update'}: {path}")
    for path in report.stale:
        print(f"would remove: {path}")
    print(f"{len(report.changed) + len(report.stale)} file(s) out of date; run `aim-engine recipes generate`",
          file=sys.stderr)
    return 1
