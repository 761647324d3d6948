"""Selection rules, as a table of cases (issue 5), on hand-built hardware, models and recipes.

Each case names the situation, the inputs, and what the plan (or the error) must say. Sizes are
chosen with margins far from the memory planner's edges: a 8B model is 15 GiB of bf16 weights,
a 405B model 754 GiB, an MI300X has 192 GiB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from aim_engine.catalog.types import Variant
from aim_engine.errors import AimError
from aim_engine.planner import memory
from aim_engine.planner.select import select

from tests.unit.selection_cases import catalog_of, hardware, model, recipe, settings

SMALL = model()                                                          # 8B, 32 heads / 8 KV heads
BIG = model(params_b=405, layers=126, hidden=16384, heads=128, kv_heads=8, model_id="org/Big-405B",
            slug="big-405b", aliases=("big",))
MID = model(params_b=70, layers=80, hidden=8192, heads=64, kv_heads=8, model_id="org/Mid-70B", slug="mid-70b",
            aliases=("mid",), variants=(Variant("org/Mid-70B-FP8", "fp8", 72 * 10**9, quantization="fp8"),))


@dataclass
class Case:
    name: str
    env: dict[str, Any]
    hw: Any
    catalog: Any
    expect: dict[str, Any] = field(default_factory=dict)      # Plan attribute -> value
    check: Callable[[Any], None] | None = None                 # extra assertions on the plan
    error: tuple[str, ...] = ()                                # substrings of the AimError


def _reasons(*needles: str) -> Callable[[Any], None]:
    def check(plan: Any) -> None:
        text = "\n".join(plan.reasons)
        for needle in needles:
            assert needle in text, f"{needle!r} not in reasons:\n{text}"
    return check


def _rejected(recipe_id: str, gpus: int | None, needle: str) -> Callable[[Any], None]:
    def check(plan: Any) -> None:
        hits = [r for r in plan.rejected if r.recipe_id == recipe_id and r.gpus == gpus and needle in r.reason]
        assert hits, f"no rejection of {recipe_id} [{gpus}] mentioning {needle!r}: {plan.rejected}"
    return check


def _all(*checks: Callable[[Any], None]) -> Callable[[Any], None]:
    def check(plan: Any) -> None:
        for c in checks:
            c(plan)
    return check


CASES = [
    Case("8 visible GPUs run a 1-GPU recipe (latency: TP 1, the rest idle)",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI300X", 8),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X", gpus_list=(1,)),)),
         {"tensor_parallel": 1, "data_parallel": 1, "gpus_used": 1, "engine": "vllm"},
         _reasons("7 of 8 GPUs stay idle")),
    Case("8 visible GPUs, 1-GPU recipe, throughput: 8 replicas",
         {"AIM_MODEL_ID": "test8b", "AIM_METRIC": "throughput"}, hardware("MI300X", 8),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X", gpus_list=(1,)),)),
         {"tensor_parallel": 1, "data_parallel": 8, "gpus_used": 8},
         lambda p: p.config.args["--data-parallel-size"] == "8" or pytest.fail(p.config.args)),
    Case("latency takes the largest legal TP of the visible GPUs",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI300X", 4),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)),
         {"tensor_parallel": 4, "data_parallel": 1},
         _rejected("test-8b-mi300x-bf16", 8, "needs 8 GPUs, 4 visible")),
    Case("throughput: smallest TP that fits, remaining GPUs as data-parallel replicas",
         {"AIM_MODEL_ID": "mid", "AIM_METRIC": "throughput"}, hardware("MI300X", 8),
         catalog_of((MID,), (recipe(MID, "MI300X", context=8192, batch=64),)),
         {"tensor_parallel": 2, "data_parallel": 4, "gpus_used": 8},
         _rejected("mid-70b-mi300x-bf16", 1, "does NOT fit")),
    Case("model too big for one GPU: only the 8-GPU config fits",
         {"AIM_MODEL_ID": "big", "AIM_METRIC": "throughput"}, hardware("MI300X", 8),
         catalog_of((BIG,), (recipe(BIG, "MI300X", context=8192, batch=16),)),
         {"tensor_parallel": 8, "data_parallel": 1},
         _all(_rejected("big-405b-mi300x-bf16", 1, "memory:"), _rejected("big-405b-mi300x-bf16", 4, "memory:"))),
    Case("model too big for every visible GPU: clear error with the numbers",
         {"AIM_MODEL_ID": "big"}, hardware("MI300X", 2),
         catalog_of((BIG,), (recipe(BIG, "MI300X", context=8192, batch=16),)),
         error=("no recipe for org/Big-405B can run on 2x MI300X", "does NOT fit", "GiB")),
    Case("fp8 requested on MI250: gfx90a has no FP8",
         {"AIM_MODEL_ID": "test8b", "AIM_PRECISION": "fp8"}, hardware("MI250", 2),
         catalog_of((SMALL,), (recipe(SMALL, "MI250"),)),
         error=("AIM_PRECISION=fp8", "MI250", "gfx90a", "no FP8")),
    Case("fp8 recipe on MI250 (auto): rejected, bf16 chosen",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI250", 2),
         catalog_of((SMALL,), (recipe(SMALL, "MI250", "fp8"), recipe(SMALL, "MI250"))),
         {"precision": "bf16"}, _rejected("test-8b-mi250-fp8", None, "cannot run fp8")),
    Case("pinned recipe that does not fit: error lists the alternatives that do",
         {"AIM_MODEL_ID": "mid", "AIM_RECIPE_ID": "mid-70b-mi300x-bf16"}, hardware("MI300X", 1),
         catalog_of((MID,), (recipe(MID, "MI300X", gpus_list=(1,), context=131072, batch=256),
                              recipe(MID, "MI300X", "fp8", gpus_list=(1,), context=8192, batch=32,
                                     checkpoint="org/Mid-70B-FP8"))),
         error=("AIM_RECIPE_ID=mid-70b-mi300x-bf16 cannot run", "does NOT fit", "mid-70b-mi300x-fp8")),
    Case("pinned recipe wins over the preference",
         {"AIM_MODEL_ID": "mid", "AIM_RECIPE_ID": "mid-70b-mi300x-fp8"}, hardware("MI300X", 8),
         catalog_of((MID,), (recipe(MID, "MI300X", context=8192), recipe(MID, "MI300X", "fp8", context=8192,
                                                                          checkpoint="org/Mid-70B-FP8"))),
         {"precision": "fp8", "checkpoint": "org/Mid-70B-FP8"}, _reasons("AIM_RECIPE_ID=mid-70b-mi300x-fp8 pins")),
    Case("bf16 preferred when it fits",
         {"AIM_MODEL_ID": "mid"}, hardware("MI300X", 2),
         catalog_of((MID,), (recipe(MID, "MI300X", "fp8", checkpoint="org/Mid-70B-FP8"), recipe(MID, "MI300X"))),
         {"precision": "bf16", "tensor_parallel": 2},
         _rejected("mid-70b-mi300x-fp8", 2, "precision fp8 vs bf16")),
    Case("fp8 when bf16 does not fit",
         {"AIM_MODEL_ID": "mid"}, hardware("MI300X", 1),
         catalog_of((MID,), (recipe(MID, "MI300X", gpus_list=(1,), context=32768, batch=64),
                              recipe(MID, "MI300X", "fp8", gpus_list=(1,), context=8192, batch=32,
                                     checkpoint="org/Mid-70B-FP8"))),
         {"precision": "fp8", "checkpoint": "org/Mid-70B-FP8"}),
    Case("same-family fallback: MI300X recipe on MI325X",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI325X", 8),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)),
         {"fallback_hardware": "MI300X", "tensor_parallel": 8}, _reasons("same-family fallback")),
    Case("exact hardware beats the fallback at the same precision",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI325X", 8),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"), recipe(SMALL, "MI325X"))),
         {"fallback_hardware": None},
         lambda p: p.recipe.recipe_id == "test-8b-mi325x-bf16" or pytest.fail(p.recipe.recipe_id)),
    Case("no fallback to a GPU with more memory (MI325X recipe on MI300X) -> synthesized",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI300X", 1),
         catalog_of((SMALL,), (recipe(SMALL, "MI325X"),)),
         {"synthesized": True}, _rejected("test-8b-mi325x-bf16", None, "reports 191.69 GiB, less than 98%")),
    Case("no fallback across gfx families (MI300X recipe on MI355X) -> synthesized",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI355X", 1),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)),
         {"synthesized": True, "fallback_hardware": None}, _rejected("test-8b-mi300x-bf16", None, "gfx950")),
    Case("generic gfx recipe on an unknown device of that gfx",
         {"AIM_MODEL_ID": "test8b"}, hardware("gfx942", 2, memory_gib=96, gfx="gfx942"),
         catalog_of((SMALL,), (recipe(SMALL, "gfx942"),)),
         {"tensor_parallel": 2, "synthesized": False}, _reasons("generic recipe for gfx942")),
    Case("engine auto falls back to SGLang when only SGLang configs exist",
         {"AIM_MODEL_ID": "test8b"}, hardware("MI300X", 1),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X", engines=("sglang",)),)),
         {"engine": "sglang"}, _reasons("no runnable vLLM config")),
    Case("AIM_ENGINE=sglang picks the SGLang config",
         {"AIM_MODEL_ID": "test8b", "AIM_ENGINE": "sglang"}, hardware("MI300X", 1),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)),
         {"engine": "sglang"}, _rejected("test-8b-mi300x-bf16", 1, "AIM_ENGINE=sglang")),
    Case("conflicting overrides: pinned fp8 recipe with AIM_PRECISION=bf16",
         {"AIM_MODEL_ID": "mid", "AIM_RECIPE_ID": "mid-70b-mi300x-fp8", "AIM_PRECISION": "bf16"}, hardware("MI300X", 8),
         catalog_of((MID,), (recipe(MID, "MI300X", "fp8", checkpoint="org/Mid-70B-FP8"),)),
         error=("conflicting overrides", "AIM_PRECISION=bf16", "fp8")),
    Case("conflicting overrides: pinned vLLM-only recipe with AIM_ENGINE=sglang",
         {"AIM_MODEL_ID": "test8b", "AIM_RECIPE_ID": "test-8b-mi300x-bf16", "AIM_ENGINE": "sglang"},
         hardware("MI300X", 8), catalog_of((SMALL,), (recipe(SMALL, "MI300X", engines=("vllm",)),)),
         error=("conflicting overrides", "AIM_ENGINE=sglang", "only vllm")),
    Case("conflicting overrides: pinned recipe of another model",
         {"AIM_MODEL_ID": "test8b", "AIM_RECIPE_ID": "mid-70b-mi300x-bf16"}, hardware("MI300X", 8),
         catalog_of((SMALL, MID), (recipe(SMALL, "MI300X"), recipe(MID, "MI300X"))),
         error=("conflicting overrides", "org/Mid-70B", "org/Test-8B")),
    Case("unknown pinned recipe: error lists the model's recipes",
         {"AIM_MODEL_ID": "test8b", "AIM_RECIPE_ID": "nope"}, hardware("MI300X", 8),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)),
         error=("AIM_RECIPE_ID='nope' is not in the catalog", "test-8b-mi300x-bf16")),
    Case("AIM_RECIPE_ID alone names the model",
         {"AIM_RECIPE_ID": "test-8b-mi300x-bf16"}, hardware("MI300X", 1),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)),
         {"served_model_name": "org/Test-8B"}),
    Case("AIM_GPU_COUNT below every recipe's count: rejection names it, a synthesized plan runs",
         {"AIM_MODEL_ID": "test8b", "AIM_GPU_COUNT": "2"}, hardware("MI300X", 2),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X", gpus_list=(4,)),)),
         {"synthesized": True, "tensor_parallel": 2},
         _all(_rejected("test-8b-mi300x-bf16", 4, "needs 4 GPUs, 2 visible (AIM_GPU_COUNT)"),
              _reasons("no catalog recipe of org/Test-8B runs here"))),
    Case("AIM_PRECISION without a catalog recipe: synthesized from the declared variant",
         {"AIM_MODEL_ID": "mid", "AIM_PRECISION": "fp8"}, hardware("MI300X", 4),
         catalog_of((MID,), (recipe(MID, "MI300X"),)),
         {"synthesized": True, "precision": "fp8", "checkpoint": "org/Mid-70B-FP8"},
         _rejected("mid-70b-mi300x-bf16", None, "AIM_PRECISION=fp8")),
    Case("AIM_PRECISION=fp16 serves a bf16 recipe with --dtype float16",
         {"AIM_MODEL_ID": "test8b", "AIM_PRECISION": "fp16"}, hardware("MI300X", 1),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)),
         {"precision": "bf16"},
         lambda p: p.config.args["--dtype"] == "float16" or pytest.fail(p.config.args)),
    Case("AIM_ENGINE_ARGS context counts in the fit check",
         {"AIM_MODEL_ID": "mid", "AIM_ENGINE_ARGS": json.dumps({"--max-model-len": "131072"})},
         hardware("MI300X", 2), catalog_of((MID,), (recipe(MID, "MI300X", gpus_list=(1, 2), context=4096, batch=256),)),
         error=("131072 tokens", "does NOT fit")),
    Case("a variant id as AIM_MODEL_ID keeps only that checkpoint's recipes",
         {"AIM_MODEL_ID": "org/Mid-70B-FP8"}, hardware("MI300X", 8),
         catalog_of((MID,), (recipe(MID, "MI300X"), recipe(MID, "MI300X", "fp8", checkpoint="org/Mid-70B-FP8"))),
         {"precision": "fp8", "checkpoint": "org/Mid-70B-FP8", "served_model_name": "org/Mid-70B-FP8"},
         _rejected("mid-70b-mi300x-bf16", None, "AIM_MODEL_ID asks for org/Mid-70B-FP8")),
    Case("AIM_SERVED_MODEL_NAME replaces the served name",
         {"AIM_MODEL_ID": "test8b", "AIM_SERVED_MODEL_NAME": "chat"}, hardware("MI300X", 1),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)), {"served_model_name": "chat"}),
    Case("catalog model without a recipe for this GPU family: synthesized, sized by the planner",
         {"AIM_MODEL_ID": "mid"}, hardware("MI210", 4), catalog_of((MID,), (recipe(MID, "MI300X"),)),
         {"synthesized": True, "precision": "bf16", "tensor_parallel": 4},
         _reasons("synthesized recipes")),
    Case("no GPU: a vLLM CPU plan (tp 1, float32, small context)",
         {"AIM_MODEL_ID": "tiny"}, hardware(None),
         catalog_of((model(params_b=0.01, layers=2, hidden=256, heads=4, kv_heads=2, max_pos=4096,
                            model_id="org/Tiny", slug="tiny", aliases=("tiny",)),),),
         {"target": "cpu", "engine": "vllm", "gpus_used": 0, "tensor_parallel": 1, "precision": "fp32",
          "synthesized": True, "context": 2048},
         lambda p: (p.config.args["--dtype"], p.config.env["VLLM_CPU_KVCACHE_SPACE"]) == ("float32", "1")
         or pytest.fail(p.config)),
    Case("no GPU and AIM_ENGINE=sglang: clear error",
         {"AIM_MODEL_ID": "test8b", "AIM_ENGINE": "sglang"}, hardware(None),
         catalog_of((SMALL,), (recipe(SMALL, "MI300X"),)), error=("AIM_ENGINE=sglang needs a GPU",)),
    Case("no GPU and AIM_PRECISION=fp8: clear error",
         {"AIM_MODEL_ID": "test8b", "AIM_PRECISION": "fp8"}, hardware(None),
         catalog_of((SMALL,), ()), error=("AIM_PRECISION=fp8 is not available without a GPU",)),
    Case("AIM_MODEL_ID unset: clear error",
         {}, hardware("MI300X", 1), catalog_of((SMALL,), ()), error=("AIM_MODEL_ID is not set",)),
    Case("AIM_MODEL_ID neither catalog, directory nor HF id: clear error",
         {"AIM_MODEL_ID": "no such thing"}, hardware("MI300X", 1), catalog_of((SMALL,), ()),
         error=("is not a catalog model, a local directory or a Hugging Face id", "test8b")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_selection(case: Case, clean_env: dict[str, str]) -> None:
    env = dict(case.env)
    if case.error:
        with pytest.raises(AimError) as info:
            select(settings(**env), case.hw, case.catalog)
        for needle in case.error:
            assert needle in str(info.value), f"{needle!r} not in error:\n{info.value}"
        return
    plan = select(settings(**env), case.hw, case.catalog)
    for attr, value in case.expect.items():
        assert getattr(plan, attr) == value, f"{attr}: {getattr(plan, attr)!r} != {value!r}\n{plan.reasons}"
    if case.check:
        case.check(plan)
    json.dumps(plan.to_dict())  # always JSON-able


def test_chosen_config_fits_the_actual_device_memory() -> None:
    """The MI300X recipe on MI325X is checked against 256 GiB, not the 192 GiB it was written for:
    a config that does not fit 192 GiB but fits 256 GiB is runnable there."""
    big_ctx = recipe(MID, "MI300X", gpus_list=(1,), context=12288, batch=16)
    on_300 = memory.check_fit(MID, "bf16", 192 * memory.GIB, 1, 12288, 16)
    on_325 = memory.check_fit(MID, "bf16", 256 * memory.GIB, 1, 12288, 16)
    assert not on_300.fits and on_325.fits, (on_300.explanation, on_325.explanation)
    plan = select(settings(AIM_MODEL_ID="mid"), hardware("MI325X", 1), catalog_of((MID,), (big_ctx,)))
    assert plan.fallback_hardware == "MI300X" and plan.context == 12288


@hsettings(max_examples=40, deadline=None)
@given(visible=st.integers(1, 8), metric=st.sampled_from(["latency", "throughput"]),
       which=st.sampled_from(["small", "mid"]))
def test_plan_invariants(visible: int, metric: str, which: str) -> None:
    """Whatever the GPU count: the plan never uses more GPUs than visible, TP x DP = GPUs used,
    the chosen TP is legal, and the chosen config fits the detected memory."""
    m = SMALL if which == "small" else MID
    cat = catalog_of((m,), (recipe(m, "MI300X", context=4096, batch=16),))
    env = {"AIM_MODEL_ID": m.aliases[0], "AIM_METRIC": metric}
    plan = select(settings(**env), hardware("MI300X", visible), cat)
    assert plan.gpus_used == plan.tensor_parallel * plan.data_parallel <= visible
    assert memory.tp_legal(m, plan.tensor_parallel) is None
    assert memory.check_fit(m, plan.precision, 192 * memory.GIB, plan.tensor_parallel, plan.context, plan.batch).fits
    if metric == "throughput":
        assert plan.data_parallel == visible // plan.tensor_parallel
    else:
        assert plan.data_parallel == 1


@hsettings(max_examples=60, deadline=None)
@given(which=st.sampled_from(["small", "mid", "big"]), gpus=st.sampled_from([1, 2, 4, 8]),
       batch=st.integers(1, 512), memory_gib=st.sampled_from([64, 128, 192, 256, 288]),
       kv=st.sampled_from([None, "fp8"]))
def test_longest_context_matches_the_planner_search(which: str, gpus: int, batch: int, memory_gib: int,
                                                    kv: str | None) -> None:
    """The closed form used in rejections equals memory.max_context's binary search."""
    from aim_engine.planner.select import longest_context

    m = {"small": SMALL, "mid": MID, "big": BIG}[which]
    args = (m, "bf16", memory_gib * memory.GIB, gpus, batch, kv, 0.9)
    assert longest_context(*args) == memory.max_context(*args)


# ------------------------------------------------------------- issue 13: one source of truth


@pytest.mark.parametrize("recipe_gpu, detected", [("MI355X", "MI350X"), ("MI300X", "MI308X"), ("MI355X", "MI355X")])
def test_same_family_recipes_serve_a_gpu_reporting_slightly_less_memory(recipe_gpu: str, detected: str) -> None:
    """Drivers report less than the nominal memory (an MI350X shows 287.98 GiB of 288): the
    tuned recipe of the same family is used, not a synthesized plan, and the reasons say which
    recipe family it is."""
    plan = select(settings(AIM_MODEL_ID="test8b"), hardware(detected, 8), catalog_of((SMALL,), (recipe(SMALL, recipe_gpu),)))
    assert not plan.synthesized and plan.recipe.recipe_id == f"test-8b-{recipe_gpu.lower()}-bf16", plan.reasons
    if recipe_gpu != detected:
        assert plan.fallback_hardware == recipe_gpu
        assert any(f"the {recipe_gpu} recipe family, used on {detected} as a same-family fallback" in r
                   for r in plan.reasons), plan.reasons


def test_fallback_tolerance_is_not_a_blank_cheque() -> None:
    """A device that reports clearly less than the recipe's GPU (a 256 GiB MI325X recipe on a
    192 GiB MI300X, or a partition) is still refused as a fallback."""
    plan = select(settings(AIM_MODEL_ID="test8b"), hardware("MI350X", 1, memory_gib=270),
                  catalog_of((SMALL,), (recipe(SMALL, "MI355X"),)))
    assert plan.synthesized
    assert any("reports 270.00 GiB, less than 98%" in r.reason for r in plan.rejected)


MXFP4 = model(params_b=20, layers=24, hidden=2880, heads=64, kv_heads=8, model_id="org/Oss-20B", slug="oss-20b",
              aliases=("oss",))
MXFP4 = type(MXFP4)(**{**MXFP4.__dict__, "native_dtype": "mxfp4", "weights_bytes": 13 * 10**9})


def test_mxfp4_is_not_planned_on_gfx90a() -> None:
    """gpt-oss-like MXFP4 ("mixed") checkpoints need CDNA3+: on MI250 there is no plan, and the
    error says why (selection used to exempt "mixed" from the architecture gate)."""
    with pytest.raises(AimError) as info:
        select(settings(AIM_MODEL_ID="oss"), hardware("MI250", 2), catalog_of((MXFP4,), (recipe(MXFP4, "MI250", "mixed"),)))
    assert "gfx90a cannot run mixed" in str(info.value)
    plan = select(settings(AIM_MODEL_ID="oss"), hardware("MI300X", 1), catalog_of((MXFP4,)))
    assert plan.precision == "mixed"     # the same model still plans where it runs


def test_no_sglang_on_gfx90a_from_synthesis_or_catalog() -> None:
    """Synthesized recipes carry only engines the architecture runs, and a catalog SGLang config
    on MI250 is rejected with the reason, even when AIM_ENGINE asks for it."""
    from aim_engine.planner import synthesize

    made = synthesize.gpu_recipes(SMALL, hardware("MI250", 2))
    assert made and {c.engine for r in made for c in r.configs} == {"vllm"}
    with pytest.raises(AimError) as info:
        select(settings(AIM_MODEL_ID="test8b", AIM_ENGINE="sglang"), hardware("MI250", 2),
               catalog_of((SMALL,), (recipe(SMALL, "MI250", engines=("sglang",)),)))
    assert "sglang does not run on gfx90a" in str(info.value)


def test_a_recipes_tensor_times_data_parallel_is_honoured() -> None:
    """A 4_gpu config written as TP 2 x DP 2 runs as TP 2 x DP 2 (it was rendered as TP 4)."""
    from aim_engine.engines import render
    from aim_engine.catalog.types import ServeConfig

    base = recipe(SMALL, "MI300X", gpus_list=(4,), engines=("vllm",))
    config = base.configs[0]
    args = {**config.args, "--tensor-parallel-size": "2", "--data-parallel-size": "2"}
    tpdp = type(base)(**{**base.__dict__, "configs": (ServeConfig("vllm", 4, True, args),)})
    for metric in ("latency", "throughput"):
        s = settings(AIM_MODEL_ID="test8b", AIM_METRIC=metric)
        plan = select(s, hardware("MI300X", 4), catalog_of((SMALL,), (tpdp,)))
        assert (plan.tensor_parallel, plan.data_parallel, plan.gpus_used) == (2, 2, 4), plan.reasons
        argv = render(plan, s, "org/Test-8B", cache_warm=True).args
        assert argv[argv.index("--tensor-parallel-size") + 1] == "2", argv
        assert argv[argv.index("--data-parallel-size") + 1] == "2", argv
    # throughput on 8 GPUs: two copies of the TP 2 x DP 2 config -> TP 2 x DP 4
    plan = select(settings(AIM_MODEL_ID="test8b", AIM_METRIC="throughput"), hardware("MI300X", 8),
                  catalog_of((SMALL,), (tpdp,)))
    assert (plan.tensor_parallel, plan.data_parallel) == (2, 4)


def test_selection_and_validator_assume_the_engines_own_batch_default() -> None:
    """Without a declared batch, selection and the validator both assume what the engine does:
    vLLM 0.32 runs 1024 sequences on a >= 70 GiB device (256 below), not 1 or 256."""
    from aim_engine.planner import fit_checks
    from aim_engine.planner.reading import read

    no_batch = recipe(SMALL, "MI300X", gpus_list=(1,), engines=("vllm",), context=4096)
    config = no_batch.configs[0]
    args = {k: v for k, v in config.args.items() if k != "--max-batch-size"}
    config = type(config)(**{**config.__dict__, "args": args})
    plan_reading = read(SMALL, config, hardware("MI300X", 1).memory_per_gpu_bytes)
    validator_reading = fit_checks.read_config(SMALL, config, hardware("MI300X", 1).memory_per_gpu_bytes)
    assert plan_reading.batch == validator_reading.batch == 1024
    assert read(SMALL, config, hardware("MI250", 1).memory_per_gpu_bytes).batch == 256
    sglang = type(config)(**{**config.__dict__, "engine": "sglang", "args": {k: v for k, v in args.items()
                                                                            if k != "--gpu-memory-utilization"}})
    assert read(SMALL, sglang, hardware("MI300X", 1).memory_per_gpu_bytes).utilization == 0.85
