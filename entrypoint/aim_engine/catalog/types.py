"""The catalog's data, typed: models (with quantized variants) and recipes.

These are plain frozen dataclasses built from schema-checked YAML by the catalog loader;
the planner, the selector and the engine adapters work only with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class Attention:
    kind: str                      # mha | gqa | mqa | mla
    heads: int
    kv_heads: int
    head_dim: int
    sliding_window: int | None = None
    sliding_window_layers: int = 0
    kv_lora_rank: int | None = None        # MLA
    qk_rope_head_dim: int | None = None    # MLA
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    q_lora_rank: int | None = None


@dataclass(frozen=True)
class Moe:
    experts: int
    experts_per_token: int
    shared_experts: int = 0


@dataclass(frozen=True)
class Variant:
    """A pre-quantized checkpoint of a model (e.g. an FP8-KV or AWQ int4 repo)."""

    huggingface_id: str
    precision: str
    weights_bytes: int
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    gated: bool | None = None
    description: str | None = None


@dataclass(frozen=True)
class Model:
    model_id: str
    huggingface_id: str
    slug: str
    architecture: str
    parameters_total: int
    parameters_active: int
    layers: int
    hidden_size: int
    attention: Attention
    max_position_embeddings: int
    vocab_size: int
    native_dtype: str
    weights_bytes: int
    license: str
    gated: bool
    trust_remote_code: bool
    aliases: tuple[str, ...] = ()
    moe: Moe | None = None
    intermediate_size: int | None = None
    multimodal: bool = False
    variants: tuple[Variant, ...] = ()
    description: str | None = None
    source: Path | None = None     # the YAML file it came from (None: synthesized)

    def names(self) -> tuple[str, ...]:
        """Every name a user may give in AIM_MODEL_ID for this model (case-insensitive match)."""
        return (self.model_id, self.huggingface_id, self.slug, *self.aliases,
                *(v.huggingface_id for v in self.variants))

    def checkpoint(self, huggingface_id: str) -> "Variant | None":
        """The variant with this id, or None when it is the original checkpoint."""
        return next((v for v in self.variants if v.huggingface_id == huggingface_id), None)


def int_arg(value: Any) -> int | None:
    """A recipe or AIM_ENGINE_ARGS value read as a whole number (`"8"`, `8`, `" 8 "`), or None
    when it is not one (a bool, a float, other text): the one reading of counts, sizes and
    lengths, shared by the validator's checks and the selector."""
    if isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class ServeConfig:
    """One `N_gpu` (one node) or `MxN_gpu` (M nodes × N GPUs each) entry of `vllm_serve` /
    `sglang_serve`. `gpus` is always one node's GPUs, so every single-node rule reads it as before."""

    engine: str                    # vllm | sglang
    gpus: int                      # GPUs per node
    enabled: bool
    args: Mapping[str, Any]        # canonical + engine-native flags, as written in the recipe
    env: Mapping[str, str] = field(default_factory=dict)
    nodes: int = 1                 # nodes of a group (the M of `MxN_gpu`); 1 for `N_gpu`

    @property
    def total_gpus(self) -> int:
        """Every GPU the config uses, over all its nodes (= TP × PP × DP of its args)."""
        return self.nodes * self.gpus

    @property
    def name(self) -> str:
        """The recipe key: `8_gpu`, or `2x8_gpu` for two nodes of 8."""
        return config_name(self.gpus, self.nodes)


def config_name(gpus: int, nodes: int = 1) -> str:
    """The recipe key of a config of `gpus` GPUs per node on `nodes` nodes."""
    return f"{gpus}_gpu" if nodes == 1 else f"{nodes}x{gpus}_gpu"


def config_shape(name: str) -> tuple[int, int]:
    """(nodes, GPUs per node) of a recipe key: "8_gpu" -> (1, 8), "2x8_gpu" -> (2, 8)."""
    count = name.rsplit("_", 1)[0]
    nodes, _, gpus = count.rpartition("x")
    return (int(nodes) if nodes else 1), int(gpus)


@dataclass(frozen=True)
class Recipe:
    recipe_id: str
    model_id: str
    huggingface_id: str
    hardware: str
    precision: str
    configs: tuple[ServeConfig, ...]
    description: str | None = None
    generated: bool = False
    synthesized: bool = False      # built at boot for a model outside the catalog
    source: Path | None = None

    def config(self, engine: str, gpus: int, nodes: int = 1) -> ServeConfig | None:
        return next((c for c in self.configs if c.engine == engine and c.gpus == gpus and c.nodes == nodes), None)

    def enabled_configs(self) -> tuple[ServeConfig, ...]:
        return tuple(c for c in self.configs if c.enabled)
