"""Selection benchmarks (issue 5).

1. `select()` in-process over a 5,000-recipe catalog: the shipped models, and recipes for every
   (model, GPU in the spec table, precision, tuning copy) until there are 5,000, each with vLLM
   and SGLang configs for 1/2/4/8 GPUs. The chosen model has ~200 recipes, ~50 of them
   compatible with the 8x MI300X being planned for: every fit check and rejection is exercised
   (each tuning copy has its own context, so no two recipes share a fit check).
   Target: under 50 ms.
2. `aim-engine plan` as a whole process (detect + catalog load + select + render) against
   `python -c pass`. Target: under 6x.
3. Planning with a topology (issue 14): `select()` in-process on the shipped catalog for a group of
   two 8-GPU nodes next to the same model on one node: DeepSeek-R1 on MI300X (SGLang, the group
   plan from the catalog's 2x8_gpu config, with the "fits on fewer nodes" check) and
   Llama-3.1-405B on MI250 (vLLM, TP 8 x PP 2; on one node it is an error, timed as such).
   Target: no more than single-node planning (ratio of medians within 1.1, the timer's noise).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from result import Result

RECIPES = 5000
PRECISIONS = ("bf16", "fp8", "int4")
GPU_COUNTS = (1, 2, 4, 8)


def _catalog():
    from aim_engine.catalog import Catalog
    from aim_engine.catalog.types import Recipe, ServeConfig
    from aim_engine.hardware import gpus

    shipped = Catalog.load(_settings({}))
    models = shipped.models
    recipes: list[Recipe] = []
    copy = 0
    while len(recipes) < RECIPES:
        for model in models:
            for spec in gpus.all_specs():
                for precision in PRECISIONS:
                    if len(recipes) >= RECIPES:
                        break
                    configs = tuple(
                        ServeConfig(engine=engine, gpus=n, enabled=True, args={
                            "--model": model.huggingface_id, "--tensor-parallel-size": str(n),
                            "--max-batch-size": str(16 * n), "--max-context-len": str(8192 * n + 256 * copy),
                            "--gpu-memory-utilization": "0.9"})
                        for engine in ("vllm", "sglang") for n in GPU_COUNTS)
                    recipes.append(Recipe(
                        recipe_id=f"{model.slug}-{spec.name.lower()}-{precision}-v{copy}", model_id=model.model_id,
                        huggingface_id=model.huggingface_id, hardware=spec.name, precision=precision,
                        configs=configs))
        copy += 1
    return Catalog(models=models, recipes=tuple(recipes))


def _settings(env: dict[str, str]):
    from aim_engine.settings import Settings

    return Settings.from_env(env)


def bench_select() -> Result:
    from aim_engine.hardware.types import Cpu, Device, Hardware
    from aim_engine.planner.select import select

    catalog = _catalog()
    model = next(m for m in catalog.models if "70b" in m.slug.lower())
    n_model = len(catalog.recipes_for(model))
    hardware = Hardware(source="override", cpu=Cpu("bench", 2, 64 << 30), devices=tuple(
        Device(index=i, model="MI300X", gfx="gfx942", memory_bytes=192 << 30) for i in range(8)))
    settings = _settings({"AIM_MODEL_ID": model.model_id})
    select(settings, hardware, catalog)          # warm imports and lazy tables
    times = []
    for _ in range(15):
        start = time.perf_counter()
        plan = select(settings, hardware, catalog)
        times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1000
    return Result("selection over a 5,000-recipe catalog (in-process)", f"{ms:.1f} ms", "< 50 ms",
                  f"median of 15; {len(catalog.recipes)} recipes, {n_model} for {model.slug}, "
                  f"{len(plan.rejected)} rejected, chose {plan.recipe.recipe_id} TP {plan.tensor_parallel}",
                  met=ms < 50)


def _median_run(argv: list[str], env: dict[str, str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed: {proc.stderr.strip()[-500:]}")
    return statistics.median(times)


def _compile_package() -> None:
    """Write the package's bytecode first, as `pip install` does for the image. From a checkout
    under PYTHONDONTWRITEBYTECODE (set in some shells and CI) every run would otherwise compile
    every module from source (~40 ms), a cost no installed agent pays."""
    import compileall

    import aim_engine

    compileall.compile_dir(str(Path(aim_engine.__file__).parent), quiet=2)


def bench_plan_process() -> Result:
    script = Path(sys.executable).with_name("aim-engine")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "aim_engine"]
    _compile_package()
    with tempfile.TemporaryDirectory() as sysfs:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "HF_"))}
        env.update(AIM_MODEL_ID="meta-llama/Llama-3.1-8B-Instruct", AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="8",
                   AIM_SYSFS_ROOT=sysfs, AIM_CACHE_PATH=str(Path(sysfs) / "cache"), AIM_LOG_LEVEL="warning")
        base = _median_run([sys.executable, "-c", "pass"], env)
        plan = _median_run([*command, "plan"], env)
    ratio = plan / base
    return Result("`aim-engine plan` whole process vs `python -c pass`", f"{ratio:.1f}×", "< 6×",
                  f"median of 7: plan {plan * 1000:.0f} ms, python {base * 1000:.0f} ms", met=ratio < 6)


def _median_select(settings, hardware, catalog, runs: int = 200) -> tuple[float, object]:
    from aim_engine.errors import AimError
    from aim_engine.planner.select import select

    def once():
        try:
            return select(settings, hardware, catalog)
        except AimError as exc:
            return exc

    once()                                       # warm imports, lazy tables, parsed recipes
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = once()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_group_planning() -> list[Result]:
    from dataclasses import replace

    from aim_engine.catalog import Catalog
    from aim_engine.hardware.group import Group
    from aim_engine.hardware.types import Cpu, Device, Hardware

    catalog = Catalog.load(_settings({}))
    group = Group(nodes=2, rank=0, leader_address="10.0.0.1", source="AIM_*")
    results = []
    for model, gpu, gib, engine in (("deepseek-r1", "MI300X", 192, "sglang"),
                                    ("llama-3.1-405b-instruct", "MI250", 64, "vllm")):
        gfx = {"MI300X": "gfx942", "MI250": "gfx90a"}[gpu]
        one = Hardware(source="override", cpu=Cpu("bench", 2, 64 << 30), devices=tuple(
            Device(index=i, model=gpu, gfx=gfx, memory_bytes=gib << 30) for i in range(8)))
        settings = _settings({"AIM_MODEL_ID": model, "AIM_ENGINE": engine})
        single, single_plan = _median_select(settings, one, catalog)
        grouped, plan = _median_select(settings, replace(one, group=group), catalog)
        ratio = grouped / single
        single_what = (f"TP {single_plan.tensor_parallel}" if hasattr(single_plan, "tensor_parallel")
                       else "error: fits no node")
        results.append(Result(
            f"planning with a topology: {model} on 2 x 8 {gpu} ({engine}) vs one node", f"{ratio:.2f}×", "≤ 1.1×",
            f"median of 200 in-process: group {grouped * 1000:.2f} ms (TP {plan.tensor_parallel} x PP "
            f"{plan.pipeline_parallel}, {plan.recipe.recipe_id}), one node {single * 1000:.2f} ms ({single_what})",
            met=ratio <= 1.1))
    return results


def run() -> list[Result]:
    return [bench_select(), bench_plan_process(), *bench_group_planning()]
