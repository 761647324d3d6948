"""Engine adapters: translation tables, switches, null removal, merge order, secrets.

The argv checked here is also fed to the real parsers in
tests/integration/test_engine_parsers.py; these tests pin the translation rules themselves.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from aim_engine.catalog.types import Variant
from aim_engine.engines import adapter, flags, render
from aim_engine.engines.base import table
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.support.engine_plans import model, pairs, plan

BASE_ENV = {"PATH": "/nonexistent", "HOME": "/root"}


def settings(**env: str) -> Settings:
    return Settings.from_env({"AIM_CACHE_PATH": "/cache", **env})


def launch(args: dict[str, Any], *, engine: str = "vllm", env: dict[str, str] | None = None,
           warm: bool = True, overrides: str | None = None, **plan_kw: Any):
    s = settings(**({"AIM_ENGINE_ARGS": overrides} if overrides else {}))
    return render(plan(args, engine=engine, **plan_kw), s, "/models/qwen", warm,
                  base_env={**BASE_ENV, **(env or {})})


# ---------------------------------------------------------------- the data itself
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_every_canonical_translation_targets_a_real_flag(engine: str) -> None:
    known = flags.known_flags(engine)
    for key, per_engine in table().canonical.items():
        spec = per_engine[engine]
        if spec.get("positional"):
            continue
        assert spec["flag"] in known, f"canonical {key} -> {spec['flag']} is not a {engine} flag"
        info = flags.flag_info(engine, spec["flag"])
        assert bool(spec.get("switch")) == (not info.takes_value), f"{key}: switch marker disagrees with {engine}"
        for value in (spec.get("values") or {}).values():
            assert info.choices is None or value in info.choices, f"{key}: {value} not a {engine} choice"


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_target_defaults_and_secret_flags_are_real_flags(engine: str) -> None:
    tbl = table()
    for target in tbl.targets:
        for key in tbl.target_args(target, engine):
            assert key in tbl.canonical or key in flags.known_flags(engine), key
    for flag in tbl.secret_flags.get(engine, {}):
        assert flag in flags.known_flags(engine), flag


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_engine_metrics_switches_are_real_flags_and_have_a_path(engine: str) -> None:
    tbl = table()
    for flag in tbl.metrics_args(engine):
        assert flag in flags.known_flags(engine) and not flags.flag_info(engine, flag).takes_value, flag
    assert tbl.metrics_path(engine) == "/metrics"


def test_sglang_metrics_are_on_by_default_with_an_opt_out() -> None:
    on = launch({}, engine="sglang")
    assert "--enable-metrics" in on.args and on.metrics_url == "http://127.0.0.1:8000/metrics"
    s = settings(AIM_ENGINE_METRICS="false")
    off = render(plan({}, engine="sglang"), s, "/models/qwen", True, base_env=BASE_ENV)
    assert "--enable-metrics" not in off.args and off.metrics_url is None
    removed = launch({}, engine="sglang", overrides='{"--enable-metrics": null}')
    assert "--enable-metrics" not in removed.args and removed.metrics_url is None
    vllm = launch({}, engine="vllm")                   # always on, nothing to add
    assert vllm.metrics_url == "http://127.0.0.1:8000/metrics" and "--enable-metrics" not in vllm.args
    assert launch({}, engine="vllm").public_dict()["metrics_url"] == vllm.metrics_url


# ---------------------------------------------------------------- translation
CANONICAL = {
    "--model": "Qwen/Qwen3-8B",
    "--dtype": "bfloat16",
    "--tensor-parallel-size": "2",
    "--max-batch-size": "64",
    "--max-context-len": "32768",
    "--gpu-memory-utilization": "0.9",
    "--trust-remote-code": "true",
}

EXPECTED = {
    "vllm": {"--dtype": "bfloat16", "--tensor-parallel-size": "2", "--max-num-seqs": "64",
             "--max-model-len": "32768", "--gpu-memory-utilization": "0.9", "--trust-remote-code": None,
             "--host": "0.0.0.0", "--port": "8000", "--served-model-name": "Qwen/Qwen3-8B"},
    "sglang": {"--model-path": "/models/qwen", "--dtype": "bfloat16", "--tp-size": "2",
               "--max-running-requests": "64", "--context-length": "32768", "--mem-fraction-static": "0.9",
               "--trust-remote-code": None, "--host": "0.0.0.0", "--port": "8000",
               "--served-model-name": "Qwen/Qwen3-8B", "--enable-metrics": None},
}


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_canonical_args_become_real_flags(engine: str) -> None:
    out = launch(CANONICAL, engine=engine, gpus=2)
    assert pairs(out.args) == EXPECTED[engine]
    if engine == "vllm":
        assert out.argv[:2] == ["vllm", "serve"] and out.args[0] == "/models/qwen"   # positional model
    else:
        assert out.argv[:3] == ["python3", "-m", "sglang.launch_server"]
    assert "Qwen/Qwen3-8B" not in out.args[:1]    # the recipe's --model never replaces model_path


@pytest.mark.parametrize("engine,native", [("vllm", "--max-num-seqs"), ("sglang", "--max-running-requests")])
def test_engine_native_flags_pass_through_and_merge_with_canonical(engine: str, native: str) -> None:
    out = launch({native: "8", "--max-batch-size": "16"}, engine=engine)
    assert pairs(out.args)[native] == "16" and out.args.count(native) == 1


def test_dtype_float8_means_online_fp8_quantization() -> None:
    for engine in ("vllm", "sglang"):
        p = pairs(launch({"--dtype": "float8"}, engine=engine).args)
        assert (p["--dtype"], p["--quantization"]) == ("auto", "fp8")


def test_dtype_float8_with_a_prequantized_checkpoint_adds_no_quantization() -> None:
    variant = Variant(huggingface_id="amd/Qwen3-8B-FP8-KV", precision="fp8", weights_bytes=8, quantization="quark")
    out = launch({"--dtype": "float8"}, the_model=model(variants=(variant,)), checkpoint=variant.huggingface_id)
    assert "--quantization" not in out.args and pairs(out.args)["--dtype"] == "auto"


def test_explicit_quantization_beats_the_dtype_alias_in_either_order() -> None:
    for args in ({"--quantization": "quark", "--dtype": "float8"}, {"--dtype": "float8", "--quantization": "quark"}):
        assert pairs(launch(args).args)["--quantization"] == "quark"


def test_overriding_dtype_drops_the_quantization_it_implied() -> None:
    out = launch({"--dtype": "float8"}, overrides='{"--dtype": "bfloat16"}')
    assert pairs(out.args)["--dtype"] == "bfloat16" and "--quantization" not in out.args


def test_kv_cache_dtype_fp8_is_spelled_per_engine() -> None:
    assert pairs(launch({"--kv-cache-dtype": "fp8"}).args)["--kv-cache-dtype"] == "fp8"
    assert pairs(launch({"--kv-cache-dtype": "fp8"}, engine="sglang").args)["--kv-cache-dtype"] == "fp8_e4m3"


def test_plan_values_replace_the_recipe_values() -> None:
    out = launch({"--tensor-parallel-size": "1", "--max-context-len": "131072"}, gpus=4, data_parallel=2,
                 context=32768, batch=128)
    p = pairs(out.args)
    assert (p["--tensor-parallel-size"], p["--data-parallel-size"]) == ("4", "2")
    assert (p["--max-model-len"], p["--max-num-seqs"]) == ("32768", "128")
    assert pairs(launch({}, engine="sglang", gpus=2, data_parallel=4).args)["--dp-size"] == "4"
    assert "--data-parallel-size" not in launch({}).args    # one replica: left to the engine


# ---------------------------------------------------------------- switches and null
def test_switch_true_is_bare_and_false_is_dropped_or_negated() -> None:
    # SGLang's --trust-remote-code is store_true: false simply leaves it out.
    assert "--trust-remote-code" not in launch({"--trust-remote-code": "false"}, engine="sglang").args
    assert "--trust-remote-code" in launch({"--trust-remote-code": True}, engine="sglang").args
    # vLLM's is a BooleanOptionalAction: false is said explicitly (the engine default may be on).
    out = launch({"--enable-prefix-caching": "false", "--enforce-eager": "true"})
    assert "--no-enable-prefix-caching" in out.args and "--enforce-eager" in out.args
    assert "false" not in out.args and "true" not in out.args


def test_negated_spelling_merges_with_the_positive_one() -> None:
    out = launch({"--enable-prefix-caching": "true"}, overrides='{"--no-enable-prefix-caching": true}')
    assert "--no-enable-prefix-caching" in out.args and "--enable-prefix-caching" not in out.args


def test_switch_with_a_value_is_a_clear_error() -> None:
    with pytest.raises(AimError) as err:
        launch({"--enforce-eager": "sometimes"})
    assert "--enforce-eager" in err.value.message and "switch" in err.value.message


def test_null_removes_a_flag_from_recipe_or_override() -> None:
    assert "--max-model-len" not in launch({"--max-context-len": None}).args
    out = launch({"--max-context-len": "8192", "--enforce-eager": "true"},
                 overrides='{"--max-model-len": null, "--enforce-eager": null}')
    assert "--max-model-len" not in out.args and "--enforce-eager" not in out.args
    assert out.overrides_applied == {"--max-model-len": None, "--enforce-eager": None}


# ---------------------------------------------------------------- AIM_ENGINE_ARGS
def test_overrides_are_merged_last_and_reported() -> None:
    out = launch({"--max-batch-size": "64", "--gpu-memory-utilization": "0.9"}, batch=64,
                 overrides='{"--max_num_seqs": 8, "--gpu-memory-utilization": "0.8", "--block-size": null, '
                           '"--compilation-config": {"level": 0}}')
    p = pairs(out.args)
    assert (p["--max-num-seqs"], p["--gpu-memory-utilization"]) == ("8", "0.8")
    assert p["--compilation-config"] == '{"level":0}'
    assert out.overrides_applied == {"--max-num-seqs": 8, "--gpu-memory-utilization": "0.8", "--block-size": None,
                                     "--compilation-config": {"level": 0}}


def test_overrides_may_use_canonical_names_for_either_engine() -> None:
    out = launch({}, engine="sglang", overrides='{"--max-context-len": "4096", "--enforce-eager": true}')
    p = pairs(out.args)
    assert p["--context-length"] == "4096" and "--disable-cuda-graph" in p


def test_overrides_cannot_take_the_agent_owned_flags() -> None:
    for key, variable in (("--port", "AIM_PORT"), ("--model", "AIM_MODEL_ID"),
                          ("--served-model-name", "AIM_SERVED_MODEL_NAME")):
        with pytest.raises(AimError) as err:
            launch({}, overrides=f'{{"{key}": "x"}}')
        assert key in err.value.message and variable in (err.value.hint or "")


def test_recipe_port_and_host_are_replaced_by_the_agent() -> None:
    out = render(plan({"--port": "9999", "--host": "127.0.0.1"}, engine="sglang"), settings(AIM_PORT="8123"),
                 "/m", True, base_env=BASE_ENV)
    p = pairs(out.args)
    assert (p["--port"], p["--host"]) == ("8123", "0.0.0.0")
    assert out.health_url == "http://127.0.0.1:8123/health"
    assert out.models_url == "http://127.0.0.1:8123/v1/models"


# ---------------------------------------------------------------- exact flags, choices
def test_prefix_typo_is_rejected_with_recipe_flag_and_close_matches() -> None:
    with pytest.raises(AimError) as err:
        launch({"--max-num-seq": "8"}, recipe_id="typo-recipe")
    assert "typo-recipe" in err.value.message and "'--max-num-seq'" in err.value.message
    assert "--max-num-seqs" in (err.value.hint or "")


def test_a_flag_of_the_other_engine_is_rejected() -> None:
    with pytest.raises(AimError) as err:
        launch({"--max-num-seqs": "8"}, engine="sglang")
    assert "sglang" in err.value.message


def test_override_typo_names_aim_engine_args() -> None:
    with pytest.raises(AimError) as err:
        launch({}, overrides='{"--enforce-eagr": true}')
    assert "AIM_ENGINE_ARGS" in err.value.message and "--enforce-eager" in (err.value.hint or "")


def test_choices_are_checked_before_the_engine_sees_them() -> None:
    with pytest.raises(AimError) as err:
        launch({"--kv-cache-dtype": "fp8_e4m3fnx"}, engine="sglang")
    assert "fp8_e4m3" in (err.value.hint or "")


def test_vllm_dotted_json_keys_are_allowed_under_a_real_json_flag() -> None:
    assert pairs(launch({}, overrides='{"--compilation-config.level": "0"}').args)["--compilation-config.level"] == "0"
    with pytest.raises(AimError):
        launch({}, overrides='{"--nonexistent.level": "0"}')


# ---------------------------------------------------------------- secrets
def test_api_key_goes_to_the_environment_never_argv() -> None:
    out = launch({}, overrides='{"--api-key": "sk-very-secret-value"}')
    assert "sk-very-secret-value" not in " ".join(out.argv) and "--api-key" not in out.argv
    assert out.env["VLLM_API_KEY"] == "sk-very-secret-value"
    assert "sk-very-secret-value" not in repr(out.public_dict())


def test_sglang_api_key_is_refused() -> None:
    with pytest.raises(AimError) as err:
        launch({}, engine="sglang", overrides='{"--api-key": "sk-very-secret-value"}')
    assert "sk-very-secret-value" not in str(err.value)


TOKEN = "hf_" + "a" * 34


def test_hf_token_reaches_the_engine_only_while_the_cache_is_cold() -> None:
    s = Settings.from_env({"HF_TOKEN": TOKEN})
    cold = render(plan({}), s, "Qwen/Qwen3-8B", False, base_env={**BASE_ENV, "HF_TOKEN": TOKEN})
    warm = render(plan({}), s, "/snap", True,
                  base_env={**BASE_ENV, "HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN})
    assert cold.env["HF_TOKEN"] == TOKEN and "HF_HUB_OFFLINE" not in cold.env
    assert "HF_TOKEN" not in warm.env and "HUGGING_FACE_HUB_TOKEN" not in warm.env
    assert warm.env["HF_HUB_OFFLINE"] == "1" and set(warm.env_removed) == {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}
    for out in (cold, warm):
        assert TOKEN not in " ".join(out.argv) and TOKEN not in repr(out.public_dict())


@hsettings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(CANONICAL)),
                       st.one_of(st.none(), st.sampled_from(["1", "2", "0.5", "true", "false", "bfloat16"])),
                       max_size=5),
       st.sampled_from(["vllm", "sglang"]))
def test_rendered_argv_never_repeats_a_flag_and_always_binds(args: dict[str, Any], engine: str) -> None:
    """Whatever (valid or not) a recipe says, no flag appears twice, the agent's bindings are
    always there, and a secret in the environment never reaches argv."""
    try:
        out = launch(args, engine=engine, env={"HF_TOKEN": TOKEN}, warm=False)
    except AimError:
        return      # invalid values (e.g. "true" for --dtype) are refused, which is the point
    options = [t for t in out.args if t.startswith("--")]
    assert len(options) == len(set(options))
    assert pairs(out.args)["--port"] == "8000" and pairs(out.args)["--host"] == "0.0.0.0"
    assert TOKEN not in " ".join(out.argv)


# ---------------------------------------------------------------- environment
def test_cache_contract_is_always_set_even_over_the_user() -> None:
    out = launch({}, env={"HF_HOME": "/elsewhere"})
    assert out.env["HF_HOME"] == "/cache/huggingface" and out.env["HF_HUB_CACHE"] == "/cache/huggingface/hub"


def test_rocm_defaults_per_gfx_and_gpu_count() -> None:
    mi300_tp2 = launch({}, gpus=2, hardware="MI300X").env
    assert mi300_tp2["HIP_FORCE_DEV_KERNARG"] == "1" and mi300_tp2["TORCH_BLAS_PREFER_HIPBLASLT"] == "1"
    assert mi300_tp2["VLLM_ROCM_USE_AITER"] == "1" and mi300_tp2["NCCL_MIN_NCHANNELS"] == "112"
    assert "NCCL_MIN_NCHANNELS" not in launch({}, gpus=1, hardware="MI300X").env
    mi250 = launch({}, gpus=2, hardware="MI250").env
    assert "VLLM_ROCM_USE_AITER" not in mi250 and "NCCL_MIN_NCHANNELS" not in mi250
    assert mi250["HIP_FORCE_DEV_KERNARG"] == "1"
    mi355_sglang = launch({}, engine="sglang", hardware="MI355X").env
    assert mi355_sglang["SGLANG_USE_AITER"] == "1" and "VLLM_ROCM_USE_AITER" not in mi355_sglang


def test_user_env_beats_recipe_env_beats_defaults() -> None:
    out = launch({}, gpus=2, env={"VLLM_ROCM_USE_AITER": "0"})
    assert out.env["VLLM_ROCM_USE_AITER"] == "0" and "VLLM_ROCM_USE_AITER" not in out.env_changes
    recipe = render(plan({}, gpus=2, env={"NCCL_MIN_NCHANNELS": "64", "MY_FLAG": "x"}), settings(), "/m", True,
                    base_env={**BASE_ENV, "MY_FLAG": "user"})
    assert recipe.env["NCCL_MIN_NCHANNELS"] == "64" and recipe.env["MY_FLAG"] == "user"


def test_cpu_target_starts_fast_on_vllm_cpu() -> None:
    out = launch({"--dtype": "bfloat16", "--kv-cache-dtype": "fp8"}, target="cpu", hardware="CPU")
    p = pairs(out.args)
    assert (p["--dtype"], p["--distributed-executor-backend"]) == ("float32", "uni")
    assert "--enforce-eager" in p and "--kv-cache-dtype" not in p
    assert out.env["VLLM_TARGET_DEVICE"] == "cpu" and out.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "HIP_FORCE_DEV_KERNARG" not in out.env
    assert launch({}, target="cpu", hardware="CPU", env={"VLLM_CPU_KVCACHE_SPACE": "4"}).env["VLLM_CPU_KVCACHE_SPACE"] == "4"
    # AIM_ENGINE_ARGS still wins over the target defaults
    assert pairs(launch({}, target="cpu", hardware="CPU", overrides='{"--dtype": "bfloat16"}').args)["--dtype"] == "bfloat16"


# ---------------------------------------------------------------- executable, adapters, imports
def test_engine_executable_is_found_on_the_engine_path(tmp_path: Path) -> None:
    exe = tmp_path / "vllm"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    out = launch({}, env={"PATH": f"{tmp_path}{os.pathsep}/usr/bin"})
    assert out.argv[:2] == [str(exe), "serve"] and out.command_len == 2 and out.args[0] == "/models/qwen"


def test_adapter_lookup() -> None:
    assert adapter("vllm").name == "vllm" and adapter("sglang").name == "sglang"
    with pytest.raises(AimError):
        adapter("tgi")


def test_importing_the_engines_package_stays_light() -> None:
    code = ("import sys, aim_engine.engines; "
            "bad = [m for m in ('yaml', 'vllm', 'sglang', 'torch') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
