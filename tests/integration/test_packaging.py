"""A wheel built from the checkout carries the catalog: installed elsewhere, `aim-engine
validate` still finds and validates the shipped recipes and models."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.wheel import build_wheel

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_wheel_installed_outside_the_repo_validates_the_shipped_catalog(tmp_path):
    wheel = build_wheel(tmp_path / "wheels")

    # A venv that sees the test environment's dependencies (PyYAML, jsonschema, ...) but not the
    # editable checkout: the package must come from the wheel.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    import jsonschema, yaml, structlog  # noqa: E401  (dependency locations)
    deps = {str(Path(m.__file__).resolve().parent.parent) for m in (jsonschema, yaml, structlog)}
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join([str(target), *sorted(deps)]),
           "HOME": str(tmp_path)}
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()

    where = subprocess.run([str(python), "-c", "import aim_engine, aim_engine.catalog.paths as p; "
                            "print(aim_engine.__file__); print(p.shipped_recipes_dir()); print(p.shipped_models_dir())"],
                           capture_output=True, text=True, cwd=elsewhere, env=env, timeout=60)
    assert where.returncode == 0, where.stderr
    module_file, recipes_dir, models_dir = where.stdout.split()
    assert module_file.startswith(str(target)), "imported the checkout, not the wheel"
    assert recipes_dir.startswith(str(target)) and models_dir.startswith(str(target))
    assert (Path(recipes_dir) / "templates" / "recipe.yaml").is_file()
    assert (Path(module_file).parent / "engines" / "flags" / "vllm-0.32.0.json").is_file()
    assert (Path(module_file).parent / "engines" / "parser_dump.py").is_file()

    proc = subprocess.run([str(python), "-m", "aim_engine", "validate"], capture_output=True, text=True,
                          cwd=elsewhere, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shipped = len(list((REPO / "recipes").glob("*.yaml"))), len(list((REPO / "models").glob("*.yaml")))
    assert f"{shipped[0]} recipes, {shipped[1]} models, 0 problems" in proc.stdout

    # The wheel carries every shipped YAML file compiled (yaml_documents.compile_tree): each entry is the
    # file's own document, and a plan read from the installed wheel never imports PyYAML.
    import json

    from aim_engine import yaml_documents

    package = Path(module_file).parent
    index = json.loads((package / yaml_documents.COMPILED_NAME).read_text(encoding="utf-8"))
    shipped_yaml = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.yaml"))
    assert sorted(index) == shipped_yaml
    for rel, (digest, encoded) in index.items():
        text = (package / rel).read_text(encoding="utf-8")
        assert digest == yaml_documents.digest(text) and json.loads(encoded) == yaml.safe_load(text), rel
    planned = subprocess.run([str(python), "-c", "import sys; from aim_engine.cli import main; "
                              "code = main(['plan', '--json']); print('yaml' in sys.modules, file=sys.stderr); "
                              "sys.exit(code)"], capture_output=True, text=True, cwd=elsewhere, timeout=120,
                             env={**env, "AIM_MODEL_ID": "Qwen/Qwen3-32B", "AIM_GPU_MODEL": "MI300X",
                                  "AIM_GPU_COUNT": "2"})
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["plan"]["recipe_id"].startswith("qwen3-32b-mi300x-")
    assert planned.stderr.strip().splitlines()[-1] == "False", "PyYAML was imported: a compiled entry was not used"
