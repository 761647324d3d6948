"""Engine adapters: render a `Plan` into the real command line and environment of vLLM or SGLang.

`render(plan, settings, model_path, cache_warm, rank=None) -> Launch` is the one entry point boot
and `plan` use (`rank`: which node of a multi-node group; None: this node's own); `adapter(name)` gives one engine's adapter. Imports stay light (no engine, no YAML
until a render): the agent never imports vLLM or SGLang.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from aim_engine.engines.flags import ENGINES
from aim_engine.errors import AimError

if TYPE_CHECKING:
    from aim_engine.engines.base import Adapter, Launch


def adapter(name: str) -> "Adapter":
    """The adapter of engine `name` (`vllm` or `sglang`)."""
    if name not in ENGINES:
        raise AimError(f"unknown engine {name!r}", hint=f"one of: {', '.join(ENGINES)}")
    return import_module(f"aim_engine.engines.{name}").ADAPTER


def render(plan: Any, settings: Any, model_path: str, cache_warm: bool, rank: int | None = None,
           **kwargs: Any) -> "Launch":
    """The engine's argv and environment for `plan`, with the model loaded from `model_path`
    (a local snapshot directory or a Hugging Face id). `AIM_ENGINE_ARGS` is merged last.
    `rank`: the node of `plan.group` to render for (None: `plan.group.rank`, this node)."""
    return adapter(plan.engine).render(plan, settings, model_path, cache_warm, rank, **kwargs)


__all__ = ["ENGINES", "adapter", "render"]
