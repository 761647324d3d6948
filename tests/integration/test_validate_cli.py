"""`aim-engine validate` and `aim-recipe-selector` through real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent.parent
RECIPES = REPO / "recipes"
MODELS = REPO / "models"
SEED_RECIPE = RECIPES / "qwen3-32b-mi250-bf16.yaml"
FROZEN_RECIPE = REPO / "tests" / "fixtures" / "catalog" / "good" / "qwen3-32b-mi250-bf16.yaml"
SELECTOR = [sys.executable, "-c", "import sys; from aim_engine.seed_cli import main; sys.exit(main())"]


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIM_")}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture
def broken(tmp_path) -> Path:
    data = yaml.safe_load(FROZEN_RECIPE.read_text())
    data["hardware"] = "MI300X"                                  # name says mi250
    data["vllm_serve"]["2_gpu"]["args"]["--tensor-parallel-size"] = "4"
    data["vllm_serve"]["2_gpu"]["args"]["--max-num-seq"] = "8"  # typo of --max-num-seqs
    path = tmp_path / "qwen3-32b-mi250-bf16.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_shipped_catalog_exit_0(aim_cli):
    proc = run([*aim_cli, "validate"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("OK: ")
    assert "recipes" in proc.stdout and "models" in proc.stdout


def test_broken_recipe_exit_1_with_every_problem(aim_cli, broken):
    proc = run([*aim_cli, "validate", "--recipe", str(broken)])
    assert proc.returncode == 1
    out = proc.stdout
    assert "[recipe-id]" in out and "[tensor-parallel]" in out and "[engine-args]" in out
    assert f"{broken}:" in out or "qwen3-32b-mi250-bf16.yaml:" in out
    assert "hint: did you mean --max-num-seqs" in out
    assert "vllm_serve.2_gpu.args.--tensor-parallel-size" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: 1 file checked, 1 recipe, 0 models, ")
    assert "Traceback" not in proc.stderr


def test_json_output(aim_cli, broken):
    proc = run([*aim_cli, "validate", "--recipe", str(broken), "--format", "json"])
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["ok"] is False and data["summary"]["recipes"] == 1
    assert data["summary"]["problems"] == len(data["problems"]) >= 3
    problem = next(p for p in data["problems"] if p["check"] == "tensor-parallel")
    assert problem["path"] == "vllm_serve.2_gpu.args.--tensor-parallel-size"
    assert isinstance(problem["line"], int) and problem["hint"] and problem["file"].endswith(broken.name)


@pytest.mark.parametrize("argv, fragment", [
    (["--recipe", "/nonexistent/r.yaml"], "does not exist"),
    (["--recipes-dir", "/nonexistent"], "does not exist"),
    (["--bogus"], "unrecognized arguments"),
    (["--format", "xml"], "invalid choice"),
])
def test_usage_errors_exit_2(aim_cli, argv, fragment):
    proc = run([*aim_cli, "validate", *argv])
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr


def test_empty_directory_is_a_usage_error(aim_cli, tmp_path):
    proc = run([*aim_cli, "validate", "--models-dir", str(tmp_path)])
    assert proc.returncode == 2 and "holds no *.yaml files" in proc.stderr


def test_mix_of_files_and_dirs(aim_cli, tmp_path):
    shutil.copy(MODELS / "qwen3-32b.yaml", tmp_path / "qwen3-32b.yaml")
    proc = run([*aim_cli, "validate", "--recipe", str(SEED_RECIPE), "--models-dir", str(tmp_path),
                "--model", str(MODELS / "meta-llama-3-8b-instruct.yaml")])
    assert proc.returncode == 0, proc.stdout
    assert "3 files checked, 1 recipe, 2 models, 0 problems" in proc.stdout


def test_invalid_yaml_reports_line(aim_cli, tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("recipe_id: a\nmodel_id: [unclosed\nhardware: MI300X\n")
    proc = run([*aim_cli, "validate", "--recipe", str(path)])
    assert proc.returncode == 1 and "invalid YAML" in proc.stdout and "[yaml]" in proc.stdout
    assert "x.yaml:" in proc.stdout


# --------------------------------------------------------------- the seed's command line
def test_seed_validate_recipe_and_dir():
    assert run([*SELECTOR, "--validate", "--recipe", str(SEED_RECIPE)]).returncode == 0
    proc = run([*SELECTOR, "--validate", "--recipes-dir", str(RECIPES)])
    assert proc.returncode == 0 and proc.stdout.startswith("OK: ")


def test_seed_validate_models():
    assert run([*SELECTOR, "--validate-model", "--model", str(MODELS / "qwen3-32b.yaml")]).returncode == 0
    proc = run([*SELECTOR, "--validate-models", "--models-dir", str(MODELS), "--format", "json"])
    assert proc.returncode == 0 and json.loads(proc.stdout)["summary"]["recipes"] == 0


def test_seed_broken_and_usage(broken):
    assert run([*SELECTOR, "--validate", "--recipe", str(broken)]).returncode == 1
    proc = run([*SELECTOR, "--validate"])
    assert proc.returncode == 2 and "needs --recipe FILE or --recipes-dir DIR" in proc.stderr
    assert run([*SELECTOR]).returncode == 2
    assert run([*SELECTOR, "--validate", "--recipe", "/nope.yaml"]).returncode == 2


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "aim-recipe-selector"
    assert script.exists()
    assert run([str(script), "--validate", "--recipe", str(SEED_RECIPE)]).returncode == 0
