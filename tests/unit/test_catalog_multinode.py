"""Multi-node configs in recipes (`MxN_gpu`: M nodes × N GPUs each), through the real schema,
loader and validator on real files: the key form, the tensor × pipeline parallel sizes covering
every GPU of the group, their legality and the per-GPU memory fit, and that every `N_gpu`
recipe loads as before."""

from __future__ import annotations

import copy

import pytest

from aim_engine.catalog.loader import read_document, to_recipe
from aim_engine.catalog.types import config_name, config_shape
from tests.unit.catalog_helpers import only, shipped_recipe, validate_recipe

BIG = "llama-3.1-405b-instruct"


def big_recipe(config: str, args: dict, engine: str = "vllm_serve") -> dict:
    """A 405B bf16 recipe for MI250 with one config (the shipped model file is the reference)."""
    base = {"--model": "meta-llama/Llama-3.1-405B-Instruct", "--dtype": "bfloat16",
            "--max-batch-size": "4", "--max-context-len": "8192", "--gpu-memory-utilization": "0.9"}
    return {"recipe_id": f"{BIG}-mi250-bf16", "model_id": "meta-llama/Llama-3.1-405B-Instruct",
            "huggingface_id": "meta-llama/Llama-3.1-405B-Instruct", "hardware": "MI250", "precision": "bf16",
            engine: {config: {"enabled": True, "args": {**base, **args}}}}


@pytest.mark.parametrize("name, shape", [("8_gpu", (1, 8)), ("2x8_gpu", (2, 8)), ("16x4_gpu", (16, 4))])
def test_key_shapes_round_trip(name, shape):
    assert config_shape(name) == shape and config_name(shape[1], shape[0]) == name


def test_group_config_loads_with_its_nodes(tmp_path):
    data = big_recipe("2x8_gpu", {"--tensor-parallel-size": "8", "--pipeline-parallel-size": "2"})
    report = validate_recipe(tmp_path, data)
    assert report.ok, report.render_text()
    [config] = to_recipe(data).configs
    assert (config.nodes, config.gpus, config.total_gpus, config.name) == (2, 8, 16, "2x8_gpu")


@pytest.mark.parametrize("key", ["1x8_gpu", "0x8_gpu", "2x0_gpu", "2x_gpu", "x8_gpu"])
def test_malformed_group_keys_are_schema_errors(tmp_path, key):
    data = big_recipe(key, {"--tensor-parallel-size": "8"})
    problems = only(validate_recipe(tmp_path, data), "schema")
    assert any(key in p.message for p in problems), [p.message for p in problems]
    assert any("MxN_gpu (2x8_gpu = 2 nodes × 8 GPUs)" in p.hint for p in problems)


def test_seed_n_gpu_recipes_load_unchanged(tmp_path):
    data = shipped_recipe()
    report = validate_recipe(tmp_path, data)
    assert report.ok, report.render_text()
    path = tmp_path / "recipes" / f"{data['recipe_id']}.yaml"
    recipe = read_document("recipe", path).obj
    assert all(c.nodes == 1 and c.name == f"{c.gpus}_gpu" for c in recipe.configs)


def test_group_parallel_sizes_must_cover_every_gpu(tmp_path):
    data = big_recipe("2x8_gpu", {"--tensor-parallel-size": "8"})
    [problem] = only(validate_recipe(tmp_path, data), "tensor-parallel")
    assert problem.path == ("vllm_serve", "2x8_gpu", "args", "--tensor-parallel-size")
    assert problem.message == "2x8_gpu config but --tensor-parallel-size 8 uses 8 GPUs"
    assert "--tensor-parallel-size 8 × --pipeline-parallel-size 2 (vLLM)" in problem.hint


def test_sglang_tensor_parallel_over_the_group_is_accepted(tmp_path):
    data = big_recipe("2x8_gpu", {"--tp-size": "16"}, engine="sglang_serve")
    data["hardware"], data["recipe_id"] = "MI300X", f"{BIG}-mi300x-bf16"
    data["sglang_serve"]["2x8_gpu"]["args"]["--gpu-memory-utilization"] = "0.85"
    report = validate_recipe(tmp_path, data)
    assert report.ok, report.render_text()


def test_pipeline_stages_need_a_layer_each(tmp_path):
    data = big_recipe("2x8_gpu", {"--tensor-parallel-size": "1", "--pipeline-parallel-size": "16"})
    assert not only(validate_recipe(tmp_path, data), "tp-legal")      # 126 layers fill 16 stages
    data = copy.deepcopy(data)
    data["vllm_serve"] = {"64x4_gpu": data["vllm_serve"].pop("2x8_gpu")}
    data["vllm_serve"]["64x4_gpu"]["args"].update({"--pipeline-parallel-size": "256"})
    [problem] = only(validate_recipe(tmp_path, data), "tp-legal")
    assert problem.path == ("vllm_serve", "64x4_gpu", "args", "--pipeline-parallel-size")
    assert "126 layers cannot fill 256 pipeline stages" in problem.message


def test_group_memory_fit_is_per_gpu_with_the_numbers(tmp_path):
    fits = big_recipe("2x8_gpu", {"--tensor-parallel-size": "8", "--pipeline-parallel-size": "2"})
    assert not only(validate_recipe(tmp_path, fits), "memory-fit")
    # The same model on one node of eight 64 GiB GCDs does not fit ...
    one = big_recipe("8_gpu", {"--tensor-parallel-size": "8"})
    assert only(validate_recipe(tmp_path / "one", one), "memory-fit")
    # ... and a group config too long for its memory names the group shape and the split.
    long = big_recipe("2x8_gpu", {"--tensor-parallel-size": "8", "--pipeline-parallel-size": "2",
                                  "--max-context-len": "131072", "--max-batch-size": "64"})
    [problem] = only(validate_recipe(tmp_path / "long", long), "memory-fit")
    assert problem.message.startswith("does not fit 2 nodes × 8 × MI250 (TP 8 × PP 2): per GPU weights")
    assert "--max-context-len" in problem.hint or "--max-batch-size" in problem.hint
