"""The validator's fit checks (planner side; `catalog/checks.py` holds the catalog's own):
every enabled config must fit its hardware, with a legal TP.

Registered through the catalog validator's extension hook (`catalog.checks.EXTENSION_MODULES`
imports this module and reads `CHECKS`). A config that cannot fit is an error carrying the
numbers — weights, KV cache, overhead and what is available per GPU — and a hint with what
would fit (more GPUs, a shorter context, a smaller batch). The same reading of a config
(`config_fit`) annotates generated recipes, so the generator and the validator never disagree.

A config is read exactly as selection reads it (`planner.reading`: the spellings and the
engine defaults of engines/canonical.yaml): tensor-parallel size (default 1), context (default:
the model's max positions, as the engines do), batch (default: the engine's own, e.g. vLLM's
1024 sequences on a device with >= 70 GiB), memory share (default: vLLM 0.9, SGLang 0.85), KV
cache dtype. Disabled configs, CPU recipes and values other checks already reject are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from aim_engine.catalog.checks import RECIPE_SCOPE, SECTION, Check, Context
from aim_engine.catalog.problems import Problem
from aim_engine.engines import recipe_args as ra
from aim_engine.planner import memory
from aim_engine.planner.reading import ConfigReading, read

if TYPE_CHECKING:
    from aim_engine.catalog.types import Model, Recipe, ServeConfig

TRY_GPU_COUNTS = (1, 2, 4, 8)


def read_config(model: "Model", config: "ServeConfig", memory_bytes: int | None = None) -> ConfigReading | None:
    """The config's TP, DP, context, batch, utilization and KV dtype (`reading.read`, the reading
    selection uses); None if a value is unusable (the schema/engine-args/tensor-parallel checks
    report those)."""
    reading = read(model, config, memory_bytes)
    return reading if isinstance(reading, ConfigReading) else None


def gpu_memory_bytes(hardware: str) -> int | None:
    """Memory per device of a recipe's hardware: the GPU's, or for a gfx target the smallest
    GPU of that family (conservative); None for CPU or an unknown name (other checks say so)."""
    from aim_engine.hardware import gpus

    spec = gpus.find(hardware)
    if spec is not None:
        return spec.memory_bytes
    family = [s.memory_bytes for s in gpus.all_specs() if s.gfx == hardware.strip().lower()]
    return min(family) if family else None


def config_fit(model: "Model", recipe: "Recipe", config: "ServeConfig",
               memory_bytes: int | None = None) -> tuple[ConfigReading, memory.Fit] | None:
    """The planner's verdict on one config, or None when it cannot be judged."""
    memory_bytes = memory_bytes if memory_bytes is not None else gpu_memory_bytes(recipe.hardware)
    reading = read_config(model, config, memory_bytes)
    if memory_bytes is None or reading is None:
        return None
    try:
        fit = memory.check_fit(model, recipe.precision, memory_bytes, reading.tp, reading.context, reading.batch,
                               reading.kv_cache_dtype, reading.utilization, checkpoint=recipe.huggingface_id,
                               pp=reading.pp)
    except ValueError:
        return None     # an unknown precision/KV dtype: the schema and engine-args checks report it
    return reading, fit


def _arg_path(config: "ServeConfig", arg: str | None) -> tuple[str, ...]:
    base = (SECTION[config.engine], config.name)
    return (*base, "args", arg) if arg else (*base, "args")


def _what_fits(model: "Model", recipe: "Recipe", reading: ConfigReading, memory_bytes: int) -> str:
    """A hint: the smallest legal GPU count that fits as written, or the context/batch that fit."""
    ckpt = recipe.huggingface_id
    kv, util, pp = reading.kv_cache_dtype, reading.utilization, reading.pp
    options = []
    for n in TRY_GPU_COUNTS:
        if n > reading.tp and memory.tp_legal(model, n) is None:
            try:
                if memory.check_fit(model, recipe.precision, memory_bytes, n, reading.context, reading.batch,
                                    kv, util, checkpoint=ckpt, pp=pp).fits:
                    per_node = " per pipeline stage" if pp > 1 else ""
                    options.append(f"{n} GPUs{per_node} (tensor-parallel {n})")
                    break
            except ValueError:
                break
    context = memory.max_context(model, recipe.precision, memory_bytes, reading.tp, reading.batch, kv, util,
                                 checkpoint=ckpt, pp=pp)
    if context:
        options.append(f"--max-context-len {context} at this batch")
    batch = memory.max_batch(model, recipe.precision, memory_bytes, reading.tp, reading.context, kv, util,
                             checkpoint=ckpt, pp=pp)
    if batch:
        options.append(f"--max-batch-size {batch} at this context")
    if not options:
        return ("the weights alone do not fit at this tensor-parallel size: use more GPUs, or a smaller "
                "precision (fp8, int8, int4 checkpoints)")
    return "fits with " + "; or ".join(options)


def check_memory_fit(doc: Any, recipe: "Recipe", ctx: Context) -> Iterator[Problem]:
    """Every enabled GPU config fits: weights/TP + KV(batch × context) + overhead ≤ memory × utilization."""
    model = ctx.model(recipe.model_id)
    memory_bytes = gpu_memory_bytes(recipe.hardware)
    if model is None or memory_bytes is None:
        return
    for config in recipe.configs:
        if not config.enabled or memory.parallel_legal(model, _tp(config), _pp(config)) is not None:
            continue
        judged = config_fit(model, recipe, config, memory_bytes)
        if judged is None:
            continue
        reading, fit = judged
        if fit.fits:
            continue
        gib = memory_bytes / memory.GIB
        split = f"TP {reading.tp}" + (f" × PP {reading.pp}" if reading.pp > 1 else "") \
            + (f" × DP {reading.dp}" if reading.dp > 1 else "")
        shape = (f"{config.nodes} nodes × {config.gpus} × {recipe.hardware} ({split})" if config.nodes > 1
                 else f"{reading.tp * reading.pp} × {recipe.hardware}")
        batch_note = "" if reading.keys[ra.BATCH] else f" (no batch declared: {config.engine}'s default)"
        context_note = "" if reading.keys[ra.CONTEXT] else " (no context declared: the model's maximum)"
        message = (f"does not fit {shape}: per GPU weights {fit.weights_gib:.2f} GiB "
                   f"+ KV cache {fit.kv_gib:.2f} GiB ({reading.batch} × {reading.context} tokens{batch_note}{context_note}) "
                   f"+ overhead {fit.overhead_gib:.2f} GiB = {fit.used_gib:.2f} GiB > available "
                   f"{fit.available_gib:.2f} GiB ({gib:.0f} GiB × {reading.utilization:g}); short by "
                   f"{-fit.margin_gib:.2f} GiB")
        weights_only = fit.weights_gib + fit.overhead_gib > fit.available_gib
        where = _arg_path(config, (reading.keys[ra.TENSOR_PARALLEL] if weights_only else None)
                          or reading.keys[ra.CONTEXT] or reading.keys[ra.TENSOR_PARALLEL])
        yield doc.problem("memory-fit", where, message, _what_fits(model, recipe, reading, memory_bytes))


def _tp(config: "ServeConfig") -> int:
    _flag, value = ra.lookup(config.args, ra.TENSOR_PARALLEL, config.engine)
    return _int(value) or 1 if value is not None else 1


def _pp(config: "ServeConfig") -> int:
    _flag, value = ra.lookup(config.args, ra.PIPELINE_PARALLEL, config.engine)
    return _int(value) or 1 if value is not None else 1


def _int(value: Any) -> int | None:
    """A positive whole number, or None (the other checks report values that are not)."""
    from aim_engine.catalog.types import int_arg

    n = int_arg(value)
    return n if n is not None and n >= 1 else None


def check_tp_legal(doc: Any, recipe: "Recipe", ctx: Context) -> Iterator[Problem]:
    """The tensor-parallel size is one the engines accept for this model's heads, and the
    pipeline-parallel size leaves every stage at least one layer."""
    model = ctx.model(recipe.model_id)
    if model is None:
        return
    for config in recipe.configs:
        flag, value = ra.lookup(config.args, ra.TENSOR_PARALLEL, config.engine)
        tp = _int(value) if flag else 1
        if tp is not None:      # not a positive integer: the tensor-parallel check reports it
            reason = memory.tp_legal(model, tp)
            if reason is not None:
                legal = [n for n in TRY_GPU_COUNTS if memory.tp_legal(model, n) is None]
                yield doc.problem("tp-legal", _arg_path(config, flag),
                                  f"illegal tensor parallelism for {model.model_id}: {reason}",
                                  f"legal tensor-parallel sizes up to 8: {', '.join(map(str, legal)) or 'none'}")
        pp_flag, pp_value = ra.lookup(config.args, ra.PIPELINE_PARALLEL, config.engine)
        pp = _int(pp_value) if pp_flag else 1
        reason = memory.pp_legal(model, pp) if pp is not None else None
        if reason is not None:
            yield doc.problem("tp-legal", _arg_path(config, pp_flag),
                              f"illegal pipeline parallelism for {model.model_id}: {reason}",
                              f"use at most {model.layers} pipeline stages")


CHECKS: tuple[Check, ...] = (
    Check("tp-legal", RECIPE_SCOPE, check_tp_legal,
          "the tensor-parallel size suits the model's attention heads; pipeline stages have a layer each"),
    Check("memory-fit", RECIPE_SCOPE, check_memory_fit,
          "every enabled config fits its GPUs (weights + KV cache + overhead ≤ memory × utilization)"),
)
