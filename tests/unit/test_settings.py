"""Settings: every AIM_* variable parsed into a typed, frozen object; bad values named clearly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from aim_engine.errors import SettingsError
from aim_engine.settings import VARIABLES, Settings

# variable -> (a valid value, attribute, expected typed value)
GOOD: dict[str, tuple[str, str, object]] = {
    "AIM_MODEL_ID": ("Qwen/Qwen3-32B", "model_id", "Qwen/Qwen3-32B"),
    "AIM_MODEL_REVISION": ("v1.0", "model_revision", "v1.0"),
    "AIM_RECIPE_ID": ("qwen3-32b-mi300x-bf16", "recipe_id", "qwen3-32b-mi300x-bf16"),
    "AIM_PRECISION": ("FP8", "precision", "fp8"),
    "AIM_ENGINE": ("sglang", "engine", "sglang"),
    "AIM_METRIC": ("throughput", "metric", "throughput"),
    "AIM_GPU_MODEL": ("MI300X", "gpu_model", "MI300X"),
    "AIM_GPU_COUNT": ("4", "gpu_count", 4),
    "AIM_ENGINE_ARGS": ('{"--max-model-len": "8192", "--enforce-eager": true, "--x": null}', "engine_args",
                        {"--max-model-len": "8192", "--enforce-eager": True, "--x": None}),
    "AIM_CACHE_PATH": ("/data/cache", "cache_path", Path("/data/cache")),
    "AIM_OFFLINE": ("yes", "offline", True),
    "AIM_LOCK_TIMEOUT": ("12.5", "lock_timeout", 12.5),
    "AIM_CACHE_VERIFY": ("full", "cache_verify", "full"),
    "AIM_PORT": ("9000", "port", 9000),
    "AIM_HEALTH_PORT": ("9001", "health_port", 9001),
    "AIM_RECIPES_DIR": ("/a:/b", "recipes_dirs", (Path("/a"), Path("/b"))),
    "AIM_MODELS_DIR": ("/m", "models_dirs", (Path("/m"),)),
    "AIM_SERVED_MODEL_NAME": ("qwen", "served_model_name", "qwen"),
    "AIM_TRUST_REMOTE_CODE": ("true", "trust_remote_code", True),
    "AIM_LOG_LEVEL": ("DEBUG", "log_level", "debug"),
    "AIM_LOG_FORMAT": ("json", "log_format", "json"),
    "AIM_DEBUG": ("1", "debug", True),
    "AIM_SYSFS_ROOT": ("/tmp/sys", "sysfs_root", Path("/tmp/sys")),
    "AIM_FAIL_GRACE": ("2.5", "fail_grace", 2.5),
    "AIM_ENGINE_METRICS": ("false", "engine_metrics", False),
    "AIM_IMAGE_FLAVOUR": ("rocm-vllm", "image_flavour", "rocm-vllm"),
    "AIM_ENGINE_FLAGS_DIR": ("/opt/flags", "flags_dir", Path("/opt/flags")),
    "AIM_NODE_COUNT": ("2", "node_count", 2),
    "AIM_NODE_RANK": ("1", "node_rank", 1),
    "AIM_LEADER_ADDRESS": ("leader-0.svc", "leader_address", "leader-0.svc"),
    "AIM_DIST_PORT": ("29600", "dist_port", 29600),
    "AIM_MULTINODE_BACKEND": ("Ray", "multinode_backend", "ray"),
    "AIM_PEER_TIMEOUT": ("30.5", "peer_timeout", 30.5),
    "AIM_NODE_ADDRESS": ("10.0.0.7", "node_address", "10.0.0.7"),
    "AIM_NETWORK_INTERFACE": ("eth0", "network_interface", "eth0"),
    "AIM_LEADER_HEALTH_PORT": ("9101", "leader_health_port", 9101),
    "HF_TOKEN": ("hf_abcdefghijklmnopqrstuvwx", "hf_token", "hf_abcdefghijklmnopqrstuvwx"),
    "HF_ENDPOINT": ("http://127.0.0.1:5000", "hf_endpoint", "http://127.0.0.1:5000"),
}

# variable -> (bad value, text that must appear in the message: the allowed values)
BAD: dict[str, tuple[str, str]] = {
    "AIM_PRECISION": ("fp3", "auto, fp16, bf16, fp8, int8, int4"),
    "AIM_ENGINE": ("tgi", "auto, vllm, sglang"),
    "AIM_METRIC": ("fastest", "latency, throughput"),
    "AIM_GPU_COUNT": ("abc", "a whole number from 0 to 64 GPUs"),
    "AIM_FAIL_GRACE": ("-1", "a number from 0 to 3600 seconds"),
    "AIM_OFFLINE": ("maybe", "true/false"),
    "AIM_LOCK_TIMEOUT": ("-5", "a number from 0 to 86400 seconds"),
    "AIM_CACHE_VERIFY": ("sha1", "size, full"),
    "AIM_PORT": ("70000", "a whole number from 1 to 65535"),
    "AIM_HEALTH_PORT": ("port", "a whole number from 1 to 65535"),
    "AIM_LOG_LEVEL": ("verbose", "debug, info, warning, error"),
    "AIM_LOG_FORMAT": ("xml", "auto, json, console"),
    "AIM_DEBUG": ("2", "true/false"),
    "AIM_ENGINE_METRICS": ("maybe", "true/false"),
    "AIM_NODE_COUNT": ("0", "a whole number from 1 to 64 nodes"),
    "AIM_NODE_RANK": ("64", "a whole number from 0 to 63"),
    "AIM_DIST_PORT": ("0", "a whole number from 1 to 65535"),
    "AIM_MULTINODE_BACKEND": ("mpi", "auto, native, ray"),
    "AIM_PEER_TIMEOUT": ("-1", "a number from 0 to 86400 seconds"),
    "AIM_LEADER_HEALTH_PORT": ("65536", "a whole number from 1 to 65535"),
}


def test_every_variable_is_covered():
    assert set(GOOD) == {v.name for v in VARIABLES}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_each_variable_is_parsed(name):
    value, attribute, expected = GOOD[name]
    env = {name: value}
    if name == "AIM_PORT":
        env["AIM_HEALTH_PORT"] = "9001"
    assert getattr(Settings.from_env(env), attribute) == expected


def test_defaults():
    s = Settings.from_env({})
    assert (s.precision, s.engine, s.metric, s.port, s.health_port, s.offline, s.cache_verify) == \
        ("auto", "auto", "latency", 8000, 8001, False, "size")
    assert s.cache_path == Path("/workspace/model-cache") and s.hf_home == s.cache_path / "huggingface"
    assert s.hub_cache == s.hf_home / "hub" and s.engine_args == {} and s.recipes_dirs == ()


def test_blank_means_default():
    assert Settings.from_env({"AIM_PRECISION": "  ", "AIM_PORT": ""}).port == 8000


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_names_variable_value_and_allowed(name):
    value, allowed = BAD[name]
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    text = str(info.value)
    assert name in text and value in text and allowed in text
    assert info.value.exit_code == 2


def test_every_problem_is_reported_at_once():
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"AIM_GPU_COUNT": "abc", "AIM_PRECISION": "fp3", "AIM_PORT": "0"})
    assert len(info.value.problems) == 3


@pytest.mark.parametrize("value, fragment", [('["--x"]', "must be a JSON object"), ('{"x": 1}', "keys must be flags"),
                                             ("{not json", "not valid JSON .* at column 2")])
def test_engine_args_shape(value, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env({"AIM_ENGINE_ARGS": value})


def test_ports_must_differ():
    with pytest.raises(SettingsError, match="must differ"):
        Settings.from_env({"AIM_PORT": "9000", "AIM_HEALTH_PORT": "9000"})


def test_frozen_and_token_masked():
    s = Settings.from_env({"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwx"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    assert "hf_abc" not in repr(s)
    public = s.public_dict()
    assert public["hf_token"] == "***" and public["cache_path"] == "/workspace/model-cache"


def test_legacy_token_variable():
    assert Settings.from_env({"HUGGING_FACE_HUB_TOKEN": "hf_x"}).hf_token == "hf_x"


def test_reads_os_environ_by_default(clean_env, monkeypatch):
    monkeypatch.setenv("AIM_METRIC", "throughput")
    assert Settings.from_env().metric == "throughput"


# Issue 12 items 3 and 12: every count, port and duration is bounded and written in plain ASCII
# digits; the message names the variable, the value and the range.
@pytest.mark.parametrize("name, value", [
    ("AIM_GPU_COUNT", "1" + "0" * 30), ("AIM_GPU_COUNT", "10000000"), ("AIM_GPU_COUNT", "65"),
    ("AIM_PORT", "1_000"), ("AIM_PORT", "\u0661\u0660\u0660\u0660"), ("AIM_PORT", "+8000"), ("AIM_PORT", "0x1f40"),
    ("AIM_HEALTH_PORT", "8e3"), ("AIM_FAIL_GRACE", "nan"), ("AIM_FAIL_GRACE", "inf"), ("AIM_FAIL_GRACE", "1e400"),
    ("AIM_FAIL_GRACE", "3601"), ("AIM_LOCK_TIMEOUT", "nan"), ("AIM_LOCK_TIMEOUT", "inf"), ("AIM_LOCK_TIMEOUT", "1e400"),
    ("AIM_LOCK_TIMEOUT", "86401"), ("AIM_LOCK_TIMEOUT", "\uff11\uff10"), ("AIM_GPU_COUNT", "-1"), ("AIM_GPU_COUNT", "8.0"),
])
def test_numbers_are_bounded_plain_ascii_digits(name, value):
    bounds = next(v.bounds for v in VARIABLES if v.name == name)
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value, "AIM_HEALTH_PORT": "9001"} if name == "AIM_PORT" else {name: value})
    text = str(info.value)
    assert name in text and bounds.describe() in text


def test_every_number_setting_has_bounds():
    numbers = {"AIM_GPU_COUNT", "AIM_PORT", "AIM_HEALTH_PORT", "AIM_LOCK_TIMEOUT", "AIM_FAIL_GRACE",
               "AIM_NODE_COUNT", "AIM_NODE_RANK", "AIM_DIST_PORT", "AIM_PEER_TIMEOUT", "AIM_LEADER_HEALTH_PORT"}
    assert {v.name for v in VARIABLES if v.bounds} == numbers


@pytest.mark.parametrize("name, value, fragment", [
    ("AIM_SERVED_MODEL_NAME", "--trust-remote-code", "starts with '-'"),
    ("AIM_SERVED_MODEL_NAME", "qwen\x1b[2J", "control characters"),
    ("AIM_SERVED_MODEL_NAME", "a\u2028b", "control characters"),
    ("AIM_MODEL_ID", "org/" + "x" * 5000, "too long"),
    ("AIM_MODEL_ID", "org/" + "x" * 300, "longer than 255 bytes"),
    ("AIM_MODEL_REVISION", "r" * 5000, "too long"),
    ("AIM_MODEL_REVISION", "--all", "starts with '-'"),
    ("AIM_RECIPE_ID", "a b", "white space"),
    ("HF_ENDPOINT", "file:///etc/passwd", "not an http"),
])
def test_names_are_refused_with_the_reason(name, value, fragment):
    with pytest.raises(SettingsError, match=fragment) as info:
        Settings.from_env({name: value})
    assert len(str(info.value)) < 400      # a 5,000-character value is not echoed whole (item 16)


def test_engine_args_nesting_is_an_error_not_a_traceback():
    with pytest.raises(SettingsError, match="nests too deeply"):
        Settings.from_env({"AIM_ENGINE_ARGS": "[" * 60000})
