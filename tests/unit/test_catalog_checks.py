"""Every validator check, with a good and a bad fixture (real files, real validator)."""

from __future__ import annotations

import copy

import pytest
import yaml

from aim_engine.catalog import paths

from aim_engine.catalog import checks
from tests.unit.catalog_helpers import (config_args, mutate, only, shipped_model, shipped_recipe,
                                        validate_model, validate_recipe, write)
from aim_engine.catalog.validator import Inputs, validate


@pytest.fixture
def good() -> dict:
    return shipped_recipe()


def test_good_recipe_is_clean(tmp_path, good):
    report = validate_recipe(tmp_path, good)
    assert report.ok, report.render_text()
    assert (report.files, report.recipes, report.models) == (1, 1, 0)


# ------------------------------------------------------------------------------ recipe-id
def test_recipe_id_must_equal_file_stem(tmp_path, good):
    report = validate_recipe(tmp_path, good, name="something-else.yaml")
    [problem] = only(report, "recipe-id")
    assert "differs from the file name" in problem.message
    assert problem.path == ("recipe_id",) and problem.line == good_line(tmp_path, "something-else.yaml", "recipe_id")
    assert "rename the file" in problem.hint


def good_line(tmp_path, name, key):
    lines = (tmp_path / "recipes" / name).read_text().splitlines()
    return next(i + 1 for i, line in enumerate(lines) if line.startswith(f"{key}:"))


@pytest.mark.parametrize("recipe_id, fragment", [
    ("qwen3-32b-mi300x-bf16", "says hardware 'mi300x' but hardware is 'MI250'"),
    ("qwen3-32b-mi250-fp16", "says precision 'fp16' but precision is 'bf16'"),
    ("qwen-32b-mi250-bf16", "starts with 'qwen-32b' but the model's slug is 'qwen3-32b'"),
    ("qwen3", "is not {model}-{hardware}-{precision}"),
])
def test_recipe_id_parts_agree_with_fields(tmp_path, good, recipe_id, fragment):
    data = mutate(good, recipe_id=recipe_id)
    report = validate_recipe(tmp_path, data)
    messages = [p.message for p in only(report, "recipe-id")]
    assert any(fragment in m for m in messages), messages


# --------------------------------------------------------------------------- model-exists
def test_unknown_model_is_reported_with_suggestion(tmp_path, good):
    report = validate_recipe(tmp_path, mutate(good, model_id="Qwen/Qwen3-32C"))
    [problem] = only(report, "model-exists")
    assert "not in the model catalog" in problem.message and "Qwen/Qwen3-32B" in problem.hint


def test_model_alias_is_not_the_canonical_id(tmp_path, good):
    report = validate_recipe(tmp_path, mutate(good, model_id="qwen/qwen3-32b"))
    [problem] = only(report, "model-exists")
    assert "model_id: Qwen/Qwen3-32B" in problem.hint


def test_recipe_resolves_against_given_models(tmp_path, good):
    model = shipped_model()
    model.update(model_id="acme/Brand-New-32B", huggingface_id="acme/Brand-New-32B", slug="brand-new-32b", aliases=[])
    data = mutate(good, model_id="acme/Brand-New-32B", huggingface_id="acme/Brand-New-32B",
                  recipe_id="brand-new-32b-mi250-bf16")
    for cfg in data["vllm_serve"].values():
        cfg["args"]["--model"] = "acme/Brand-New-32B"
    recipe = write(tmp_path / "r", "brand-new-32b-mi250-bf16.yaml", data)
    without = validate(Inputs(recipe_files=[recipe]))
    assert only(without, "model-exists")
    with_model = validate(Inputs(recipe_files=[recipe], model_files=[write(tmp_path / "m", "x.yaml", model)]))
    assert with_model.ok, with_model.render_text()


# ----------------------------------------------------------------------------- checkpoint
def test_checkpoint_must_be_model_or_variant(tmp_path):
    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    assert validate_recipe(tmp_path, data).ok
    bad = mutate(data, huggingface_id="someone/Llama-3.1-405B-FP8")
    problems = only(validate_recipe(tmp_path, bad), "checkpoint")
    assert any("neither meta-llama/Llama-3.1-405B-Instruct nor one of its variants" in p.message for p in problems)
    # ... and every --model arg that disagrees is reported too
    with_model_arg = sum("--model" in c["args"] for sec in ("vllm_serve", "sglang_serve")
                         for c in (bad.get(sec) or {}).values())
    assert with_model_arg >= 1 and sum("--model" in p.message for p in problems) == with_model_arg


def test_variant_precision_must_match(tmp_path):
    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    data = mutate(data, precision="bf16", recipe_id="llama-3.1-405b-instruct-mi300x-bf16")
    problems = only(validate_recipe(tmp_path, data), "checkpoint")
    assert any("is a fp8 checkpoint but precision is bf16" in p.message for p in problems)


# ------------------------------------------------------------------------- enabled-config
def test_at_least_one_config_enabled(tmp_path, good):
    for cfg in good["vllm_serve"].values():
        cfg["enabled"] = False
    [problem] = only(validate_recipe(tmp_path, good), "enabled-config")
    assert problem.path == ("vllm_serve",) and "enabled: true" in problem.hint


# ------------------------------------------------------------------------ tensor-parallel
def test_tp_must_equal_gpu_count(tmp_path, good):
    config_args(good)["--tensor-parallel-size"] = "4"
    [problem] = only(validate_recipe(tmp_path, good), "tensor-parallel")
    assert problem.path == ("vllm_serve", "2_gpu", "args", "--tensor-parallel-size")
    assert "2_gpu config but --tensor-parallel-size 4 uses 4 GPUs" in problem.message
    assert problem.line is not None


def test_tp_absent_only_for_one_gpu(tmp_path, good):
    del config_args(good)["--tensor-parallel-size"]
    [problem] = only(validate_recipe(tmp_path, good), "tensor-parallel")
    assert "has no --tensor-parallel-size" in problem.message
    one_gpu = shipped_recipe("meta-llama-3-8b-instruct-mi250-fp16")
    assert "--tensor-parallel-size" not in config_args(one_gpu, config="1_gpu")
    assert not only(validate_recipe(tmp_path, one_gpu), "tensor-parallel")


def test_tp_times_dp_counts_gpus(tmp_path, good):
    config_args(good, config="4_gpu").update({"--tensor-parallel-size": "2", "--data-parallel-size": "2"})
    assert not only(validate_recipe(tmp_path, good), "tensor-parallel")


@pytest.mark.parametrize("value", ["two", "0", "-2", "2.5"])
def test_tp_must_be_positive_integer(tmp_path, good, value):
    config_args(good)["--tensor-parallel-size"] = value
    problems = only(validate_recipe(tmp_path, good), "tensor-parallel")
    assert any("not a positive integer" in p.message for p in problems)


def test_sglang_native_tp_flag_counts(tmp_path):
    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    args = config_args(data, "sglang_serve", "8_gpu")
    args["--tp-size"] = args.pop("--tensor-parallel-size")
    assert not only(validate_recipe(tmp_path, data), "tensor-parallel")


# ---------------------------------------------------------------------------- engine-args
def test_unknown_flag_with_suggestion(tmp_path, good):
    config_args(good)["--max-num-seq"] = "8"
    [problem] = only(validate_recipe(tmp_path, good), "engine-args")
    assert problem.message == "--max-num-seq is not a vLLM flag" and "--max-num-seqs" in problem.hint


def test_other_engines_flag_is_named(tmp_path, good):
    config_args(good)["--mem-fraction-static"] = "0.8"
    [problem] = only(validate_recipe(tmp_path, good), "engine-args")
    assert "SGLang flag" in problem.hint


def test_real_native_flags_are_accepted(tmp_path, good):
    config_args(good).update({"--max-num-seqs": "8", "--enable-prefix-caching": "true", "--block-size": "16"})
    config_args(good).pop("--max-batch-size")
    assert validate_recipe(tmp_path, good).ok


def test_switch_needs_true_false(tmp_path, good):
    config_args(good)["--enforce-eager"] = "yes"
    config_args(good)["--trust-remote-code"] = "maybe"
    messages = [p.message for p in only(validate_recipe(tmp_path, good), "engine-args")]
    assert "--enforce-eager is a switch; 'yes' is not true/false" in messages
    assert "--trust-remote-code is a switch; 'maybe' is not true/false" in messages


def test_valued_flag_rejects_bare_boolean(tmp_path, good):
    config_args(good)["--block-size"] = True
    [problem] = only(validate_recipe(tmp_path, good), "engine-args")
    assert "takes a value" in problem.message


def test_choices_are_enforced_for_native_and_canonical(tmp_path):
    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    config_args(data, "sglang_serve", "8_gpu")["--kv-cache-dtype"] = "fp8_e4m3fnx"   # no engine has it
    config_args(data, config="4_gpu")["--scheduling-policy"] = "lottery"
    problems = only(validate_recipe(tmp_path, data), "engine-args")
    assert {p.path[-1] for p in problems} == {"--kv-cache-dtype", "--scheduling-policy"}
    assert all(p.hint.startswith("use one of:") for p in problems)


def test_canonical_value_spelling_validates_and_renders_as_the_engine_spells_it(tmp_path):
    """`--kv-cache-dtype: fp8` is canonical (SGLang has no plain fp8): the validator judges the
    value the adapter will render (fp8_e4m3), through the adapters' own translation function."""
    from aim_engine.catalog.loader import to_recipe
    from aim_engine.engines import render
    from aim_engine.settings import Settings
    from tests.support.engine_plans import model, plan_for

    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    config_args(data, "sglang_serve", "8_gpu")["--kv-cache-dtype"] = "fp8"
    report = validate_recipe(tmp_path, data)
    assert report.ok, report.render_text()
    recipe = to_recipe(data)
    config = next(c for c in recipe.configs if c.engine == "sglang")
    launch = render(plan_for(model(), recipe, config), Settings.from_env({"AIM_CACHE_PATH": str(tmp_path)}),
                    "/models/x", False, base_env={"PATH": "/nonexistent"})
    assert launch.args[launch.args.index("--kv-cache-dtype") + 1] == "fp8_e4m3"


@pytest.mark.parametrize("bad", ["fp8_e4m3fnx", "int3", "FP8"])
def test_a_bad_canonical_value_is_flagged_with_the_allowed_values(tmp_path, bad):
    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    config_args(data, "sglang_serve", "8_gpu")["--kv-cache-dtype"] = bad
    [problem] = only(validate_recipe(tmp_path, data), "engine-args")
    assert problem.message == f"--kv-cache-dtype {bad!r} is not accepted by SGLang (--kv-cache-dtype)"
    from aim_engine.engines import flags

    choices = flags.flag_info("sglang", "--kv-cache-dtype").choices
    assert "fp8_e4m3" in choices and "fp8" not in choices
    assert problem.hint.startswith(f"use one of: {', '.join(choices)} (or ")
    assert "canonical fp8, fp8_e4m3fn, fp8_e4m3fnuz, which SGLang gets as fp8_e4m3" in problem.hint


def test_canonical_and_native_spelling_together(tmp_path, good):
    config_args(good)["--max-num-seqs"] = "8"
    [problem] = only(validate_recipe(tmp_path, good), "engine-args")
    assert "--max-batch-size and --max-num-seqs both set" in problem.message


# ------------------------------------------------------------------------------- hardware
def test_no_fp8_on_gfx90a(tmp_path):
    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    data = mutate(data, hardware="MI250", recipe_id="llama-3.1-405b-instruct-mi250-fp8")
    problems = only(validate_recipe(tmp_path, data), "hardware")
    [problem] = [p for p in problems if p.path == ("precision",)]
    assert problem.message == "MI250 (gfx90a) does not run fp8"
    # the same table says SGLang does not run there, nor an FP8 KV cache
    messages = {(p.path, p.message) for p in problems}
    assert (("sglang_serve", "8_gpu"), "SGLang does not run on MI250 (gfx90a)") in messages
    assert (("vllm_serve", "8_gpu", "args", "--kv-cache-dtype"),
            "MI250 (gfx90a) cannot use --kv-cache-dtype fp8") in messages


def test_no_mxfp4_on_gfx90a(tmp_path):
    """gpt-oss ("mixed": MXFP4 weights) is not exempt from the architecture check (it was)."""
    data = yaml.safe_load((paths.shipped_recipes_dir() / "gpt-oss-20b-mi300x-mixed.yaml").read_text())
    data = mutate(data, hardware="MI250", recipe_id="gpt-oss-20b-mi250-mixed")
    data.pop("sglang_serve", None)
    [problem] = only(validate_recipe(tmp_path, data), "hardware")
    assert problem.message == "MI250 (gfx90a) does not run mixed" and problem.path == ("precision",)


def test_attention_backend_must_run_on_the_architecture(tmp_path, good):
    config_args(good)["--attention-backend"] = "ROCM_AITER_FA"      # AITER has no gfx90a kernels
    [problem] = only(validate_recipe(tmp_path, good), "hardware")
    assert "attention backend ROCM_AITER_FA does not run on MI250 (gfx90a)" in problem.message
    config_args(good)["--attention-backend"] = "TRITON_ATTN"
    assert not only(validate_recipe(tmp_path, good), "hardware")


@pytest.mark.parametrize("hardware, ok", [("MI300X", True), ("gfx942", True), ("gfx90a", True), ("MI999X", False), ("gfx123", False)])
def test_hardware_must_be_known(tmp_path, good, hardware, ok):
    data = mutate(good, hardware=hardware, recipe_id=f"qwen3-32b-{hardware.lower()}-bf16")
    assert (not only(validate_recipe(tmp_path, data), "hardware")) is ok


# ---------------------------------------------------------------------------------- dtype
@pytest.mark.parametrize("dtype, ok", [("bfloat16", True), ("bf16", True), ("float16", False), ("float32", False),
                                        ("float8", False), ("auto", True)])
def test_dtype_matches_bf16(tmp_path, good, dtype, ok):
    config_args(good)["--dtype"] = dtype
    assert (not only(validate_recipe(tmp_path, good), "dtype")) is ok


def test_auto_dtype_of_bf16_checkpoint_is_not_fp16(tmp_path):
    data = shipped_recipe("meta-llama-3-8b-instruct-mi250-fp16")
    config_args(data, config="1_gpu")["--dtype"] = "auto"
    [problem] = only(validate_recipe(tmp_path, data), "dtype")
    assert "checkpoint's bf16 weights, not fp16" in problem.message and "float16" in problem.hint


def test_fp8_needs_something_that_quantizes(tmp_path, good):
    data = mutate(good, hardware="MI300X", precision="fp8", recipe_id="qwen3-32b-mi300x-fp8")
    problems = only(validate_recipe(tmp_path, data), "dtype")
    assert problems and all("nothing quantizes it" in p.message or "does not match" in p.message for p in problems)
    for cfg in data["vllm_serve"].values():
        cfg["args"]["--dtype"] = "float8"
    assert not only(validate_recipe(tmp_path, data), "dtype")
    for cfg in data["vllm_serve"].values():
        cfg["args"].update({"--dtype": "bfloat16", "--quantization": "fp8"})
    assert not only(validate_recipe(tmp_path, data), "dtype")


# ---------------------------------------------------------------------- duplicate recipes
def test_duplicate_recipe_ids_across_directories(tmp_path, good):
    first = write(tmp_path / "a", f"{good['recipe_id']}.yaml", good)
    second = write(tmp_path / "b", f"{good['recipe_id']}.yaml", good)
    report = validate(Inputs(recipe_dirs=[first.parent, second.parent]))
    [problem] = only(report, "duplicate-recipe")
    assert "also defined in" in problem.message and str(first.name) in problem.message


# -------------------------------------------------------------------------------- models
def test_good_model_is_clean(tmp_path):
    assert validate_model(tmp_path, shipped_model()).ok


def test_model_schema_problem_has_line_and_path(tmp_path):
    data = shipped_model()
    data["attention"]["kind"] = "sparse"
    report = validate_model(tmp_path, data)
    [problem] = report.problems
    assert problem.check == "schema" and problem.path == ("attention", "kind")
    assert problem.line == next(i + 1 for i, line in enumerate((tmp_path / "models/m.yaml").read_text().splitlines())
                                if line.strip().startswith("kind:"))
    assert "mha, gqa, mqa, mla" in problem.hint


def test_model_facts(tmp_path):
    data = shipped_model()
    data["parameters"]["active"] = data["parameters"]["total"] + 1
    data["attention"]["kv_heads"] = 7
    data["variants"] = [{"huggingface_id": data["huggingface_id"], "precision": "fp8", "weights_bytes": 1}]
    paths = sorted(p.path for p in only(validate_model(tmp_path, data), "model-facts"))
    assert paths == [("attention", "kv_heads"), ("parameters", "active"), ("variants", 0, "huggingface_id")]


def test_duplicate_model_ids_and_aliases(tmp_path):
    a = shipped_model()
    b = copy.deepcopy(a)
    b.update(model_id="other/Model", huggingface_id="other/Model", slug="other-model", aliases=["QWEN3-32B"])
    report = validate(Inputs(model_files=[write(tmp_path, "a.yaml", a), write(tmp_path, "b.yaml", b),
                                          write(tmp_path, "c.yaml", a)]))
    problems = only(report, "duplicate-model")
    assert {p.file.rsplit("/", 1)[-1] for p in problems} == {"b.yaml", "c.yaml"}
    assert any("'qwen3-32b' also names Qwen/Qwen3-32B" in p.message for p in problems)


# ------------------------------------------------------------------------- the registry
def test_registry_lists_every_builtin_check():
    names = [c.name for c in checks.CHECKS]
    assert len(names) == len(set(names))
    assert {"recipe-id", "model-exists", "checkpoint", "enabled-config", "tensor-parallel", "engine-args",
            "hardware", "dtype", "model-facts", "duplicate-recipe", "duplicate-model"} <= set(names)
    assert all(c.scope in (checks.RECIPE_SCOPE, checks.MODEL_SCOPE, checks.CATALOG_SCOPE) for c in checks.CHECKS)


def test_extension_checks_run_and_crashing_checks_become_problems(tmp_path, good, monkeypatch):
    import sys
    import types

    module = types.ModuleType("aim_test_ext_checks")

    def crash(doc, recipe, ctx):
        raise ZeroDivisionError("boom")
        yield  # pragma: no cover

    def flag_everything(doc, recipe, ctx):
        yield doc.problem("ext", ("hardware",), "extension saw " + recipe.recipe_id, "none")

    module.CHECKS = (checks.Check("crash", checks.RECIPE_SCOPE, crash, "crashes"),
                     checks.Check("ext", checks.RECIPE_SCOPE, flag_everything, "flags"))
    monkeypatch.setitem(sys.modules, "aim_test_ext_checks", module)
    monkeypatch.setattr(checks, "EXTENSION_MODULES", (*checks.EXTENSION_MODULES, "aim_test_ext_checks", "aim_test_missing_mod"))
    report = validate_recipe(tmp_path, good)
    assert "extension saw qwen3-32b-mi250-bf16" in [p.message for p in only(report, "ext")]
    [internal] = only(report, "internal-error")
    assert "check crash failed: ZeroDivisionError: boom" in internal.message
