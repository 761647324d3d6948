"""Builders for selection tests: real Hardware/Model/Recipe objects, independent of the shipped
catalog's contents (so the tests pin the rules, not today's YAML)."""

from __future__ import annotations

from typing import Any, Iterable

from aim_engine.catalog import Catalog
from aim_engine.catalog.types import Attention, Model, Recipe, ServeConfig, Variant
from aim_engine.hardware import gpus
from aim_engine.hardware.types import Cpu, Device, Hardware
from tests.support.sysfs_tree import MEMORY as REPORTED

GIB = 1024**3
CPU = Cpu(model="Test CPU", cores=2, memory_bytes=8 * GIB)


def hardware(name: str | None, count: int = 1, memory_gib: float | None = None, gfx: str | None = None) -> Hardware:
    """`count` devices of GPU `name` with the memory its driver reports (`sysfs_tree.MEMORY`: an
    MI355X reports 287.98 GiB, not the nominal 288), unless `memory_gib` is given; None -> no GPU
    (CPU). Selection is never tested on the spec table's nominal figures."""
    if name is None:
        return Hardware(source="none", devices=(), cpu=CPU)
    spec = gpus.find(name)
    if memory_gib is None and name not in REPORTED:
        raise KeyError(f"no driver-reported memory for {name} in tests/support/sysfs_tree.MEMORY: give memory_gib")
    mem = int(memory_gib * GIB) if memory_gib is not None else REPORTED[name]
    devices = tuple(Device(index=i, model=spec.name if spec else name, gfx=gfx or spec.gfx, memory_bytes=mem,
                           known=spec is not None) for i in range(count))
    return Hardware(source="override", devices=devices, cpu=CPU)


def model(params_b: float = 8, layers: int = 32, hidden: int = 4096, heads: int = 32, kv_heads: int = 8,
          max_pos: int = 131072, variants: Iterable[Variant] = (), model_id: str = "org/Test-8B",
          slug: str = "test-8b", aliases: tuple[str, ...] = ("test8b",)) -> Model:
    params = int(params_b * 1e9)
    return Model(
        model_id=model_id, huggingface_id=model_id, slug=slug, architecture="LlamaForCausalLM",
        parameters_total=params, parameters_active=params, layers=layers, hidden_size=hidden,
        attention=Attention(kind="gqa", heads=heads, kv_heads=kv_heads, head_dim=hidden // heads),
        max_position_embeddings=max_pos, vocab_size=128256, native_dtype="bf16", weights_bytes=params * 2,
        license="test", gated=False, trust_remote_code=False, aliases=aliases, variants=tuple(variants),
    )


def recipe(m: Model, hw: str, precision: str = "bf16", gpus_list: Iterable[int] = (1, 2, 4, 8),
           engines: Iterable[str] = ("vllm", "sglang"), context: int = 8192, batch: int = 64,
           checkpoint: str | None = None, enabled: bool = True) -> Recipe:
    ckpt = checkpoint or m.huggingface_id
    dtype = {"bf16": "bfloat16", "fp16": "float16", "fp8": "float8"}.get(precision, "auto")
    configs = tuple(
        ServeConfig(engine=e, gpus=n, enabled=enabled, args={
            "--model": ckpt, "--dtype": dtype, "--tensor-parallel-size": str(n),
            "--max-batch-size": str(batch), "--max-context-len": str(context), "--gpu-memory-utilization": "0.9"})
        for e in engines for n in gpus_list)
    return Recipe(recipe_id=f"{m.slug}-{hw.lower()}-{precision}", model_id=m.model_id, huggingface_id=ckpt,
                  hardware=hw, precision=precision, configs=configs)


def catalog_of(models: Iterable[Model], recipes: Iterable[Recipe] = ()) -> Catalog:
    """The real Catalog over hand-built models and recipes (no YAML involved)."""
    return Catalog(models=tuple(models), recipes=tuple(recipes))


def settings(**values: Any):
    from aim_engine.settings import Settings

    env = {k: str(v) for k, v in values.items()}
    return Settings.from_env(env)
