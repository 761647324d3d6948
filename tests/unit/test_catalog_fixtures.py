"""The shipped catalog, the template and the seed's DeepSeek fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from aim_engine.catalog import checks, paths
from aim_engine.catalog.validator import Inputs, validate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "catalog"
SEED_RECIPES = ("qwen3-32b-mi250-bf16", "llama-3.1-405b-instruct-mi300x-fp8",
                "llama-4-maverick-17b-128e-instruct-mi300x-fp8", "meta-llama-3-8b-instruct-mi250-fp16")


def test_shipped_catalog_is_clean():
    report = validate()
    assert report.ok, report.render_text()
    assert report.recipes >= 4 and report.models >= 4


def test_seed_recipes_exist_with_their_ids():
    for rid in SEED_RECIPES:
        data = yaml.safe_load((paths.shipped_recipes_dir() / f"{rid}.yaml").read_text())
        assert data["recipe_id"] == rid


def test_template_validates_once_named_after_its_id(tmp_path):
    data = yaml.safe_load(paths.recipe_template_path().read_text())
    target = tmp_path / f"{data['recipe_id']}.yaml"
    shutil.copy(paths.recipe_template_path(), target)
    report = validate(Inputs(recipe_files=[target]))
    assert report.ok, report.render_text()


def test_template_documents_every_top_level_field():
    text = paths.recipe_template_path().read_text()
    schema = yaml.safe_load((paths.shipped_recipes_dir() / "schema.json").read_text())
    for key in schema["properties"]:
        if key != "generated":   # written by the generator, never by hand
            assert f"\n{key}:" in text, key


def test_deepseek_fp16_on_mi250_passes_structural_checks():
    """The seed's impossible example: every structural check passes; only the planner's
    memory check (when installed) may reject it."""
    report = validate(Inputs(recipe_files=[FIXTURES / "deepseek-r1-0528-mi250-fp16.yaml"],
                             model_dirs=[FIXTURES / "models"]))
    builtin = {c.name for c in checks.CHECKS} | {"schema", "yaml", "internal-error"}
    assert [p for p in report.problems if p.check in builtin] == []
    extension_names = {c.name for c in checks.all_checks()} - builtin
    if "memory-fit" in extension_names:
        assert [p.check for p in report.problems] == ["memory-fit"]
