"""The memory planner: will this model, at this precision, fit these GPUs — and by how much?

Pure arithmetic over catalog facts (no I/O), so the generator, the validator and the selector
all agree on one set of numbers, and a user can redo every number by hand from the
explanation. Every figure is *per GPU* (tensor parallelism splits the model over `gpus`
devices; data-parallel replicas each need the same per-GPU memory, so they change nothing here).

    used  = weights / gpus + KV(batch × context) + overhead
    usable = gpu_memory × gpu_memory_utilization
    fits  ⇔  used ≤ usable

With `pp` pipeline stages (a group of nodes, docs/multinode.md) every GPU holds weights /
(gpus × pp) and the KV cache of its stage's layers (the largest stage: ceil(layers / pp)); the
overhead per GPU is unchanged.

The model (docs/planner.md has the long form):

* **Weights.** The real checkpoint size when we know it: the model's `weights_bytes` (the
  safetensors index `total_size`) at its native precision, or a declared variant's
  `weights_bytes` for that precision. Otherwise parameters × bytes per parameter (bf16/fp16 2,
  fp8/int8 1, int4 0.5 + group-scale overhead), with the embedding and LM head kept at 16 bits
  the way vLLM's online quantization does. MoE: every expert is resident, so `parameters.total`
  counts, not `active`.
* **KV cache** (the conservative worst case: `batch` sequences all at the full `context`):
  GQA/MHA/MQA keep K and V per KV head and layer, `2 × kv_heads × head_dim × bytes`; under TP
  each GPU keeps `max(1, kv_heads // tp)` heads — when TP exceeds the KV heads they are
  replicated, exactly as vLLM's `ModelConfig.get_num_kv_heads`. MLA keeps one compressed latent
  per layer, `(kv_lora_rank + qk_rope_head_dim) × bytes`, and every TP rank keeps all of it
  (vLLM treats MLA as a single KV head). Sliding-window layers hold at most `window` tokens.
  The KV dtype is the activation dtype (2 bytes) unless `kv_cache_dtype` is fp8 (1 byte) —
  explicitly, or declared by the variant checkpoint being loaded.
* **Overhead** per GPU: a fixed 2 GiB (HIP context, RCCL buffers, graph pool, allocator slack)
  + activations for one scheduler step of `T` tokens, `T × hidden_size × 32 bytes` (about 16
  bf16 hidden-size vectors per token: residual, norms, QKV, MLP gate/up/act — not divided by TP,
  which is conservative) + sampler logits `batch × vocab × 8 bytes` (fp32 logits and one fp32
  working copy). `T` is vLLM 0.32's default `max_num_batched_tokens` for the OpenAI server by
  device memory: 16384 at ≥ 160 GiB, 8192 at ≥ 70 GiB, else 2048.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the planner only reads attributes; keep the import graph light
    from aim_engine.catalog.types import Model, Variant

GIB = 1 << 30
DEFAULT_UTILIZATION = 0.9

# Bytes per parameter of the quantized linear layers, by serving precision.
PRECISION_BYTES: dict[str, float] = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
# int4 (AWQ/GPTQ) stores one fp16 scale and one 4-bit zero point per group of 128 weights:
# (2 + 0.5) bytes / 128 weights on top of the 0.5 byte per weight.
INT4_GROUP_SIZE = 128
INT4_GROUP_OVERHEAD = (2 + 0.5) / INT4_GROUP_SIZE
# Embedding and LM head stay at 16 bits when a checkpoint is quantized (online or offline).
EMBEDDING_BYTES = 2

# A checkpoint's native dtype -> the precision it is served at as-is.
NATIVE_PRECISION: dict[str, str] = {
    "bf16": "bf16", "fp16": "fp16", "fp32": "bf16", "fp8": "fp8", "int4": "int4", "mxfp4": "mixed",
}
SIXTEEN_BIT = ("bf16", "fp16")

# KV cache element size by --kv-cache-dtype; "auto" = the activation dtype (bf16/fp16).
# (Both engines' spellings; 4-bit KV formats are counted at half a byte, their scales ignored.)
KV_DTYPE_BYTES: dict[str, float] = {
    "auto": 2, "bf16": 2, "fp16": 2, "bfloat16": 2, "float16": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1, "fp8_ds_mla": 1, "mxfp8": 1,
    "fp8_per_token_head": 1, "int8_per_token_head": 1,
    "int4_per_token_head": 0.5, "nvfp4": 0.5, "nvfp4_ds_mla": 0.5, "fp4_mx_block16": 0.5,
}

FIXED_OVERHEAD_BYTES = 2 * GIB
ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN = 32
LOGITS_BYTES_PER_SEQ_PER_VOCAB = 8
# vLLM 0.32 EngineArgs defaults (OpenAI server): max_num_batched_tokens by device memory.
BATCHED_TOKENS_BY_MEMORY: tuple[tuple[int, int], ...] = ((160 * GIB, 16384), (70 * GIB, 8192), (0, 2048))


@dataclass(frozen=True)
class Fit:
    """The answer to "does it fit?", per GPU, in GiB, with the words that justify it."""

    fits: bool
    weights_gib: float
    kv_gib: float
    overhead_gib: float
    available_gib: float
    margin_gib: float
    explanation: str

    @property
    def used_gib(self) -> float:
        return self.weights_gib + self.kv_gib + self.overhead_gib


# --- weights -------------------------------------------------------------------------------

def native_precision(model: "Model") -> str:
    return NATIVE_PRECISION.get(model.native_dtype, model.native_dtype)


def variant_for(model: "Model", precision: str, checkpoint: str | None = None) -> "Variant | None":
    """The declared checkpoint serving `precision`, or None when the original one does.

    `checkpoint` (a Hugging Face id) names the checkpoint exactly when the caller knows it (a
    recipe's `huggingface_id`). Otherwise the original checkpoint wins at its own precision (a
    bf16 model at bf16/fp16, an FP8 model at fp8), else the first declared variant of that
    precision (model files list the preferred one first).
    """
    if checkpoint is not None:
        return model.checkpoint(checkpoint)
    if _original_serves(model, precision):
        return None
    return next((v for v in model.variants if v.precision == precision), None)


def _original_serves(model: "Model", precision: str) -> bool:
    native = native_precision(model)
    return precision == native or (precision in SIXTEEN_BIT and native in SIXTEEN_BIT)


def _embedding_params(model: "Model") -> int:
    # Input embedding + LM head (counted twice even when tied: conservative by vocab × hidden bytes).
    return min(2 * model.vocab_size * model.hidden_size, model.parameters_total)


def estimated_weights_bytes(model: "Model", precision: str) -> int:
    """Parameters × bytes per parameter, for a checkpoint we have no real size of."""
    if precision not in PRECISION_BYTES:
        raise ValueError(f"no weight-size rule for precision {precision!r} (known: {', '.join(PRECISION_BYTES)})")
    per_param = PRECISION_BYTES[precision]
    if precision in SIXTEEN_BIT or precision == "fp32":
        return int(model.parameters_total * per_param)
    if precision == "int4":
        per_param += INT4_GROUP_OVERHEAD
    embedding = _embedding_params(model)
    return int((model.parameters_total - embedding) * per_param + embedding * EMBEDDING_BYTES)


def weights_bytes(model: "Model", precision: str, checkpoint: str | None = None) -> int:
    """Bytes of weights loaded for `model` served at `precision` (all GPUs together).

    Real sizes first (the declared variant named by `checkpoint` or serving that precision, or
    the original checkpoint at its native precision), the parameter-count estimate otherwise
    (e.g. online FP8 quantization of a 16-bit checkpoint).
    """
    variant = variant_for(model, precision, checkpoint)
    if variant is not None and (variant.precision == precision or precision == "mixed"):
        return variant.weights_bytes
    if _original_serves(model, precision):
        return model.weights_bytes
    if precision == "mixed":
        raise ValueError(f"{model.model_id}: no checkpoint declares precision 'mixed'")
    return estimated_weights_bytes(model, precision)


# --- KV cache ------------------------------------------------------------------------------

def resolve_kv_dtype(model: "Model", precision: str, kv_cache_dtype: str | None,
                     checkpoint: str | None = None) -> str:
    """The KV dtype in effect: explicit, else what the loaded variant declares, else auto."""
    if kv_cache_dtype:
        return kv_cache_dtype
    variant = variant_for(model, precision, checkpoint)
    if variant is not None and variant.kv_cache_dtype:
        return variant.kv_cache_dtype
    return "auto"


def kv_element_bytes(kv_dtype: str) -> float:
    try:
        return KV_DTYPE_BYTES[kv_dtype]
    except KeyError:
        raise ValueError(f"unknown KV cache dtype {kv_dtype!r} (known: {', '.join(KV_DTYPE_BYTES)})") from None


def kv_heads_per_gpu(model: "Model", tp: int) -> int:
    """KV heads each GPU stores: split when kv_heads ≥ tp, replicated (1 per GPU) otherwise."""
    if model.attention.kind == "mla":
        return 1
    return max(1, model.attention.kv_heads // tp)


def kv_bytes_per_token_per_layer(model: "Model", kv_bytes: float, tp: int = 1) -> int:
    """Bytes one token costs in one attention layer on one GPU."""
    att = model.attention
    if att.kind == "mla":
        if att.kv_lora_rank is None:
            raise ValueError(f"{model.model_id}: MLA attention needs kv_lora_rank")
        return int((att.kv_lora_rank + (att.qk_rope_head_dim or 0)) * kv_bytes)
    return int(2 * kv_heads_per_gpu(model, tp) * att.head_dim * kv_bytes)


def _layer_split(model: "Model") -> tuple[int, int, int | None]:
    """(global layers, sliding-window layers, window)."""
    att = model.attention
    if not att.sliding_window:
        return model.layers, 0, None
    swa = att.sliding_window_layers if att.sliding_window_layers else model.layers
    swa = min(swa, model.layers)
    return model.layers - swa, swa, att.sliding_window


def stage_layers(layers: int, pp: int = 1) -> int:
    """Layers of the largest pipeline stage: vLLM's `get_pp_indices` gives every stage
    `layers // pp` and spreads the remainder one layer each, so the largest holds ceil(layers / pp)."""
    return -(-layers // max(pp, 1))


def kv_cache_bytes(model: "Model", context: int, batch: int, kv_bytes: float, tp: int = 1, pp: int = 1) -> int:
    """KV bytes per GPU for `batch` sequences of `context` tokens each (the worst case). With
    `pp` pipeline stages a GPU holds the KV of its stage's layers only (the largest stage)."""
    per = kv_bytes_per_token_per_layer(model, kv_bytes, tp)
    full, swa, window = _layer_split(model)
    tokens = stage_layers(full, pp) * context + stage_layers(swa, pp) * min(context, window or context)
    return batch * per * tokens


# --- overhead ------------------------------------------------------------------------------

def batched_tokens(gpu_memory_bytes: int) -> int:
    """vLLM's default max_num_batched_tokens for a device of this size (one prefill step)."""
    return next(tokens for floor, tokens in BATCHED_TOKENS_BY_MEMORY if gpu_memory_bytes >= floor)


def overhead_bytes(model: "Model", gpu_memory_bytes: int, batch: int) -> int:
    """Per-GPU runtime memory outside weights and KV: fixed + activations + sampler logits."""
    activations = batched_tokens(gpu_memory_bytes) * model.hidden_size * ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN
    logits = batch * model.vocab_size * LOGITS_BYTES_PER_SEQ_PER_VOCAB
    return FIXED_OVERHEAD_BYTES + activations + logits


# --- the fit check -------------------------------------------------------------------------

def _gib(n: float) -> float:
    return n / GIB


def _budget(model: "Model", precision: str, gpu_memory_bytes: int, gpus: int, context: int, batch: int,
            kv_cache_dtype: str | None, checkpoint: str | None, pp: int = 1) -> tuple[str, float, int, int, int]:
    """(kv dtype, kv bytes per element, total weight bytes, KV bytes per GPU, overhead bytes per GPU)."""
    if gpus < 1 or context < 1 or batch < 1 or pp < 1:
        raise ValueError(f"gpus, pipeline stages, context and batch must be ≥ 1 (got {gpus}, {pp}, {context}, {batch})")
    kv_dtype = resolve_kv_dtype(model, precision, kv_cache_dtype, checkpoint)
    kv_el = kv_element_bytes(kv_dtype)
    return (kv_dtype, kv_el, weights_bytes(model, precision, checkpoint),
            kv_cache_bytes(model, context, batch, kv_el, gpus, pp), overhead_bytes(model, gpu_memory_bytes, batch))


def check_fit(model: "Model", precision: str, gpu_memory_bytes: int, gpus: int, context: int, batch: int,
              kv_cache_dtype: str | None = None, gpu_memory_utilization: float = DEFAULT_UTILIZATION,
              *, checkpoint: str | None = None, pp: int = 1) -> Fit:
    """Does `batch` sequences of `context` tokens fit on `gpus` tensor-parallel GPUs (times `pp`
    pipeline stages: each GPU then holds 1/(gpus × pp) of the weights and its stage's share of
    the layers' KV cache)?

    Conservative: the KV cache is sized for every sequence at the full context at once, so the
    batch and context a recipe declares are guaranteed, not just likely. `checkpoint` names the
    exact checkpoint loaded (a declared variant's id) when the caller knows it.
    """
    kv_dtype, kv_el, w_total, kv, ovh = _budget(model, precision, gpu_memory_bytes, gpus, context, batch,
                                                kv_cache_dtype, checkpoint, pp)
    w = w_total / (gpus * pp)
    per_token_layer = kv_bytes_per_token_per_layer(model, kv_el, gpus)
    available = gpu_memory_bytes * gpu_memory_utilization
    used = w + kv + ovh
    margin = available - used
    fits = margin >= 0

    full, swa, window = _layer_split(model)
    att = model.attention
    if att.kind == "mla":
        per_desc = f"MLA latent ({att.kv_lora_rank} + {att.qk_rope_head_dim or 0} rope) × {kv_el:g} B, kept whole on every GPU"
    else:
        heads = kv_heads_per_gpu(model, gpus)
        rep = " (replicated: TP > KV heads)" if att.kv_heads < gpus else ""
        per_desc = f"2 (K,V) × {heads} of {att.kv_heads} KV heads{rep} × head_dim {att.head_dim} × {kv_el:g} B"
    stage = f" (the largest of {pp} pipeline stages)" if pp > 1 else ""
    layers_desc = f"{stage_layers(full, pp)} layers{stage} × {context} tokens"
    if swa:
        layers_desc += f" + {stage_layers(swa, pp)} sliding-window layers × {min(context, window or context)} tokens"
    verdict = "fits" if fits else "does NOT fit"
    where = f"{gpus} GPU(s)" if pp == 1 else f"{gpus * pp} GPU(s) (TP {gpus} × PP {pp})"
    explanation = (
        f"{model.model_id} at {precision} on {where} of {_gib(gpu_memory_bytes):.0f} GiB, "
        f"{batch} sequence(s) × {context} tokens: {verdict}. Per GPU: "
        f"weights {_gib(w):.2f} GiB ({_gib(w_total):.2f} GiB / {gpus * pp}); "
        f"KV cache {_gib(kv):.2f} GiB (kv dtype {kv_dtype}: {per_token_layer} B/token/layer = {per_desc}; "
        f"{batch} × ({layers_desc})); "
        f"overhead {_gib(ovh):.2f} GiB (2 GiB fixed + {batched_tokens(gpu_memory_bytes)} batched tokens × "
        f"hidden {model.hidden_size} × {ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN} B + {batch} × vocab {model.vocab_size}"
        f" × {LOGITS_BYTES_PER_SEQ_PER_VOCAB} B logits); "
        f"total {_gib(used):.2f} GiB of {_gib(available):.2f} GiB usable "
        f"({_gib(gpu_memory_bytes):.0f} GiB × {gpu_memory_utilization:g}): margin {_gib(margin):+.2f} GiB."
    )
    return Fit(fits, round(_gib(w), 2), round(_gib(kv), 2), round(_gib(ovh), 2),
               round(_gib(available), 2), round(_gib(margin), 2), explanation)


def _fits(model: "Model", precision: str, gpu_memory_bytes: int, gpus: int, context: int, batch: int,
          kv_cache_dtype: str | None, gpu_memory_utilization: float, checkpoint: str | None, pp: int = 1) -> bool:
    # check_fit's verdict without building its explanation (searches call this many times)
    _dtype, _el, w_total, kv, ovh = _budget(model, precision, gpu_memory_bytes, gpus, context, batch,
                                            kv_cache_dtype, checkpoint, pp)
    return w_total / (gpus * pp) + kv + ovh <= gpu_memory_bytes * gpu_memory_utilization


def fits(model: "Model", precision: str, gpu_memory_bytes: int, gpus: int, context: int, batch: int,
         kv_cache_dtype: str | None = None, gpu_memory_utilization: float = DEFAULT_UTILIZATION,
         *, checkpoint: str | None = None, pp: int = 1) -> bool:
    """`check_fit(...).fits` without the explanation (for callers that ask many times)."""
    return _fits(model, precision, gpu_memory_bytes, gpus, context, batch, kv_cache_dtype, gpu_memory_utilization,
                 checkpoint, pp)


def _largest(lo_ok: int, hi: int, ok) -> int:
    """Largest n in [lo_ok, hi] with ok(n), given ok is monotone decreasing and ok(lo_ok)."""
    lo = lo_ok
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def max_context(model: "Model", precision: str, gpu_memory_bytes: int, gpus: int, batch: int = 1,
                kv_cache_dtype: str | None = None, gpu_memory_utilization: float = DEFAULT_UTILIZATION,
                *, checkpoint: str | None = None, pp: int = 1) -> int:
    """The longest context (≤ max_position_embeddings) at which `batch` sequences fit; 0 if none."""
    def ok(c: int) -> bool:
        return _fits(model, precision, gpu_memory_bytes, gpus, c, batch, kv_cache_dtype, gpu_memory_utilization,
                     checkpoint, pp)

    if not ok(1):
        return 0
    return _largest(1, model.max_position_embeddings, ok)


def max_batch(model: "Model", precision: str, gpu_memory_bytes: int, gpus: int, context: int,
              kv_cache_dtype: str | None = None, gpu_memory_utilization: float = DEFAULT_UTILIZATION,
              limit: int = 1 << 16, *, checkpoint: str | None = None, pp: int = 1) -> int:
    """The most sequences of `context` tokens that fit (capped at `limit`); 0 if not even one."""
    def ok(b: int) -> bool:
        return _fits(model, precision, gpu_memory_bytes, gpus, context, b, kv_cache_dtype, gpu_memory_utilization,
                     checkpoint, pp)

    if not ok(1):
        return 0
    return _largest(1, limit, ok)


# --- tensor-parallel legality --------------------------------------------------------------

def tp_legal(model: "Model", tp: int) -> str | None:
    """None when the engines accept this tensor-parallel size for the model, else why not.

    vLLM 0.32 rules: `ModelConfig.verify_with_parallel_config` — attention heads divisible by
    TP; the attention layers (e.g. `LlamaAttention`) — KV heads divisible by TP when
    kv_heads ≥ TP, else TP a multiple of the KV heads (which are then replicated). MLA has a
    single latent KV "head" replicated on every rank, so only the query-head rule applies.
    MoE experts are split over TP like dense MLPs (no expert parallelism by default); the
    block-FP8 rule on the per-rank expert width needs `moe_intermediate_size`, which the
    model cards don't carry, so it is not checked here.
    """
    att = model.attention
    if tp < 1:
        return f"tensor-parallel size must be ≥ 1, got {tp}"
    if att.heads % tp:
        return f"{att.heads} attention heads are not divisible by tensor-parallel size {tp}"
    if att.kind == "mla":
        return None
    kv = att.kv_heads
    if kv >= tp and kv % tp:
        return f"{kv} KV heads are not divisible by tensor-parallel size {tp}"
    if kv < tp and tp % kv:
        return f"tensor-parallel size {tp} is not a multiple of the {kv} KV heads (needed to replicate them)"
    return None


def pp_legal(model: "Model", pp: int) -> str | None:
    """None when the model can be cut into `pp` pipeline stages, else why not: every stage needs
    at least one decoder layer (vLLM's `get_pp_indices` gives each stage `layers // pp`)."""
    if pp < 1:
        return f"pipeline-parallel size must be ≥ 1, got {pp}"
    if model.layers < pp:
        return f"{model.layers} layers cannot fill {pp} pipeline stages (at least one layer per stage)"
    return None


def parallel_legal(model: "Model", tp: int, pp: int = 1) -> str | None:
    """`tp_legal` and `pp_legal` together: the first rule a (TP, PP) split breaks, or None."""
    return tp_legal(model, tp) or pp_legal(model, pp)
