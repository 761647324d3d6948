"""The boot catalog: the shipped catalog trusted and read lazily, user directories checked.

`Catalog.load` must give exactly what reading and schema-checking every file gives (same
models, same recipes in the same order, same `recipes_for` / `recipe` answers), while reading
only what boot needs: no jsonschema, and only the recipe files of the model being planned.
The latter is checked in a fresh interpreter, through the files it really opens (an audit hook),
not through timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aim_engine.catalog import Catalog, loader, paths
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.unit.catalog_helpers import shipped_model, shipped_recipe, write

REPO = Path(__file__).resolve().parents[2]


def _eager(models_dirs: list[Path], recipes_dirs: list[Path]) -> Catalog:
    """Every file read and schema-checked: the reference the lazy catalog must equal."""
    return Catalog.from_dirs([paths.shipped_models_dir(), *models_dirs], [paths.shipped_recipes_dir(), *recipes_dirs])


def _assert_same(lazy: Catalog, eager: Catalog) -> None:
    # Queries first, on the still-lazy catalog; `recipes` last (it reads everything).
    for model in eager.models:
        assert lazy.recipes_for(model) == eager.recipes_for(model), model.model_id
        assert lazy.recipes_for(model.slug.upper()) == eager.recipes_for(model.slug.upper())
    assert lazy.recipe_ids() == [r.recipe_id for r in eager.recipes]
    for recipe in eager.recipes:
        assert lazy.recipe(recipe.recipe_id) == recipe
        assert lazy.recipe(recipe.recipe_id.upper()) == recipe
    assert lazy.recipe("no-such-recipe") is None
    assert lazy.models == eager.models
    assert lazy.recipes == eager.recipes
    assert lazy.recipe_ids() == [r.recipe_id for r in eager.recipes]


def test_load_equals_reading_and_checking_everything(clean_env):
    _assert_same(Catalog.load(Settings.from_env({})), _eager([], []))


def _user_catalog(tmp_path: Path) -> tuple[Path, Path]:
    """User directories that exercise every clash rule against the shipped catalog."""
    models, recipes = tmp_path / "models", tmp_path / "recipes"
    # A user model replacing a shipped one under another slug: the shipped recipes (named after
    # the shipped slug) still belong to it.
    model = shipped_model("qwen3-32b")
    model["slug"] = "my-qwen3-32b"
    model["aliases"] = ["my-qwen3-32b"]
    write(models, "my-qwen3-32b.yaml", model)
    # Replacing a shipped recipe, same model.
    same = shipped_recipe("qwen3-32b-mi250-bf16")
    same["description"] = "user override"
    write(recipes, "qwen3-32b-mi250-bf16.yaml", same)
    # Replacing a shipped recipe of another model: it leaves that model and joins this one.
    moved = shipped_recipe("qwen3-32b-mi250-bf16")
    moved["recipe_id"] = next(p.stem for p in loader.yaml_files(paths.shipped_recipes_dir())
                              if p.stem.startswith("llama-3.1-8b-instruct-"))
    write(recipes, f"{moved['recipe_id']}.yaml", moved)
    # A new recipe whose name does not start with the model's slug.
    extra = shipped_recipe("qwen3-32b-mi250-bf16")
    extra["recipe_id"] = "custom-qwen"
    write(recipes, "custom-qwen.yaml", extra)
    return models, recipes


def test_load_with_user_dirs_equals_reading_everything(tmp_path, clean_env):
    models, recipes = _user_catalog(tmp_path)
    settings = Settings.from_env({"AIM_MODELS_DIR": str(models), "AIM_RECIPES_DIR": str(recipes)})
    lazy = Catalog.load(settings)
    qwen = lazy.find_model("Qwen/Qwen3-32B")
    ids = [r.recipe_id for r in lazy.recipes_for(qwen)]
    assert qwen.slug == "my-qwen3-32b" and "qwen3-32b-mi300x-bf16" in ids and "custom-qwen" in ids
    assert lazy.recipe("qwen3-32b-mi250-bf16").description == "user override"
    _assert_same(lazy, _eager([models], [recipes]))


def _trusted(tmp_path: Path, recipes: dict[str, dict], models: dict[str, dict] | None = None) -> Catalog:
    """A catalog of the shipped models (+ `models`) whose only recipes are a trusted (lazy,
    unchecked) directory written here."""
    for name, data in recipes.items():
        write(tmp_path / "trusted", f"{name}.yaml", data)
    (tmp_path / "trusted-models").mkdir()
    for name, data in (models or {}).items():
        write(tmp_path / "trusted-models", f"{name}.yaml", data)
    return Catalog.from_dirs([], [], trusted_models_dirs=[paths.shipped_models_dir(), tmp_path / "trusted-models"],
                             trusted_recipes_dirs=[tmp_path / "trusted"])


def test_a_slug_prefix_of_another_slug_is_decided_by_model_id(tmp_path):
    # "qwen3-8b-" also starts the recipes of a model slugged qwen3-8b-x: parsed, model_id decides.
    model = shipped_model("qwen3-8b")
    model.update(model_id="acme/Qwen3-8B-X", huggingface_id="acme/Qwen3-8B-X", slug="qwen3-8b-x", aliases=[],
                 variants=[])
    mine = shipped_recipe("qwen3-32b-mi250-bf16")
    mine.update(recipe_id="qwen3-8b-mi250-bf16", model_id="Qwen/Qwen3-8B", huggingface_id="Qwen/Qwen3-8B")
    other = dict(mine, recipe_id="qwen3-8b-x-mi250-bf16", model_id="acme/Qwen3-8B-X", huggingface_id="acme/Qwen3-8B-X")
    catalog = _trusted(tmp_path, {"qwen3-8b-mi250-bf16": mine, "qwen3-8b-x-mi250-bf16": other},
                       {"qwen3-8b-x": model})
    assert [r.recipe_id for r in catalog.recipes_for("Qwen/Qwen3-8B")] == ["qwen3-8b-mi250-bf16"]
    assert [r.recipe_id for r in catalog.recipes_for("qwen3-8b-x")] == ["qwen3-8b-x-mi250-bf16"]
    assert [r.recipe_id for r in catalog.recipes] == ["qwen3-8b-mi250-bf16", "qwen3-8b-x-mi250-bf16"]


def test_a_trusted_file_that_cannot_be_read_is_an_error_naming_it(tmp_path):
    catalog = _trusted(tmp_path, {"qwen3-32b-mi250-bf16": "recipe_id: [\n"})
    with pytest.raises(AimError, match=r"qwen3-32b-mi250-bf16\.yaml.*invalid YAML"):
        catalog.recipes_for("Qwen/Qwen3-32B")


def test_a_trusted_file_missing_a_key_is_an_error_naming_it(tmp_path):
    data = shipped_recipe("qwen3-32b-mi250-bf16")
    del data["precision"]
    catalog = _trusted(tmp_path, {"qwen3-32b-mi250-bf16": data})
    with pytest.raises(AimError, match=r"qwen3-32b-mi250-bf16\.yaml is broken.*precision"):
        catalog.recipe("qwen3-32b-mi250-bf16")


def test_a_trusted_file_not_named_after_its_recipe_id_is_an_error(tmp_path):
    catalog = _trusted(tmp_path, {"qwen3-32b-mi250-bf16": shipped_recipe("qwen3-32b-mi250-bf16"),
                                  "qwen3-32b-mi300x-bf16": shipped_recipe("qwen3-32b-mi250-bf16")})
    assert catalog.recipe("qwen3-32b-mi250-bf16") is not None
    with pytest.raises(AimError, match="not its file name"):
        catalog.recipes_for("Qwen/Qwen3-32B")


def test_user_dirs_are_still_schema_checked_at_boot(tmp_path, clean_env):
    write(tmp_path / "r", "bad.yaml", "recipe_id: [\n")
    bad = shipped_recipe()
    bad["vllm_serve"]["2_gpu"]["enabled"] = "yes please"
    write(tmp_path / "r", f"{bad['recipe_id']}.yaml", bad)
    model = shipped_model()
    model["layers"] = "many"
    write(tmp_path / "m", "m.yaml", model)
    settings = Settings.from_env({"AIM_RECIPES_DIR": str(tmp_path / "r"), "AIM_MODELS_DIR": str(tmp_path / "m")})
    with pytest.raises(AimError) as info:
        Catalog.load(settings)
    text = str(info.value)
    assert "bad.yaml" in text and "m.yaml" in text and "enabled" in text and "layers" in text
    assert "aim-engine validate" in text


# What boot really opens and imports, in a fresh interpreter (the test process has them all).
_PROBE = r"""
import json, os, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(args[0]) if event == "open" and isinstance(args[0], str) else None)
from aim_engine.commands.plan import build
from aim_engine.settings import Settings
data = build(Settings.from_env())
print(json.dumps({"opened": sorted({os.path.realpath(p) for p in opened}), "modules": sorted(sys.modules),
                  "recipe": data["plan"]["recipe_id"], "recipes": data["catalog"]["recipes"]}))
"""


def test_plan_reads_only_the_models_recipe_files_and_no_schema(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "HF_"))}
    env.update(AIM_MODEL_ID="Qwen/Qwen3-8B", AIM_GPU_MODEL="MI300X", AIM_GPU_COUNT="8",
               AIM_SYSFS_ROOT=str(tmp_path), AIM_CACHE_PATH=str(tmp_path / "cache"), AIM_LOG_LEVEL="warning")
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    shipped = paths.shipped_recipes_dir().resolve()
    all_recipes = {str(p.resolve()) for p in loader.yaml_files(shipped)}
    opened = {p for p in result["opened"] if p in all_recipes}
    expected = {p for p in all_recipes if Path(p).name.startswith("qwen3-8b-")}
    assert expected and opened == expected
    assert result["recipe"].startswith("qwen3-8b-") and result["recipes"] == len(all_recipes)
    assert str((shipped / "schema.json").resolve()) not in result["opened"]
    for heavy in ("jsonschema", "huggingface_hub", "httpx", "requests"):
        assert heavy not in result["modules"], f"{heavy} is imported on the plan path"
