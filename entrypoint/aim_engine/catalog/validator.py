"""The validator: read the chosen files, run every check, collect one report.

Inputs are any mix of recipe files/dirs and model files/dirs; none means the shipped catalog.
Recipes resolve their `model_id` against the given models plus the shipped ones (reference
only: problems in shipped files that were not asked for are not reported).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from aim_engine.catalog import checks as checks_module
from aim_engine.catalog import loader, paths
from aim_engine.catalog.problems import Problem, Report
from aim_engine.catalog.yaml_lines import file_problem
from aim_engine.errors import AimError


class UsageError(AimError):
    """The command line names something that cannot be validated (exit 2)."""

    exit_code = 2


@dataclass
class Inputs:
    recipe_files: list[Path] = field(default_factory=list)
    recipe_dirs: list[Path] = field(default_factory=list)
    model_files: list[Path] = field(default_factory=list)
    model_dirs: list[Path] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.recipe_files or self.recipe_dirs or self.model_files or self.model_dirs)


def _expand(files: Sequence[Path], dirs: Sequence[Path], what: str, allow_empty: bool = False) -> list[Path]:
    out: list[Path] = []
    for path in files:
        problem = file_problem(path)
        if problem:
            raise UsageError(f"{what} file {path} {problem}",
                             f"use --{what}s-dir for a directory" if path.is_dir() else None)
        out.append(path)
    for directory in dirs:
        problem = loader.directory_problem(directory)
        if problem:
            raise UsageError(f"{what}s directory {directory} {problem}")
        found = loader.yaml_files(directory)
        if not found and not allow_empty:
            raise UsageError(f"{what}s directory {directory} holds no *.yaml files")
        out.extend(found)
    # The same file named twice (a --recipe inside a --recipes-dir) is read once.
    seen: set[Path] = set()
    unique = []
    for path in out:
        key = Path(os.path.realpath(path))     # never raises, even on a symbolic-link loop
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def _run_check(check: checks_module.Check, args: tuple, file: str) -> list[Problem]:
    """A check that raises is a bug in the check; report it as a problem, never a traceback."""
    try:
        return list(check.func(*args))
    except Exception as exc:  # noqa: BLE001 - the validator must always produce a report
        return [Problem(file=file, message=f"check {check.name} failed: {type(exc).__name__}: {exc}",
                        hint="this is a bug in aim-engine; please report it with the file", check="internal-error")]


def validate(inputs: Inputs | None = None) -> Report:
    inputs = inputs or Inputs()
    shipped_only = inputs.empty
    if shipped_only:
        inputs = Inputs(recipe_dirs=[paths.shipped_recipes_dir()], model_dirs=[paths.shipped_models_dir()])
    # An empty directory the user named is almost always a wrong path: say so (exit 2).
    recipe_paths = _expand(inputs.recipe_files, inputs.recipe_dirs, "recipe", allow_empty=shipped_only)
    model_paths = _expand(inputs.model_files, inputs.model_dirs, "model", allow_empty=shipped_only)

    recipe_docs = loader.read_documents(loader.RECIPE, recipe_paths)
    model_docs = loader.read_documents(loader.MODEL, model_paths)

    given = {Path(os.path.realpath(p)) for p in model_paths}
    reference: list = []
    if recipe_docs:
        shipped = paths.shipped_models_dir()
        if shipped.is_dir():
            extra = [p for p in loader.yaml_files(shipped) if Path(os.path.realpath(p)) not in given]
            reference = [d.obj for d in loader.read_documents(loader.MODEL, extra) if d.schema_ok]
    # Given models first: they win over a shipped model with the same id.
    models = [d.obj for d in model_docs if d.schema_ok] + reference
    ctx = checks_module.Context(recipe_docs=recipe_docs, model_docs=model_docs, models=models)

    report = Report(files=len(recipe_docs) + len(model_docs), recipes=len(recipe_docs), models=len(model_docs))
    for doc in (*recipe_docs, *model_docs):
        report.problems.extend(doc.problems)
    report.problems.extend(run_checks(ctx))
    return report


def run_checks(ctx: checks_module.Context, skip: Sequence[str] = ()) -> list[Problem]:
    """Every check (but `skip`) over the documents of `ctx`: the one loop `validate` and the
    boot's reading of AIM_RECIPES_DIR/AIM_MODELS_DIR share, so both judge a file alike."""
    problems: list[Problem] = []
    for check in checks_module.all_checks():
        if check.name in skip:
            continue
        if check.scope == checks_module.RECIPE_SCOPE:
            for doc in ctx.recipe_docs:
                if doc.checkable is not None:
                    problems.extend(_run_check(check, (doc, doc.checkable, ctx), doc.display))
        elif check.scope == checks_module.MODEL_SCOPE:
            for doc in ctx.model_docs:
                if doc.schema_ok:
                    problems.extend(_run_check(check, (doc, doc.obj, ctx), doc.display))
        else:
            problems.extend(_run_check(check, (ctx,), "(catalog)"))
    return problems
