"""Catalog benchmarks (issue 4): generating the whole recipe catalog, and validating it.

1. `build_documents` + `render` in-process over the shipped models (every model × MI300X,
   MI325X, MI355X, MI250 × precision × GPU count, each config sized by the memory planner).
2. `aim-engine recipes generate --check` as a whole process (load models, generate, compare
   with the committed files).
3. Validating the shipped catalog in-process (schema + every check, including the planner's
   memory-fit and TP-legality checks on every config).
The issue asks for counts and times; no target is set, so none is claimed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from result import Result

RUNS = 3


def _best(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(RUNS):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


def run() -> list[Result]:
    from aim_engine.catalog import Catalog, paths
    from aim_engine.catalog.validator import Inputs, validate
    from aim_engine.planner import generate

    models = list(Catalog.from_dirs([paths.shipped_models_dir()], []).models)
    table = generate._gpu_table()
    overrides = generate.load_overrides(paths.shipped_recipes_dir() / "overrides")
    layout = generate.load_template(paths.shipped_recipes_dir() / "templates" / "recipe.yaml")

    def build():
        docs = generate.build_documents(models, table, overrides, layout)
        return {rid: generate.render(g) for rid, g in docs.items()}

    gen_s, texts = _best(build)
    configs = sum(t.count("enabled: true") for t in texts.values())
    rows = [Result("generate the recipe catalog (in-process)", f"{gen_s * 1000:.0f} ms", "report",
                   f"{len(models)} models -> {len(texts)} recipes, {configs} sized configs; best of {RUNS}")]

    cmd = [str(Path(sys.executable).parent / "aim-engine"), "recipes", "generate", "--check"]
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - started)
    state = "up to date" if done.returncode == 0 else f"exit {done.returncode}: out of date"
    rows.append(Result("`aim-engine recipes generate --check` (whole process)", f"{min(times):.2f} s", "report",
                       f"committed catalog {state}; median {statistics.median(times):.2f} s"))

    inputs = Inputs(recipe_dirs=[paths.shipped_recipes_dir()], model_dirs=[paths.shipped_models_dir()])
    val_s, report = _best(lambda: validate(inputs))
    rows.append(Result("validate the shipped catalog (in-process, incl. memory fit)", f"{val_s * 1000:.0f} ms",
                       "report", f"{report.recipes} recipes, {report.models} models, {len(report.problems)} problems; "
                       f"best of {RUNS}"))
    return rows
