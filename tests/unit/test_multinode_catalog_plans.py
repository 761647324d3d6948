"""The issue's "done when" group plans, on the shipped catalog (issue 14): Llama-3.1-405B in bf16
on two MI250 nodes with vLLM, and DeepSeek-R1 across two MI300X nodes with SGLang. Every expected
fact is derived from the model file (its config.json facts) and the planner's memory functions:
TP and PP from the engine's split and the heads/layers rules, the per-GPU weights from the
checkpoint size, the fit from `memory.check_fit`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from aim_engine.catalog import Catalog
from aim_engine.hardware.group import Group
from aim_engine.planner import across_nodes, memory
from aim_engine.planner.select import select
from aim_engine.settings import Settings

from tests.unit.selection_cases import hardware

GROUP = Group(nodes=2, rank=0, leader_address="10.0.0.1", source="AIM_*")


@pytest.fixture(scope="module")
def catalog():
    return Catalog.load(Settings.from_env({}))


def plan_for(catalog, model_id: str, gpu: str, engine: str, group: Group | None = GROUP):
    hw = hardware(gpu, 8)
    if group is not None:
        hw = replace(hw, group=group)
    return select(Settings.from_env({"AIM_MODEL_ID": model_id, "AIM_ENGINE": engine}), hw, catalog), hw


def _assert_group_plan(plan, hw, model, engine: str, precision: str):
    per_node, nodes = hw.gpu_count, hw.group.nodes
    split = across_nodes.split(engine, nodes, per_node)
    assert memory.parallel_legal(model, split.tp, split.pp) is None
    assert model.attention.heads % split.tp == 0 and model.layers >= split.pp
    assert (plan.engine, plan.precision) == (engine, precision)
    assert (plan.tensor_parallel, plan.pipeline_parallel, plan.data_parallel) == (split.tp, split.pp, 1)
    assert (plan.nodes, plan.gpus_per_node, plan.gpus_used) == (nodes, per_node, nodes * per_node)
    assert plan.group == hw.group and not plan.synthesized
    assert plan.config.name == f"{nodes}x{per_node}_gpu"
    fit = memory.check_fit(model, precision, hw.memory_per_gpu_bytes, split.tp, plan.context, plan.batch,
                           plan.config.args.get("--kv-cache-dtype"),
                           float(plan.config.args["--gpu-memory-utilization"]),
                           checkpoint=plan.checkpoint, pp=split.pp)
    assert fit.fits
    weights = memory.weights_bytes(model, precision, plan.checkpoint)
    assert fit.weights_gib == pytest.approx(weights / (nodes * per_node) / memory.GIB, abs=0.01)
    return fit


def test_405b_bf16_on_two_mi250_nodes_with_vllm(catalog):
    model = catalog.find_model("llama-3.1-405b-instruct")
    plan, hw = plan_for(catalog, "llama-3.1-405b-instruct", "MI250", "vllm")
    _assert_group_plan(plan, hw, model, "vllm", "bf16")
    assert plan.recipe.recipe_id == "llama-3.1-405b-instruct-mi250-bf16"
    assert plan.config.args["--tensor-parallel-size"] == str(hw.gpu_count)
    assert plan.config.args["--pipeline-parallel-size"] == str(hw.group.nodes)
    # One node of eight 64 GiB GCDs holds not even the weights: no warning about fewer nodes.
    assert model.weights_bytes / hw.gpu_count > hw.memory_per_gpu_bytes * 0.9
    assert not plan.warnings


def test_405b_bf16_on_one_mi250_node_names_the_group_it_needs(catalog):
    from aim_engine.errors import AimError

    with pytest.raises(AimError) as raised:
        plan_for(catalog, "llama-3.1-405b-instruct", "MI250", "vllm", group=None)
    assert "needs a group of 2 nodes × 8 GPUs; this node is not in a group" in str(raised.value)


def test_deepseek_r1_across_two_mi300x_nodes_with_sglang(catalog):
    model = catalog.find_model("deepseek-r1")
    plan, hw = plan_for(catalog, "deepseek-r1", "MI300X", "sglang")
    precision = memory.native_precision(model)          # the catalog has the native FP8 checkpoint
    fit = _assert_group_plan(plan, hw, model, "sglang", precision)
    assert plan.recipe.recipe_id == f"deepseek-r1-0528-mi300x-{precision}"
    assert plan.config.args["--tensor-parallel-size"] == str(hw.gpu_count * hw.group.nodes)
    assert "--pipeline-parallel-size" not in plan.config.args
    # MLA keeps the whole latent on every GPU: the KV cache per GPU does not shrink with TP.
    per_token = (model.attention.kv_lora_rank + model.attention.qk_rope_head_dim) * 2 * model.layers
    assert fit.kv_gib == pytest.approx(plan.batch * plan.context * per_token / memory.GIB, abs=0.01)
    # The group config is written for the full context, which one node cannot hold at that batch.
    assert plan.context == model.max_position_embeddings
    one = memory.check_fit(model, precision, hw.memory_per_gpu_bytes, hw.gpu_count, plan.context, plan.batch,
                           None, float(plan.config.args["--gpu-memory-utilization"]))
    assert not one.fits and not plan.warnings
