"""Recipes built at boot for what the catalog does not cover.

Two cases:
- a model (or hardware) without a catalog recipe: `gpu_recipes` writes one recipe per
  precision the checkpoint(s) and the GPU can serve, with a vLLM and an SGLang config for each
  legal tensor-parallel size up to the visible GPUs, sized by the memory planner exactly as the
  shipped generator would (context capped at `CONTEXT_CAP`, batch `DEFAULT_BATCH`, shrunk until
  it fits);
- no GPU at all: `cpu_recipe` writes the one plan vLLM's CPU backend can run (tensor parallel 1,
  float32 — or bf16 when asked or when float32 does not fit in RAM — a small context, eager
  mode), since catalog recipes target GPUs.

Synthesized recipes are marked `synthesized=True` and go through the same selection checks as
catalog recipes (hardware, overrides, memory), so a synthesized plan is never a blind guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aim_engine.catalog.types import Model, Recipe, ServeConfig, Variant
from aim_engine.errors import AimError
from aim_engine.planner import memory

if TYPE_CHECKING:
    from aim_engine.hardware.types import Cpu, Hardware

ENGINES = ("vllm", "sglang")
TP_SIZES = (1, 2, 4, 8)
CONTEXT_CAP = 32768      # longer contexts are opt-in (AIM_ENGINE_ARGS), they cost batch capacity
DEFAULT_BATCH = 64
MIN_BATCH = 8            # below this a GPU server is not worth it: shrink the context instead
MIN_CONTEXT = 2048
UTILIZATION = 0.9

CPU_CONTEXT = 2048
CPU_BATCH = 4
CPU_RAM_SHARE = 0.8      # weights + KV may use this share of host RAM
CPU_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

# serving precision -> the canonical --dtype a recipe writes (float8 = online FP8 quantization;
# a pre-quantized checkpoint says its own quantization, the engine reads it: dtype auto).
DTYPE_ARG = {"bf16": "bfloat16", "fp16": "float16", "fp8": "float8"}


@dataclass(frozen=True)
class Option:
    """One way to serve the model: a precision and the checkpoint that holds it."""

    precision: str
    checkpoint: str
    variant: Variant | None = None
    prequantized: bool = False      # the checkpoint itself is quantized (no online quantization)


def options(model: Model, checkpoint: str | None, checkpoint_precision: str | None,
            gfx_precisions: tuple[str, ...]) -> list[Option]:
    """Precisions worth synthesizing, best first.

    A checkpoint the user named exactly (a variant, a local directory, a hub id) is served at
    its own precision, plus online fp8 when it is a 16-bit checkpoint and the GPU has FP8.
    Otherwise: the original at 16 bits, online fp8, then each declared variant.
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


def size(model: Model, precision: str, memory_bytes: int, tp: int, kv_cache_dtype: str | None) -> tuple[int, int]:
    """(context, batch) for one config: the capped context with up to DEFAULT_BATCH sequences;
    when fewer than MIN_BATCH fit, the longest context (>= MIN_CONTEXT) for MIN_BATCH; when even
    that fails, the capped context and MIN_BATCH (selection then rejects it with the numbers)."""
    context = min(model.max_position_embeddings, CONTEXT_CAP)
    try:
        batch = memory.max_batch(model, precision, memory_bytes, tp, context, kv_cache_dtype, UTILIZATION,
                                 limit=DEFAULT_BATCH)
    except ValueError:
        return context, MIN_BATCH
    if batch >= MIN_BATCH:
        return context, batch
    longest = memory.max_context(model, precision, memory_bytes, tp, MIN_BATCH, kv_cache_dtype, UTILIZATION)
    if longest >= MIN_CONTEXT:
        return (longest // 1024) * 1024, MIN_BATCH
    return context, MIN_BATCH


def _args(model: Model, option: Option, tp: int, context: int, batch: int) -> dict[str, str]:
    args = {
        "--model": option.checkpoint,
        "--dtype": "auto" if option.prequantized else DTYPE_ARG.get(option.precision, "auto"),
        "--tensor-parallel-size": str(tp),
        "--max-batch-size": str(batch),
        "--max-context-len": str(context),
        "--gpu-memory-utilization": str(UTILIZATION),
    }
    if option.variant is not None and option.variant.kv_cache_dtype:
        args["--kv-cache-dtype"] = option.variant.kv_cache_dtype
    if model.trust_remote_code:
        args["--trust-remote-code"] = "true"
    return args


def gpu_recipes(model: Model, hardware: "Hardware", checkpoint: str | None = None,
                checkpoint_precision: str | None = None) -> list[Recipe]:
    """Recipes for `model` on the detected GPUs, one per serving option (best first)."""
    from aim_engine.hardware import gpus

    hw = hardware.gpu_model or hardware.gfx or "GPU"
    memory_bytes = hardware.memory_per_gpu_bytes
    sizes = [tp for tp in TP_SIZES if tp <= hardware.gpu_count and memory.tp_legal(model, tp) is None]
    recipes = []
    for option in options(model, checkpoint, checkpoint_precision, gpus.gfx_precisions(hardware.gfx or "")):
        kv = option.variant.kv_cache_dtype if option.variant else None
        configs = []
        for tp in sizes:
            context, batch = size(model, option.precision, memory_bytes, tp, kv)
            args = _args(model, option, tp, context, batch)
            configs += [ServeConfig(engine=e, gpus=tp, enabled=True, args=dict(args)) for e in ENGINES]
        recipes.append(Recipe(
            recipe_id=f"{model.slug}-{hw.lower()}-{option.precision}-synthesized",
            model_id=model.model_id, huggingface_id=option.checkpoint, hardware=hw,
            precision=option.precision, configs=tuple(configs), synthesized=True,
            description=f"synthesized at boot for {model.model_id} on {hw} from its config.json facts",
        ))
    return recipes


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
