"""The selection result: what to run, where, and why.

`select()` returns one `Plan`; the engine adapters render it into argv/env, the cache warms
`plan.checkpoint`, `/status` and `aim-engine plan --json` show `plan.to_dict()`. Everything a
human needs to trust the choice is in it: the reasons for the winner and, for every candidate
that lost, why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aim_engine.catalog.types import Model, Recipe, ServeConfig


@dataclass(frozen=True)
class Rejection:
    """One candidate (recipe x engine x GPU count) that was not chosen, and why."""

    recipe_id: str
    engine: str | None      # None: the whole recipe was rejected (e.g. wrong hardware)
    gpus: int | None        # GPUs per node of the config (the N of N_gpu / MxN_gpu)
    reason: str
    nodes: int = 1          # the M of an MxN_gpu config (a group of nodes)

    @property
    def label(self) -> str:
        """"[vllm 8 GPU]" or "[vllm 2x8 GPU]" for texts; "" for a whole recipe."""
        if not self.engine:
            return ""
        count = f"{self.nodes}x{self.gpus}" if self.nodes > 1 else f"{self.gpus}"
        return f" [{self.engine} {count} GPU]"

    def to_dict(self) -> dict[str, Any]:
        return {"recipe_id": self.recipe_id, "engine": self.engine, "gpus": self.gpus, "nodes": self.nodes,
                "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """The chosen recipe and serve config, sized for the detected hardware.

    - `config` is the recipe's `N_gpu` entry that was chosen (N == `tensor_parallel`).
    - `data_parallel` replicas of that config run side by side (throughput metric), so
      `gpus_used == tensor_parallel * data_parallel` (0 on a CPU plan).
    - `checkpoint` is what the engine loads: a Hugging Face repo id (warmed into the cache) or a
      local directory (used as is, never downloaded).
    - `served_model_name` is the name clients send in requests.
    - `fallback_hardware` names the GPU the recipe was written for when it is not the detected
      one (same gfx family, at least as much memory); None for an exact match.
    - `precision`, `context` and `batch` are the effective values (the recipe's, or the reduced
      context when the full one does not fit).
    - `visible_devices` is what the engine must see: the HIP_VISIBLE_DEVICES value (the engine
      adapters set CUDA_VISIBLE_DEVICES to the same, as vLLM demands) naming exactly the
      `gpus_used` GPUs, as indices into the ROCR-visible list; None when the engine may see
      every visible GPU (it uses them all, or there is no GPU).
    """

    model: Model
    recipe: Recipe
    config: ServeConfig
    engine: str                 # "vllm" | "sglang"
    tensor_parallel: int
    data_parallel: int
    gpus_used: int
    checkpoint: str
    served_model_name: str
    precision: str
    context: int
    batch: int
    reasons: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    synthesized: bool = False
    fallback_hardware: str | None = None
    target: str = "gpu"         # "gpu" | "cpu" (vLLM's CPU backend)
    visible_devices: str | None = None  # HIP_VISIBLE_DEVICES for the engine ("0,2"), None = all
    engine_found: Any = None            # engines.inventory.InstalledEngine that will run it, if installed
    engine_checked: bool = False        # True when selection knew what is installed (engine_found is a fact)
    # Multi-node (docs/multinode.md). `tensor_parallel`, `pipeline_parallel` and `data_parallel`
    # are group-wide; `gpus_used` counts every node's GPUs; `gpus_per_node` is one node's share.
    # One node: nodes == 1, pipeline_parallel == 1, group is hardware.group (SINGLE).
    nodes: int = 1
    pipeline_parallel: int = 1
    gpus_per_node: int | None = None    # None: single node (== gpus_used)
    group: Any = None                   # hardware.group.Group this plan was made for (None: single node)
    warnings: tuple[str, ...] = ()      # worth an operator's attention (e.g. the model fits fewer nodes)

    @property
    def engine_version(self) -> str | None:
        """The installed version of the chosen engine (None: not installed here, or unknown)."""
        return getattr(self.engine_found, "version", None)

    @property
    def is_local_checkpoint(self) -> bool:
        """True when `checkpoint` is a directory on disk (nothing to download)."""
        return self.checkpoint.startswith(("/", "./", "../"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view for `plan --json` and `/status` (no secrets live in a plan)."""
        return {
            "model_id": self.model.model_id,
            "recipe_id": self.recipe.recipe_id,
            "recipe_hardware": self.recipe.hardware,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "engine_installed": (self.engine_found is not None) if self.engine_checked else None,
            "engine_install": self.engine_found.to_dict() if self.engine_found is not None else None,
            "target": self.target,
            "tensor_parallel": self.tensor_parallel,
            "data_parallel": self.data_parallel,
            "pipeline_parallel": self.pipeline_parallel,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node if self.gpus_per_node is not None else self.gpus_used,
            "group": self.group.to_dict() if self.group is not None else None,
            "gpus_used": self.gpus_used,
            "checkpoint": self.checkpoint,
            "served_model_name": self.served_model_name,
            "precision": self.precision,
            "context": self.context,
            "batch": self.batch,
            "synthesized": self.synthesized,
            "fallback_hardware": self.fallback_hardware,
            "visible_devices": self.visible_devices,
            "args": dict(self.config.args),
            "env": dict(self.config.env),
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "rejected": [r.to_dict() for r in self.rejected],
        }
