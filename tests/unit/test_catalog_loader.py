"""Loading: YAML line maps, schema problems, conversion to types, `Catalog` queries, paths."""

from __future__ import annotations


import pytest

from aim_engine.catalog import Catalog, loader, paths
from aim_engine.catalog.types import Model, Recipe
from aim_engine.catalog.yaml_lines import YamlSyntaxError, line_map, parse
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.unit.catalog_helpers import shipped_model, shipped_recipe, validate_recipe, write


def test_line_map_points_at_keys_and_items():
    text = "a: 1\nb:\n  c:\n    - x\n    - y: 2\n"
    lines = line_map(text)
    assert lines.line(("a",)) == 1
    assert lines.line(("b", "c")) == 3
    assert lines.line(("b", "c", 1)) == 5
    assert lines.line(("b", "c", 1, "y")) == 5
    assert lines.line(("b", "c", 1, "missing")) == 5     # falls back to the parent
    assert lines.line(("zzz",)) == 1                    # the document root


def test_parse_error_carries_line():
    with pytest.raises(YamlSyntaxError) as info:
        parse("a: 1\nb: [1, 2\nc: 3\n")
    assert info.value.line is not None and info.value.line >= 2


def test_non_string_keys_become_strings():
    assert parse("1: a\nnull: b\n") == {"1": "a", "None": "b"}


def test_shipped_paths_from_checkout():
    assert (paths.shipped_recipes_dir() / "schema.json").is_file()
    assert (paths.shipped_models_dir() / "schema.json").is_file()
    assert paths.recipe_template_path().is_file()


def test_yaml_files_are_flat_and_sorted(tmp_path):
    for name in ("b.yaml", "a.yml", "c.txt", "templates/t.yaml"):
        write(tmp_path, name, "x: 1\n") if "/" not in name else write(tmp_path / "templates", "t.yaml", "x: 1\n")
    assert [p.name for p in loader.yaml_files(tmp_path)] == ["a.yml", "b.yaml"]


def test_conversion_to_types(tmp_path):
    data = shipped_recipe("llama-3.1-405b-instruct-mi300x-fp8")
    data["vllm_serve"] = {"4_gpu": {"enabled": False, "args": {"--tensor-parallel-size": "4"}},
                          "8_gpu": {"enabled": True, "args": {"--tensor-parallel-size": "8"}, "env": {"A_B": "1"}}}
    data["sglang_serve"] = {"8_gpu": {"enabled": True, "args": {"--tp-size": "8"}}}
    doc = loader.read_document(loader.RECIPE, write(tmp_path, "r.yaml", data))
    recipe: Recipe = doc.obj
    assert not doc.problems and recipe.source == tmp_path / "r.yaml"
    assert recipe.config("vllm", 8).args == {"--tensor-parallel-size": "8"} and recipe.config("vllm", 8).env == {"A_B": "1"}
    assert recipe.config("sglang", 8).enabled and recipe.config("sglang", 4) is None
    assert [(c.engine, c.gpus) for c in recipe.enabled_configs()] == [("vllm", 8), ("sglang", 8)]
    model: Model = loader.read_document(loader.MODEL, paths.shipped_models_dir() / "llama-3.1-405b-instruct.yaml").obj
    assert model.slug == "llama-3.1-405b-instruct" and model.attention.kv_heads == 8
    assert model.checkpoint("amd/Llama-3.1-405B-Instruct-FP8-KV").precision == "fp8"


def test_default_slug_is_lower_cased_repo_name():
    data = shipped_model()
    data.pop("slug")
    assert loader.to_model(data).slug == "qwen3-32b"


def test_schema_problem_for_missing_and_wrong_type(tmp_path):
    data = shipped_recipe()
    data.pop("precision")
    data["vllm_serve"]["2_gpu"]["enabled"] = "yes please"
    report = validate_recipe(tmp_path, data)
    by_path = {p.path: p for p in report.problems if p.check == "schema"}
    assert by_path[()].message == "missing required key 'precision'"
    assert "add `precision:`" in by_path[()].hint
    assert by_path[("vllm_serve", "2_gpu", "enabled")].message.endswith("is not of type boolean")


def test_unquoted_number_hint(tmp_path):
    data = shipped_recipe()
    data["vllm_serve"]["2_gpu"]["args"]["--max-batch-size"] = 8
    [problem] = validate_recipe(tmp_path, data).problems
    assert problem.hint == 'quote it: "8"' and problem.path[-1] == "--max-batch-size"


def test_missing_serve_sections(tmp_path):
    data = shipped_recipe()
    data.pop("vllm_serve")
    data.pop("sglang_serve", None)
    report = validate_recipe(tmp_path, data)
    [problem] = [p for p in report.problems if p.check == "schema"]
    assert [p.check for p in report.problems if p.check != "schema"] == ["enabled-config"]
    assert "vllm_serve or sglang_serve" in problem.message


# ----------------------------------------------------------------------------- Catalog
@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.from_dirs([paths.shipped_models_dir()], [paths.shipped_recipes_dir()])


@pytest.mark.parametrize("name", ["Qwen/Qwen3-32B", "qwen/qwen3-32b", "qwen3-32b", " QWEN3-32B "])
def test_find_model_by_any_name(catalog, name):
    assert catalog.find_model(name).model_id == "Qwen/Qwen3-32B"


def test_find_model_by_variant_and_alias(catalog):
    assert catalog.find_model("amd/Llama-3.1-405B-Instruct-FP8-KV").model_id == "meta-llama/Llama-3.1-405B-Instruct"
    assert catalog.find_model("llama-4-maverick").model_id == "meta-llama/Llama-4-Maverick-17B-128E-Instruct"
    assert catalog.find_model("nobody/nothing") is None and catalog.find_model("") is None


def test_recipes_for(catalog):
    ids = [r.recipe_id for r in catalog.recipes_for("llama-3.1-405b")]
    assert "llama-3.1-405b-instruct-mi300x-fp8" in ids
    assert all(r.model_id == "meta-llama/Llama-3.1-405B-Instruct" for r in catalog.recipes_for(catalog.find_model("llama-3.1-405b")))
    assert catalog.recipes_for("nobody/nothing") == []


def test_load_uses_settings_dirs_and_user_recipe_wins(tmp_path, clean_env):
    data = shipped_recipe()
    data["description"] = "user override"
    write(tmp_path / "r", f"{data['recipe_id']}.yaml", data)
    settings = Settings.from_env({"AIM_RECIPES_DIR": str(tmp_path / "r")})
    catalog = Catalog.load(settings)
    assert catalog.recipe(data["recipe_id"]).description == "user override"
    assert len([r for r in catalog.recipes if r.recipe_id == data["recipe_id"]]) == 1


def test_load_rejects_broken_files_listing_them(tmp_path):
    write(tmp_path, "bad.yaml", "recipe_id: [\n")
    write(tmp_path, "worse.yaml", {"recipe_id": "x"})
    with pytest.raises(AimError) as info:
        Catalog.from_dirs([paths.shipped_models_dir()], [tmp_path])
    text = str(info.value)
    assert "bad.yaml" in text and "worse.yaml" in text and "aim-engine validate" in text


def test_load_missing_dir_is_an_error(tmp_path):
    with pytest.raises(AimError, match="does not exist"):
        Catalog.from_dirs([tmp_path / "nope"], [])
