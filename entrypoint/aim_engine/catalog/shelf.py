"""`RecipeShelf`: the recipes of trusted directories, parsed only when asked for.

Boot needs the recipes of one model, not the whole catalog: parsing all ~180 shipped recipes
cost ~0.3 s with PyYAML, reading the few of one model ~10 ms. The shelf indexes the files by
name (a directory listing, no parsing) and parses a file the first time a recipe in it is
wanted, keeping the result.

This relies on the naming rule the validator enforces on the shipped catalog (checked in CI):
file stem = recipe_id = `{model slug}-{hardware}-{precision}`. So the recipes of a model are
among the files whose stem starts with `{slug}-`; the caller still confirms `model_id` after
parsing, since one slug may be the prefix of another (`qwen3-8b-` also starts
`qwen3-8b-base-mi300x-bf16`). A file whose `recipe_id` is not its stem breaks that rule and is
an `AimError`, not a silently missed recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from aim_engine.catalog import loader
from aim_engine.catalog.problems import display_path
from aim_engine.catalog.types import Recipe
from aim_engine.errors import AimError


class RecipeShelf:
    """Recipe files by stem, in directory order (a later directory's file wins on a clash and
    keeps the earlier one's place, as when every file is read)."""

    def __init__(self, directories: Iterable[Path]) -> None:
        self._paths: dict[str, Path] = {}
        for directory in directories:
            for path in loader.yaml_files(Path(directory)):
                self._paths[path.stem] = path
        self._parsed: dict[str, Recipe] = {}

    def __contains__(self, recipe_id: object) -> bool:
        return recipe_id in self._paths

    def __len__(self) -> int:
        return len(self._paths)

    def ids(self) -> Iterator[str]:
        """Every recipe id on the shelf (file stems), in order, without parsing anything."""
        return iter(self._paths)

    def get(self, recipe_id: str) -> Recipe | None:
        """The recipe with this id, parsing its file on first use."""
        recipe = self._parsed.get(recipe_id)
        if recipe is None and recipe_id in self._paths:
            path = self._paths[recipe_id]
            recipe = loader.read_trusted(loader.RECIPE, path)
            if recipe.recipe_id != recipe_id:
                raise AimError(f"the shipped catalog file {display_path(path)} is broken: its recipe_id "
                               f"{recipe.recipe_id!r} is not its file name",
                               hint="run `aim-engine validate` for the full report; reinstall aim-engine or fix the file")
            self._parsed[recipe_id] = recipe
        return recipe
