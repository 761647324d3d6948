"""Planning a group of CPU nodes (the two-node run here, docs/multinode.md): one vLLM rank per
node, tensor parallel across the nodes where the model's heads allow it (it runs eager), else
pipeline stages (the renderer then drops --enforce-eager), else a clear error with the numbers.
One CPU node is unchanged."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aim_engine.errors import AimError
from aim_engine.hardware.group import Group
from aim_engine.planner import memory
from aim_engine.planner.select import select

from tests.unit.selection_cases import catalog_of, hardware, model, settings


def tiny(heads: int, kv_heads: int, layers: int = 2):
    return model(params_b=0.01, layers=layers, hidden=64 * heads, heads=heads, kv_heads=kv_heads, max_pos=4096,
                 model_id="org/Tiny", slug="tiny", aliases=("tiny",))


def cpu_group(nodes: int, rank: int = 0):
    return replace(hardware(None), group=Group(nodes=nodes, rank=rank, leader_address="10.77.0.1", source="AIM_*"))


def test_two_cpu_nodes_split_the_demo_shape_by_tensor_parallel():
    demo = tiny(heads=2, kv_heads=1)      # scripts/make_demo_model.py: 2 heads, 1 KV head, 2 layers
    plan = select(settings(AIM_MODEL_ID="tiny"), cpu_group(2), catalog_of([demo]))
    assert (plan.target, plan.nodes, plan.tensor_parallel, plan.pipeline_parallel) == ("cpu", 2, 2, 1)
    assert plan.group.nodes == 2 and plan.gpus_used == 0
    assert plan.config.args["--tensor-parallel-size"] == "2"
    assert "--pipeline-parallel-size" not in plan.config.args
    assert plan.config.args["--enforce-eager"] is True
    assert any("a group of 2 CPU nodes" in r and "tensor parallel 2" in r for r in plan.reasons), plan.reasons
    assert plan.to_dict()["nodes"] == 2


def test_heads_that_tensor_parallel_cannot_split_get_pipeline_stages():
    odd = tiny(heads=3, kv_heads=1, layers=4)
    assert memory.tp_legal(odd, 2) is not None and memory.pp_legal(odd, 2) is None
    plan = select(settings(AIM_MODEL_ID="tiny"), cpu_group(2), catalog_of([odd]))
    assert (plan.tensor_parallel, plan.pipeline_parallel) == (1, 2)
    assert plan.config.args["--tensor-parallel-size"] == "1" and plan.config.args["--pipeline-parallel-size"] == "2"
    assert any("pipeline parallel 2" in r and memory.tp_legal(odd, 2) in r for r in plan.reasons), plan.reasons


def test_a_model_neither_split_fits_is_an_error_naming_both_rules():
    small = tiny(heads=3, kv_heads=1, layers=2)
    with pytest.raises(AimError) as exc:
        select(settings(AIM_MODEL_ID="tiny"), cpu_group(3 + 1), catalog_of([small]))
    message = str(exc.value)
    assert "4 CPU nodes" in message
    assert memory.tp_legal(small, 4) in message and memory.pp_legal(small, 4) in message


def test_every_rank_gets_the_same_plan_and_one_node_is_unchanged():
    demo = tiny(heads=2, kv_heads=1)
    leader = select(settings(AIM_MODEL_ID="tiny"), cpu_group(2, 0), catalog_of([demo]))
    worker = select(settings(AIM_MODEL_ID="tiny"), cpu_group(2, 1), catalog_of([demo]))
    assert dict(leader.config.args) == dict(worker.config.args)
    single = select(settings(AIM_MODEL_ID="tiny"), hardware(None), catalog_of([demo]))
    assert (single.nodes, single.tensor_parallel, single.pipeline_parallel, single.group) == (1, 1, 1, None)
    assert single.config.args["--tensor-parallel-size"] == "1"
