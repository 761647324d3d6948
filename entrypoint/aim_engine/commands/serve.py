"""`aim-engine serve`: boot and become the engine (the container's default command).

Settings come from the AIM_* environment; `--dry-run` stops before the exec (no probes, no
download) and prints what would run. The sequence itself lives in `aim_engine.boot`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="detect, select and render, then print the plan instead of starting the engine")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    parser.add_argument("--warm-only", action="store_true",
                        help="boot as usual but run the engine as a child: once it is ready (and its compile "
                             "cache is published) stop it and exit 0; a pre-warm Job on the target GPU")


def run(args: argparse.Namespace) -> int:
    import sys

    from aim_engine.settings import Settings

    settings = Settings.from_env()
    if not args.dry_run:
        from aim_engine import boot

        return boot.serve(settings, warm_only=args.warm_only)
    from aim_engine.commands.plan import build, render_text
    from aim_engine.logs import configure_from

    configure_from(settings)      # logs go to stderr; stdout carries only the result
    data = build(settings)        # `aim-engine plan`'s dry run: no probes, no state file, no download
    if args.json:
        import json

        json.dump(data, sys.stdout, indent=2, default=str)
        print()
        return 0
    render_text(data, sys.stdout)
    print(f"cache:     {data['cache']}")
    return 0
