"""The engine environment's precedence, as a property: cache contract > user > recipe > defaults."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from aim_engine.engines import environment
from aim_engine.engines.environment import EnvContext

NAMES = st.sampled_from(["A", "B", "C", "HF_HOME", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
ENVS = st.dictionaries(NAMES, st.text(alphabet="xyz01", min_size=1, max_size=3), max_size=5)
CTX = EnvContext(target="gpu", engine="vllm", gfx="gfx942", tensor_parallel=2)


@given(user=ENVS, recipe=ENVS, defaults=ENVS, warm=st.booleans())
def test_precedence(user: dict[str, str], recipe: dict[str, str], defaults: dict[str, str], warm: bool) -> None:
    rules = ({"when": {}, "env": defaults},)
    out = environment.build(user, CTX, hf_home="/c/hf", hub_cache="/c/hf/hub", cache_warm=warm,
                            hf_token=None, recipe_env=recipe, rules=rules)
    env = out.env
    assert env["HF_HOME"] == "/c/hf" and env["HF_HUB_CACHE"] == "/c/hf/hub"
    if warm:
        assert env["HF_HUB_OFFLINE"] == "1"
        assert not {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} & set(env)
    for name in {*user, *recipe, *defaults} - {"HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN",
                                               "HUGGING_FACE_HUB_TOKEN"}:
        expected = user.get(name, recipe.get(name, defaults.get(name)))
        assert env[name] == expected
    assert out.changes == {k: v for k, v in env.items() if user.get(k) != v}


def test_rules_match_on_every_key() -> None:
    rules = ({"when": {"target": "gpu", "engine": "vllm", "gfx": ["gfx942"], "min_tensor_parallel": 2},
              "env": {"X": "1"}},)
    assert environment.defaults(CTX, rules) == {"X": "1"}
    for ctx in (EnvContext("cpu", "vllm", None, 2), EnvContext("gpu", "sglang", "gfx942", 2),
                EnvContext("gpu", "vllm", "gfx90a", 2), EnvContext("gpu", "vllm", "gfx942", 1)):
        assert environment.defaults(ctx, rules) == {}


def test_a_typo_in_the_rules_is_an_error_not_a_rule_for_everyone() -> None:
    with pytest.raises(ValueError, match="gfxx"):
        environment.defaults(CTX, ({"when": {"gfxx": ["gfx942"]}, "env": {"X": "1"}},))


def test_the_shipped_rules_parse() -> None:
    for ctx in (CTX, EnvContext("cpu", "vllm", None, 1), EnvContext("gpu", "sglang", "gfx950", 8)):
        assert all(isinstance(v, str) for v in environment.defaults(ctx).values())
