"""Model-card mapping, diffing and text-preserving updates (pure core of `models fetch-cards`).

The configs below are the published config.json files of real checkpoints (fields the mapping
does not read are trimmed); their index totals are the published `metadata.total_size`. Mapping
them must give exactly the facts in the shipped model files: a wrong mapping row or a wrong
number in models/*.yaml fails here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx2
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from aim_engine.catalog import cards, model_file_patch
from aim_engine.cache.download import RetryPolicy, with_retries
from aim_engine.logs import get_logger
from aim_engine.catalog.model_file_patch import Change
from aim_engine.errors import AimError

MODELS = Path(__file__).resolve().parents[2] / "models"
LOG = get_logger("tests.cards")

LLAMA_31_8B = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "torch_dtype": "bfloat16", "vocab_size": 128256,
    "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}, "tie_word_embeddings": False,
}
QWEN3_8B = {
    "architectures": ["Qwen3ForCausalLM"], "head_dim": 128, "hidden_size": 4096, "intermediate_size": 12288,
    "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3", "num_attention_heads": 32,
    "num_hidden_layers": 36, "num_key_value_heads": 8, "sliding_window": None, "torch_dtype": "bfloat16",
    "use_sliding_window": False, "vocab_size": 151936,
}
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "head_dim": 128, "hidden_size": 2048, "intermediate_size": 6144,
    "max_position_embeddings": 40960, "max_window_layers": 48, "model_type": "qwen3_moe",
    "moe_intermediate_size": 768, "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 48, "num_key_value_heads": 4, "sliding_window": None, "torch_dtype": "bfloat16",
    "use_sliding_window": False, "vocab_size": 151936,
}
GPT_OSS_20B = {
    "architectures": ["GptOssForCausalLM"], "experts_per_token": 4, "head_dim": 64, "hidden_size": 2880,
    "intermediate_size": 2880, "layer_types": ["sliding_attention", "full_attention"] * 12,
    "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 64,
    "num_experts_per_tok": 4, "num_hidden_layers": 24, "num_key_value_heads": 8, "num_local_experts": 32,
    "quantization_config": {"quant_method": "mxfp4"}, "sliding_window": 128, "vocab_size": 201088,
}
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"], "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"},
    "first_k_dense_replace": 3, "hidden_size": 7168, "intermediate_size": 18432, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v3", "moe_intermediate_size": 2048,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_attention_heads": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 61, "num_key_value_heads": 128, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "quantization_config": {"fmt": "e4m3", "quant_method": "fp8",
                                                    "weight_block_size": [128, 128]},
    "torch_dtype": "bfloat16", "v_head_dim": 128, "vocab_size": 129280,
}
GEMMA3_27B = {  # text_config leaves vocab_size, max_position_embeddings, sliding_window_pattern at defaults
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "torch_dtype": "bfloat16",
    "text_config": {"head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504, "model_type": "gemma3_text",
                    "num_attention_heads": 32, "num_hidden_layers": 62, "num_key_value_heads": 16,
                    "query_pre_attn_scalar": 168, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                    "sliding_window": 1024},
    "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model", "num_hidden_layers": 27},
}
LLAMA4_SCOUT = {
    "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "torch_dtype": "bfloat16",
    "text_config": {"attention_chunk_size": 8192, "head_dim": 128, "hidden_size": 5120, "interleave_moe_layer_step": 1,
                    "intermediate_size": 8192, "intermediate_size_mlp": 16384, "max_position_embeddings": 10485760,
                    "model_type": "llama4_text", "num_attention_heads": 40, "num_experts_per_tok": 1,
                    "num_hidden_layers": 48, "num_key_value_heads": 8, "num_local_experts": 16, "vocab_size": 202048},
}
LLAMA4_MAVERICK = {  # MoE on every other layer (interleave_moe_layer_step 2)
    "architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "torch_dtype": "bfloat16",
    "text_config": {**LLAMA4_SCOUT["text_config"], "interleave_moe_layer_step": 2, "max_position_embeddings": 1048576,
                    "num_local_experts": 128},
}

# (model file, config.json, index metadata.total_size)
REAL = [
    ("llama-3.1-8b-instruct.yaml", LLAMA_31_8B, 16060522496),
    ("qwen3-8b.yaml", QWEN3_8B, 16381470720),
    ("qwen3-30b-a3b.yaml", QWEN3_30B_A3B, 61064245248),
    ("gpt-oss-20b.yaml", GPT_OSS_20B, 13761264768),
    ("deepseek-v3.yaml", DEEPSEEK_V3, 688574839360),
    ("gemma-3-27b-it.yaml", GEMMA3_27B, 54864813280),
    ("llama-4-scout-17b-16e-instruct.yaml", LLAMA4_SCOUT, 217283587072),
    ("llama-4-maverick-17b-128e-instruct.yaml", LLAMA4_MAVERICK, 803167562752),
]


@pytest.mark.parametrize("filename,config,total", REAL, ids=[r[0] for r in REAL])
def test_published_configs_match_the_shipped_model_files(filename: str, config: dict, total: int) -> None:
    doc = yaml.safe_load((MODELS / filename).read_text())
    facts = cards.card_facts(config, total)
    assert model_file_patch.diff(doc, facts) == []


def test_bf16_checkpoint_gives_parameter_count_from_its_byte_total() -> None:
    # Llama 3.1 8B: 16,060,522,496 B / 2 B per BF16 value = 8,030,261,248 parameters.
    facts = cards.card_facts(LLAMA_31_8B, 16060522496)
    assert facts[("parameters", "total")] == 8030261248
    assert facts[("parameters", "active")] == 8030261248
    # MoE: the total is checked, the active count is not derivable from the index.
    moe = cards.card_facts(QWEN3_30B_A3B, 61064245248)
    assert moe[("parameters", "total")] == 30532122624 and ("parameters", "active") not in moe
    # Quantized (native FP8): bytes are not parameters.
    assert ("parameters", "total") not in cards.card_facts(DEEPSEEK_V3, 688574839360)


def test_attention_kinds_and_windows() -> None:
    f = cards.facts_from_config
    assert f(LLAMA_31_8B)[("attention", "kind")] == "gqa"
    assert f(LLAMA_31_8B)[("attention", "head_dim")] == 4096 // 32
    assert f({**LLAMA_31_8B, "num_key_value_heads": 32})[("attention", "kind")] == "mha"
    assert f({**LLAMA_31_8B, "num_key_value_heads": 1})[("attention", "kind")] == "mqa"
    ds = f(DEEPSEEK_V3)
    assert (ds[("attention", "kind")], ds[("attention", "head_dim")], ds[("attention", "kv_lora_rank")]) == ("mla", 192, 512)
    # Qwen only uses its window when use_sliding_window is true, from layer max_window_layers on.
    assert f({**QWEN3_8B, "sliding_window": 4096})[("attention", "sliding_window")] is None
    on = f({**QWEN3_8B, "sliding_window": 4096, "use_sliding_window": True, "max_window_layers": 28})
    assert (on[("attention", "sliding_window")], on[("attention", "sliding_window_layers")]) == (4096, 36 - 28)
    # Mistral-style window on every layer (0 = all layers).
    mistral = f({**LLAMA_31_8B, "model_type": "mistral", "sliding_window": 4096})
    assert (mistral[("attention", "sliding_window")], mistral[("attention", "sliding_window_layers")]) == (4096, 0)
    # Gemma 3: every 6th of 62 layers is global -> 10 global, 52 local.
    assert f(GEMMA3_27B)[("attention", "sliding_window_layers")] == 52
    assert f(GEMMA3_27B)[("vocab_size",)] == 262208       # Gemma3TextConfig default, not in config.json
    # Llama 4: 3 of 4 layers chunked; an explicit no_rope_layers list wins over the interval.
    assert f(LLAMA4_SCOUT)[("attention", "sliding_window_layers")] == 36
    explicit = {**LLAMA4_SCOUT, "text_config": {**LLAMA4_SCOUT["text_config"], "no_rope_layers": [1, 0] * 24}}
    assert f(explicit)[("attention", "sliding_window_layers")] == 24
    # gpt-oss: layer_types decide.
    assert f(GPT_OSS_20B)[("attention", "sliding_window_layers")] == 12
    assert f(GPT_OSS_20B)[("native_dtype",)] == "mxfp4"


def test_unknown_model_type_is_a_clear_error() -> None:
    with pytest.raises(AimError, match="model_type 'mamba'.*cannot map"):
        cards.facts_from_config({"model_type": "mamba", "num_hidden_layers": 2})


def test_diff_reports_real_differences_only() -> None:
    doc = yaml.safe_load((MODELS / "qwen3-8b.yaml").read_text())
    facts = cards.card_facts({**QWEN3_8B, "num_hidden_layers": 40}, 16381470722)
    described = sorted(c.describe() for c in model_file_patch.diff(doc, facts))
    assert described == [
        "layers: 36 -> 40",
        "parameters.active: 8190735360 -> 8190735361",
        "parameters.total: 8190735360 -> 8190735361",
        "weights_bytes: 16381470720 -> 16381470722",
    ]


SAMPLE = """\
# a header comment
model_id: org/m
slug: m
aliases: [m1, m2]
parameters:
  total: 100  # = weights_bytes / 2
  active: 100
layers: 4   # layers
attention:
  kind: gqa
  heads: 8
  kv_heads: 2
  head_dim: 64
weights_bytes: 200
variants:
  - huggingface_id: org/m-fp8
    precision: fp8
    weights_bytes: 150  # derived: 100 x 1 + 25 x 2
license: mit
"""


def test_apply_changes_rewrites_only_changed_values() -> None:
    changes = [Change(("layers",), 4, 6, True), Change(("variants", 0, "weights_bytes"), 150, 151, True),
               Change(("attention", "sliding_window"), None, 512, False),
               Change(("moe", "experts"), None, 8, False)]
    out = model_file_patch.apply_changes(SAMPLE, changes)
    doc = yaml.safe_load(out)
    assert doc["layers"] == 6 and doc["variants"][0]["weights_bytes"] == 151
    assert doc["attention"]["sliding_window"] == 512 and doc["moe"] == {"experts": 8}
    lines = out.splitlines()
    assert "layers: 6   # layers" in lines                       # trailing comment kept
    assert "    weights_bytes: 151" in lines                     # stale "# derived" comment dropped
    assert "  sliding_window: 512" in lines                      # indented like its siblings
    assert lines.index("  sliding_window: 512") == lines.index("  head_dim: 64") + 1
    untouched = [l for l in SAMPLE.splitlines() if "layers:" not in l and "150" not in l]
    assert all(l in lines for l in untouched)


@settings(max_examples=60, deadline=None)
@given(layers=st.integers(1, 10**6), total=st.integers(1, 10**15), heads=st.integers(1, 512))
def test_apply_changes_round_trips(layers: int, total: int, heads: int) -> None:
    changes = [Change(("layers",), 4, layers, True), Change(("parameters", "total"), 100, total, True),
               Change(("attention", "heads"), 8, heads, True)]
    out = model_file_patch.apply_changes(SAMPLE, changes)
    doc, before = yaml.safe_load(out), yaml.safe_load(SAMPLE)
    before["layers"], before["parameters"]["total"], before["attention"]["heads"] = layers, total, heads
    assert doc == before
    assert out.count("\n") == SAMPLE.count("\n") and "# a header comment" in out


def test_write_atomic_never_leaves_a_half_written_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "m.yaml"
    target.write_text(SAMPLE)
    model_file_patch.write_atomic(target, "layers: 5\n")
    assert target.read_text() == "layers: 5\n"

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        model_file_patch.write_atomic(target, "layers: 6\n")
    assert target.read_text() == "layers: 5\n"
    assert [p.name for p in tmp_path.iterdir()] == ["m.yaml"]   # no temp file left behind


def _http_error(status: int, headers: dict[str, str] | None = None) -> Exception:
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("GET", "http://127.0.0.1:1/org/m/resolve/main/config.json")
    return HfHubHTTPError(f"{status} error", response=httpx2.Response(status, headers=headers or {}, request=request))


def test_retries_honour_retry_after_then_back_off_exponentially() -> None:
    outcomes = [_http_error(429, {"Retry-After": "3"}), _http_error(503), _http_error(502), "ok"]
    slept: list[float] = []

    def call() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_retries(call, RetryPolicy(attempts=5, base=1, max_wait=30), "config.json", LOG, slept.append) == "ok"
    assert slept == [3.0, 2.0, 4.0]     # Retry-After wins; then 1 x 2^(attempt-1) for attempts 2 and 3


def test_retries_give_up_and_never_retry_client_errors() -> None:
    from huggingface_hub.errors import GatedRepoError

    calls: list[int] = []

    def always_503() -> None:
        calls.append(1)
        raise _http_error(503)

    with pytest.raises(Exception, match="503"):
        with_retries(always_503, RetryPolicy(attempts=3), "config.json", LOG, lambda s: None)
    assert len(calls) == 3

    request = httpx2.Request("GET", "http://127.0.0.1:1/x")
    gated = GatedRepoError("gated", response=httpx2.Response(401, request=request))
    calls.clear()

    def gated_call() -> None:
        calls.append(1)
        raise gated

    with pytest.raises(GatedRepoError):
        with_retries(gated_call, RetryPolicy(attempts=5), "config.json", LOG, lambda s: None)
    assert len(calls) == 1


def test_offline_refuses_to_fetch() -> None:
    from aim_engine.settings import Settings

    with pytest.raises(AimError, match="AIM_OFFLINE"):
        cards.fetch_card("org/m", Settings.from_env({"AIM_OFFLINE": "1"}))


def test_every_shipped_model_file_is_schema_valid() -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads((MODELS / "schema.json").read_text()))
    files = sorted(MODELS.glob("*.yaml"))
    assert len(files) >= 20
    for path in files:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], f"{path.name}: {errors}"
