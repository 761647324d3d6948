"""Property tests: whatever YAML a user writes, the validator returns a clean report.

"Clean" means: no exception escapes, no check crashed (`internal-error`), every problem names
its file and carries a message and a hint, and a non-empty report means exit 1.
"""

from __future__ import annotations

import copy
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aim_engine.catalog.validator import Inputs, validate
from tests.unit.catalog_helpers import shipped_model, shipped_recipe

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["--dtype", "2_gpu", "fp8", "MI250", "true", "8"]))
keys = st.one_of(st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12),
                 st.sampled_from(["recipe_id", "model_id", "vllm_serve", "args", "enabled", "--dtype", "1_gpu"]))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=5)), max_leaves=20)


def assert_clean(report, expected_file: str) -> None:
    assert not [p for p in report.problems if p.check == "internal-error"], report.render_text()
    for problem in report.problems:
        assert problem.file.endswith(expected_file)
        assert problem.message and problem.hint
        assert problem.line is None or problem.line >= 1
    report.render_text()
    report.to_dict()


@SETTINGS
@given(doc=documents)
def test_arbitrary_documents_as_recipes_and_models(tmp_path_factory, doc):
    directory: Path = tmp_path_factory.mktemp("p")
    path = directory / "any.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert_clean(validate(Inputs(recipe_files=[path])), "any.yaml")
    assert_clean(validate(Inputs(model_files=[path])), "any.yaml")


@SETTINGS
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_crashes(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("t") / "text.yaml"
    path.write_text(text, encoding="utf-8")
    assert_clean(validate(Inputs(recipe_files=[path])), "text.yaml")


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*prefix, index))


def _mutate(data, path, action, value):
    out = copy.deepcopy(data)
    if not path:
        return value if action == "replace" else out
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "rename" and isinstance(parent, dict) and isinstance(value, str):
        parent[value] = parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return out


BASE_RECIPE = shipped_recipe()
BASE_MODEL = shipped_model()
RECIPE_PATHS = list(_paths(BASE_RECIPE))
MODEL_PATHS = list(_paths(BASE_MODEL))


@SETTINGS
@given(path=st.sampled_from(RECIPE_PATHS), action=st.sampled_from(["replace", "delete", "rename"]), value=documents)
def test_mutated_recipes_give_clean_reports(tmp_path_factory, path, action, value):
    data = _mutate(BASE_RECIPE, path, action, value)
    file = tmp_path_factory.mktemp("m") / "qwen3-32b-mi250-bf16.yaml"
    file.write_text(yaml.safe_dump(data))
    report = validate(Inputs(recipe_files=[file]))
    assert_clean(report, file.name)
    if data == BASE_RECIPE:
        assert report.ok


@SETTINGS
@given(path=st.sampled_from(MODEL_PATHS), action=st.sampled_from(["replace", "delete"]), value=documents)
def test_mutated_models_give_clean_reports(tmp_path_factory, path, action, value):
    data = _mutate(BASE_MODEL, path, action, value)
    file = tmp_path_factory.mktemp("m") / "model.yaml"
    file.write_text(yaml.safe_dump(data))
    assert_clean(validate(Inputs(model_files=[file])), file.name)
