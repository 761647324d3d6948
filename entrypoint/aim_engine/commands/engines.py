"""`aim-engine engines list|refresh`: the engines installed here and their flag lists.

`refresh` is the image build step (docker/Dockerfile runs it as root once the engines and the
agent are installed): it reads each installed engine's real parser and writes its flag list to
AIM_ENGINE_FLAGS_DIR, where the agent looks first at boot. The logic lives in
engines/inventory.py, engines/refresh.py and engines/flags.py; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="engines_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="the engines installed here and the flag list each one is checked against")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    refresh = sub.add_parser("refresh", help="regenerate the flag lists of the installed engines from their real "
                                             "parsers (the image build step)")
    refresh.add_argument("--out", type=Path, default=None,
                         help="where to write the lists (default: AIM_ENGINE_FLAGS_DIR, read by the agent at boot)")
    refresh.add_argument("--check", action="store_true",
                         help="compare with the lists there instead of writing; exit 1 when one is missing or stale")
    refresh.add_argument("--json", action="store_true", help="machine-readable output")


def _setup() -> Any:
    from aim_engine.logs import configure_from
    from aim_engine.settings import Settings

    settings = Settings.from_env()
    configure_from(settings)       # logs go to stderr; stdout carries only the result
    return settings


def run_list(args: argparse.Namespace) -> int:
    from aim_engine.engines import flags, inventory

    settings = _setup()
    found = inventory.scan(flavour=settings.image_flavour)
    rows = []
    for probe in inventory.PROBES:
        engine = found.get(probe.engine)
        choice = flags.choose(probe.engine, engine is not None, engine.version if engine else None,
                              settings.engine_flags_dir)
        rows.append({"engine": probe.engine, "installed": engine.to_dict() if engine else None,
                     "flags": choice.to_dict(),
                     "lists": [f.version + (" (refreshed)" if f.refreshed else "")
                               for f in flags.available(probe.engine, settings.engine_flags_dir)]})
    if args.json:
        json.dump({"flavour": found.flavour, "flags_dir": str(settings.engine_flags_dir), "engines": rows},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"image flavour: {found.flavour or '(not set)'}; refreshed flag lists: {settings.engine_flags_dir}")
    for row in rows:
        engine = row["installed"]
        where = (f"{engine['version'] or 'version unknown'} at {engine['executable']}" if engine
                 else f"not installed {inventory.where(found)}")
        print(f"{row['engine']}: {where}")
        print(f"  flags: {row['flags']['reason']}" + ("  [WARNING]" if row["flags"]["warning"] else ""))
        print(f"  lists: {', '.join(row['lists'])}")
    return 0


def run_refresh(args: argparse.Namespace) -> int:
    from aim_engine.engines import inventory, refresh
    from aim_engine.errors import AimError

    settings = _setup()
    out = args.out or settings.engine_flags_dir
    found = inventory.scan(flavour=settings.image_flavour)
    if found.empty:
        raise AimError("no engine is installed here: nothing to refresh",
                       hint="run it where `vllm` (or a python3 with sglang) is on PATH, e.g. in the image build "
                            "after the engines are installed")
    done = refresh.refresh(found, out, check=args.check)
    if args.json:
        json.dump({"out": str(out), "lists": [d.to_dict() for d in done]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for d in done:
            print(f"{d.engine} {d.version}: {d.status}, {d.flags} flags -> {d.path}")
    return 1 if any(d.status == "stale" for d in done) else 0


def run(args: argparse.Namespace) -> int:
    return {"list": run_list, "refresh": run_refresh}[args.engines_command](args)
