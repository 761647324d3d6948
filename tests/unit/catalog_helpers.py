"""Helpers for the catalog tests: write recipe/model dicts as YAML files and validate them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from aim_engine.catalog import paths
from aim_engine.catalog.problems import Report
from aim_engine.catalog.validator import Inputs, validate

GOOD_RECIPE = "qwen3-32b-mi250-bf16"
GOOD_MODEL = "qwen3-32b"


def shipped_recipe(recipe_id: str = GOOD_RECIPE) -> dict[str, Any]:
    return yaml.safe_load((paths.shipped_recipes_dir() / f"{recipe_id}.yaml").read_text())


def shipped_model(slug: str = GOOD_MODEL) -> dict[str, Any]:
    return yaml.safe_load((paths.shipped_models_dir() / f"{slug}.yaml").read_text())


def write(directory: Path, name: str, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def validate_recipe(tmp_path: Path, data: Any, name: str | None = None) -> Report:
    if name is None:
        name = f"{data['recipe_id']}.yaml" if isinstance(data, dict) and isinstance(data.get("recipe_id"), str) else "r.yaml"
    return validate(Inputs(recipe_files=[write(tmp_path / "recipes", name, data)]))


def validate_model(tmp_path: Path, data: Any, name: str = "m.yaml") -> Report:
    return validate(Inputs(model_files=[write(tmp_path / "models", name, data)]))


def checks_of(report: Report) -> list[str]:
    return sorted(p.check for p in report.problems)


def only(report: Report, check: str) -> list:
    return [p for p in report.problems if p.check == check]


def mutate(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def config_args(data: dict[str, Any], section: str = "vllm_serve", config: str = "2_gpu") -> dict[str, Any]:
    return data[section][config]["args"]
