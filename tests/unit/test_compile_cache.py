"""The compile-cache plan (pure core) and its edges on real directories: keys, the user's
variables, versions read from dist-info, the crash-loop guard, staging sweeps, publishing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aim_engine.cache import compiled
from aim_engine.logs import get_logger
from aim_engine.probes import compiled as probe_compiled

VERSIONS = {"vllm": "0.32.0", "torch": "2.13.0+cpu", "sglang": "0.5.23"}
ARGS = ["serve", "/m", "--max-model-len", "2048", "--port", "8000", "--host", "0.0.0.0",
        "--served-model-name", "x"]


def _decide(tmp_path: Path, **overrides):
    facts = dict(engine="vllm", target="cpu", cache_path=tmp_path, versions=VERSIONS, device="cpu-avx512",
                 folder="models--org--m", cfg="abc", environ={}, token="host-1-aa", published=False)
    facts.update(overrides)
    return compiled.decide(compiled.table(), **facts)


def test_cold_boot_compiles_into_a_private_staging_directory(tmp_path):
    plan = _decide(tmp_path)
    assert plan.state == "cold" and plan.staging
    assert plan.key == "vllm-0.32.0_torch-2.13.0+cpu_cpu-avx512"
    assert plan.work_dir == plan.root / "staging" / "models--org--m--abc--host-1-aa"
    assert plan.env["VLLM_CACHE_ROOT"] == str(plan.work_dir)
    assert plan.env["TRITON_CACHE_DIR"] == str(plan.root / "shared" / "triton")
    assert "AITER_JIT_DIR" not in plan.env and "MIOPEN_USER_DB_PATH" not in plan.env   # GPU only


def test_warm_boot_reads_the_published_directory_and_gpu_caches_join(tmp_path):
    plan = _decide(tmp_path, target="gpu", device="gfx942", published=True)
    assert plan.state == "warm" and not plan.staging
    assert plan.env["VLLM_CACHE_ROOT"] == str(plan.model_dir) == str(plan.root / "models/models--org--m/abc")
    assert plan.key.endswith("_gfx942")
    for variable in ("AITER_JIT_DIR", "MIOPEN_USER_DB_PATH", "MIOPEN_CUSTOM_CACHE_DIR"):
        assert plan.env[variable].startswith(str(plan.root / "shared"))
    assert plan.attempt == plan.root / "attempts" / "models--org--m--abc--host-1-aa.json"


def test_versions_torch_builds_and_gfx_never_share_a_directory(tmp_path):
    keys = {_decide(tmp_path, versions={**VERSIONS, **change}, device=device).key
            for change in ({}, {"vllm": "0.33.0"}, {"torch": "2.13.0+rocm7.0"})
            for device in ("gfx942", "gfx950", "cpu-avx512")}
    assert len(keys) == 9


def test_the_users_variables_win(tmp_path):
    plan = _decide(tmp_path, environ={"TRITON_CACHE_DIR": "/mine/triton"})
    assert "TRITON_CACHE_DIR" not in plan.env and plan.kept == {"TRITON_CACHE_DIR": "/mine/triton"}
    user = _decide(tmp_path, environ={"VLLM_CACHE_ROOT": "/mine/vllm"})
    assert user.state == "user" and "VLLM_CACHE_ROOT" not in user.env and not user.staging


def test_unknown_versions_turn_caching_off_rather_than_risk_stale_artefacts(tmp_path):
    plan = _decide(tmp_path, versions={"vllm": "0.32.0", "torch": None})
    assert plan.state == "off" and "torch" in plan.reason and not plan.env
    assert _decide(tmp_path, engine="tgi").state == "off"


def test_sglang_shares_kernel_caches_and_has_no_staging(tmp_path):
    plan = _decide(tmp_path, engine="sglang")
    assert plan.state == "cold" and not plan.staging and plan.work_dir is None
    assert plan.env["SGLANG_CACHE_DIR"].endswith("/shared/sglang") and "VLLM_CACHE_ROOT" not in plan.env


def test_config_hash_ignores_ports_and_cache_locations_but_not_what_is_compiled():
    tbl = compiled.table()
    own = frozenset({"VLLM_CACHE_ROOT"})

    def h(args, env=None):
        return compiled.config_hash(args, env or {}, ("VLLM_",), tbl.hash_ignores_flags, own)

    base = h(ARGS)
    assert h([a.replace("8000", "9000") for a in ARGS]) == base
    assert h([*ARGS[:-1], "other-name"]) == base
    assert h(ARGS, {"VLLM_CACHE_ROOT": "/x", "PATH": "/bin"}) == base
    assert h([a.replace("2048", "4096") for a in ARGS]) != base
    assert h(ARGS, {"VLLM_CPU_KVCACHE_SPACE": "2"}) != base
    assert h(ARGS, {"VLLM_API_KEY": "secret-1"}) == h(ARGS, {"VLLM_API_KEY": "secret-2"}) == base
    snapshot = [a.replace("/m", "/cache/hub/models--org--m/snapshots/abc") for a in ARGS]
    assert compiled.config_hash(snapshot, {}, ("VLLM_",), tbl.hash_ignores_flags, own,
                                ["org/m", "/cache/hub/models--org--m/snapshots/abc"]) == \
        compiled.config_hash(ARGS, {}, ("VLLM_",), tbl.hash_ignores_flags, own, ["/m"])   # dry run == boot


def test_names_stay_one_path_component():
    for text in ("../../etc", "a/b", "", ".", "x" * 300):
        name = compiled.safe_name(text)
        assert "/" not in name and name not in ("", ".", "..") and len(name) <= 100
    local = compiled.model_folder("/mnt/models", is_local=True)
    assert local.startswith("local--models-") and local != compiled.model_folder("/data/models", is_local=True)
    assert compiled.model_folder("org/name", is_local=False) == "models--org--name"


def test_versions_come_from_dist_info_of_the_engines_interpreter(tmp_path):
    from tests.support.engine_installs import console_script, make_prefix

    bin_dir = make_prefix(tmp_path / "env", {"vllm-cpu": "0.32.0", "vllm": "0.32.0", "torch": "2.13.0+cpu"})
    script = console_script(bin_dir, "vllm")
    names = ("vllm", "vllm_cpu", "vllm_rocm")
    assert compiled.versions_of(str(script), names) == {"engine": "0.32.0", "torch": "2.13.0+cpu"}
    bare = make_prefix(tmp_path / "bare", {"vllm": "0.33.0"})
    assert compiled.versions_of(str(console_script(bare, "vllm")), names) == {"engine": "0.33.0", "torch": None}
    assert compiled.versions_of("vllm", names) == {"engine": None, "torch": None}     # not resolved on PATH


def test_versions_of_the_real_vllm_environment():
    from tests.conftest import engine_venv

    venv = engine_venv("vllm")
    found = compiled.versions_of(str(venv / "bin" / "vllm"), ("vllm", "vllm_cpu"))
    assert found == {"engine": "0.32.0", "torch": "2.13.0+cpu"}


def test_cpu_isa_picks_the_best_listed_flag():
    tbl = compiled.table()
    assert compiled.cpu_isa(tbl, "flags\t: fpu sse avx2 avx512f\n") == "cpu-avx512"
    assert compiled.cpu_isa(tbl, "Features\t: fp asimd\n") == "cpu-neon"
    assert compiled.cpu_isa(tbl, "flags : fpu\n") == "cpu-generic"


def _dead_owner() -> dict:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    info = compiled.owner()
    info.update(pid=proc.pid, start=12345)
    return info


def test_a_warm_cache_a_boot_died_with_is_quarantined_and_the_boot_recompiles(tmp_path):
    plan = _decide(tmp_path, published=True)
    plan.model_dir.mkdir(parents=True)
    (plan.model_dir / compiled.READY_MARKER).write_text("{}")
    (plan.model_dir / "artefact").write_text("x")
    dead = plan.root / "attempts" / f"models--org--m--abc--{plan.token}-old.json"
    dead.parent.mkdir(parents=True)
    dead.write_text(json.dumps(_dead_owner()))
    elsewhere = plan.root / "attempts" / "models--org--m--abc--otherhost.json"
    elsewhere.write_text(json.dumps({"host": "another-node", "pid": 1, "start": 1}))

    after = compiled.prepare(plan, get_logger("test"))
    assert after.state == "cold" and after.staging and "quarantined" in after.reason
    assert not plan.model_dir.exists() and not dead.exists()
    assert elsewhere.exists()                  # another host's boot may be running: never judged
    assert not list((plan.root / "quarantine").iterdir())


def test_a_live_boots_attempt_is_not_taken_for_a_crash(tmp_path):
    plan = _decide(tmp_path, published=True)
    plan.model_dir.mkdir(parents=True)
    (plan.model_dir / compiled.READY_MARKER).write_text("{}")
    compiled.record_attempt(plan)                        # this very process: alive
    assert compiled.prepare(plan, get_logger("test")).state == "warm"
    assert plan.model_dir.is_dir()


def test_staging_of_dead_boots_is_swept_and_live_ones_kept(tmp_path):
    plan = _decide(tmp_path)
    gone = plan.root / "staging" / "models--org--m--abc--gone"
    live = plan.root / "staging" / "models--org--m--abc--live"
    for d, info in ((gone, _dead_owner()), (live, compiled.owner())):
        d.mkdir(parents=True)
        (d / compiled.OWNER_FILE).write_text(json.dumps(info))
    after = compiled.prepare(plan, get_logger("test"))
    assert after.state == "cold" and not gone.exists() and live.is_dir()
    assert json.loads((after.work_dir / compiled.OWNER_FILE).read_text())["pid"] == os.getpid()


def test_too_little_free_space_turns_caching_off_with_the_numbers(tmp_path, monkeypatch):
    plan = _decide(tmp_path)
    monkeypatch.setattr(compiled, "table", lambda: compiled.Table.from_data(
        {**_table_data(), "min_free_bytes": 1 << 60}))
    after = compiled.prepare(plan, get_logger("test"))
    assert after.state == "off" and "free on the cache volume" in after.reason and not after.env


def _table_data() -> dict:
    from aim_engine import yaml_documents

    return yaml_documents.load(Path(compiled.__file__).resolve().parents[1] / "engines" / "compile_cache.yaml")


def test_remove_tree_never_leaves_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert not compiled.remove_tree(root / "link", root) and outside.is_dir()
    assert not compiled.remove_tree(root / ".." / "outside", root) and outside.is_dir()
    assert not compiled.remove_tree(root, root) and root.is_dir()
    assert compiled.remove_tree(root / "a", root) and not (root / "a").exists()


def test_publish_is_one_rename_and_a_second_publisher_loses_cleanly(tmp_path):
    first, second = _decide(tmp_path, token="a"), _decide(tmp_path, token="b")
    for plan, content in ((first, "one"), (second, "two")):
        plan.work_dir.mkdir(parents=True)
        (plan.work_dir / "index.py").write_text(content)
        (plan.work_dir / compiled.OWNER_FILE).write_text("{}")
    assert probe_compiled.publish(first.to_dict())["published"] is True
    lost = probe_compiled.publish(second.to_dict())
    assert lost == {"published": False, "published_by_other": True}
    published = first.model_dir
    assert (published / "index.py").read_text() == "one"
    assert json.loads((published / compiled.READY_MARKER).read_text())["files"] == 1
    assert not (published / compiled.OWNER_FILE).exists()
    assert [p.name for p in published.parent.iterdir()] == [published.name]   # no temp copies left
    assert first.work_dir.is_dir()            # the engine still runs from it; removed at exit


def test_probe_exit_removes_staging_and_quarantines_a_warm_cache_the_engine_died_with(tmp_path):
    cold = _decide(tmp_path)
    cold.work_dir.mkdir(parents=True)
    probe_compiled.on_exit({"phase": "engine_starting", "compile_cache": cold.to_dict()}, ever_ready=True)
    assert not cold.work_dir.exists()

    warm = _decide(tmp_path, published=True)
    warm.model_dir.mkdir(parents=True)
    state = {"phase": "failed", "compile_cache": warm.to_dict()}
    probe_compiled.on_exit(state, ever_ready=False)        # the agent never exec'd: not the cache's fault
    assert warm.model_dir.is_dir()
    probe_compiled.on_exit({**state, "phase": "engine_starting"}, ever_ready=False)
    assert not warm.model_dir.exists()


def test_probe_ready_removes_the_attempt_record(tmp_path):
    warm = _decide(tmp_path, published=True)
    compiled.record_attempt(warm)
    assert warm.attempt.is_file()
    warm.model_dir.mkdir(parents=True)
    (warm.model_dir / "old").write_text("x")
    os.utime(warm.model_dir / "old", (1000, 1000))
    result = probe_compiled.on_ready({"compile_cache": warm.to_dict(), "started_at": 2000})
    assert result == {"ready_with": "warm", "engine_wrote_files": 0}
    assert not warm.attempt.exists()
    (warm.model_dir / "new").write_text("y")
    assert probe_compiled.on_ready({"compile_cache": warm.to_dict(), "started_at": 2000})["engine_wrote_files"] == 1


@pytest.mark.parametrize("bad", ["/etc", "../../x"])
def test_probe_touches_nothing_outside_the_compile_root(tmp_path, bad):
    cold = _decide(tmp_path).to_dict()
    cold["work_dir"] = bad if bad.startswith("/") else str(tmp_path / bad)
    assert probe_compiled.publish(cold)["published"] is False
    probe_compiled.on_exit({"phase": "engine_starting", "compile_cache": cold}, ever_ready=True)
    assert Path("/etc").is_dir()
