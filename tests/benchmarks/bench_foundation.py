"""Foundation benchmarks: CLI start-up cost and validator throughput.

- `aim-engine --help` whole-process time against `python -c pass` (target < 3x): every
  subcommand module is imported to build the parser, so heavy imports must stay lazy.
- validating 1,000 generated recipes (target < 2 s on the 2-core machine): a real
  `aim-engine validate --recipes-dir` subprocess over 1,000 distinct, valid recipe files
  derived from a shipped recipe (all checks, including extension checks, run).
"""

from __future__ import annotations

import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from result import Result

REPO = Path(__file__).resolve().parent.parent.parent
PY = sys.executable
BASE = REPO / "recipes" / "qwen3-32b-mi250-bf16.yaml"


def _time(argv: list[str], runs: int) -> float:
    """Median wall time of `runs` whole-process runs (after one warm-up run)."""
    subprocess.run(argv, capture_output=True, check=False)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True)
        samples.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return statistics.median(samples)


def bench_help() -> Result:
    base = _time([PY, "-c", "pass"], 7)
    cli = _time([PY, "-m", "aim_engine", "--help"], 7)
    ratio = cli / base
    return Result("`aim-engine --help` vs `python -c pass`", f"{ratio:.1f}×", "< 3×",
                  f"{cli * 1000:.0f} ms vs {base * 1000:.0f} ms (median of 7)", met=ratio < 3)


COMBOS = [(hw, precision) for hw in ("MI210", "MI250", "MI250X", "MI300X", "MI325X") for precision in ("bf16", "fp16")]


def _write_recipes(directory: Path, count: int) -> int:
    """`count` valid, distinct recipes shaped like a real catalog: one model file per
    len(COMBOS) recipes, each recipe a (GPU, precision) pair. Returns the number of models."""
    base = yaml.safe_load(BASE.read_text())
    model = yaml.safe_load((REPO / "models" / "qwen3-32b.yaml").read_text())
    recipes, models = directory / "recipes", directory / "models"
    recipes.mkdir()
    models.mkdir()
    n_models = -(-count // len(COMBOS))
    for i in range(n_models):
        slug = f"bench-{i:04d}-32b"
        m = copy.deepcopy(model)
        m.update(model_id=f"bench/Bench-{i:04d}-32B", huggingface_id=f"bench/Bench-{i:04d}-32B", slug=slug, aliases=[])
        (models / f"{slug}.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
        for hw, precision in COMBOS[: count - i * len(COMBOS)]:
            r = copy.deepcopy(base)
            r.update(recipe_id=f"{slug}-{hw.lower()}-{precision}", model_id=m["model_id"],
                     huggingface_id=m["model_id"], hardware=hw, precision=precision)
            for section in ("vllm_serve", "sglang_serve"):
                for config in (r.get(section) or {}).values():
                    config["args"]["--model"] = m["model_id"]
                    config["args"]["--dtype"] = {"bf16": "bfloat16", "fp16": "float16"}[precision]
            (recipes / f"{r['recipe_id']}.yaml").write_text(yaml.safe_dump(r, sort_keys=False))
    return n_models


def bench_validate(count: int = 1000) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        n_models = _write_recipes(Path(tmp), count)
        argv = [PY, "-m", "aim_engine", "validate", "--recipes-dir", f"{tmp}/recipes", "--models-dir", f"{tmp}/models"]
        check = subprocess.run(argv, capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("generated recipes did not validate:\n" + check.stdout[-2000:])
        seconds = _time(argv, 3)
    return Result(f"validate {count} generated recipes (+{n_models} models)", f"{seconds:.2f} s", "< 2 s",
                  "whole `aim-engine validate` process, all checks, median of 3", met=seconds < 2)


def run() -> list[Result]:
    return [bench_help(), bench_validate()]


if __name__ == "__main__":
    print(Result.table(run()))
