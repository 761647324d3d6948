"""The recipe generator: which precisions and GPU counts it writes, how it sizes them, overrides,
determinism, `--check`, and that the committed catalog is exactly what it generates."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aim_engine.catalog import Catalog, paths
from aim_engine.catalog.types import Attention, Model, Moe, Variant, config_shape
from aim_engine.errors import AimError
from aim_engine.hardware import gpus
from aim_engine.planner import generate, memory
from aim_engine.planner.generate import Option, build_documents, deep_merge, options, render, size_config

GIB = memory.GIB
TABLE = {name: gpus.spec(name) for name in generate.TARGETS}


def _model(model_id: str, **kw) -> Model:
    base = dict(model_id=model_id, huggingface_id=model_id, slug=model_id.split("/")[1].lower(), architecture="X",
                parameters_total=8_030_261_248, parameters_active=8_030_261_248, layers=32, hidden_size=4096,
                attention=Attention("gqa", 32, 8, 128), max_position_embeddings=131072, vocab_size=128256,
                native_dtype="bf16", weights_bytes=16_060_522_496, license="x", gated=False, trust_remote_code=False)
    base.update(kw)
    return Model(**base)


# Llama-3.1-8B facts (config.json), with AMD's FP8-KV and an AWQ int4 checkpoint declared.
FP8 = Variant("amd/Llama-3.1-8B-Instruct-FP8-KV", "fp8", 9_081_200_640, quantization="quark", kv_cache_dtype="fp8")
AWQ = Variant("hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "int4", 5_727_854_592, quantization="awq")
LLAMA = _model("meta-llama/Llama-3.1-8B-Instruct", variants=(FP8, AWQ))
PLAIN = _model("acme/Plain-8B")                      # no variants: fp8 by online quantization
MLA_FP8 = _model("deepseek-ai/DeepSeek-V3", native_dtype="fp8", parameters_total=671_026_419_200,
                 weights_bytes=688_586_727_753, layers=61, hidden_size=7168, vocab_size=129280,
                 max_position_embeddings=163840, moe=Moe(256, 8, 1), trust_remote_code=True,
                 attention=Attention("mla", 128, 128, 192, kv_lora_rank=512, qk_rope_head_dim=64))
MXFP4 = _model("openai/gpt-oss-20b", native_dtype="mxfp4", weights_bytes=13_761_264_768, layers=24,
               hidden_size=2880, vocab_size=201088, moe=Moe(32, 4),
               attention=Attention("gqa", 64, 8, 64, sliding_window=128, sliding_window_layers=12))
PHI4 = _model("microsoft/phi-4", attention=Attention("gqa", 40, 10, 128), layers=40, hidden_size=5120,
              vocab_size=100352, max_position_embeddings=16384, weights_bytes=29_319_014_400,
              parameters_total=14_659_507_200)


def _precisions(model: Model, gpu: str) -> dict[str, Option]:
    return {o.precision: o for o in options(model, TABLE[gpu])}


# --------------------------------------------------------------------------------- matrix
def test_precisions_per_gpu_and_checkpoint():
    mi300x = _precisions(LLAMA, "MI300X")
    assert list(mi300x) == ["bf16", "fp8", "int4"]
    assert mi300x["bf16"].checkpoint == LLAMA.huggingface_id and mi300x["bf16"].dtype == "bfloat16"
    # the declared FP8 checkpoint wins over online quantization, with its FP8 KV cache
    assert mi300x["fp8"].checkpoint == FP8.huggingface_id and mi300x["fp8"].dtype == "auto"
    assert mi300x["fp8"].kv_cache_dtype == "fp8"
    assert mi300x["int4"].checkpoint == AWQ.huggingface_id
    # gfx90a: no FP8 at all
    assert list(_precisions(LLAMA, "MI250")) == ["bf16", "int4"]
    # no FP8 checkpoint: online FP8 of the original (--dtype float8 = --quantization fp8)
    online = _precisions(PLAIN, "MI355X")["fp8"]
    assert online.checkpoint == PLAIN.huggingface_id and online.dtype == "float8" and not online.prequantized
    # an FP8-native model is served as it ships; no bf16 without a bf16 checkpoint
    assert list(_precisions(MLA_FP8, "MI300X")) == ["fp8"] and _precisions(MLA_FP8, "MI300X")["fp8"].prequantized
    assert _precisions(MLA_FP8, "MI250") == {}
    # MXFP4 (gpt-oss) is "mixed", CDNA3+ only
    assert list(_precisions(MXFP4, "MI325X")) == ["mixed"] and _precisions(MXFP4, "MI250") == {}


def test_sizing_llama_8b_on_one_mi300x():
    sized = size_config(LLAMA, _precisions(LLAMA, "MI300X")["bf16"], 192 * GIB, 1)
    # context = min(131072, 32768 cap) = 32768; KV per sequence = 128 KiB × 32768 = 4 GiB.
    # usable 172.8 GiB - weights 14.96 - overhead (2 + 2 GiB activations + b × 0.00096) leaves
    # ~153.8 GiB: 32 sequences = 128 GiB fit with margin, 64 = 256 GiB do not.
    assert (sized.context, sized.batch) == (32768, 32)
    assert sized.fit.kv_gib == 128.0 and sized.fit.margin_gib >= generate.MIN_MARGIN_GIB
    assert not memory.check_fit(LLAMA, "bf16", 192 * GIB, 1, 32768, 64).fits


def test_sizing_shrinks_context_before_batch_and_gives_up_when_nothing_fits():
    option = _precisions(MLA_FP8, "MI300X")["fp8"]
    sized = size_config(MLA_FP8, option, 192 * GIB, 4)
    # 4 × 192 GiB: the 641 GiB FP8 checkpoint leaves ~6 GiB per GPU, not 8 × 32768 tokens of
    # MLA latent (8 × 32768 × 70272 B = 17.2 GiB): the context shrinks in 1024-token steps.
    assert sized.batch == generate.MIN_BATCH
    assert generate.MIN_CONTEXT <= sized.context < 32768 and sized.context % generate.CONTEXT_STEP == 0
    longer = memory.check_fit(MLA_FP8, "fp8", 192 * GIB, 4, sized.context + 1024, 8)
    assert longer.margin_gib < generate.MIN_MARGIN_GIB
    # one and two GPUs cannot hold the weights at all
    assert size_config(MLA_FP8, option, 192 * GIB, 2) is None


def test_configs_skip_illegal_tp_and_counts_that_do_not_fit():
    doc = generate.generate_recipe(PHI4, TABLE["MI250"], _precisions(PHI4, "MI250")["bf16"])
    # Phi-4 on 64 GiB GCDs: 27.3 GiB of weights fit one GCD; TP 4 and 8 are illegal (10 KV heads)
    assert list(doc["vllm_serve"]) == ["1_gpu", "2_gpu"]
    assert "sglang_serve" not in doc          # SGLang's ROCm kernels are gfx942/gfx950 only
    mi300x = generate.generate_recipe(PHI4, TABLE["MI300X"], _precisions(PHI4, "MI300X")["bf16"])
    assert list(mi300x["vllm_serve"]) == list(mi300x["sglang_serve"]) == ["1_gpu", "2_gpu"]
    assert "--tensor-parallel-size" not in doc["vllm_serve"]["1_gpu"]["args"]
    assert doc["vllm_serve"]["2_gpu"]["args"]["--tensor-parallel-size"] == "2"
    mla = generate.generate_recipe(MLA_FP8, TABLE["MI300X"], _precisions(MLA_FP8, "MI300X")["fp8"])
    assert list(mla["vllm_serve"]) == ["4_gpu", "8_gpu"]
    assert mla["vllm_serve"]["8_gpu"]["args"]["--trust-remote-code"] == "true"
    # a bf16 DeepSeek (2 B × 671 B params = 1250 GiB) cannot fit 8 × 64 GiB GCDs at any count
    assert generate.generate_recipe(MLA_FP8, TABLE["MI250"], Option("bf16", MLA_FP8.huggingface_id)) is None


def test_engine_spellings_of_the_fp8_kv_cache():
    docs = build_documents([LLAMA], TABLE)
    fp8 = docs["llama-3.1-8b-instruct-mi300x-fp8"].doc
    assert fp8["vllm_serve"]["1_gpu"]["args"]["--kv-cache-dtype"] == "fp8"
    assert fp8["sglang_serve"]["1_gpu"]["args"]["--kv-cache-dtype"] == "fp8_e4m3"
    assert fp8["huggingface_id"] == FP8.huggingface_id and fp8["generated"] is True
    assert "memory planner, per GPU: weights 8.46 GiB" in fp8["vllm_serve"]["1_gpu"]["notes"]


# ------------------------------------------------------------------------------ overrides
def test_deep_merge_replaces_merges_and_deletes():
    base = {"a": {"x": 1, "y": 2}, "b": [1], "c": 3}
    assert deep_merge(base, {"a": {"y": None, "z": 4}, "b": [2], "c": None}) == {"a": {"x": 1, "z": 4}, "b": [2]}
    assert base == {"a": {"x": 1, "y": 2}, "b": [1], "c": 3}     # not mutated


def test_override_patches_a_generated_recipe_and_notes_follow():
    patch = {"vllm_serve": {"1_gpu": {"args": {"--max-context-len": "65536", "--max-batch-size": "8"}},
                            "8_gpu": None}}
    docs = build_documents([PLAIN], TABLE, {"plain-8b-mi300x-bf16": patch})
    gen = docs["plain-8b-mi300x-bf16"]
    vllm = gen.doc["vllm_serve"]
    assert "8_gpu" not in vllm and "8_gpu" in gen.doc["sglang_serve"]
    assert vllm["1_gpu"]["args"]["--max-context-len"] == "65536"
    # notes are recomputed from the final args: 8 × 65536 × 128 KiB = 64 GiB of KV
    assert "KV cache 64.00 GiB (8 x 65536 tokens)" in vllm["1_gpu"]["notes"]
    assert "Overridden by recipes/overrides/plain-8b-mi300x-bf16.yaml" in gen.header


def test_override_outside_the_matrix_extends_a_generated_recipe():
    patch = {"extends": "plain-8b-mi250-bf16", "precision": "fp16", "all_configs": {"args": {"--dtype": "float16"}}}
    docs = build_documents([PLAIN], TABLE, {"plain-8b-mi250-fp16": patch})
    doc = docs["plain-8b-mi250-fp16"].doc
    base = docs["plain-8b-mi250-bf16"].doc
    assert doc["recipe_id"] == "plain-8b-mi250-fp16" and doc["precision"] == "fp16" and doc["generated"] is True
    assert "extends" not in doc and "all_configs" not in doc
    assert list(doc["vllm_serve"]) == list(base["vllm_serve"])
    assert {c["args"]["--dtype"] for c in doc["vllm_serve"].values()} == {"float16"}
    patched = build_documents([PLAIN], TABLE, {"plain-8b-mi300x-fp16": {**patch, "extends": "plain-8b-mi300x-bf16"}})
    assert {c["args"]["--dtype"] for s in ("vllm_serve", "sglang_serve")
            for c in patched["plain-8b-mi300x-fp16"].doc[s].values()} == {"float16"}
    assert list(doc)[0] == "recipe_id"


@pytest.mark.parametrize("patch, message", [
    ({"vllm_serve": {"1_gpu": {"args": {"--max-batch-size": "4096"}}}}, "not servable after its override"),
    ({"vllm_serve": {"2_gpu": {"args": {"--tensor-parallel-size": "3"}}}}, "not servable"),
])
def test_override_that_breaks_a_config_is_refused(patch, message):
    with pytest.raises(AimError, match=message):
        build_documents([PLAIN], TABLE, {"plain-8b-mi300x-bf16": patch})


def test_override_files_need_a_comment_and_the_right_name(tmp_path):
    (tmp_path / "plain-8b-mi300x-bf16.yaml").write_text("description: x\n")
    with pytest.raises(AimError, match="no comment saying why"):
        generate.load_overrides(tmp_path)
    (tmp_path / "plain-8b-mi300x-bf16.yaml").write_text("# why: testing\nrecipe_id: other\n")
    with pytest.raises(AimError, match="named after the recipe"):
        generate.load_overrides(tmp_path)
    (tmp_path / "plain-8b-mi300x-bf16.yaml").write_text("# why: a longer description\ndescription: x\n")
    assert generate.load_overrides(tmp_path) == {"plain-8b-mi300x-bf16": {"description": "x"}}
    with pytest.raises(AimError, match="extends 'nope'"):
        build_documents([PLAIN], TABLE, {"plain-8b-mi300x-fp16": {"extends": "nope"}})


# ---------------------------------------------------------------------------- determinism
def test_generation_is_deterministic_whatever_the_model_order():
    models = [LLAMA, PLAIN, MLA_FP8, MXFP4, PHI4]
    first = {rid: render(g) for rid, g in build_documents(models, TABLE).items()}
    shuffled = models[:]
    random.Random(4).shuffle(shuffled)
    again = {rid: render(g) for rid, g in build_documents(shuffled, TABLE).items()}
    assert first == again
    assert list(first) == sorted(first)


def _shipped_models() -> list[Model]:
    return list(Catalog.from_dirs([paths.shipped_models_dir()], []).models)


def test_committed_recipes_equal_the_generated_ones():
    """`recipes/` is exactly `aim-engine recipes generate` output: run it after changing models,
    the planner or recipes/overrides/, and commit the result."""
    recipes_dir = paths.shipped_recipes_dir()
    wanted, stale = generate.plan_files(paths.shipped_models_dir(), recipes_dir, recipes_dir)
    differ = sorted(p.name for p, text in wanted.items() if not p.is_file() or p.read_text(encoding="utf-8") != text)
    assert not differ and not stale, (f"out of date: {differ}, stale: {[p.name for p in stale]}; "
                                      "run `aim-engine recipes generate` and commit recipes/")


def test_every_model_gets_recipes_and_every_generated_config_fits():
    models = _shipped_models()
    docs = build_documents(models, TABLE)
    assert {d.doc["model_id"] for d in docs.values()} == {m.model_id for m in models}
    by_id = {m.model_id: m for m in models}
    for gen in docs.values():
        model = by_id[gen.doc["model_id"]]
        sections = [s for s in ("vllm_serve", "sglang_serve") if s in gen.doc]
        assert sections == (["vllm_serve"] if gen.doc["hardware"] == "MI250" else ["vllm_serve", "sglang_serve"])
        for section in sections:
            for name, config in gen.doc[section].items():
                args = config["args"]
                tp = int(args.get("--tensor-parallel-size", "1"))
                pp = int(args.get("--pipeline-parallel-size", "1"))
                nodes, per_node = config_shape(name)
                assert tp * pp == nodes * per_node and memory.parallel_legal(model, tp, pp) is None
                assert nodes == 1 or not any(n.endswith("_gpu") and "x" not in n for n in gen.doc[section]), \
                    f"{gen.recipe_id}: group configs are written only when no single node fits"
                fit = memory.check_fit(model, gen.doc["precision"], TABLE[gen.doc["hardware"]].memory_bytes, tp,
                                       int(args["--max-context-len"]), int(args["--max-batch-size"]),
                                       args.get("--kv-cache-dtype") if section == "vllm_serve" else None,
                                       float(args["--gpu-memory-utilization"]),
                                       checkpoint=gen.doc["huggingface_id"], pp=pp)
                assert fit.fits, f"{gen.recipe_id} {section}.{name}: {fit.explanation}"


def test_a_model_that_fits_no_node_gets_group_configs_split_per_engine():
    """Llama-3.1-405B bf16 on MI250 (64 GiB GCDs): no count of 1-8 GCDs holds its weights, so
    the generator writes a 2x8_gpu config, split as vLLM runs a group (TP per node x PP nodes)."""
    from aim_engine.planner import across_nodes

    model = next(m for m in _shipped_models() if m.slug == "llama-3.1-405b-instruct")
    gpu = TABLE["MI250"]
    option = next(o for o in generate.options(model, gpu) if o.precision == "bf16")
    assert all(size_config(model, option, gpu.memory_bytes, n) is None for n in generate.GPU_COUNTS)
    doc = generate.generate_recipe(model, gpu, option)
    [(name, config)] = doc["vllm_serve"].items()
    split = across_nodes.split("vllm", 2, 8)
    assert name == "2x8_gpu" and "sglang_serve" not in doc
    assert (config["args"]["--tensor-parallel-size"], config["args"]["--pipeline-parallel-size"]) == \
        (str(split.tp), str(split.pp))
    sized = size_config(model, option, gpu.memory_bytes, split.tp, "vllm", split.pp)
    assert config["args"]["--max-context-len"] == str(sized.context)
    assert config["args"]["--max-batch-size"] == str(sized.batch)


# ------------------------------------------------------------------------------ file edge
def _generate(out: Path, check: bool = False, models_dir: Path | None = None) -> int:
    """`aim-engine recipes generate` in-process: the command prints what the typed report says."""
    from aim_engine import cli

    return cli.main(["recipes", "generate", "--out", str(out), *(["--models-dir", str(models_dir)] if models_dir else []),
                     *(["--check"] if check else [])])


def _tiny_models_dir(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    src = paths.shipped_models_dir()
    (models / "schema.json").write_text((src / "schema.json").read_text())
    for name in ("llama-3.1-8b-instruct.yaml", "phi-4.yaml"):
        (models / name).write_text((src / name).read_text())
    return models


def test_generate_then_check_then_drift_then_stale(tmp_path, capsys):
    models, out = _tiny_models_dir(tmp_path), tmp_path / "out"
    assert _generate(out, models_dir=models) == 0
    files = sorted(p.name for p in out.glob("*.yaml"))
    assert "phi-4-mi250-bf16.yaml" in files and "llama-3.1-8b-instruct-mi300x-fp8.yaml" in files
    assert _generate(out, check=True, models_dir=models) == 0

    drifted = out / "phi-4-mi250-bf16.yaml"
    drifted.write_text(drifted.read_text().replace("'0.9'", "'0.8'"))
    stale = out / "gone-model-mi300x-bf16.yaml"
    stale.write_text("recipe_id: gone-model-mi300x-bf16\ngenerated: true\n")
    hand = out / "hand-written-mi300x-bf16.yaml"
    hand.write_text("recipe_id: hand-written-mi300x-bf16\n")
    capsys.readouterr()
    assert _generate(out, check=True, models_dir=models) == 1
    printed = capsys.readouterr().out
    assert f"would update: {drifted}" in printed and f"would remove: {stale}" in printed
    assert "hand-written" not in printed

    assert _generate(out, models_dir=models) == 0
    assert not stale.exists() and hand.exists() and "'0.8'" not in drifted.read_text()
    assert _generate(out, check=True, models_dir=models) == 0


def test_cli_check_exit_code_through_a_real_process(tmp_path):
    models, out = _tiny_models_dir(tmp_path), tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "aim_engine", "recipes", "generate", "--models-dir", str(models), "--out", str(out)]
    check = subprocess.run([*cmd, "--check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and "would create:" in check.stdout and "out of date" in check.stderr
    assert not list(out.glob("*.yaml"))          # --check never writes
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert subprocess.run([*cmd, "--check"], capture_output=True, text=True, timeout=120).returncode == 0
    bad = subprocess.run([*cmd[:-4], "--models-dir", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_generated_file_reads_like_the_template():
    text = (paths.shipped_recipes_dir() / "phi-4-mi300x-bf16.yaml").read_text()
    assert text.startswith("# Generated by `aim-engine recipes generate` from models/phi-4.yaml")
    data = yaml.safe_load(text)
    assert list(data)[:5] == ["recipe_id", "model_id", "huggingface_id", "hardware", "precision"]
    assert all(isinstance(v, str) for c in data["vllm_serve"].values() for v in c["args"].values())
    assert dataclasses.is_dataclass(generate.Layout())
