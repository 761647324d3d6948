"""Recipes built at boot for what the catalog does not cover.

Two cases:
- a model (or hardware) without a catalog recipe: `gpu_recipes` writes one recipe per
  precision the checkpoint(s) and the GPU can serve, with a config for each engine the GPU's
  architecture runs (the capability table, hardware/gpus.yaml: vLLM only on gfx90a) and each
  legal tensor-parallel size up to the visible GPUs, sized by the shipped generator's own
  policy (`sizing.size_config`: one policy, so a synthesized config and a shipped one for the
  same model and GPU agree);
- no GPU at all: `cpu_recipe` writes the one plan vLLM's CPU backend can run (tensor parallel 1,
  float32 — or bf16 when asked or when float32 does not fit in RAM — a small context, eager
  mode), since catalog recipes target GPUs. Its sizing is deliberately NOT the GPU policy: the
  CPU backend is for small models and a fast start (the KV cache lives in host RAM, sized by
  VLLM_CPU_KVCACHE_SPACE, and every token is slow), so it gets a fixed small context
  (`CPU_CONTEXT`) and a few sequences (`CPU_BATCH`) rather than the most a memory budget holds.

Synthesized recipes are marked `synthesized=True` and go through the same selection checks as
catalog recipes (hardware, overrides, memory), so a synthesized plan is never a blind guess.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aim_engine.catalog.types import Model, Recipe, ServeConfig
from aim_engine.errors import AimError
from aim_engine.planner import memory, sizing
from aim_engine.planner.sizing import Option

if TYPE_CHECKING:
    from aim_engine.hardware.types import Cpu, Hardware

ENGINES = ("vllm", "sglang")
TP_SIZES = (1, 2, 4, 8)

CPU_CONTEXT = 2048
CPU_BATCH = 4
CPU_RAM_SHARE = 0.8      # weights + KV may use this share of host RAM
CPU_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def options(model: Model, checkpoint: str | None, checkpoint_precision: str | None,
            gfx_precisions: tuple[str, ...]) -> list[Option]:
    """Precisions worth synthesizing, best first.

    A checkpoint the user named exactly (a variant, a local directory, a hub id) is served at
    its own precision, plus online fp8 when it is a 16-bit checkpoint and the GPU has FP8.
    Otherwise: the original at 16 bits, online fp8, then each declared variant.
    (Not `generate.options`: the generator ships one checkpoint per precision a target GPU can
    run, while here a checkpoint the user named must be served as named, fp32 originals are
    served at 16 bits, and precisions the GPU lacks are left for selection to reject with a
    reason. Both build the same `sizing.Option`, sized by the same policy.)
    `gpu_recipes` keeps only the options the architecture runs (`runnable`).
    """
    native = memory.native_precision(model)
    sixteen = native if native in memory.SIXTEEN_BIT else "bf16"
    if checkpoint is not None:
        variant = model.checkpoint(checkpoint)
        precision = variant.precision if variant else (checkpoint_precision or native)
        if precision not in memory.SIXTEEN_BIT:
            return [Option(precision, checkpoint, variant, prequantized=True)]
        out = [Option(precision, checkpoint)]
        if "fp8" in gfx_precisions:
            out.append(Option("fp8", checkpoint))
        return out
    out = []
    if native in memory.SIXTEEN_BIT or native == "fp32":
        out.append(Option(sixteen, model.huggingface_id))
        if "fp8" in gfx_precisions and not any(v.precision == "fp8" for v in model.variants):
            out.append(Option("fp8", model.huggingface_id))
    else:
        out.append(Option(native, model.huggingface_id, prequantized=True))
    out += [Option(v.precision, v.huggingface_id, v, prequantized=True) for v in model.variants
            if v.precision != native]
    return out


def size(model: Model, option: Option, memory_bytes: int, tp: int, engine: str = "vllm",
         pp: int = 1) -> tuple[int, int]:
    """(context, batch) for one synthesized config: the generator's policy (`sizing.size_config`).
    When nothing is worth serving there, the capped context and MIN_BATCH are written anyway, so
    selection rejects the config with its memory numbers and the context that would fit, rather
    than the config silently vanishing from the reasons (also when the planner cannot size it:
    selection then reports why)."""
    try:
        sized = sizing.size_config(model, option, memory_bytes, tp, engine, pp)
    except ValueError:
        sized = None
    if sized is None:
        return min(model.max_position_embeddings, sizing.CONTEXT_CAP), sizing.MIN_BATCH
    return sized.context, sized.batch


def runnable(model: Model, hardware: "Hardware", checkpoint: str | None = None,
             checkpoint_precision: str | None = None) -> tuple[list[Option], list[Option]]:
    """(options the GPU's architecture runs, options it does not) for `gpu_recipes`."""
    from aim_engine.hardware import gpus

    caps = gpus.capabilities(hardware.gfx)
    found = options(model, checkpoint, checkpoint_precision, caps.precisions)
    return [o for o in found if caps.runs(o.precision)], [o for o in found if not caps.runs(o.precision)]


def gpu_recipes(model: Model, hardware: "Hardware", checkpoint: str | None = None,
                checkpoint_precision: str | None = None) -> list[Recipe]:
    """Recipes for `model` on the detected GPUs, one per serving option the architecture runs
    (best first), each with a config per engine it runs and per legal tensor-parallel size."""
    from aim_engine.hardware import gpus

    caps = gpus.capabilities(hardware.gfx)
    engines = [e for e in ENGINES if caps.runs_engine(e)]
    hw = hardware.gpu_model or hardware.gfx or "GPU"
    memory_bytes = hardware.memory_per_gpu_bytes
    sizes = [tp for tp in TP_SIZES if tp <= hardware.gpu_count and memory.tp_legal(model, tp) is None]
    recipes = []
    for option in runnable(model, hardware, checkpoint, checkpoint_precision)[0]:
        configs = []
        for tp in sizes:
            for engine in engines:
                args = sizing.config_args(model, option, tp, *size(model, option, memory_bytes, tp, engine),
                                          engine=engine)
                configs.append(ServeConfig(engine=engine, gpus=tp, enabled=True, args=args))
        recipes.append(_synthesized(model, option, hw, configs, f"on {hw} from its config.json facts"))
    return recipes


def group_recipes(model: Model, hardware: "Hardware", checkpoint: str | None = None,
                  checkpoint_precision: str | None = None) -> list[Recipe]:
    """Recipes for the whole group of `hardware.group.nodes` nodes, each with this node's GPUs:
    one per serving option the architecture runs, with an `MxN_gpu` config per engine and per
    GPU count per node in TP_SIZES whose group split (`across_nodes.split`: vLLM TP within a
    node × PP across nodes, SGLang TP over every GPU) is legal, sized by the same policy as every
    other config (`sizing.size_config` with the pipeline stages)."""
    from aim_engine.hardware import gpus
    from aim_engine.planner import across_nodes

    caps = gpus.capabilities(hardware.gfx)
    engines = [e for e in ENGINES if caps.runs_engine(e)]
    hw = hardware.gpu_model or hardware.gfx or "GPU"
    nodes, memory_bytes = hardware.group.nodes, hardware.memory_per_gpu_bytes
    ask = across_nodes.asked(hardware)       # the deployment's TP x PP (KServe), when it covers the group
    sizes = (hardware.gpu_count,) if ask is not None else tuple(n for n in TP_SIZES if n <= hardware.gpu_count)
    recipes = []
    for option in runnable(model, hardware, checkpoint, checkpoint_precision)[0]:
        configs = []
        for per_node in sizes:
            for engine in engines:
                split = ask or across_nodes.split(engine, nodes, per_node)
                if memory.parallel_legal(model, split.tp, split.pp) is not None:
                    continue
                context, batch = size(model, option, memory_bytes, split.tp, engine, split.pp)
                args = sizing.config_args(model, option, split.tp, context, batch, engine=engine, pp=split.pp)
                configs.append(ServeConfig(engine=engine, gpus=per_node, enabled=True, args=args, nodes=nodes))
        if configs:
            recipes.append(_synthesized(model, option, hw, configs, f"on {nodes} nodes of {hw} from its facts"))
    return recipes


def _synthesized(model: Model, option: Option, hw: str, configs: list[ServeConfig], where: str) -> Recipe:
    """The recipe synthesized at boot for one serving option: one id per model, GPU and precision,
    whether its configs are for one node or a group."""
    return Recipe(
        recipe_id=f"{model.slug}-{hw.lower()}-{option.precision}-synthesized",
        model_id=model.model_id, huggingface_id=option.checkpoint, hardware=hw,
        precision=option.precision, configs=tuple(configs), synthesized=True,
        description=f"synthesized at boot for {model.model_id} {where}",
    )


def _cpu_weights(model: Model, precision: str) -> int:
    return memory.estimated_weights_bytes(model, precision)


def cpu_recipe(model: Model, cpu: "Cpu", checkpoint: str, requested_precision: str = "auto",
               checkpoint_precision: str | None = None) -> Recipe:
    """The vLLM CPU-backend recipe: tp 1, float32 (bf16 if asked, or if float32 does not fit in
    RAM), context min(max positions, CPU_CONTEXT), CPU_BATCH sequences, eager mode, the
    single-process executor, and VLLM_CPU_KVCACHE_SPACE sized for that batch and context."""
    if checkpoint_precision and checkpoint_precision not in memory.SIXTEEN_BIT + ("fp32",):
        raise AimError(f"{checkpoint} is a pre-quantized ({checkpoint_precision}) checkpoint: "
                       "the CPU backend serves only unquantized fp32/bf16 weights here",
                       hint="serve the original 16-bit checkpoint on CPU, or run on a GPU")
    if requested_precision not in ("auto", *CPU_DTYPES):
        raise AimError(f"AIM_PRECISION={requested_precision} is not available without a GPU: "
                       "vLLM's CPU backend serves fp32, bf16 or fp16",
                       hint="unset AIM_PRECISION (auto picks fp32) or give the container a GPU")
    context = min(model.max_position_embeddings, CPU_CONTEXT)
    choices = ("fp32", "bf16") if requested_precision == "auto" else (requested_precision,)
    budget = cpu.memory_bytes * CPU_RAM_SHARE
    for precision in choices:
        kv_bytes = memory.kv_cache_bytes(model, context, CPU_BATCH, 4 if precision == "fp32" else 2)
        kv_gib = max(1, math.ceil(kv_bytes / memory.GIB))
        need = _cpu_weights(model, precision) + kv_gib * memory.GIB
        if need <= budget or cpu.memory_bytes <= 0:   # 0: RAM unknown (no /proc/meminfo), do not guess
            break
    else:
        raise AimError(f"{model.model_id} needs {need / memory.GIB:.1f} GiB of RAM at {precision} on the CPU "
                       f"backend; this host has {cpu.memory_bytes / memory.GIB:.1f} GiB "
                       f"({CPU_RAM_SHARE:.0%} usable)",
                       hint="run on a GPU, or choose a smaller model")
    args: dict[str, object] = {
        "--model": checkpoint,
        "--dtype": CPU_DTYPES[precision],
        "--tensor-parallel-size": "1",
        "--max-batch-size": str(CPU_BATCH),
        "--max-context-len": str(context),
        "--enforce-eager": True,
        "--distributed-executor-backend": "uni",
    }
    if model.trust_remote_code:
        args["--trust-remote-code"] = "true"
    config = ServeConfig(engine="vllm", gpus=1, enabled=True, args=args,
                         env={"VLLM_CPU_KVCACHE_SPACE": str(kv_gib)})
    return Recipe(
        recipe_id=f"{model.slug}-cpu-{precision}-synthesized", model_id=model.model_id,
        huggingface_id=checkpoint, hardware="CPU", precision=precision, configs=(config,),
        synthesized=True,
        description=f"vLLM CPU backend plan for {model.model_id} ({cpu.model}, {cpu.cores} cores)",
    )
