"""Where the shipped catalog lives: inside an installed wheel, or in the source checkout.

A wheel carries the catalog as `aim_engine/_catalog/{recipes,models}` (copied there by the build
hook in setup.py). Running from the clone (or an editable install) there is no such copy, and
the catalog is the repository's own `recipes/` and `models/`, two levels above the package
directory `entrypoint/aim_engine`. The packaged copy wins when both exist.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent          # .../aim_engine
_PACKAGED = PACKAGE_DIR / "_catalog"
_CHECKOUT = PACKAGE_DIR.parent.parent                           # repo root when run from the clone


def _shipped(name: str) -> Path:
    for candidate in (_PACKAGED / name, _CHECKOUT / name):
        if (candidate / "schema.json").is_file():
            return candidate
    # Neither exists: a broken install. Return the packaged location so errors name it.
    return _PACKAGED / name


def shipped_recipes_dir() -> Path:
    """The recipes directory shipped with the agent (holds schema.json and *.yaml recipes)."""
    return _shipped("recipes")


def shipped_models_dir() -> Path:
    """The models directory shipped with the agent (holds schema.json and one YAML per model)."""
    return _shipped("models")


def recipe_schema_path() -> Path:
    return shipped_recipes_dir() / "schema.json"


def model_schema_path() -> Path:
    return shipped_models_dir() / "schema.json"


def recipe_template_path() -> Path:
    return shipped_recipes_dir() / "templates" / "recipe.yaml"
