"""`aim-engine download`: pre-warm the model cache (an init container or a Job, before serving).

Same code path as the boot's warm-up (`aim_engine.cache.warm`): same lock, same marker, so a
serving pod that starts later makes zero hub requests.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="Hugging Face id or catalog alias (default: AIM_MODEL_ID)")
    parser.add_argument("--revision", help="branch, tag or commit (default: AIM_MODEL_REVISION, i.e. main)")
    parser.add_argument("--refresh", action="store_true",
                        help="resolve the revision again even if the cache is complete (picks up a moved branch)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def resolve_model_name(name: str, settings: object) -> str:
    """A catalog alias becomes its checkpoint's Hugging Face id; anything else is used as given."""
    from aim_engine.cache import is_local_model

    if is_local_model(name):
        return name
    try:
        from aim_engine.catalog import Catalog

        model = Catalog.load(settings).find_model(name)
    except Exception:  # the catalog is a convenience here; a hub id works without it
        return name
    if model is None:
        return name
    variants = {v.huggingface_id.lower(): v.huggingface_id for v in getattr(model, "variants", ())}
    return variants.get(name.lower(), model.huggingface_id)


def run(args: argparse.Namespace) -> int:
    from aim_engine import cache
    from aim_engine.errors import AimError
    from aim_engine.logs import configure_from
    from aim_engine.settings import Settings

    settings = Settings.from_env()
    configure_from(settings)
    name = args.model or settings.model_id
    if not name:
        raise AimError("no model to download", hint="set AIM_MODEL_ID or pass --model org/name")
    repo_id = resolve_model_name(name, settings)
    result = cache.warm(repo_id, settings, revision=args.revision,
                        options=cache.WarmOptions(refresh=args.refresh))
    if args.json:
        print(json.dumps({"repo_id": result.repo_id, "revision": result.revision, "commit": result.commit,
                          "path": result.path, "files": len(result.files), "bytes": result.bytes,
                          "downloaded_bytes": result.downloaded_bytes, "already_warm": result.already_warm,
                          "local": result.local}))
    elif result.local:
        print(f"{name} is a local directory ({result.path}); nothing to download")
    else:
        state = "already complete" if result.already_warm else f"downloaded {result.downloaded_bytes / 1e9:.2f} GB"
        print(f"{result.repo_id}@{result.revision} = {result.commit}: {state}; {len(result.files)} files, "
              f"{result.bytes / 1e9:.2f} GB at {result.path}")
    return 0
