"""The validator's planner checks: memory fit (with the numbers) and tensor-parallel legality,
run through the real validator (`aim_engine.catalog.validator`) on real catalog files."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from aim_engine.catalog import paths
from aim_engine.catalog.validator import Inputs, validate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "catalog"


def _shipped(recipe_id: str) -> dict:
    return yaml.safe_load((paths.shipped_recipes_dir() / f"{recipe_id}.yaml").read_text())


def _validate(tmp_path: Path, data: dict):
    path = tmp_path / f"{data['recipe_id']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return validate(Inputs(recipe_files=[path]))


def _problems(report, check: str) -> list:
    return [p for p in report.problems if p.check == check]


def test_deepseek_r1_fp16_on_mi250_fixture_is_rejected_with_the_numbers():
    report = validate(Inputs(recipe_files=[FIXTURES / "deepseek-r1-0528-mi250-fp16.yaml"],
                             model_dirs=[FIXTURES / "models"]))
    [problem] = _problems(report, "memory-fit")
    # weights: native FP8 checkpoint served at fp16 -> 684_531_386_000 params × 2 B = 1_369_062_772_000 B
    #          / 8 GPUs = 171_132_846_500 B = 159.38 GiB per GPU
    # KV (MLA): (512 + 64) × 2 B × 61 layers = 70_272 B/token, on every GPU;
    #          × 32 × 32768 tokens = 73_685_532_672 B = 68.62 GiB
    # overhead: 2 GiB + 2048 tokens (64 GiB GPU) × 7168 × 32 B (0.4375 GiB)
    #          + 32 × 129280 × 8 B logits (0.0308 GiB) = 2.47 GiB
    # available: 64 GiB × 0.9 = 57.60 GiB; used 159.38 + 68.62 + 2.47 = 230.47 GiB
    for number in ("weights 159.38 GiB", "KV cache 68.62 GiB", "overhead 2.47 GiB", "= 230.47 GiB",
                   "available 57.60 GiB", "short by 172.87 GiB"):
        assert number in problem.message, problem.message
    assert problem.path == ("vllm_serve", "8_gpu", "args", "--tensor-parallel-size")
    assert problem.line == 15
    assert "weights alone do not fit" in problem.hint
    assert not report.ok


def test_kv_cache_that_does_not_fit_names_what_would(tmp_path):
    data = _shipped("qwen3-32b-mi250-bf16")
    config = data["vllm_serve"]["2_gpu"]
    config["args"]["--max-context-len"] = "40960"
    config["args"]["--max-batch-size"] = "64"
    [problem] = _problems(_validate(tmp_path, data), "memory-fit")
    # 64 × 40960 tokens × 128 KiB/token/GPU (2 × 4 heads × 128 × 2 B × 64 layers) = 320 GiB of KV
    assert "KV cache 320.00 GiB (64 × 40960 tokens)" in problem.message
    assert problem.path == ("vllm_serve", "2_gpu", "args", "--max-context-len")
    # More GPUs do not rescue it (TP 4: 2 KV heads per GPU -> 160 GiB; TP 8: 1 head -> 80 GiB, both
    # > 57.6 GiB), so the hint offers a shorter context or a smaller batch: at 40960 tokens,
    # 4 sequences fit (test_memory.py::test_qwen3_32b_on_mi250_batch_and_context has the arithmetic).
    assert "GPUs (tensor-parallel" not in problem.hint
    assert "--max-context-len" in problem.hint and "--max-batch-size 4 at this context" in problem.hint


def test_one_gpu_too_few_suggests_the_smallest_count_that_fits(tmp_path):
    data = _shipped("qwen3-32b-mi250-bf16")
    two = copy.deepcopy(data["vllm_serve"]["2_gpu"])
    two["args"].pop("--tensor-parallel-size")
    data["vllm_serve"] = {"1_gpu": two}
    data.pop("sglang_serve", None)
    [problem] = _problems(_validate(tmp_path, data), "memory-fit")
    # 65.5 GB of weights on one 64 GiB GCD: weights 61.02 GiB alone exceed 57.60 GiB usable
    assert "weights 61.02 GiB" in problem.message
    assert "fits with 2 GPUs (tensor-parallel 2)" in problem.hint


def test_illegal_tensor_parallel_is_an_error(tmp_path):
    # Phi-4: 40 attention heads but 10 KV heads; TP 4 divides the heads, not the KV heads.
    data = _shipped("phi-4-mi300x-bf16")
    config = copy.deepcopy(data["vllm_serve"]["2_gpu"])
    config["args"]["--tensor-parallel-size"] = "4"
    data["vllm_serve"]["4_gpu"] = config
    [problem] = _problems(_validate(tmp_path, data), "tp-legal")
    assert "10 KV heads are not divisible by tensor-parallel size 4" in problem.message
    assert problem.path == ("vllm_serve", "4_gpu", "args", "--tensor-parallel-size")
    assert "1, 2" in problem.hint
    assert not _problems(_validate(tmp_path, data), "memory-fit")   # illegal TP is not also judged for memory


def test_sglang_native_spellings_and_defaults_are_read(tmp_path):
    data = _shipped("qwen3-32b-mi250-bf16")      # 64 GiB GCDs keep the numbers small
    data["sglang_serve"] = data.pop("vllm_serve")
    config = data["sglang_serve"]["2_gpu"]
    args = config["args"]
    args["--tp-size"] = args.pop("--tensor-parallel-size")
    args["--context-length"] = args.pop("--max-context-len")
    args["--mem-fraction-static"] = "0.5"      # 32 GiB of 64: the weights' 30.5 GiB leave no room
    args.pop("--gpu-memory-utilization")
    [problem] = _problems(_validate(tmp_path, data), "memory-fit")
    assert "(64 GiB × 0.5)" in problem.message and "available 32.00 GiB" in problem.message

    # without a declared batch the engine's own default is what runs (256 sequences on a 64 GiB
    # device, engines/canonical.yaml), so that is what is checked, and the message says so
    args["--mem-fraction-static"] = "0.9"
    args.pop("--max-batch-size")
    args["--context-length"] = "40960"
    [problem] = _problems(_validate(tmp_path, data), "memory-fit")
    assert "(256 × 40960 tokens (no batch declared: sglang's default))" in problem.message
    args["--max-running-requests"] = "1"
    assert not _problems(_validate(tmp_path, data), "memory-fit")
    args.pop("--max-running-requests")
    args.pop("--context-length")   # no context: the model's maximum (40960) is what the engine uses
    args["--max-running-requests"] = "64"
    [problem] = _problems(_validate(tmp_path, data), "memory-fit")
    assert "(64 × 40960 tokens (no context declared: the model's maximum))" in problem.message


def test_disabled_configs_are_not_judged(tmp_path):
    data = _shipped("qwen3-32b-mi250-bf16")
    data["vllm_serve"]["2_gpu"]["args"]["--max-batch-size"] = "256"
    assert _problems(_validate(tmp_path, data), "memory-fit")
    data["vllm_serve"]["2_gpu"]["enabled"] = False
    assert not _problems(_validate(tmp_path, data), "memory-fit")


def test_the_shipped_catalog_fits():
    report = validate(Inputs(recipe_dirs=[paths.shipped_recipes_dir()], model_dirs=[paths.shipped_models_dir()]))
    assert report.recipes > 100
    bad = _problems(report, "memory-fit") + _problems(report, "tp-legal")
    assert not bad, "\n".join(p.render() for p in bad)
