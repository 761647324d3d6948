"""`Catalog`: the models and recipes the agent chooses from.

Boot uses `Catalog.load(settings)`: the shipped catalog plus the user's AIM_MODELS_DIR /
AIM_RECIPES_DIR. A user directory is searched after the shipped one and wins on a clash (a
user recipe with a shipped recipe's id replaces it), which is how a deployment overrides one
recipe. User files that break the schema are an `AimError` listing every problem: the agent does
not guess around a broken catalog. The meaning checks are `aim-engine validate`'s job.

The shipped catalog is trusted at boot: CI validates it (`aim-engine validate` over it, the
generated-recipes test), so boot skips jsonschema for it and parses only the recipe files of
the model being served (see `shelf.py`). Boot went from ~0.9 s of catalog loading to ~15 ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from aim_engine.catalog import loader, paths
from aim_engine.catalog.shelf import RecipeShelf
from aim_engine.catalog.types import Model, Recipe
from aim_engine.errors import AimError

_MAX_LISTED = 10


class Catalog:
    """Models and recipes. `recipes` may be backed by a `RecipeShelf` (trusted files parsed on
    demand): `recipes_for`, `recipe` and `recipe_ids` then read only what they need, and
    `recipes` (every recipe) reads the rest on first access."""

    def __init__(self, models: Iterable[Model] = (), recipes: Iterable[Recipe] = (), *,
                 shelf: RecipeShelf | None = None, slugs: Mapping[str, Iterable[str]] | None = None) -> None:
        """`recipes` are read already (a user directory, or everything); `shelf` holds the
        trusted ones, and an eager recipe with a shelf recipe's id replaces it in its place.
        `slugs` maps a lower-case model id to the slugs its recipe files may be named after,
        beyond the model's own (a user model file may replace a shipped one under another slug)."""
        self.models: tuple[Model, ...] = tuple(models)
        self._eager: tuple[Recipe, ...] = tuple(recipes)
        self._eager_by_id: dict[str, Recipe] = {}
        self._eager_by_lower: dict[str, Recipe] = {}
        for recipe in self._eager:
            self._eager_by_id.setdefault(recipe.recipe_id, recipe)
            self._eager_by_lower.setdefault(recipe.recipe_id.lower(), recipe)
        self._shelf = shelf if shelf is not None and len(shelf) else None
        self._all: tuple[Recipe, ...] | None = None if self._shelf else self._eager
        self._slugs = {k: tuple(v) for k, v in (slugs or {}).items()}
        self._names: dict[str, Model] = {}
        for model in self.models:
            for name in model.names():
                self._names.setdefault(name.lower(), model)

    def __repr__(self) -> str:
        return f"Catalog({len(self.models)} models, {len(self.recipe_ids())} recipes)"

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, settings: Any) -> "Catalog":
        """The boot catalog: the shipped catalog (trusted, recipes read lazily) + the user's
        `settings.models_dirs` / `settings.recipes_dirs` (schema-checked, later wins)."""
        return cls.from_dirs(settings.models_dirs, settings.recipes_dirs,
                             trusted_models_dirs=[paths.shipped_models_dir()],
                             trusted_recipes_dirs=[paths.shipped_recipes_dir()])

    @classmethod
    def from_dirs(cls, models_dirs: Iterable[Path], recipes_dirs: Iterable[Path], *,
                  trusted_models_dirs: Iterable[Path] = (),
                  trusted_recipes_dirs: Iterable[Path] = ()) -> "Catalog":
        """Read a catalog from directories.

        Trusted directories (the shipped catalog, validated in CI) come first: they are not
        schema-checked, and their recipes are parsed only when asked for. The other directories
        are read after them, fully schema-checked (any problem is one `AimError` listing them
        all), and win on a clash: a recipe or model with a trusted one's id replaces it."""
        trusted_model_files = _files(trusted_models_dirs, "model")
        shelf = RecipeShelf(_dirs(trusted_recipes_dirs, "recipe"))
        model_docs = loader.read_documents(loader.MODEL, _files(models_dirs, "model"))
        recipe_docs = loader.read_documents(loader.RECIPE, _files(recipes_dirs, "recipe"))
        problems = [p for d in (*model_docs, *recipe_docs) for p in d.problems]
        trusted_models = [loader.read_trusted(loader.MODEL, p) for p in trusted_model_files]
        if not problems and (model_docs or recipe_docs):
            problems = _meaning_problems(model_docs, recipe_docs, trusted_models)
        if problems:
            listed = "\n".join(f"  {p.render()}".replace("\n", "\n  ") for p in problems[:_MAX_LISTED])
            more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
            raise AimError(f"the catalog has {len(problems)} problem(s):\n{listed}{more}",
                           hint="run `aim-engine validate` on those directories for the full report")
        models: dict[str, Model] = {}
        slugs: dict[str, list[str]] = {}
        for model in (*trusted_models, *(doc.obj for doc in model_docs)):
            models[model.model_id] = model
            slugs.setdefault(model.model_id.lower(), []).append(model.slug)
        recipes: dict[str, Recipe] = {}
        for doc in recipe_docs:
            recipes[doc.obj.recipe_id] = doc.obj
        return cls(models=models.values(), recipes=recipes.values(), shelf=shelf, slugs=slugs)

    # ------------------------------------------------------------------------ queries
    @property
    def recipes(self) -> tuple[Recipe, ...]:
        """Every recipe, in catalog order (reads every lazily loaded file on first access)."""
        if self._all is None:
            self._all = tuple(self._merged(lambda recipe_id: True))
        return self._all

    def recipe_ids(self) -> list[str]:
        """Every recipe id, in catalog order, without parsing lazily loaded files."""
        if self._all is not None:
            return [r.recipe_id for r in self._all]
        assert self._shelf is not None
        return [*self._shelf.ids(), *(rid for rid in self._eager_by_id if rid not in self._shelf)]

    def find_model(self, name: str) -> Model | None:
        """The model called `name`: its id, Hugging Face id, slug, an alias or a variant id
        (case-insensitive)."""
        return self._names.get(name.strip().lower()) if name else None

    def recipes_for(self, model: Model | str) -> list[Recipe]:
        """Every recipe of a model (a `Model` or any of its names), in catalog order.

        With a shelf only the files named after the model's slug(s) are parsed (recipe file
        stem = `{slug}-{hardware}-{precision}`); `model_id` decides, as it always did."""
        found = self.find_model(model) if isinstance(model, str) else model
        if found is None:
            return []
        key = found.model_id.lower()
        if self._all is not None:
            pool: Iterable[Recipe] = self._all
        else:
            prefixes = tuple(f"{slug.lower()}-" for slug in {found.slug, *self._slugs.get(key, ())})
            pool = self._merged(lambda recipe_id: recipe_id.startswith(prefixes))
        return [r for r in pool if r.model_id.lower() == key]

    def recipe(self, recipe_id: str) -> Recipe | None:
        """The recipe with this id (case-insensitive: recipe ids are lower-case), or None.
        Only that recipe's file is parsed."""
        wanted = recipe_id.strip().lower()
        found = self._eager_by_lower.get(wanted)
        if found is None and self._shelf is not None:
            found = self._shelf.get(wanted)
        return found

    def _merged(self, wanted: Callable[[str], bool]) -> list[Recipe]:
        """What reading every file in directory order gives, restricted to the shelf ids that
        `wanted` accepts: shelf recipes in order (an eager recipe with the same id in its
        place), then the other eager recipes."""
        assert self._shelf is not None
        out: list[Recipe] = []
        for recipe_id in self._shelf.ids():
            if recipe_id in self._eager_by_id:
                out.append(self._eager_by_id[recipe_id])
            elif wanted(recipe_id):
                recipe = self._shelf.get(recipe_id)
                if recipe is not None:
                    out.append(recipe)
        out.extend(r for r in self._eager_by_id.values() if r.recipe_id not in self._shelf)
        return out


# What the boot does not ask of a user file that `validate` does:
# - whether each config fits the memory of the recipe's GPU and its tensor-parallel size suits
#   the model: the planner judges exactly that on the devices actually present and rejects
#   (with the numbers, in `plan`) every config that does not fit;
# - the file-naming rule (recipe_id = {slug}-{hardware}-{precision}): it orders the shipped
#   catalog's lazy shelf; a user recipe is read whole whatever its name, and a deployment's
#   override keeps the id of the recipe it replaces even under a user model with another slug.
# - uniqueness of ids across directories: at boot a later directory wins on a clash, which is
#   the documented way to override a recipe or a model (`validate` over both reports the clash).
# Every check of what is served (checkpoint, dtype, precision on the hardware, engine flags and
# their values, GPU counts, model facts) runs at boot as in `validate`.
BOOT_SKIPPED_CHECKS = ("memory-fit", "tp-legal", "recipe-id", "duplicate-recipe", "duplicate-model")


def _meaning_problems(model_docs: list[Any], recipe_docs: list[Any], trusted_models: list[Model]) -> list[Any]:
    """The validator's checks over the user's files (`validate`'s own loop), so a recipe that
    `validate` rejects is never served: recipes resolve against the user's models, then the
    shipped ones."""
    from aim_engine.catalog import checks
    from aim_engine.catalog.validator import run_checks

    given = [doc.obj for doc in model_docs]
    ids = {m.model_id for m in given}
    ctx = checks.Context(recipe_docs=recipe_docs, model_docs=model_docs,
                         models=[*given, *(m for m in trusted_models if m.model_id not in ids)])
    return run_checks(ctx, skip=BOOT_SKIPPED_CHECKS)


def _dirs(dirs: Iterable[Path], what: str) -> list[Path]:
    out: list[Path] = []
    for directory in dirs:
        directory = Path(directory)
        problem = loader.directory_problem(directory)
        if problem:
            raise AimError(f"{what}s directory {directory} {problem}",
                           hint=f"fix AIM_{what.upper()}S_DIR (os.pathsep-separated directories)")
        out.append(directory)
    return out


def _files(dirs: Iterable[Path], what: str) -> list[Path]:
    return [path for directory in _dirs(dirs, what) for path in loader.yaml_files(directory)]
