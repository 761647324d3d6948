"""Memory planner numbers for real models, against arithmetic done by hand in the comments.

Model facts are copied from each checkpoint's config.json (layers, heads, KV heads, head_dim,
MLA ranks, sliding window) and safetensors index (`total_size` = weights_bytes); the
expected values are worked out in the comments so a reader can check them with a calculator.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aim_engine.catalog.types import Attention, Model, Moe, Variant
from aim_engine.planner import memory
from aim_engine.planner.memory import GIB, check_fit, max_batch, max_context, tp_legal, weights_bytes


def _model(model_id: str, *, params: int, layers: int, hidden: int, attention: Attention, max_pos: int,
           vocab: int, weights: int, native: str = "bf16", moe: Moe | None = None,
           variants: tuple[Variant, ...] = ()) -> Model:
    return Model(model_id=model_id, huggingface_id=model_id, slug=model_id.split("/")[1].lower(),
                 architecture="X", parameters_total=params, parameters_active=params, layers=layers,
                 hidden_size=hidden, attention=attention, max_position_embeddings=max_pos, vocab_size=vocab,
                 native_dtype=native, weights_bytes=weights, license="x", gated=False, trust_remote_code=False,
                 moe=moe, variants=variants)


# meta-llama/Llama-3.1-8B-Instruct: 32 layers, hidden 4096, 32 heads, 8 KV heads, head_dim 128,
# vocab 128256, 131072 positions, 8_030_261_248 params, total_size 16_060_522_496 (= params × 2).
LLAMA_8B = _model("meta-llama/Llama-3.1-8B-Instruct", params=8_030_261_248, layers=32, hidden=4096,
                  attention=Attention("gqa", 32, 8, 128), max_pos=131072, vocab=128256, weights=16_060_522_496)

# meta-llama/Llama-3.1-70B-Instruct: 80 layers, hidden 8192, 64 heads, 8 KV heads, head_dim 128,
# vocab 128256, 70_553_706_496 params (bf16 total_size 141_107_412_992).
LLAMA_70B = _model("meta-llama/Llama-3.1-70B-Instruct", params=70_553_706_496, layers=80, hidden=8192,
                   attention=Attention("gqa", 64, 8, 128), max_pos=131072, vocab=128256, weights=141_107_412_992)

# Qwen/Qwen3-32B: 64 layers, hidden 5120, 64 heads, 8 KV heads, head_dim 128, vocab 151936,
# 40960 positions; weights_bytes as given here is the input of the arithmetic below.
QWEN3_32B = _model("Qwen/Qwen3-32B", params=32_762_123_264, layers=64, hidden=5120,
                   attention=Attention("gqa", 64, 8, 128), max_pos=40960, vocab=151936, weights=65_524_246_528)

# deepseek-ai/DeepSeek-V3: 61 layers, hidden 7168, 128 heads, MLA kv_lora_rank 512,
# qk_rope_head_dim 64, vocab 129280, 163840 positions, 256 experts (8 per token, 1 shared),
# native FP8 checkpoint.
DEEPSEEK_V3 = _model("deepseek-ai/DeepSeek-V3", params=671_026_419_200, layers=61, hidden=7168,
                     attention=Attention("mla", 128, 128, 192, kv_lora_rank=512, qk_rope_head_dim=64,
                                         qk_nope_head_dim=128, v_head_dim=128, q_lora_rank=1536),
                     max_pos=163840, vocab=129280, weights=688_586_727_753, native="fp8",
                     moe=Moe(256, 8, 1))

# mistralai/Mixtral-8x7B-Instruct-v0.1: 32 layers, hidden 4096, 32 heads, 8 KV heads, head_dim 128,
# vocab 32000, 32768 positions, 46_702_792_704 params (all 8 experts), total_size 93_405_585_408.
MIXTRAL = _model("mistralai/Mixtral-8x7B-Instruct-v0.1", params=46_702_792_704, layers=32, hidden=4096,
                 attention=Attention("gqa", 32, 8, 128), max_pos=32768, vocab=32000, weights=93_405_585_408,
                 moe=Moe(8, 2))

# google/gemma-3-27b-it (text): 62 layers, 16 KV heads, head_dim 128, sliding_window 1024 with
# sliding_window_pattern 6 -> every 6th layer global: 62 // 6 = 10 global, 52 sliding.
GEMMA3_27B = _model("google/gemma-3-27b-it", params=27_432_406_640, layers=62, hidden=5376,
                    attention=Attention("gqa", 32, 16, 128, sliding_window=1024, sliding_window_layers=52),
                    max_pos=131072, vocab=262208, weights=54_864_813_280)

# openai/gpt-oss-120b: 36 layers alternating sliding (window 128) and full attention -> 18 + 18,
# 64 heads, 8 KV heads, head_dim 64.
GPT_OSS_120B = _model("openai/gpt-oss-120b", params=116_829_156_672, layers=36, hidden=2880,
                      attention=Attention("gqa", 64, 8, 64, sliding_window=128, sliding_window_layers=18),
                      max_pos=131072, vocab=201088, weights=65_248_815_744, native="mxfp4", moe=Moe(128, 4))

# microsoft/phi-4: 40 heads, 10 KV heads (the TP-legality trap: TP 4 divides the heads, not the KV heads).
PHI4 = _model("microsoft/phi-4", params=14_659_507_200, layers=40, hidden=5120,
              attention=Attention("gqa", 40, 10, 128), max_pos=16384, vocab=100352, weights=29_319_014_400)

MI300X = 192 * GIB
MI250 = 64 * GIB


def test_llama_8b_bf16_one_mi300x():
    fit = check_fit(LLAMA_8B, "bf16", MI300X, gpus=1, context=8192, batch=16)
    # weights: the real checkpoint, 16_060_522_496 B / 1 GPU = 14.9575 GiB
    assert fit.weights_gib == 14.96
    # KV: 2 (K,V) × 8 heads × 128 × 2 B = 4096 B/token/layer; × 32 layers = 131072 B/token;
    #     × 8192 tokens × 16 sequences = 17_179_869_184 B = 16.00 GiB
    assert fit.kv_gib == 16.0
    # overhead: 2 GiB + 16384 batched tokens (≥160 GiB GPU) × 4096 × 32 B = 2 GiB
    #           + 16 × 128256 × 8 B = 16_416_768 B (0.0153 GiB) -> 4.0153 GiB
    assert fit.overhead_gib == 4.02
    # usable: 192 × 0.9 = 172.8 GiB; margin 172.8 - 14.9575 - 16 - 4.0153 = 137.827
    assert fit.available_gib == 172.8
    assert fit.margin_gib == 137.83
    assert fit.fits
    for number in ("14.96", "16.00", "4.02", "172.80", "+137.83", "4096 B/token/layer"):
        assert number in fit.explanation


def test_llama_70b_fp8_online_estimate_and_declared_variant():
    # No FP8 checkpoint declared: linear layers at 1 B/param, embedding + LM head kept at 2 B:
    #   embedding params = 2 × 128256 × 8192 = 2_101_346_304
    #   (70_553_706_496 - 2_101_346_304) × 1 + 2_101_346_304 × 2 = 72_655_052_800 B
    assert weights_bytes(LLAMA_70B, "fp8") == 72_655_052_800
    fit = check_fit(LLAMA_70B, "fp8", MI300X, gpus=2, context=32768, batch=8)
    # per GPU 72_655_052_800 / 2 = 36_327_526_400 B = 33.833 GiB
    assert fit.weights_gib == 33.83
    # KV stays bf16: 2 × (8 / 2 = 4 heads) × 128 × 2 B = 2048 B/token/layer × 80 = 163840 B/token
    #   × 32768 × 8 = 42_949_672_960 B = 40.0 GiB
    assert fit.kv_gib == 40.0

    # With AMD's FP8-KV checkpoint declared, its real size and its fp8 KV cache are used.
    variant = Variant("amd/Llama-3.1-70B-Instruct-FP8-KV", "fp8", 72_000_000_000, kv_cache_dtype="fp8")
    with_variant = dataclasses.replace(LLAMA_70B, variants=(variant,))
    assert weights_bytes(with_variant, "fp8") == 72_000_000_000
    fit = check_fit(with_variant, "fp8", MI300X, gpus=2, context=32768, batch=8)
    # KV: 2 × 4 × 128 × 1 B = 1024 B/token/layer × 80 × 32768 × 8 = 21_474_836_480 B = 20.0 GiB
    assert fit.kv_gib == 20.0
    # an explicit kv dtype wins over the variant's
    assert check_fit(with_variant, "fp8", MI300X, 2, 32768, 8, kv_cache_dtype="auto").kv_gib == 40.0


def test_qwen3_32b_on_mi250_batch_and_context():
    # One 64 GiB GCD: weights 65_524_246_528 B = 61.02 GiB > 57.6 GiB usable -> does not fit.
    assert not check_fit(QWEN3_32B, "bf16", MI250, 1, 4096, 1).fits
    # Two GCDs, context 40960 (the model's max):
    #   usable 64 GiB × 0.9 = 61_847_529_062.4 B; weights / 2 = 32_762_123_264 B
    #   overhead: 2 GiB + 2048 tokens (< 70 GiB GPU) × 5120 × 32 B = 2_147_483_648 + 335_544_320
    #             + b × 151936 × 8 B (1_215_488 per sequence)
    #   KV/GPU per sequence: 2 × 4 heads × 128 × 2 B × 64 layers × 40960 = 5_368_709_120 B
    #   b × (5_368_709_120 + 1_215_488) ≤ 61_847_529_062.4 - 32_762_123_264 - 2_483_027_968
    #   b ≤ 26_602_377_830.4 / 5_369_924_608 = 4.95 -> 4
    assert max_batch(QWEN3_32B, "bf16", MI250, 2, 40960) == 4
    # batch 1 reaches the model's own limit
    assert max_context(QWEN3_32B, "bf16", MI250, 2, batch=1) == 40960


def test_deepseek_v3_mla_latent_is_not_split_by_tp():
    # MLA: (512 + 64) × 2 B = 1152 B/token/layer × 61 layers = 70272 B/token, on every GPU.
    #   × 32768 tokens × 1 = 2_302_672_896 B = 2.1445 GiB, whatever the TP size.
    one = check_fit(DEEPSEEK_V3, "fp8", MI300X, gpus=1, context=32768, batch=1)
    eight = check_fit(DEEPSEEK_V3, "fp8", MI300X, gpus=8, context=32768, batch=1)
    assert one.kv_gib == eight.kv_gib == 2.14
    # native FP8 checkpoint: its own 688_586_727_753 B / 8 = 80.16 GiB per GPU
    assert eight.weights_gib == 80.16
    assert not one.fits and eight.fits
    # bf16 from an FP8-native model (no bf16 variant): 671_026_419_200 × 2 B
    assert weights_bytes(DEEPSEEK_V3, "bf16") == 1_342_052_838_400
    assert "MLA latent (512 + 64 rope)" in eight.explanation


def test_mixtral_moe_counts_every_expert():
    # bf16: the real checkpoint with all 8 experts (46.7 B params), not the 12.9 B active ones.
    assert weights_bytes(MIXTRAL, "bf16") == 93_405_585_408
    # int4 without a checkpoint: embedding 2 × 32000 × 4096 = 262_144_000 params kept at 2 B;
    #   the rest at 0.5 B + group scales (2 B fp16 scale + 0.5 B zero point per 128 weights)
    #   = 133/256 B: (46_702_792_704 - 262_144_000) × 133 / 256 = 24_127_368_272
    #   + 262_144_000 × 2 = 524_288_000 -> 24_651_656_272
    assert weights_bytes(MIXTRAL, "int4") == 24_651_656_272
    # int8 estimate: 46_440_648_704 × 1 + 524_288_000
    assert weights_bytes(MIXTRAL, "int8") == 46_964_936_704


def test_sliding_window_layers_cap_their_kv():
    # Gemma 3 27B: 2 × 16 × 128 × 2 B = 8192 B/token/layer.
    # context 32768: 10 global layers × 32768 + 52 sliding layers × 1024 = 380_928 layer-tokens
    #   × 8192 B = 3_120_562_176 B = 2.906 GiB
    assert memory.kv_cache_bytes(GEMMA3_27B, 32768, 1, 2, tp=1) == 3_120_562_176
    # below the window every layer holds the whole context: 62 × 512 × 8192
    assert memory.kv_cache_bytes(GEMMA3_27B, 512, 1, 2, tp=1) == 62 * 512 * 8192
    # gpt-oss-120b: 2 × 8 × 64 × 2 B = 2048 B; 18 × 131072 + 18 × 128 = 2_361_600 -> 4_836_556_800 B
    assert memory.kv_cache_bytes(GPT_OSS_120B, 131072, 1, 2, tp=1) == 4_836_556_800
    # gpt-oss ships MXFP4 MoE weights: served as-is ("mixed"), its real size
    assert weights_bytes(GPT_OSS_120B, "mixed") == 65_248_815_744


def test_kv_heads_replicate_when_tp_exceeds_them():
    # Llama 8B has 8 KV heads: TP 8 -> 1 head per GPU; TP 16 -> still 1 (replicated), not 0.5.
    assert memory.kv_heads_per_gpu(LLAMA_8B, 8) == memory.kv_heads_per_gpu(LLAMA_8B, 16) == 1
    assert memory.kv_cache_bytes(LLAMA_8B, 1000, 1, 2, tp=16) == memory.kv_cache_bytes(LLAMA_8B, 1000, 1, 2, tp=8)
    # 2 × 1 × 128 × 2 B × 32 layers × 1000 tokens
    assert memory.kv_cache_bytes(LLAMA_8B, 1000, 1, 2, tp=16) == 16_384_000
    fit = check_fit(LLAMA_8B, "bf16", MI300X, 16, 1000, 1)
    assert "replicated" in fit.explanation


@pytest.mark.parametrize("model, tp, legal", [
    (LLAMA_8B, 1, True), (LLAMA_8B, 2, True), (LLAMA_8B, 8, True),
    (LLAMA_8B, 3, False),          # 32 heads % 3
    (LLAMA_8B, 16, True),          # 32 % 16 == 0; 16 % 8 KV heads == 0: replicate
    (PHI4, 2, True),               # 40 % 2, 10 % 2
    (PHI4, 4, False),              # 40 % 4 == 0 but 10 KV heads % 4 == 2
    (PHI4, 8, False),              # 40 % 8 == 0 but 10 % 8 == 2
    (GEMMA3_27B, 8, True),         # 32 % 8, 16 % 8
    (DEEPSEEK_V3, 8, True),        # MLA: only 128 heads % 8 matters
    (DEEPSEEK_V3, 3, False),
    (dataclasses.replace(LLAMA_8B, attention=Attention("gqa", 24, 8, 128)), 12, False),  # 12 % 8 != 0
    (LLAMA_8B, 0, False),
])
def test_tp_legality(model, tp, legal):
    reason = tp_legal(model, tp)
    assert (reason is None) is legal, reason
    if not legal:
        assert str(tp) in reason


def test_variant_selection_prefers_original_at_native_precision():
    awq = Variant("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "int4", 5_730_000_000, quantization="awq")
    bf16_copy = Variant("someone/copy-bf16", "bf16", 1)
    model = dataclasses.replace(LLAMA_8B, variants=(bf16_copy, awq))
    assert memory.variant_for(model, "bf16") is None          # the original serves bf16 itself
    assert memory.variant_for(model, "int4") is awq
    assert weights_bytes(model, "int4") == 5_730_000_000
    assert weights_bytes(model, "fp16") == 16_060_522_496   # bf16 and fp16 are the same size


def test_unknown_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="kv cache dtype|KV cache dtype"):
        check_fit(LLAMA_8B, "bf16", MI300X, 1, 10, 1, kv_cache_dtype="fp3")
    with pytest.raises(ValueError, match="precision"):
        weights_bytes(LLAMA_8B, "fp3")
    with pytest.raises(ValueError, match="mixed"):
        weights_bytes(LLAMA_8B, "mixed")
    with pytest.raises(ValueError):
        check_fit(LLAMA_8B, "bf16", MI300X, 0, 10, 1)


@settings(max_examples=60, deadline=None)
@given(context=st.integers(1, 131072), batch=st.integers(1, 512), gpus=st.sampled_from([1, 2, 4, 8]))
def test_fit_is_monotone_and_max_context_is_tight(context, batch, gpus):
    fit = check_fit(LLAMA_70B, "bf16", MI250, gpus, context, batch)
    if fit.fits:  # anything smaller fits too
        assert check_fit(LLAMA_70B, "bf16", MI250, gpus, max(1, context // 2), max(1, batch // 2)).fits
    best = max_context(LLAMA_70B, "bf16", MI250, gpus, batch=batch)
    if best:
        assert check_fit(LLAMA_70B, "bf16", MI250, gpus, best, batch).fits
        if best < LLAMA_70B.max_position_embeddings:
            assert not check_fit(LLAMA_70B, "bf16", MI250, gpus, best + 1, batch).fits
    else:
        assert not check_fit(LLAMA_70B, "bf16", MI250, gpus, 1, batch).fits
    # used + margin = available, to rounding
    assert abs(fit.used_gib + fit.margin_gib - fit.available_gib) < 0.02
