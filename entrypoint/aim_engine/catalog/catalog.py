"""`Catalog`: the models and recipes the agent chooses from, loaded and schema-checked.

Boot uses `Catalog.load(settings)`: the shipped catalog plus the user's AIM_MODELS_DIR /
AIM_RECIPES_DIR. A user directory is searched after the shipped one and wins on a clash (a
user recipe with a shipped recipe's id replaces it), which is how a deployment overrides one
recipe. Files that break the schema are an `AimError` listing every problem: the agent does not
guess around a broken catalog. The meaning checks are `aim-engine validate`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from aim_engine.catalog import loader, paths
from aim_engine.catalog.types import Model, Recipe
from aim_engine.errors import AimError

_MAX_LISTED = 10


@dataclass(frozen=True)
class Catalog:
    models: tuple[Model, ...] = ()
    recipes: tuple[Recipe, ...] = ()
    _names: dict[str, Model] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: dict[str, Model] = {}
        for model in self.models:
            for name in model.names():
                names.setdefault(name.lower(), model)
        object.__setattr__(self, "_names", names)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, settings: Any) -> "Catalog":
        """Shipped catalog + `settings.models_dirs` / `settings.recipes_dirs` (later wins)."""
        return cls.from_dirs(
            [paths.shipped_models_dir(), *settings.models_dirs],
            [paths.shipped_recipes_dir(), *settings.recipes_dirs],
        )

    @classmethod
    def from_dirs(cls, models_dirs: Iterable[Path], recipes_dirs: Iterable[Path]) -> "Catalog":
        model_files = _files(models_dirs, "model")
        recipe_files = _files(recipes_dirs, "recipe")
        model_docs = loader.read_documents(loader.MODEL, model_files)
        recipe_docs = loader.read_documents(loader.RECIPE, recipe_files)
        problems = [p for d in (*model_docs, *recipe_docs) for p in d.problems]
        if problems:
            listed = "\n".join(f"  {p.render()}".replace("\n", "\n  ") for p in problems[:_MAX_LISTED])
            more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
            raise AimError(f"the catalog has {len(problems)} problem(s):\n{listed}{more}",
                           hint="run `aim-engine validate` on those directories for the full report")
        models: dict[str, Model] = {}
        for doc in model_docs:
            models[doc.obj.model_id] = doc.obj
        recipes: dict[str, Recipe] = {}
        for doc in recipe_docs:
            recipes[doc.obj.recipe_id] = doc.obj
        return cls(models=tuple(models.values()), recipes=tuple(recipes.values()))

    # ------------------------------------------------------------------------ queries
    def find_model(self, name: str) -> Model | None:
        """The model called `name`: its id, Hugging Face id, slug, an alias or a variant id
        (case-insensitive)."""
        return self._names.get(name.strip().lower()) if name else None

    def recipes_for(self, model: Model | str) -> list[Recipe]:
        """Every recipe of a model (a `Model` or any of its names), in catalog order."""
        found = self.find_model(model) if isinstance(model, str) else model
        if found is None:
            return []
        key = found.model_id.lower()
        return [r for r in self.recipes if r.model_id.lower() == key]

    def recipe(self, recipe_id: str) -> Recipe | None:
        return next((r for r in self.recipes if r.recipe_id == recipe_id), None)


def _files(dirs: Iterable[Path], what: str) -> list[Path]:
    out: list[Path] = []
    for directory in dirs:
        directory = Path(directory)
        if not directory.is_dir():
            raise AimError(f"{what}s directory {directory} does not exist",
                           hint=f"fix AIM_{what.upper()}S_DIR (os.pathsep-separated directories)")
        out.extend(loader.yaml_files(directory))
    return out
