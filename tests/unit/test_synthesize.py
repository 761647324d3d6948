"""Models outside the catalog: config.json -> Model, AIM_MODEL_ID resolution (local directory,
HF cache, the hub through the real huggingface_hub client against a local server), and the
recipes synthesized for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aim_engine.errors import AimError
from aim_engine.planner import memory, synthesize
from aim_engine.planner.model_source import checkpoint_precision, estimate_parameters, model_from_config, resolve
from aim_engine.planner.select import select
from tests.support.tiny_repo import make_repo
from tests.unit.selection_cases import CPU, catalog_of, hardware, model, settings

# Llama-3.1-8B-Instruct's config.json (the numbers that matter).
LLAMA_8B = {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
            "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32, "vocab_size": 128256,
            "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "tie_word_embeddings": False}
# DeepSeek-V3's config.json (MLA + MoE).
DEEPSEEK_V3 = {"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 7168, "intermediate_size": 18432,
               "moe_intermediate_size": 2048, "num_attention_heads": 128, "num_key_value_heads": 128,
               "num_hidden_layers": 61, "vocab_size": 129280, "max_position_embeddings": 163840,
               "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
               "v_head_dim": 128, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
               "torch_dtype": "bfloat16", "quantization_config": {"quant_method": "fp8", "fmt": "e4m3"},
               "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"}}


def test_llama_8b_parameters_from_config() -> None:
    # embeddings + LM head: 2 × 128256 × 4096                  = 1,050,673,152
    # attention per layer: 4096 × 128 × (2×32 + 2×8)            =    41,943,040
    # MLP per layer: 3 × 4096 × 14336                            =   176,160,768
    # total: 1,050,673,152 + 32 × 218,103,808                    = 8,029,995,008
    # (the real safetensors count is 8,030,261,248: the difference is the RMSNorm weights)
    assert estimate_parameters(LLAMA_8B) == (8_029_995_008, 8_029_995_008)


def test_model_from_config_gqa() -> None:
    m = model_from_config(LLAMA_8B, "meta-llama/Llama-3.1-8B-Instruct")
    assert (m.attention.kind, m.attention.heads, m.attention.kv_heads, m.attention.head_dim) == ("gqa", 32, 8, 128)
    assert m.native_dtype == "bf16" and m.max_position_embeddings == 131072 and m.moe is None
    assert m.weights_bytes == 2 * 8_029_995_008   # estimated at 2 bytes per bf16 parameter
    assert m.slug == "llama-3.1-8b-instruct" and not m.trust_remote_code


def test_model_from_config_mla_moe_fp8() -> None:
    m = model_from_config(DEEPSEEK_V3, "deepseek-ai/DeepSeek-V3", weights_bytes=688_586_727_753)
    assert m.attention.kind == "mla" and m.attention.kv_lora_rank == 512 and m.attention.qk_rope_head_dim == 64
    assert m.moe is not None and (m.moe.experts, m.moe.experts_per_token, m.moe.shared_experts) == (256, 8, 1)
    assert m.native_dtype == "fp8" and m.weights_bytes == 688_586_727_753 and m.trust_remote_code
    assert m.parameters_active < m.parameters_total


@pytest.mark.parametrize("quant, expected", [
    ({"quant_method": "fp8"}, ("fp8", "fp8")),
    ({"quant_method": "awq", "bits": 4}, ("int4", "awq")),
    ({"quant_method": "gptq", "bits": 8}, ("int8", "gptq")),
    ({"quant_method": "mxfp4"}, ("mixed", "mxfp4")),
    (None, ("bf16", None)),
])
def test_checkpoint_precision(quant: dict | None, expected: tuple) -> None:
    config = dict(LLAMA_8B, quantization_config=quant) if quant else LLAMA_8B
    assert checkpoint_precision(config) == expected


def test_multimodal_text_config_and_fp32() -> None:
    config = {"architectures": ["Gemma3ForConditionalGeneration"], "torch_dtype": "float32",
              "text_config": dict(LLAMA_8B, torch_dtype=None), "vision_config": {"hidden_size": 1152}}
    m = model_from_config(config, "org/mm")
    assert m.multimodal and m.hidden_size == 4096 and checkpoint_precision(config) == ("bf16", None)


def test_config_without_architecture_numbers_is_a_clear_error() -> None:
    with pytest.raises(AimError, match="lacks hidden_size, num_hidden_layers"):
        model_from_config({"architectures": ["X"], "num_attention_heads": 4}, "org/x")


# ---------------------------------------------------------------- AIM_MODEL_ID resolution

EMPTY = catalog_of(())


def test_local_directory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "tiny-llama", decoys=False)
    source = resolve(settings(AIM_MODEL_ID=str(repo.path)), EMPTY)
    assert source.kind == "local" and source.checkpoint == str(repo.path.resolve())
    assert source.served_model_name == "tiny-llama"
    assert source.model.weights_bytes == 2 * 64_000       # the safetensors index's total_size
    named = resolve(settings(AIM_MODEL_ID=str(repo.path), AIM_SERVED_MODEL_NAME="my-model"), EMPTY)
    assert named.served_model_name == "my-model"


@pytest.mark.parametrize("setup, needle", [
    (lambda d: None, "looks like a path but is not a directory"),
    (lambda d: d.mkdir(), "the directory has no config.json"),
    (lambda d: (d.mkdir(), (d / "config.json").write_text('{"hidden_size": 4,\n oops}')), "is not valid JSON"),
])
def test_local_directory_errors(tmp_path: Path, setup, needle: str) -> None:
    directory = tmp_path / "m"
    setup(directory)
    with pytest.raises(AimError, match=needle):
        resolve(settings(AIM_MODEL_ID=str(directory)), EMPTY)


def _cache_repo(cache: Path, repo_id: str, config: dict, commit: str = "a" * 40) -> Path:
    repo_dir = cache / "huggingface" / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot


def test_hf_id_from_the_cache_needs_no_network(tmp_path: Path) -> None:
    _cache_repo(tmp_path, "org/Cached-8B", LLAMA_8B)
    # An unroutable endpoint: any network use would fail the test.
    s = settings(AIM_MODEL_ID="org/Cached-8B", AIM_CACHE_PATH=str(tmp_path), HF_ENDPOINT="http://127.0.0.1:9")
    source = resolve(s, EMPTY)
    assert source.kind == "hub" and source.checkpoint == "org/Cached-8B" and source.served_model_name == "org/Cached-8B"
    assert source.model.attention.kv_heads == 8


def test_offline_and_not_cached_is_a_clear_error(tmp_path: Path) -> None:
    s = settings(AIM_MODEL_ID="org/Missing", AIM_CACHE_PATH=str(tmp_path), AIM_OFFLINE="true")
    with pytest.raises(AimError, match="AIM_OFFLINE is set and org/Missing@main is not in the cache"):
        resolve(s, EMPTY)


def test_hub_through_the_real_client(tmp_path: Path) -> None:
    from tests.support.hf_server import HubServer

    repo = make_repo(tmp_path / "src", decoys=False)
    with HubServer() as hub:
        hub.add_repo("org/tiny", repo.path)
        hub.add_repo("org/gated", repo.path, gated=True)
        base = dict(AIM_CACHE_PATH=str(tmp_path / "cache"), HF_ENDPOINT=hub.url)
        source = resolve(settings(AIM_MODEL_ID="org/tiny", **base), EMPTY)
        assert source.kind == "hub" and source.model.hidden_size == 64
        assert source.model.weights_bytes == 2 * 64_000
        assert hub.file_requests("org/tiny", "config.json") >= 1
        with pytest.raises(AimError, match="model 'org/nope' was not found on"):
            resolve(settings(AIM_MODEL_ID="org/nope", **base), EMPTY)
        with pytest.raises(AimError, match="gated") as info:
            resolve(settings(AIM_MODEL_ID="org/gated", HF_TOKEN="hf_" + "x" * 30, **base), EMPTY)
        assert "hf_xxx" not in str(info.value)


# ---------------------------------------------------------------- synthesized plans


def test_unknown_model_with_a_local_config_gets_a_synthesized_plan(tmp_path: Path) -> None:
    directory = tmp_path / "llama-8b-local"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(LLAMA_8B))
    plan = select(settings(AIM_MODEL_ID=str(directory)), hardware("MI300X", 8), EMPTY)
    assert plan.synthesized and plan.recipe.synthesized
    assert plan.checkpoint == str(directory.resolve()) and plan.config.args["--model"] == plan.checkpoint
    assert plan.served_model_name == "llama-8b-local"
    assert plan.precision == "bf16" and plan.tensor_parallel == 8
    assert memory.check_fit(plan.model, plan.precision, 192 * memory.GIB, plan.tensor_parallel,
                            plan.context, plan.batch).fits
    assert any("not in the catalog" in r for r in plan.reasons)


def test_synthesized_recipes_are_legal_and_fit() -> None:
    """Every synthesized config uses a legal TP and, where it claims a reduced size, fits."""
    m = model(params_b=70, layers=80, hidden=8192, heads=64, kv_heads=8, model_id="org/Mid-70B", slug="mid-70b")
    hw = hardware("MI210", 8)
    recipes = synthesize.gpu_recipes(m, hw)
    assert [r.precision for r in recipes] == ["bf16"]          # gfx90a: no online fp8
    sizes = sorted({c.gpus for c in recipes[0].configs})
    assert sizes == [1, 2, 4, 8]
    for c in recipes[0].configs:
        ctx, batch = int(c.args["--max-context-len"]), int(c.args["--max-batch-size"])
        fit = memory.check_fit(m, "bf16", hw.memory_per_gpu_bytes, c.gpus, ctx, batch)
        assert fit.fits == (c.gpus >= 4), (c.gpus, fit.explanation)   # 130 GiB of weights need 4 x 64 GiB


def test_synthesized_tp_sizes_skip_illegal_ones() -> None:
    m = model(params_b=1, layers=8, hidden=1536, heads=12, kv_heads=2, model_id="org/Odd", slug="odd")
    sizes = {c.gpus for c in synthesize.gpu_recipes(m, hardware("MI300X", 8))[0].configs}
    assert sizes == {1, 2, 4}                                   # 12 heads are not divisible by 8


def test_online_fp8_offered_where_the_gpu_has_fp8() -> None:
    m = model()
    assert [r.precision for r in synthesize.gpu_recipes(m, hardware("MI300X", 1))] == ["bf16", "fp8"]
    fp8 = synthesize.gpu_recipes(m, hardware("MI300X", 1))[1]
    assert fp8.configs[0].args["--dtype"] == "float8"


def test_cpu_recipe_falls_back_to_bf16_then_errors() -> None:
    from aim_engine.hardware.types import Cpu

    # 1.5e9 params: 5.6 GiB at fp32 + 2 GiB KV (4 seqs x 2048 tokens x 32 layers x 8 KiB) > 6.4 GiB
    # (80 % of the 8 GiB host); bf16: 2.8 GiB + 1 GiB KV fits.
    m = model(params_b=1.5)
    assert synthesize.cpu_recipe(m, CPU, m.huggingface_id).precision == "bf16"
    small = Cpu("tiny host", 2, 2 * memory.GIB)
    with pytest.raises(AimError, match="needs .* GiB of RAM"):
        synthesize.cpu_recipe(m, small, m.huggingface_id)
    with pytest.raises(AimError, match="pre-quantized"):
        synthesize.cpu_recipe(m, CPU, "org/x-fp8", checkpoint_precision="fp8")


@pytest.mark.parametrize("params_b, gpu, count", [(8, "MI300X", 8), (70, "MI210", 8), (70, "MI300X", 2),
                                                   (405, "MI300X", 8)])
def test_synthesized_configs_are_sized_like_the_shipped_generator(params_b: float, gpu: str, count: int) -> None:
    """One sizing policy: wherever the generator would ship a config, the config synthesized at
    boot for the same model, GPU, precision and GPU count has exactly the same args."""
    from aim_engine.hardware import gpus
    from aim_engine.planner import generate

    m = model(params_b=params_b, layers=80 if params_b > 8 else 32, hidden=8192 if params_b > 8 else 4096,
              heads=64 if params_b > 8 else 32, model_id=f"org/M-{params_b}B", slug=f"m-{params_b}b")
    spec = gpus.spec(gpu)
    synthesized = {r.precision: r for r in synthesize.gpu_recipes(m, hardware(gpu, count))}
    compared = 0
    for option in generate.options(m, spec):
        doc = generate.generate_recipe(m, spec, option) or {}
        shipped = doc.get("vllm_serve", {})
        for config in synthesized[option.precision].configs:
            if config.engine == "vllm" and f"{config.gpus}_gpu" in shipped:
                assert dict(config.args) == shipped[f"{config.gpus}_gpu"]["args"], (option.precision, config.gpus)
                compared += 1
    assert compared >= 2
