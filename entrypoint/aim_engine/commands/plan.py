"""`aim-engine plan [--json]`: the dry run of boot.

Detects the hardware, loads the catalog, selects the plan and renders the engine command
exactly as `serve` would, then prints it all: hardware, chosen recipe and why, every rejected
candidate and why, the argv and the environment variables the agent sets (secrets masked).
On a multi-node group it renders the command of every rank from the one plan (`ranks`), this
node's as `launch`. Nothing is downloaded and nothing is started. The engine command is rendered as `serve`
renders it before the download: a hub checkpoint as on a cold cache (named by id,
HF_HUB_OFFLINE unset; `serve` points it at the warmed snapshot instead), a local directory in
place with HF_HUB_OFFLINE=1. `serve --dry-run` is this same dry run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any, TextIO

GIB = 1024**3
SHOWN_REJECTIONS = 25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="machine-readable output: hardware, settings, plan, launch (secrets masked)")


def build(settings: Any) -> dict[str, Any]:
    """Everything `plan` and `serve --dry-run` show, as one JSON-able dict (secrets masked)."""
    from aim_engine.catalog import Catalog
    from aim_engine.engines import inventory, render
    from aim_engine.hardware import detect
    from aim_engine.planner.select import select
    from aim_engine.redact import mask, secret_values

    hardware = detect(settings)
    engines = inventory.scan(flavour=settings.image_flavour)
    catalog = Catalog.load(settings)
    plan = select(settings, hardware, catalog, engines)
    # A local directory is used in place, offline (as `serve` does); a hub id as on a cold cache.
    launch = render(plan, settings, plan.checkpoint, cache_warm=plan.is_local_checkpoint)
    group = getattr(plan, "group", None)
    ranks = None
    if group is not None and group.is_multi_node:     # every rank's command, from the same plan
        ranks = [launch if rank == launch.rank else
                 render(plan, settings, plan.checkpoint, cache_warm=plan.is_local_checkpoint, rank=rank)
                 for rank in range(group.nodes)]
    from aim_engine.cache import compiled

    # What a boot would do with the compile caches (looked up, nothing written).
    compile_cache = compiled.plan_for(plan, launch, settings.cache_path, gfx=hardware.gfx)
    document = {
        "hardware": hardware.to_dict(),
        "engines": engines.to_dict(),
        "settings": settings.public_dict(),
        "plan": plan.to_dict(),
        "launch": launch.public_dict(),
        "catalog": {"models": len(catalog.models), "recipes": len(catalog.recipe_ids())},
        "cache": "skipped (local directory)" if plan.is_local_checkpoint else "not checked (dry run)",
        "compile_cache": compile_cache.to_dict(),
    }
    if ranks is not None:
        document["ranks"] = [r.public_dict() for r in ranks]
    # the one masking pass, over the whole document (text output is rendered from it)
    return mask(document, secret_values(launch.env))


def _hardware_line(hw: dict[str, Any]) -> str:
    if not hw["devices"]:
        cpu = hw["cpu"]
        return f"no GPU — CPU target ({cpu['model']}, {cpu['cores']} cores, {cpu['memory_bytes'] / GIB:.1f} GiB)"
    mem = min(d["memory_bytes"] for d in hw["devices"]) / GIB
    return f"{hw['gpu_count']}× {hw['gpu_model']} ({hw['gfx']}, {mem:.0f} GiB per GPU) — source: {hw['source']}"


def _engine_words(plan: dict[str, Any]) -> str:
    """`vllm 0.32.0`, `vllm (not installed here)` or just `vllm` when nothing was checked."""
    if plan.get("engine_installed") is False:
        return f"{plan['engine']} (not installed here)"
    version = plan.get("engine_version")
    return f"{plan['engine']} {version}" if version else plan["engine"]


def render_text(data: dict[str, Any], out: TextIO) -> None:
    plan, launch = data["plan"], data["launch"]
    flags = [f for f, on in (("synthesized", plan["synthesized"]),
                             (f"fallback from {plan['fallback_hardware']}", plan["fallback_hardware"])) if on]
    gpus = ("CPU" if plan["target"] == "cpu" else
            f"TP {plan['tensor_parallel']} × DP {plan['data_parallel']} = {plan['gpus_used']} GPU(s)")
    if data.get("ranks"):      # a group: the parallelism is group-wide
        gpus = (f"TP {plan['tensor_parallel']} × PP {plan.get('pipeline_parallel', 1)} × DP {plan['data_parallel']}"
                + ("" if plan["target"] == "cpu" else f" = {plan['gpus_used']} GPU(s)")
                + f" over {plan.get('nodes')} nodes")
    print(f"hardware:  {_hardware_line(data['hardware'])}", file=out)
    print(f"model:     {plan['model_id']} -> loads {plan['checkpoint']}, served as {plan['served_model_name']!r}",
          file=out)
    print(f"recipe:    {plan['recipe_id']}" + (f" ({', '.join(flags)})" if flags else ""), file=out)
    print(f"engine:    {_engine_words(plan)}, {gpus}, {plan['precision']}, context {plan['context']}, "
          f"batch {plan['batch']}", file=out)
    print("why:", file=out)
    for reason in plan["reasons"]:
        print(f"  - {reason}", file=out)
    for warning in plan.get("warnings") or ():
        print(f"WARNING:   {warning}", file=out)
    rejected = plan["rejected"]
    # The interesting rejections first (why a candidate could not run), then the ranked-lower ones.
    rejected = sorted(rejected, key=lambda r: r["reason"].startswith("runnable"))
    print(f"rejected ({len(rejected)}):", file=out)
    for r in rejected[:SHOWN_REJECTIONS]:
        count = f"{r['nodes']}x{r['gpus']}" if (r.get("nodes") or 1) > 1 else r["gpus"]
        where = f" [{r['engine']} {count} GPU]" if r["engine"] else ""
        print(f"  - {r['recipe_id']}{where}: {r['reason']}", file=out)
    if len(rejected) > SHOWN_REJECTIONS:
        print(f"  … {len(rejected) - SHOWN_REJECTIONS} more (--json lists all)", file=out)
    if data.get("ranks"):
        _group_text(data, out)
    else:
        print("command:", file=out)
        print("  " + shlex.join(launch["argv"]), file=out)
    print("environment (set or changed by the agent):", file=out)
    for name, value in sorted(launch["env"].items()):
        print(f"  {name}={value}", file=out)
    for name in launch.get("env_removed", []):
        print(f"  unset {name}", file=out)
    if launch.get("overrides_applied"):
        print(f"AIM_ENGINE_ARGS applied: {json.dumps(launch['overrides_applied'])}", file=out)
    flags = launch.get("flags") or {}
    if flags:
        print(("WARNING:   " if flags.get("warning") else "flags:     ") + flags["reason"], file=out)
    health = launch["health_url"] or "none (nothing listens on this rank's engine port)"
    models = launch["models_url"] or "none (no API on this rank)"
    print(f"health:    {health}  models: {models}", file=out)


def _serves(rank: dict[str, Any]) -> str:
    if rank["serves_api"]:
        return f"serves the API: {rank['models_url']}"
    if rank["health_url"]:
        return f"no API; engine health only: {rank['health_url']}"
    return "no API, nothing listens on the engine port"


def _group_text(data: dict[str, Any], out: TextIO) -> None:
    """The group plan and each rank's command (and prelude) for `plan`'s text output."""
    group, ranks = data["plan"].get("group") or {}, data["ranks"]
    backend = ranks[0].get("backend") or {}
    per_node = data["plan"].get("gpus_per_node")
    print(f"group:     {len(ranks)} nodes" + (f" × {per_node} GPU(s)" if data["plan"]["target"] != "cpu" else "")
          + f", from {group.get('source')}, leader {group.get('leader_address')}, this node is rank "
          f"{group.get('rank')} ({group.get('role')})", file=out)
    print(f"backend:   {backend.get('name')} — {backend.get('reason')}", file=out)
    here = data["launch"]["env"]
    for rank in ranks:
        print(f"rank {rank['rank']} ({rank['role']}, {_serves(rank)}):", file=out)
        for command in rank["prelude"]:
            print("  before:  " + shlex.join(command), file=out)
        print("  command: " + shlex.join(rank["argv"]), file=out)
        differs = {k: v for k, v in rank["env"].items() if here.get(k) != v}
        missing = sorted(k for k in here if k not in rank["env"])
        if differs or missing:
            shown = [f"{k}={v}" for k, v in sorted(differs.items())] + [f"{k} (its own)" for k in missing]
            print("  env:     " + ", ".join(shown), file=out)


def run(args: argparse.Namespace) -> int:
    from aim_engine.logs import configure_from
    from aim_engine.settings import Settings

    settings = Settings.from_env()
    configure_from(settings)      # logs go to stderr; stdout carries only the result
    data = build(settings)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_text(data, sys.stdout)
    return 0
