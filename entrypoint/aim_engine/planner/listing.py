"""`aim-engine recipes list [--model M] [--all] [--json]`: what the catalog can run here.

One row per recipe config (engine x GPU count), classified against the detected hardware with
the same rules as selection (`select.hardware_match`, the memory planner, TP legality):

- `runnable`: compatible hardware, enough visible GPUs, legal TP, fits at its context;
- `needs less context`: everything but memory is fine, and a shorter context fits (shown);
- `incompatible`: with the reason (other GPU family, too few GPUs, illegal TP, precision the
  GPU lacks, does not fit even a short context, disabled).

GiB per GPU is the planner's need (weights + KV + overhead) for the config's context and batch,
on the detected device memory (for another GPU's recipe shown with --all: on that GPU's memory).
Without --all only recipes whose hardware matches (exactly, generically or as a same-family
fallback) are listed. Settings overrides other than the hardware ones are not applied: this
lists the catalog, `aim-engine plan` shows the choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from aim_engine.text_table import align

RUNNABLE = "runnable"
LESS_CONTEXT = "needs less context"
INCOMPATIBLE = "incompatible"


@dataclass(frozen=True)
class Row:
    recipe_id: str
    model_id: str
    hardware: str
    precision: str
    engine: str
    gpus: int
    status: str
    context: int
    fits_context: int | None         # the longest context that fits (None: not computed)
    gib_per_gpu: float | None
    usable_gib: float | None
    reason: str
    nodes: int = 1                   # a group config (MxN_gpu): M nodes of `gpus` GPUs each


def classify(recipes: Iterable[Any], catalog: Any, hardware: Any, include_all: bool = False) -> list[Row]:
    """Pure: every config of `recipes` as a Row for `hardware`."""
    from aim_engine.hardware import gpus
    from aim_engine.planner import memory
    from aim_engine.planner.reading import Unreadable
    from aim_engine.planner.select import effective_sizes, hardware_match

    caps = gpus.capabilities(hardware.gfx)
    rows: list[Row] = []
    models: dict[str, Any] = {}
    for recipe in recipes:
        model = models.get(recipe.model_id) or catalog.find_model(recipe.model_id)
        models[recipe.model_id] = model
        if hardware.is_cpu:
            tier, why = (None, "no GPU visible: the CPU plan is synthesized (`aim-engine plan`)")
        else:
            tier, why = hardware_match(recipe.hardware, hardware)
        if tier is None and not include_all:
            continue
        spec = gpus.find(recipe.hardware)
        memory_bytes = hardware.memory_per_gpu_bytes if tier else (spec.memory_bytes if spec else 0)
        for config in recipe.configs:
            reading = effective_sizes(model, config, {}, memory_bytes) if model else None
            readable = reading is not None and not isinstance(reading, Unreadable)
            tp, pp, context, batch, utilization, kv = (
                (reading.tp, reading.pp, reading.context, reading.batch, reading.utilization, reading.kv_cache_dtype)
                if readable else (config.gpus, 1, 0, 0, 0.9, None))
            base = dict(recipe_id=recipe.recipe_id, model_id=recipe.model_id, hardware=recipe.hardware,
                        precision=recipe.precision, engine=config.engine, gpus=config.gpus, context=context,
                        nodes=config.nodes)
            fit = None
            if model is not None and memory_bytes and readable:
                try:
                    fit = memory.check_fit(model, recipe.precision, memory_bytes, tp, context, batch, kv,
                                           utilization, pp=pp)
                except ValueError:
                    fit = None
            sizes = dict(gib_per_gpu=round(fit.used_gib, 1) if fit else None,
                         usable_gib=fit.available_gib if fit else None)
            problem = None
            if model is None:
                problem = f"model {recipe.model_id} is not in the catalog"
            elif tier is None:
                problem = why
            elif not config.enabled:
                problem = "disabled in the recipe"
            elif not caps.runs(recipe.precision):
                problem = f"{hardware.gfx} cannot run {recipe.precision}"
            elif not caps.runs_engine(config.engine):
                problem = f"{config.engine} does not run on {hardware.gfx}"
            elif not readable:
                problem = f"args: {reading}"
            elif config.nodes != hardware.group.nodes:
                problem = (f"needs {config.nodes} nodes × {config.gpus} GPUs; this node "
                           + (f"is in a group of {hardware.group.nodes}" if hardware.group.is_multi_node
                              else "is not in a group") if config.nodes > 1 else
                           f"a one-node config; the group of {hardware.group.nodes} nodes is used whole")
            elif config.gpus > hardware.gpu_count:
                problem = f"needs {config.gpus} GPUs, {hardware.gpu_count} visible"
            else:
                problem = memory.parallel_legal(model, tp, pp)
            if problem:
                rows.append(Row(**base, status=INCOMPATIBLE, fits_context=None, reason=problem, **sizes))
                continue
            if fit is not None and fit.fits:
                note = "" if tier == "exact" else why
                rows.append(Row(**base, status=RUNNABLE, fits_context=context, reason=note, **sizes))
                continue
            longest = memory.max_context(model, recipe.precision, memory_bytes, tp, batch, kv, utilization, pp=pp)
            if longest >= 1:
                rows.append(Row(**base, status=LESS_CONTEXT, fits_context=longest,
                                reason=f"{batch} x {longest} tokens fit (asks for {context})", **sizes))
            else:
                rows.append(Row(**base, status=INCOMPATIBLE, fits_context=0,
                                reason="does not fit even one short sequence", **sizes))
    return rows


def text_lines(rows: list[Row], header: str) -> list[str]:
    """The human listing, line by line (the command prints them)."""
    lines = [header]
    if not rows:
        return lines + ["  (no recipes match; --all lists recipes for other hardware too)"]
    table = [["recipe", "engine", "GPUs", "precision", "status", "GiB/GPU", "context", "note"]]
    for r in rows:
        gib = f"{r.gib_per_gpu:.1f}/{r.usable_gib:.0f}" if r.gib_per_gpu is not None else "-"
        ctx = str(r.context) if r.status != LESS_CONTEXT else f"{r.context} -> {r.fits_context}"
        gpus = str(r.gpus) if r.nodes == 1 else f"{r.nodes}x{r.gpus}"
        table.append([r.recipe_id, r.engine, gpus, r.precision, r.status, gib, ctx, r.reason])
    lines += ["  " + line for line in align(table)]
    counts = {s: sum(1 for r in rows if r.status == s) for s in (RUNNABLE, LESS_CONTEXT, INCOMPATIBLE)}
    return lines + ["  " + ", ".join(f"{n} {s}" for s, n in counts.items())]


@dataclass(frozen=True)
class ListOptions:
    """What `aim-engine recipes list` was asked (commands/recipes.py builds it)."""

    model: str | None = None
    include_all: bool = False


@dataclass(frozen=True)
class Listing:
    hardware: Any
    header: str
    rows: list[Row]

    def to_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware.to_dict(), "recipes": [asdict(r) for r in self.rows]}


def list_recipes(options: ListOptions, settings: Any) -> Listing:
    """The catalog's recipes classified for the detected hardware (the edge: detect, load)."""
    from aim_engine.catalog import Catalog
    from aim_engine.errors import AimError
    from aim_engine.hardware import detect

    hardware = detect(settings)
    catalog = Catalog.load(settings)
    if options.model:
        model = catalog.find_model(options.model)
        if model is None:
            names = sorted(m.slug for m in catalog.models)
            raise AimError(f"--model {options.model!r} is not a catalog model",
                           hint="catalog models: " + ", ".join(names))
        recipes: list[Any] = catalog.recipes_for(model)     # reads only that model's recipe files
    else:
        recipes = list(catalog.recipes)
    rows = classify(recipes, catalog, hardware, include_all=options.include_all)
    if hardware.is_cpu:
        where = f"no GPU (CPU: {hardware.cpu.model})"
    else:
        where = (f"{hardware.gpu_count}x {hardware.gpu_model} ({hardware.gfx}, "
                 f"{hardware.memory_per_gpu_bytes / 1024**3:.0f} GiB per GPU)")
    return Listing(hardware, f"recipes on {where}:", rows)
