"""Build `Plan`s directly (no selection) for the engine adapter tests."""

from __future__ import annotations

from typing import Any, Mapping

from aim_engine.catalog.types import Attention, Model, Recipe, ServeConfig, Variant
from aim_engine.engines.inventory import InstalledEngine
from aim_engine.planner.plan import Plan

# The versions of the real engine environments the tests feed rendered argv to (Makefile): plans
# built here say these are installed, so argv is checked against exactly their flag lists.
INSTALLED = {"vllm": "0.32.0", "sglang": "0.5.23"}


def installed(engine: str, version: str | None = None) -> InstalledEngine:
    """An installed engine as the inventory reports one (paths are never read by the adapters)."""
    version = version or INSTALLED[engine]
    return InstalledEngine(engine, version, f"/opt/{engine}/bin/{engine}", None, engine, None)


def model(model_id: str = "Qwen/Qwen3-8B", variants: tuple[Variant, ...] = ()) -> Model:
    return Model(
        model_id=model_id, huggingface_id=model_id, slug=model_id.split("/")[-1].lower(),
        architecture="Qwen3ForCausalLM", parameters_total=8_000_000_000, parameters_active=8_000_000_000,
        layers=36, hidden_size=4096, attention=Attention("gqa", 32, 8, 128), max_position_embeddings=40960,
        vocab_size=151936, native_dtype="bfloat16", weights_bytes=16_000_000_000, license="apache-2.0",
        gated=False, trust_remote_code=False, variants=variants,
    )


def plan(
    args: Mapping[str, Any],
    *,
    engine: str = "vllm",
    gpus: int = 1,
    data_parallel: int = 1,
    hardware: str = "MI300X",
    env: Mapping[str, str] | None = None,
    target: str = "gpu",
    checkpoint: str | None = None,
    the_model: Model | None = None,
    recipe_id: str = "qwen3-8b-mi300x-bf16",
    context: int = 0,
    batch: int = 0,
    served_model_name: str | None = None,
    engine_version: str | None = None,
) -> Plan:
    m = the_model or model()
    config = ServeConfig(engine=engine, gpus=gpus, enabled=True, args=dict(args), env=dict(env or {}))
    recipe = Recipe(recipe_id=recipe_id, model_id=m.model_id, huggingface_id=checkpoint or m.huggingface_id,
                    hardware=hardware, precision="bf16", configs=(config,))
    return plan_for(m, recipe, config, data_parallel=data_parallel, target=target, context=context, batch=batch,
                    served_model_name=served_model_name, engine_version=engine_version)


def plan_for(m: Model, recipe: Recipe, config: ServeConfig, *, data_parallel: int = 1, target: str = "gpu",
             context: int = 0, batch: int = 0, served_model_name: str | None = None,
             engine_version: str | None = None) -> Plan:
    """A plan that runs `config` of `recipe` as written (the planner's values left to the recipe),
    with the engine installed at `engine_version` (default: the test environments' version)."""
    return Plan(
        model=m, recipe=recipe, config=config, engine=config.engine, tensor_parallel=config.gpus,
        data_parallel=data_parallel, gpus_used=0 if target == "cpu" else config.gpus * data_parallel,
        checkpoint=recipe.huggingface_id, served_model_name=served_model_name or m.model_id,
        precision=recipe.precision, context=context, batch=batch, target=target,
        engine_found=installed(config.engine, engine_version), engine_checked=True,
    )


def pairs(argv: list[str]) -> dict[str, str | None]:
    """flag -> value (None for a bare switch) of an argv's options."""
    out: dict[str, str | None] = {}
    for i, token in enumerate(argv):
        if token.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out[token] = None if nxt is None or nxt.startswith("--") else nxt
    return out
