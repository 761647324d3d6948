"""Planning over a group of nodes: how each engine splits a model over `nodes` × GPUs per node,
whether fewer nodes would do, and the message when nothing fits (docs/selection.md, "A group of
nodes"; docs/multinode.md, "Planning").

Pure functions over the memory planner (`memory.check_fit`, `memory.parallel_legal`): no second
copy of its arithmetic. The group itself is `hardware.group` (hardware/group.py); every node is
assumed to have the GPUs this node has (a group runs one image and one plan on identical nodes).

The engine's split, when no recipe config says otherwise (`SPLITS`):
- vLLM: tensor parallel within a node, pipeline parallel across nodes (TP = GPUs per node,
  PP = nodes): the all-reduce of every layer stays on the node's fast GPU links and only the
  activations between stages cross the network; vLLM's distributed-serving guide recommends it.
- SGLang: tensor parallel over the whole group (`--tp` counts every GPU of every node; each node
  runs `--tp <total> --nnodes N --node-rank R`): SGLang's multi-node deployments (DeepSeek-V3/R1
  on two 8-GPU nodes: `--tp 16 --nnodes 2`) shard every layer over all GPUs.
A recipe's `MxN_gpu` config writes its own TP and PP, which win.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aim_engine.planner import memory

if TYPE_CHECKING:
    from aim_engine.catalog.types import Model
    from aim_engine.hardware.types import Hardware


@dataclass(frozen=True)
class Split:
    """Group-wide tensor- and pipeline-parallel sizes (TP × PP = every GPU the model uses)."""

    tp: int
    pp: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    def describe(self) -> str:
        return f"TP {self.tp}" + (f" x PP {self.pp}" if self.pp > 1 else "")


# engine -> (what crosses nodes, why): the data behind `split`.
SPLITS: dict[str, tuple[str, str]] = {
    "vllm": ("pipeline", "vLLM: tensor parallel within each node, pipeline parallel across nodes (TP = GPUs per "
                         "node, PP = nodes; only activations between stages cross the network)"),
    "sglang": ("tensor", "SGLang: tensor parallel over the whole group (its --tp counts every GPU of every node)"),
}


def split(engine: str, nodes: int, per_node: int) -> Split:
    """The engine's default split of `nodes` × `per_node` GPUs (see the module docstring)."""
    across = SPLITS.get(engine, SPLITS["vllm"])[0]
    if nodes <= 1:
        return Split(per_node, 1)
    return Split(per_node, nodes) if across == "pipeline" else Split(per_node * nodes, 1)


def asked(hardware: "Hardware") -> Split | None:
    """The split the deployment asks for (KServe's TENSOR_PARALLEL_SIZE × PIPELINE_PARALLEL_SIZE,
    `Group.requested_*`), when it covers exactly the group's GPUs (nodes × this node's); None
    when nothing is asked or the ask does not match the group (then `ask_mismatch` says so)."""
    group = hardware.group
    tp = getattr(group, "requested_tensor_parallel", None)
    pp = getattr(group, "requested_pipeline_parallel", None)
    if tp is None and pp is None:
        return None
    split = Split(tp or 1, pp or 1)
    return split if split.gpus == group.nodes * hardware.gpu_count else None


def ask_mismatch(hardware: "Hardware") -> str | None:
    """Why the deployment's TP × PP was not used (it does not cover the group's GPUs), or None."""
    group = hardware.group
    tp = getattr(group, "requested_tensor_parallel", None)
    pp = getattr(group, "requested_pipeline_parallel", None)
    if (tp is None and pp is None) or asked(hardware) is not None:
        return None
    return (f"the deployment asks TENSOR_PARALLEL_SIZE={tp or 1} x PIPELINE_PARALLEL_SIZE={pp or 1} = "
            f"{(tp or 1) * (pp or 1)} GPUs, but the group has {group.nodes} nodes x {hardware.gpu_count} GPUs = "
            f"{group.nodes * hardware.gpu_count}: planned with the engine's own split instead")


def why_split(engine: str) -> str:
    return SPLITS.get(engine, SPLITS["vllm"])[1]


def describe_group(hardware: "Hardware") -> str:
    """"2 nodes × 8 MI250 (64 GiB each; group from AIM_*, this node rank 0 = leader)"."""
    group = hardware.group
    return (f"{group.nodes} nodes × {hardware.gpu_count} {hardware.gpu_model} "
            f"({hardware.memory_per_gpu_bytes / memory.GIB:.0f} GiB each; group from {group.source}, "
            f"this node rank {group.rank} = {group.role})")


@dataclass(frozen=True)
class Fewer:
    """The same context and batch on fewer nodes of the group: how many, the split, the fit."""

    nodes: int
    split: Split
    fit: memory.Fit


def fewer_nodes(model: "Model", precision: str, memory_bytes: int, engine: str, per_node: int, nodes: int,
                context: int, batch: int, kv_cache_dtype: str | None, utilization: float,
                checkpoint: str | None = None) -> Fewer | None:
    """The fewest nodes (< `nodes`) of `per_node` GPUs on which `batch` × `context` would fit with
    the engine's split, or None when the whole group is needed."""
    for n in range(1, nodes):
        s = split(engine, n, per_node)
        if memory.parallel_legal(model, s.tp, s.pp) is not None:
            continue
        try:
            if not memory.fits(model, precision, memory_bytes, s.tp, context, batch, kv_cache_dtype, utilization,
                               checkpoint=checkpoint, pp=s.pp):
                continue
            fit = memory.check_fit(model, precision, memory_bytes, s.tp, context, batch, kv_cache_dtype,
                                   utilization, checkpoint=checkpoint, pp=s.pp)
        except ValueError:
            return None
        return Fewer(n, s, fit)
    return None


def fewer_warning(fewer: Fewer, nodes: int, context: int, batch: int, source: str) -> str:
    node_word = "node" if fewer.nodes == 1 else "nodes"
    return (f"the model would fit on {fewer.nodes} {node_word} of this group: {batch} x {context} tokens at "
            f"{fewer.split.describe()} need {fewer.fit.used_gib:.1f} of {fewer.fit.available_gib:.1f} GiB usable per "
            f"GPU (margin {fewer.fit.margin_gib:+.1f} GiB); the plan uses all {nodes} nodes because the group was "
            f"deployed on purpose ({source}); deploy {fewer.nodes} {node_word} to free the others")


# ------------------------------------------------------------------------ nothing fits


def _smallest_need(model: "Model", precisions: list[tuple[str, str | None]], memory_bytes: int, engine: str,
                   nodes: int, per_node: int, utilization: float) -> tuple[str, Split, memory.Fit] | None:
    """The least per-GPU need (one short sequence) over `precisions` at the engine's split of the
    group's GPUs: the best case a plan could have had."""
    best = None
    for size in sorted({n for n in (1, 2, 4, 8, per_node) if n <= per_node}, reverse=True):
        s = split(engine, nodes, size)
        if memory.parallel_legal(model, s.tp, s.pp) is not None:
            continue
        for precision, checkpoint in precisions:
            try:
                fit = memory.check_fit(model, precision, memory_bytes, s.tp, min(4096, model.max_position_embeddings),
                                       1, None, utilization, checkpoint=checkpoint, pp=s.pp)
            except ValueError:
                continue
            if best is None or fit.used_gib < best[2].used_gib:
                best = (precision, s, fit)
        if best is not None:
            return best
    return best


def nothing_fits(model: "Model", hardware: "Hardware", precisions: list[tuple[str, str | None]],
                 engine: str) -> str | None:
    """"fits neither one node nor the group", with the numbers (per-GPU need vs usable, at the
    split of the group and of one node), or None when it cannot be computed."""
    from aim_engine.engines.recipe_args import default_utilization

    nodes, per_node, mem = hardware.group.nodes, hardware.gpu_count, hardware.memory_per_gpu_bytes
    utilization = default_utilization(engine)
    group = _smallest_need(model, precisions, mem, engine, nodes, per_node, utilization)
    single = _smallest_need(model, precisions, mem, engine, 1, per_node, utilization)
    if group is None:
        return None
    precision, s, fit = group
    context = min(4096, model.max_position_embeddings)
    text = (f"{model.model_id} fits neither one node nor the group of {nodes} nodes × {per_node} "
            f"{hardware.gpu_model} ({mem / memory.GIB:.0f} GiB each): even one sequence of {context} tokens at "
            f"{precision} on all {s.gpus} GPUs ({engine} {s.describe()}) needs {fit.used_gib:.1f} GiB per GPU "
            f"(weights {fit.weights_gib:.1f} + KV {fit.kv_gib:.1f} + overhead {fit.overhead_gib:.1f}), "
            f"{fit.available_gib:.1f} GiB usable")
    if single is not None:
        one = single[2]
        text += f"; on one node ({single[1].describe()}) {one.used_gib:.1f} GiB per GPU"
    return text
