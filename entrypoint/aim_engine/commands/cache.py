"""`aim-engine cache list|verify|remove`: inspect and maintain the persistent model cache."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="models in the cache (revision, commit, size, complete or not), then the "
                                    "engines' compile caches")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--compile", action="store_true", help="only the compile caches")
    p = sub.add_parser("verify", help="re-check every file of complete models (sizes; --full: sha256)")
    p.add_argument("--model", help="only this model (Hugging Face id)")
    p.add_argument("--full", action="store_true", help="also hash every file (default: AIM_CACHE_VERIFY)")
    p.add_argument("--repair", action="store_true",
                   help="delete damaged files and their marker, so the next warm-up fetches them again")
    p = sub.add_parser("remove", help="delete one model from the cache (under its lock); with --compile, "
                                      "compile caches instead")
    p.add_argument("model", nargs="?", help="Hugging Face id, e.g. org/name (or a local model directory with --compile)")
    p.add_argument("--compile", action="store_true",
                   help="remove compile caches: of MODEL, of --engine BUILD, or --all")
    p.add_argument("--engine", metavar="BUILD", help="with --compile: an engine build, e.g. vllm-0.32.0")
    p.add_argument("--all", action="store_true", help="with --compile: every compile cache")


def run(args: argparse.Namespace) -> int:
    from aim_engine.cache import listing
    from aim_engine.errors import AimError
    from aim_engine.logs import configure_from
    from aim_engine.settings import Settings

    settings = Settings.from_env()
    configure_from(settings)
    if args.cache_command == "list":
        from aim_engine.cache import compiled_listing

        if args.compile:
            return compiled_listing.main_list(settings, print, as_json=args.json)
        code = listing.main_list(settings, print, as_json=args.json)
        if not args.json:
            print()
            compiled_listing.main_list(settings, print)
        return code
    if args.cache_command == "verify":
        return listing.main_verify(settings, print, model=args.model, full=args.full or settings.cache_verify == "full",
                                   repair=args.repair)
    if args.compile:
        from aim_engine.cache import compiled_listing

        return compiled_listing.main_remove(settings, print, model=args.model, engine=args.engine, everything=args.all)
    if args.engine or args.all or not args.model:
        raise AimError("`cache remove` takes one model id; --engine and --all go with --compile",
                       hint="e.g. `aim-engine cache remove org/name` or `aim-engine cache remove --compile --all`")
    return listing.main_remove(settings, args.model, print)
