"""Plans of a multi-node group, built by hand as the planner makes them (TEAM.md contract:
`nodes`, group-wide `tensor_parallel`/`pipeline_parallel`, `gpus_per_node`, `group`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from aim_engine.hardware.group import Group
from aim_engine.planner.plan import Plan
from tests.support.engine_plans import plan

LEADER = "10.0.0.1"


def group_plan(engine: str = "vllm", *, nodes: int = 2, rank: int = 0, tp: int = 8, pp: int = 2,
               source: str = "AIM_*", leader: str | None = LEADER, target: str = "gpu",
               node_address: str | None = "10.0.0.9", interface: str | None = "eth1",
               args: dict[str, Any] | None = None, **kw: Any) -> Plan:
    """`engine` split over `nodes` nodes: TP `tp` x PP `pp` group-wide, seen from rank `rank`."""
    base = plan({"--dtype": "bfloat16", **(args or {})}, engine=engine, gpus=tp, target=target,
                hardware="CPU" if target == "cpu" else "MI300X", **kw)
    group = Group(nodes=nodes, rank=rank, leader_address=leader, source=source, node_address=node_address,
                  interface=interface)
    per_node = None if target == "cpu" else tp * pp // nodes
    return dataclasses.replace(base, nodes=nodes, pipeline_parallel=pp, gpus_per_node=per_node, group=group,
                               gpus_used=0 if target == "cpu" else tp * pp)
