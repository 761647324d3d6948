"""The one sizing policy for GPU serving configs: how much context and batch a config gets.

Two callers ask the same question — "this checkpoint at this precision on N GPUs of this
memory: what context and batch?" — and must get the same answer, or the shipped catalog and the
recipes synthesized at boot drift apart:
- `generate.py` writes the shipped catalog (recipes/) for the target GPUs;
- `synthesize.py` writes recipes at boot for a model or GPU the catalog does not cover.

The policy (`size_config`), per engine: the memory share is the engine's default from
engines/canonical.yaml (vLLM 0.9, SGLang 0.85: its fraction covers only weights and KV cache);
"fits" means the planner's conservative check (every sequence at
full context at once) with at least MIN_MARGIN_GIB to spare per GPU. context = min(max
positions, CONTEXT_CAP); batch = the largest power of two ≤ BATCH_CAP that fits there. When
fewer than MIN_BATCH sequences fit, the context shrinks in CONTEXT_STEP steps (never below
MIN_CONTEXT) to the longest at which MIN_BATCH fit (else at which one fits); nothing when not
one sequence of MIN_CONTEXT fits.

The CPU backend is sized elsewhere (`synthesize.cpu_recipe`) on purpose: there the goal is a
fast start on host RAM with a tiny context, not the most sequences a GPU can hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aim_engine.planner import memory

if TYPE_CHECKING:
    from aim_engine.catalog.types import Model, Variant

CONTEXT_CAP = 32768      # longer contexts cost batch; users raise it with AIM_ENGINE_ARGS
BATCH_CAP = 256
MIN_BATCH = 8            # below this, trade context for batch
MIN_CONTEXT = 4096       # below this a config is not worth serving
CONTEXT_STEP = 1024
MIN_MARGIN_GIB = 1.0     # sized configs keep this much per GPU beyond the estimate

# serving precision -> canonical --dtype (float8 = online FP8 quantization of a 16-bit checkpoint;
# a pre-quantized checkpoint declares its quantization in config.json: --dtype auto).
DTYPE_ARG: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp8": "float8"}


@dataclass(frozen=True)
class Option:
    """One way to serve a model at a precision: the checkpoint to load and how."""

    precision: str
    checkpoint: str
    variant: "Variant | None" = None
    prequantized: bool = False      # the checkpoint is quantized already: the engine reads its config

    @property
    def kv_cache_dtype(self) -> str | None:
        kv = self.variant.kv_cache_dtype if self.variant else None
        return kv if kv and kv != "auto" else None

    @property
    def dtype(self) -> str:
        return "auto" if self.prequantized else DTYPE_ARG.get(self.precision, "auto")


@dataclass(frozen=True)
class Sized:
    context: int
    batch: int
    fit: memory.Fit


def utilization(engine: str) -> float:
    """The memory share a sized config of `engine` gets (canonical.yaml `defaults`)."""
    from aim_engine.engines.recipe_args import default_utilization

    return default_utilization(engine)


def size_config(model: "Model", option: Option, gpu_memory_bytes: int, gpus: int,
                engine: str = "vllm", pp: int = 1) -> Sized | None:
    """Context and batch for one config of `engine` on `gpus` tensor-parallel GPUs × `pp`
    pipeline stages, or None when it is not worth serving (see the module docstring)."""
    share = utilization(engine)
    ceiling = min(model.max_position_embeddings, CONTEXT_CAP)
    floor = min(MIN_CONTEXT, ceiling)

    def fit(context: int, batch: int) -> memory.Fit:
        return memory.check_fit(model, option.precision, gpu_memory_bytes, gpus, context, batch,
                                option.kv_cache_dtype, share, checkpoint=option.checkpoint, pp=pp)

    def ok(context: int, batch: int) -> bool:
        return fit(context, batch).margin_gib >= MIN_MARGIN_GIB

    def batch_at(context: int) -> int:      # largest power of two ≤ BATCH_CAP that fits, or 0
        batch = BATCH_CAP
        while batch and not ok(context, batch):
            batch //= 2
        return batch

    batch = batch_at(ceiling)
    if batch >= MIN_BATCH:
        return Sized(ceiling, batch, fit(ceiling, batch))
    for want in (MIN_BATCH, 1):
        if not ok(floor, want):
            continue
        lo, hi = floor // CONTEXT_STEP, ceiling // CONTEXT_STEP   # search in whole steps
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid * CONTEXT_STEP, want) else (lo, mid - 1)
        context = max(floor, lo * CONTEXT_STEP)
        batch = batch_at(context)
        return Sized(context, batch, fit(context, batch))
    return None


def config_args(model: "Model", option: Option, gpus: int, context: int, batch: int,
                engine: str = "vllm", pp: int = 1) -> dict[str, Any]:
    """The canonical args of one sized config (a 1-GPU config omits --tensor-parallel-size, the
    engines' default; selection writes the plan's own value anyway). `gpus` is the
    tensor-parallel size; `pp` > 1 adds --pipeline-parallel-size (a group of nodes)."""
    args: dict[str, Any] = {"--model": option.checkpoint, "--dtype": option.dtype}
    if gpus > 1:
        args["--tensor-parallel-size"] = str(gpus)
    if pp > 1:
        args["--pipeline-parallel-size"] = str(pp)
    args.update({
        "--max-batch-size": str(batch),
        "--max-context-len": str(context),
        "--gpu-memory-utilization": f"{utilization(engine):g}",
    })
    if option.kv_cache_dtype:
        args["--kv-cache-dtype"] = option.kv_cache_dtype
    if model.trust_remote_code:
        args["--trust-remote-code"] = "true"
    return args
