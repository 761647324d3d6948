"""Planning over a group of nodes (issue 14, item 2) on hand-built hardware, models and recipes:
the split per engine (vLLM TP within a node × PP across nodes, SGLang TP over the group), the
legality rules with their numbers, the per-GPU memory fit, the policy (a group deployed on
purpose is used whole, with a warning when fewer nodes would do), and that nothing changes
without a group. Expected numbers are computed here from the model facts and the planner's
own memory functions, never copied from a run.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from aim_engine.catalog.types import Recipe, ServeConfig
from aim_engine.errors import AimError
from aim_engine.hardware.group import Group
from aim_engine.planner import across_nodes, memory
from aim_engine.planner.select import select

from tests.unit.selection_cases import catalog_of, hardware, model, recipe, settings

# A 405B-class dense model (126 layers, 128 heads / 8 KV heads): 754 GiB of bf16 weights.
BIG = model(params_b=405, layers=126, hidden=16384, heads=128, kv_heads=8, model_id="org/Big-405B",
            slug="big-405b", aliases=("big",))
SMALL = model()       # 8B: fits one GPU
TWO_NODES = Group(nodes=2, rank=0, leader_address="10.0.0.1", source="AIM_*")


def in_group(hw, group: Group = TWO_NODES):
    return replace(hw, group=group)


def group_recipe(m, hw: str, engine: str, nodes: int, per_node: int, tp: int, pp: int = 1,
                 context: int = 8192, batch: int = 8, precision: str = "bf16") -> Recipe:
    args = {"--model": m.huggingface_id, "--dtype": "bfloat16", "--tensor-parallel-size": str(tp),
            "--max-batch-size": str(batch), "--max-context-len": str(context), "--gpu-memory-utilization": "0.9"}
    if pp > 1:
        args["--pipeline-parallel-size"] = str(pp)
    config = ServeConfig(engine=engine, gpus=per_node, enabled=True, args=args, nodes=nodes)
    return Recipe(recipe_id=f"{m.slug}-{hw.lower()}-{precision}", model_id=m.model_id,
                  huggingface_id=m.huggingface_id, hardware=hw, precision=precision, configs=(config,))


# ------------------------------------------------------------------------------- memory


def test_pipeline_stages_divide_weights_and_layers_per_gpu():
    gib64 = 64 * memory.GIB
    one = memory.check_fit(BIG, "bf16", gib64, 8, 8192, 4)
    two = memory.check_fit(BIG, "bf16", gib64, 8, 8192, 4, pp=2)
    assert two.weights_gib == pytest.approx(BIG.weights_bytes / 16 / memory.GIB, abs=0.01)
    per_token_layer = memory.kv_bytes_per_token_per_layer(BIG, 2, 8)
    assert two.kv_gib == pytest.approx(4 * 8192 * per_token_layer * -(-BIG.layers // 2) / memory.GIB, abs=0.01)
    assert one.overhead_gib == two.overhead_gib
    assert "TP 8 × PP 2" in two.explanation and f"{-(-BIG.layers // 2)} layers (the largest of 2" in two.explanation


def test_uneven_layers_size_the_largest_stage():
    odd = model(layers=31)
    assert memory.stage_layers(odd.layers, 2) == 16 and memory.stage_layers(odd.layers, 4) == 8
    kv = memory.kv_cache_bytes(odd, 1000, 1, 2, 1, 4)
    assert kv == 1000 * 8 * memory.kv_bytes_per_token_per_layer(odd, 2, 1)


def test_pipeline_legality_names_the_numbers():
    assert memory.pp_legal(BIG, 2) is None
    tiny = model(layers=2)
    assert memory.pp_legal(tiny, 4) == "2 layers cannot fill 4 pipeline stages (at least one layer per stage)"
    assert memory.parallel_legal(model(heads=40, kv_heads=10), 16) == \
        "40 attention heads are not divisible by tensor-parallel size 16"


# ----------------------------------------------------------------------- the engines' split


def test_engine_split_table():
    assert across_nodes.split("vllm", 2, 8) == across_nodes.Split(8, 2)
    assert across_nodes.split("sglang", 2, 8) == across_nodes.Split(16, 1)
    assert across_nodes.split("vllm", 1, 8) == across_nodes.Split(8, 1)


def test_405b_class_bf16_on_two_mi250_nodes_vllm_is_tp8_pp2():
    hw = in_group(hardware("MI250", 8))
    # It fits no single node (weights alone exceed one GCD's usable memory at TP 8) ...
    single = memory.check_fit(BIG, "bf16", hw.memory_per_gpu_bytes, 8, 4096, 1)
    assert not single.fits
    plan = select(settings(AIM_MODEL_ID="big", AIM_ENGINE="vllm"), hw, catalog_of([BIG]))
    # ... so it is planned across the group: TP = GPUs per node, PP = nodes.
    assert (plan.tensor_parallel, plan.pipeline_parallel, plan.data_parallel) == (8, 2, 1)
    assert (plan.nodes, plan.gpus_per_node, plan.gpus_used) == (2, 8, 16)
    assert plan.group == hw.group and plan.synthesized
    assert plan.config.args["--tensor-parallel-size"] == "8" and plan.config.args["--pipeline-parallel-size"] == "2"
    fit = memory.check_fit(BIG, "bf16", hw.memory_per_gpu_bytes, 8, plan.context, plan.batch, pp=2)
    assert fit.fits and fit.weights_gib == pytest.approx(BIG.weights_bytes / 16 / memory.GIB, abs=0.01)
    assert not plan.warnings        # one node is not enough: nothing to warn about
    text = "\n".join(plan.reasons)
    assert "deployed on purpose, so the plan uses all 2 nodes" in text and "TP 8 x PP 2 = 16 GPUs, 8 per node" in text
    assert plan.to_dict()["nodes"] == 2 and plan.to_dict()["group"]["leader_address"] == "10.0.0.1"


def test_sglang_takes_tensor_parallel_over_the_whole_group():
    hw = in_group(hardware("MI300X", 8))
    plan = select(settings(AIM_MODEL_ID="big", AIM_ENGINE="sglang"), hw, catalog_of([BIG]))
    assert (plan.tensor_parallel, plan.pipeline_parallel, plan.gpus_per_node, plan.gpus_used) == (16, 1, 8, 16)
    assert "--pipeline-parallel-size" not in plan.config.args
    assert plan.config.args["--tensor-parallel-size"] == "16"


def test_a_recipe_group_config_wins_over_the_engines_default():
    hw = in_group(hardware("MI300X", 8))
    written = group_recipe(BIG, "MI300X", "vllm", nodes=2, per_node=8, tp=16)     # vLLM TP over both nodes
    plan = select(settings(AIM_MODEL_ID="big"), hw, catalog_of([BIG], [written]))
    assert not plan.synthesized and plan.recipe.recipe_id == written.recipe_id
    assert (plan.tensor_parallel, plan.pipeline_parallel, plan.nodes) == (16, 1, 2)
    assert any("the engine's default: TP 8 x PP 2" in r for r in plan.reasons)


def test_group_uses_every_node_and_warns_when_fewer_would_do():
    hw = in_group(hardware("MI300X", 8))
    one_node = recipe(SMALL, "MI300X", gpus_list=(8,), engines=("vllm",))
    plan = select(settings(AIM_MODEL_ID="test8b"), hw, catalog_of([SMALL], [one_node]))
    assert plan.nodes == 2 and plan.gpus_used == 16
    assert any(r.recipe_id == one_node.recipe_id and "a one-node config; the group of 2 nodes (AIM_*) is used whole"
               in r.reason for r in plan.rejected)
    [warning] = plan.warnings
    assert warning.startswith("the model would fit on 1 node of this group")
    assert f"warning: {warning}" in plan.reasons and plan.to_dict()["warnings"] == [warning]


def test_group_config_for_another_node_count_is_rejected():
    hw = in_group(hardware("MI300X", 8))
    three = group_recipe(BIG, "MI300X", "vllm", nodes=3, per_node=8, tp=8, pp=3)
    plan = select(settings(AIM_MODEL_ID="big"), hw, catalog_of([BIG], [three]))
    assert plan.synthesized and plan.nodes == 2
    [why] = [r for r in plan.rejected if r.recipe_id == three.recipe_id and r.nodes == 3]
    assert why.reason == "needs a group of 3 nodes × 8 GPUs; this group has 2 nodes (AIM_*)"
    assert why.label == " [vllm 3x8 GPU]"


def test_illegal_group_splits_say_which_rule_failed():
    odd = model(params_b=14, layers=2, hidden=5120, heads=40, kv_heads=10, model_id="org/Odd-14B", slug="odd-14b",
                aliases=("odd",))
    hw = in_group(hardware("MI300X", 8))
    heads = group_recipe(odd, "MI300X", "sglang", nodes=2, per_node=8, tp=16)
    stages = replace(group_recipe(odd, "MI300X", "vllm", nodes=2, per_node=8, tp=2, pp=8),
                     recipe_id="odd-14b-mi300x-fp16", precision="fp16")
    plan = select(settings(AIM_MODEL_ID="odd"), hw, catalog_of([odd], [heads, stages]))
    reasons = {r.recipe_id: r.reason for r in plan.rejected if r.nodes == 2 and not r.recipe_id.endswith("synthesized")}
    assert reasons[heads.recipe_id] == "tensor parallel: 40 attention heads are not divisible by tensor-parallel size 16"
    assert reasons[stages.recipe_id] == \
        "pipeline parallel: 2 layers cannot fill 8 pipeline stages (at least one layer per stage)"


def test_fits_neither_one_node_nor_the_group_names_the_numbers():
    hw = in_group(hardware("MI250", 2))
    with pytest.raises(AimError) as raised:
        select(settings(AIM_MODEL_ID="big", AIM_ENGINE="vllm"), hw, catalog_of([BIG]))
    message = str(raised.value)
    s = across_nodes.split("vllm", 2, 2)
    need = memory.check_fit(BIG, "bf16", hw.memory_per_gpu_bytes, s.tp, 4096, 1, pp=s.pp)
    one = memory.check_fit(BIG, "bf16", hw.memory_per_gpu_bytes, 2, 4096, 1)
    assert "fits neither one node nor the group of 2 nodes × 2 MI250" in message
    assert f"on all 4 GPUs (vllm TP 2 x PP 2) needs {need.used_gib:.1f} GiB per GPU" in message
    assert f"{need.available_gib:.1f} GiB usable" in message
    assert f"on one node (TP 2) {one.used_gib:.1f} GiB per GPU" in message


# ------------------------------------------------------------------------ without a group


def test_without_a_group_nothing_changes_and_group_configs_are_rejected():
    hw = hardware("MI300X", 8)
    both = Recipe(recipe_id="test-8b-mi300x-bf16", model_id=SMALL.model_id, huggingface_id=SMALL.huggingface_id,
                  hardware="MI300X", precision="bf16",
                  configs=(*recipe(SMALL, "MI300X", gpus_list=(8,), engines=("vllm",)).configs,
                           *group_recipe(SMALL, "MI300X", "vllm", nodes=2, per_node=8, tp=8, pp=2).configs))
    plan = select(settings(AIM_MODEL_ID="test8b"), hw, catalog_of([SMALL], [both]))
    assert (plan.nodes, plan.pipeline_parallel, plan.gpus_per_node, plan.group) == (1, 1, None, None)
    assert plan.tensor_parallel == 8 and not plan.warnings
    assert "--pipeline-parallel-size" not in plan.config.args
    [why] = [r for r in plan.rejected if r.nodes == 2]
    assert why.reason == "needs a group of 2 nodes × 8 GPUs; this node is not in a group (AIM_NODE_COUNT, docs/multinode.md)"


def test_a_group_of_one_node_is_a_single_node():
    hw = in_group(hardware("MI300X", 8), Group(nodes=1, source="AIM_*"))
    plan = select(settings(AIM_MODEL_ID="test8b"), hw, catalog_of([SMALL], [recipe(SMALL, "MI300X")]))
    assert (plan.nodes, plan.group, plan.gpus_per_node) == (1, None, None)


# -------------------------------------------------------------- the deployment's TP x PP (KServe)


def kserve_group(tp: int | None, pp: int | None) -> Group:
    return Group(nodes=2, rank=0, leader_address="10.0.0.1", source="KServe", backend="ray",
                 requested_tensor_parallel=tp, requested_pipeline_parallel=pp)


def test_the_deployments_split_wins_when_it_covers_the_group():
    hw = in_group(hardware("MI300X", 8), kserve_group(16, 1))        # vLLM's default would be TP 8 x PP 2
    plan = select(settings(AIM_MODEL_ID="big", AIM_ENGINE="vllm"), hw, catalog_of([BIG]))
    assert (plan.tensor_parallel, plan.pipeline_parallel, plan.gpus_used) == (16, 1, 16)
    assert any("as the deployment asks (TENSOR_PARALLEL_SIZE=16, PIPELINE_PARALLEL_SIZE=1" in r for r in plan.reasons)
    written = group_recipe(BIG, "MI300X", "vllm", nodes=2, per_node=8, tp=8, pp=2)
    plan = select(settings(AIM_MODEL_ID="big", AIM_ENGINE="vllm"), hw, catalog_of([BIG], [written]))
    assert plan.synthesized and plan.tensor_parallel == 16
    [why] = [r for r in plan.rejected if r.recipe_id == written.recipe_id]
    assert why.reason == ("the deployment asks TP 16 (TENSOR_PARALLEL_SIZE, PIPELINE_PARALLEL_SIZE); "
                          "this config is TP 8 x PP 2")


def test_a_deployment_split_that_does_not_cover_the_group_is_a_warning():
    hw = in_group(hardware("MI300X", 8), kserve_group(1, 1))          # the runtime's defaults
    plan = select(settings(AIM_MODEL_ID="big", AIM_ENGINE="vllm"), hw, catalog_of([BIG]))
    assert (plan.tensor_parallel, plan.pipeline_parallel) == (8, 2)
    assert any("asks TENSOR_PARALLEL_SIZE=1 x PIPELINE_PARALLEL_SIZE=1 = 1 GPUs, but the group has 2 nodes x 8 GPUs"
               in w for w in plan.warnings)
