"""`aim-engine cache list|verify|remove`: inspect and maintain the persistent model cache."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="models in the cache: revision, commit, size, complete or not")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("verify", help="re-check every file of complete models (sizes; --full: sha256)")
    p.add_argument("--model", help="only this model (Hugging Face id)")
    p.add_argument("--full", action="store_true", help="also hash every file (default: AIM_CACHE_VERIFY)")
    p.add_argument("--repair", action="store_true",
                   help="delete damaged files and their marker, so the next warm-up fetches them again")
    p = sub.add_parser("remove", help="delete one model from the cache (under its lock)")
    p.add_argument("model", help="Hugging Face id, e.g. org/name")


def run(args: argparse.Namespace) -> int:
    from aim_engine.cache import listing
    from aim_engine.logs import configure_from
    from aim_engine.settings import Settings

    settings = Settings.from_env()
    configure_from(settings)
    if args.cache_command == "list":
        return listing.main_list(settings, print, as_json=args.json)
    if args.cache_command == "verify":
        return listing.main_verify(settings, print, model=args.model, full=args.full or settings.cache_verify == "full",
                                   repair=args.repair)
    return listing.main_remove(settings, args.model, print)
