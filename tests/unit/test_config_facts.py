"""The one config.json reader (`catalog.config_facts`): the catalog tools and models planned from
outside the catalog read a checkpoint the same way, and hostile content is a clear error.

Issue 13 item 3 (two readers disagreed on Gemma 3), issue 12 items 6 (wrong types in a local
config.json / index) and 8 (negative or absurd facts), issue 13 item 4 (remote code only by
opt-in). The property tests drive the real `aim-engine plan` entry point in-process over
arbitrary config.json and index content.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from aim_engine import cli
from aim_engine.catalog import cards, config_facts
from aim_engine.errors import AimError
from aim_engine.planner.model_source import model_from_config, resolve
from tests.support.hang_guard import bounded
from tests.unit.selection_cases import catalog_of, settings
from tests.unit.test_cards import GEMMA3_27B, REAL

# ---------------------------------------------------------------- one reader, one answer


def _model_paths(model: Any) -> dict[tuple, Any]:
    a = model.attention
    out = {("layers",): model.layers, ("hidden_size",): model.hidden_size,
           ("max_position_embeddings",): model.max_position_embeddings, ("vocab_size",): model.vocab_size,
           ("attention", "heads"): a.heads, ("attention", "kv_heads"): a.kv_heads, ("attention", "kind"): a.kind,
           ("attention", "head_dim"): a.head_dim, ("attention", "sliding_window"): a.sliding_window,
           ("attention", "sliding_window_layers"): a.sliding_window_layers}
    if model.moe:
        out.update({("moe", "experts"): model.moe.experts, ("moe", "experts_per_token"): model.moe.experts_per_token,
                    ("moe", "shared_experts"): model.moe.shared_experts})
    return out


def test_gemma3_is_read_the_same_by_fetch_cards_and_by_planning() -> None:
    """Planning Gemma 3 from its config.json used to see 0 sliding layers (= every layer
    windowed), 4096 positions and a 32000 vocabulary; fetch-cards saw 52, 131072, 262208."""
    model = model_from_config(GEMMA3_27B, "google/gemma-3-27b-it")
    assert model.attention.sliding_window == 1024 and model.attention.sliding_window_layers == 52
    assert model.max_position_embeddings == 131072 and model.vocab_size == 262208


@pytest.mark.parametrize("filename,config,total", REAL, ids=[r[0] for r in REAL])
def test_every_published_config_gives_one_answer(filename: str, config: dict, total: int) -> None:
    card = cards.card_facts(config, total)
    planned = _model_paths(model_from_config(config, "org/x", total))
    for path, value in planned.items():
        if path in card:
            assert card[path] == value, f"{filename} {path}: fetch-cards {card[path]!r}, planning {value!r}"


# ---------------------------------------------------------------- hostile values: clear errors

BASE = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048,
        "intermediate_size": 128, "torch_dtype": "bfloat16"}


@pytest.mark.parametrize("key, value", [
    ("hidden_size", "4096"), ("hidden_size", [4096]), ("hidden_size", float("nan")), ("hidden_size", True),
    ("hidden_size", -4096), ("vocab_size", -5), ("num_key_value_heads", -8), ("num_hidden_layers", 0),
    ("max_position_embeddings", 1e30), ("hidden_size", 4096.5), ("num_attention_heads", {"a": 1}),
])
def test_wrong_numbers_name_the_file_key_value_and_range(key: str, value: Any) -> None:
    with pytest.raises(AimError) as info:
        model_from_config({**BASE, key: value}, "org/x", where="/models/x/config.json")
    message = str(info.value)
    assert message.startswith(f"/models/x/config.json: {key} is ") and "whole number from" in message, message


@pytest.mark.parametrize("patch, needle", [
    ({"quantization_config": "fp8"}, "quantization_config is \"fp8\"; it must be a JSON object"),
    ({"quantization_config": {"quant_method": 8}}, "quantization_config.quant_method is 8; it must be a string"),
    ({"quantization_config": {"quant_method": "awq", "bits": "4"}}, "quantization_config.bits is \"4\""),
    ({"model_type": "gemma3", "text_config": "x"}, "text_config is \"x\"; it must be a JSON object"),
    ({"model_type": "gemma3", "text_config": {**BASE, "hidden_size": -1}}, "text_config.hidden_size is -1"),
    ({"architectures": "LlamaForCausalLM"}, "architectures is \"LlamaForCausalLM\"; it must be a list of strings"),
    ({"num_key_value_heads": 3}, "num_attention_heads 4 cannot share num_key_value_heads 3 evenly"),
    ({"torch_dtype": 16}, "torch_dtype is 16; it must be a string"),
])
def test_wrong_shapes_are_clear_errors(patch: dict, needle: str) -> None:
    with pytest.raises(AimError) as info:
        model_from_config({**BASE, **patch}, "org/x")
    assert needle in str(info.value)


@pytest.mark.parametrize("index, needle", [
    ([1, 2], "must hold a JSON object, got a list"),
    ({"metadata": {"total_size": -1288490188}}, "total_size is -1288490188; it must be a whole number of bytes"),
    ({"metadata": {"total_size": "12"}}, "total_size is \"12\""),
    ({"metadata": []}, "metadata is []; it must be a JSON object"),
])
def test_a_damaged_index_is_an_error_not_a_negative_size(tmp_path: Path, index: Any, needle: str) -> None:
    """A negative total_size used to plan '-1.2 GiB weights'; an index that is a list, a traceback."""
    (tmp_path / "config.json").write_text(json.dumps(BASE))
    (tmp_path / config_facts.INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(AimError) as info:
        resolve(settings(AIM_MODEL_ID=str(tmp_path)), catalog_of(()))
    assert needle in str(info.value) and config_facts.INDEX_FILE in str(info.value)


def test_gpt_oss_without_layer_types_is_read_not_a_crash() -> None:
    """Found by the property test: gpt_oss's rule counts `layer_types`; without the list the
    window (if any) applies to every layer, as for Mistral."""
    assert config_facts.read({**BASE, "model_type": "gpt_oss"}).sliding_window is None
    facts = config_facts.read({**BASE, "model_type": "gpt_oss", "sliding_window": 128})
    assert (facts.sliding_window, facts.sliding_window_layers) == (128, 0)


def test_non_utf8_config_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b'{"hidden_size": "\xff\xfe"}')
    with pytest.raises(AimError) as info:
        resolve(settings(AIM_MODEL_ID=str(tmp_path)), catalog_of(()))
    assert f"config.json {tmp_path / 'config.json'} is not UTF-8" in str(info.value)


# ---------------------------------------------------------------- remote code: opt-in only


def test_auto_map_needs_the_explicit_opt_in(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**BASE, "auto_map": {"AutoConfig": "x.Config"}}))
    with pytest.raises(AimError) as info:
        resolve(settings(AIM_MODEL_ID=str(tmp_path)), catalog_of(()))
    assert "AIM_TRUST_REMOTE_CODE" in str(info.value) and "auto_map" in str(info.value)
    source = resolve(settings(AIM_MODEL_ID=str(tmp_path), AIM_TRUST_REMOTE_CODE="true"), catalog_of(()))
    assert source.model.trust_remote_code
    assert any("AIM_TRUST_REMOTE_CODE=true" in note for note in source.notes)


def test_without_auto_map_no_remote_code_whatever_the_setting(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(BASE))
    source = resolve(settings(AIM_MODEL_ID=str(tmp_path), AIM_TRUST_REMOTE_CODE="true"), catalog_of(()))
    assert not source.model.trust_remote_code


# ---------------------------------------------------------------- properties through `aim-engine plan`

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=12),
                         st.floats(allow_nan=True, allow_infinity=True))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)
KEYS = list(BASE) + ["num_key_value_heads", "head_dim", "sliding_window", "layer_types", "use_sliding_window",
                     "quantization_config", "text_config", "auto_map", "num_local_experts", "num_experts_per_tok",
                     "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "tie_word_embeddings"]
# A real config with some keys replaced by arbitrary JSON (most inputs stay close to valid, so the
# deep code paths are reached), or arbitrary JSON altogether.
CONFIGS = st.one_of(
    st.fixed_dictionaries({}, optional={k: JSON for k in KEYS}).map(lambda patch: {**BASE, **patch}),
    st.builds(lambda model_type, patch: {**BASE, "model_type": model_type, **patch},
              st.sampled_from(sorted(config_facts.CONFIG_MAPS) + ["unknown"]),
              st.dictionaries(st.sampled_from(KEYS), JSON, max_size=3)),
    JSON,
)
INDEXES = st.one_of(st.none(), JSON, st.builds(lambda size: {"metadata": {"total_size": size}, "weight_map": {}}, JSON_SCALARS))
# Seeds: the `ci` profile (tests/conftest.py) derandomizes under `make test`.
CI = hsettings(max_examples=100, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@pytest.fixture(scope="module")
def plan_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("config-property")
    (base / "canary").mkdir()
    (base / "canary" / "keep.txt").write_text("canary\n")
    (base / "sysfs").mkdir()
    return {"base": base, "canary": base / "canary", "sysfs": base / "sysfs", "cache": base / "cache"}


@CI
@given(config=CONFIGS, index=INDEXES, raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_plan_over_arbitrary_config_and_index(plan_env: dict[str, Path], config: Any, index: Any,
                                              raw: bytes | None) -> None:
    """Invariants: exit 0, 1 or 2; no traceback (an exception escaping `main` is one); no file
    outside the temp dir changed (the canary tree and the model directory are unchanged)."""
    model_dir = plan_env["base"] / "model"
    model_dir.mkdir(exist_ok=True)
    for stale in model_dir.iterdir():
        stale.unlink()
    (model_dir / "config.json").write_bytes(raw if raw is not None else _dump(config).encode())
    if index is not None:
        (model_dir / config_facts.INDEX_FILE).write_text(_dump(index))
    before = {**_tree_digest(plan_env["canary"]), **{f"model/{k}": v for k, v in _tree_digest(model_dir).items()}}
    env = {"AIM_MODEL_ID": str(model_dir), "AIM_GPU_MODEL": "MI300X", "AIM_GPU_COUNT": "1",
           "AIM_SYSFS_ROOT": str(plan_env["sysfs"]), "AIM_CACHE_PATH": str(plan_env["cache"]),
           "AIM_OFFLINE": "1", "AIM_LOG_LEVEL": "error", "PATH": os.environ.get("PATH", "")}
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), bounded("aim-engine plan"):
        code = cli.main(["plan"])
    assert code in (0, 1, 2), (code, err.getvalue())
    assert "Traceback" not in err.getvalue() + out.getvalue()
    after = {**_tree_digest(plan_env["canary"]), **{f"model/{k}": v for k, v in _tree_digest(model_dir).items()}}
    assert after == before
    if code != 0:
        assert err.getvalue().startswith("aim-engine: error: "), err.getvalue()


@CI
@given(config=CONFIGS)
def test_the_reader_never_raises_anything_but_a_config_error(config: Any) -> None:
    """The pure reader: a Facts with every count >= 1 (>= 0 where 0 means none), or ConfigError."""
    try:
        facts = config_facts.read(config)
    except config_facts.ConfigError:
        return
    for name in ("layers", "hidden_size", "heads", "kv_heads", "head_dim"):
        value = getattr(facts, name)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1, (name, value)
    for name in ("vocab_size", "max_position_embeddings", "intermediate_size", "sliding_window", "experts"):
        value = getattr(facts, name)
        assert value is None or (isinstance(value, int) and value >= 1 and math.isfinite(value)), (name, value)
    assert facts.sliding_window_layers >= 0
