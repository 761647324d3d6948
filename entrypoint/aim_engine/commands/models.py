"""`aim-engine models`: model catalog tools.

`models fetch-cards [--models-dir D] [--check] [--model ID]` reads each model's `config.json` and
safetensors index from the Hugging Face hub (HF_ENDPOINT, HF_TOKEN) and updates the facts in the
model files, or with `--check` prints the differences and exits 1 when they drift.
The work is in `aim_engine.catalog.cards`; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aim_engine.errors import AimError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    fetch = sub.add_parser(
        "fetch-cards",
        help="update model files from config.json and the safetensors index on the hub (--check: report drift)",
        description="Read config.json and model.safetensors.index.json of every model (and its variants) "
        "from the Hugging Face hub and update the model files, or with --check print the differences "
        "and exit 1 on drift. Honours HF_ENDPOINT and HF_TOKEN.",
    )
    fetch.add_argument("--models-dir", type=Path, default=None,
                       help="directory of model YAML files (default: the shipped models/)")
    fetch.add_argument("--check", action="store_true", help="do not write; exit 1 when a file differs from the hub")
    fetch.add_argument("--model", default=None, help="only the model with this id, slug, alias or variant id")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "models_command", None) != "fetch-cards":
        raise AimError("`aim-engine models` needs an action", "use `aim-engine models fetch-cards [--check]`")
    return fetch_cards(args.models_dir, check=args.check, model=args.model)


def fetch_cards(models_dir: Path | None, *, check: bool, model: str | None = None) -> int:
    """Shared by `aim-engine models fetch-cards` and `aim-recipe-selector --fetch-model-cards`."""
    from aim_engine.catalog import cards
    from aim_engine.settings import Settings

    if models_dir is None:
        from aim_engine.catalog.paths import shipped_models_dir

        models_dir = shipped_models_dir()
    def err(line: str) -> None:
        print(line, file=sys.stderr)

    return cards.run(Path(models_dir), Settings.from_env(), check=check, model=model, out=print, err=err)
