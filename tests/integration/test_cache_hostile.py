"""The cache volume is untrusted input (issue 12): hostile or damaged content, through the real CLI.

Every pod shares the volume, so whoever can write to it writes the markers, refs, lock files and
folder names the agent reads. Each test plants one such thing in a real cache tree, runs
`aim-engine cache ...` / `aim-engine download` as a subprocess, and checks: a clear message and
exit code (never a traceback), and not one file changed outside the cache (a canary tree).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cache_tree import REPO, Canary, build, tree_state, up_to
from tests.support.hf_server import HubServer
from tests.support.tiny_repo import make_repo

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
# Run the CLI after dropping root (root ignores file modes): import what the command needs first,
# because the interpreter's own files are not readable by uid 65534 here.
UNPRIVILEGED = (
    "import os, sys, json, aim_engine.cli as cli, aim_engine.commands.cache, aim_engine.cache.listing, "
    "aim_engine.cache.lock, aim_engine.settings, aim_engine.logs, aim_engine.text_table, filelock, structlog\n"
    "cli.build_parser('cache')\n"
    "os.setgid(%(uid)d); os.setuid(%(uid)d)\n"
    "sys.exit(cli.main(sys.argv[1:]))\n" % {"uid": NOBODY})


def run(env: dict[str, str], *args: str, unprivileged: bool = False) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", UNPRIVILEGED, *args] if unprivileged else [sys.executable, "-m", "aim_engine", *args]
    out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert "this is a bug" not in out.stderr
    return out


def env_for(cache_path: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "HF_"))}
    env.update(AIM_CACHE_PATH=str(cache_path), PYTHONPATH=str(ROOT / "entrypoint"), AIM_LOG_LEVEL="warning",
               HF_ENDPOINT="http://127.0.0.1:9", AIM_LOCK_TIMEOUT="5")
    env.update(extra)
    return env


@pytest.fixture
def planted(tmp_path):
    cache = build(tmp_path / "cache")
    canary = Canary(tmp_path / "canary")
    return cache, canary, env_for(cache.root)


def edit_marker(cache, change) -> None:
    data = json.loads(cache.marker.read_text())
    change(data)
    cache.marker.write_text(json.dumps(data))


# -- item 1: `cache verify --repair` never removes outside the cache


def test_repair_refuses_a_marker_file_path_that_leaves_the_snapshot(planted):
    cache, canary, env = planted
    hostile = up_to(cache.snapshot, canary.top / "x")
    edit_marker(cache, lambda d: d["files"][0].update(path=hostile, size=1))
    out = run(env, "cache", "verify", "--repair")
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1
    assert "files[0].path" in out.stdout and "'..'" in out.stdout and str(cache.marker.name) in out.stdout
    assert canary.changes() == {}
    assert all(b.exists() for b in cache.blobs.values())   # nothing in the cache lost either


def test_repair_refuses_a_blob_hash_that_is_a_path(planted):
    cache, canary, env = planted
    hostile = up_to(cache.repo_dir / "blobs", canary.top / "x")
    edit_marker(cache, lambda d: d["files"][0].update(sha256=hostile, size=1))
    out = run(env, "cache", "verify", "--repair")
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1 and "files[0].sha256" in out.stdout and "hex" in out.stdout
    assert canary.changes() == {}
    assert not cache.marker.exists() and all(b.exists() for b in cache.blobs.values())


def test_repair_refuses_a_commit_that_is_a_path(planted):
    cache, canary, env = planted
    hostile = up_to(cache.repo_dir / "snapshots", canary.top)
    edit_marker(cache, lambda d: d.update(commit=hostile))
    out = run(env, "cache", "verify", "--repair")
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1 and "commit" in out.stdout and "'/'" in out.stdout
    assert canary.changes() == {}


def test_repair_refuses_a_snapshot_folder_that_is_a_symlink_out(planted):
    cache, canary, env = planted
    shutil.rmtree(cache.snapshot)
    cache.snapshot.symlink_to(canary.top)          # its config.json etc. have the wrong sizes
    out = run(env, "cache", "verify", "--repair")
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1 and "outside" in out.stdout + out.stderr
    assert canary.changes() == {}


def test_repair_refuses_a_blobs_folder_that_is_a_symlink_out(planted):
    cache, canary, env = planted
    blobs = cache.repo_dir / "blobs"
    shutil.rmtree(blobs)
    blobs.symlink_to(canary.top)
    edit_marker(cache, lambda d: d["files"][0].update(sha256="f" * 64))   # the canary holds a file of that name
    out = run(env, "cache", "verify", "--repair")
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1 and "outside" in out.stdout + out.stderr
    assert canary.changes() == {}


def test_lock_files_are_never_created_or_written_through_symlinks(planted):
    cache, canary, env = planted
    locks = cache.root / "aim" / "locks"
    locks.mkdir(parents=True)
    (locks / "models--org--tiny.lock").symlink_to(canary.top / "created-by-the-agent")
    out = run(env, "cache", "remove", REPO)
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1 and "models--org--tiny.lock" in out.stderr
    assert canary.changes() == {} and cache.marker.exists()
    (locks / "models--org--tiny.lock").unlink()
    os.rmdir(locks)
    locks.symlink_to(canary.top)                    # the whole folder points out
    out = run(env, "cache", "remove", REPO)
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1 and "outside" in out.stderr
    assert canary.changes() == {} and cache.marker.exists()


def test_remove_does_not_follow_a_model_folder_that_is_a_symlink_out(planted):
    cache, canary, env = planted
    shutil.rmtree(cache.repo_dir)
    cache.repo_dir.symlink_to(canary.top)
    out = run(env, "cache", "remove", REPO)
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 0, out.stderr
    assert canary.changes() == {} and not os.path.lexists(cache.repo_dir)


# -- item 6: odd AIM_CACHE_PATH values and damaged caches: clear errors, nothing lost


@pytest.mark.parametrize("kind", ["file", "/dev/null", "/proc/self"])
@pytest.mark.parametrize("command", [("cache", "list"), ("cache", "verify"), ("cache", "remove", REPO),
                                     ("download", "--model", REPO)])
def test_cache_path_that_cannot_hold_a_cache(tmp_path, kind, command):
    path = tmp_path / "a-file" if kind == "file" else Path(kind)
    if kind == "file":
        path.write_text("not a folder")
    out = run(env_for(path), *command)
    assert out.returncode == 2 and f"AIM_CACHE_PATH={str(path)!r}" in out.stderr
    assert "folder" in out.stderr or "kernel filesystem" in out.stderr


def test_marker_that_is_a_json_list_is_damage_for_verify_and_cold_for_a_warm_up(tmp_path):
    repo = make_repo(tmp_path / "repo", shards=1, shard_bytes=10_000, decoys=False)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        env = env_for(tmp_path / "cache", HF_ENDPOINT=hub.url)
        assert run(env, "download", "--model", REPO).returncode == 0
        marker = next((tmp_path / "cache" / "aim" / "markers").rglob("main.json"))
        marker.write_text("[]")
        verify = run(env, "cache", "verify")
        assert verify.returncode == 1 and "damaged" in verify.stdout and "JSON list" in verify.stdout
        listed = run(env, "cache", "list")
        assert listed.returncode == 0 and "damaged" in listed.stdout
        again = run(env, "download", "--model", REPO, "--json")     # the boot's warm-up: re-fetch, not crash
        assert again.returncode == 0 and json.loads(again.stdout)["already_warm"] is False
        assert json.loads(marker.read_text())["repo_id"] == REPO


def test_damaged_parts_unreadable_by_the_agent(shared_tmp):
    cache = build(shared_tmp / "cache")
    subprocess.run(["chmod", "-R", "a+rX", str(shared_tmp)], check=True)
    env = env_for(cache.root)
    hub = cache.root / "huggingface" / "hub"
    hub.chmod(0)
    out = run(env, "cache", "list", unprivileged=True)
    assert out.returncode == 1 and "cannot read the hub cache folder" in out.stderr
    hub.chmod(0o755)
    (cache.repo_dir / "blobs").chmod(0)
    out = run(env, "cache", "verify", unprivileged=True)
    assert out.returncode == 1 and "config.json missing" in out.stdout
    (cache.repo_dir / "blobs").chmod(0o755)
    cache.marker.unlink()
    (cache.repo_dir / "refs" / "main").chmod(0)
    out = run(env, "cache", "list", unprivileged=True)
    assert out.returncode == 0 and "ref main cannot be used: Permission denied" in out.stdout


def test_ref_that_is_not_utf8(planted):
    cache, canary, env = planted
    cache.marker.unlink()
    (cache.repo_dir / "refs" / "main").write_bytes(b"\xff\xfe\x00garbage")
    listed = run(env, "cache", "list")
    assert listed.returncode == 0 and "ref main cannot be used" in listed.stdout
    verify = run(env, "cache", "verify")
    assert verify.returncode == 0 and "nothing to verify" in verify.stdout


def test_locks_folder_that_is_a_file(planted):
    cache, canary, env = planted
    (cache.root / "aim" / "locks").write_text("junk")
    out = run(env, "cache", "remove", REPO)
    assert out.returncode == 1 and "lock folder" in out.stderr and "is not a folder" in out.stderr
    assert cache.marker.exists()


def test_snapshots_that_is_a_file(tmp_path):
    repo = make_repo(tmp_path / "repo", shards=1, shard_bytes=10_000, decoys=False)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        env = env_for(tmp_path / "cache", HF_ENDPOINT=hub.url)
        assert run(env, "download", "--model", REPO).returncode == 0
        repo_dir = tmp_path / "cache" / "huggingface" / "hub" / "models--org--tiny"
        shutil.rmtree(repo_dir / "snapshots")
        (repo_dir / "snapshots").write_text("junk")
        blobs = sorted(p.name for p in (repo_dir / "blobs").iterdir())
        repaired = run(env, "cache", "verify", "--repair")
        assert repaired.returncode == 1 and "removed the marker" in repaired.stdout
        assert sorted(p.name for p in (repo_dir / "blobs").iterdir()) == blobs     # nothing lost
        again = run(env, "download", "--model", REPO)
        assert again.returncode == 1 and "snapshots in the model cache is not a folder" in again.stderr


@pytest.mark.parametrize("command", [("cache", "remove", "a" * 5000), ("cache", "verify", "--model", "a" * 5000),
                                     ("download", "--model", "o/" + "a" * 5000)])
def test_cache_id_of_5000_characters(planted, command):
    cache, canary, env = planted
    out = run(env, *command)
    assert out.returncode == 1 and "characters)" in out.stderr and len(out.stderr) < 1500
    assert "allowed: a Hugging Face id" in out.stderr


def test_revision_of_5000_characters(planted):
    cache, canary, env = planted
    out = run({**env, "AIM_MODEL_REVISION": "r" * 5000}, "download", "--model", REPO)
    assert out.returncode in (1, 2) and "revision" in out.stderr.lower() and len(out.stderr) < 1500


# -- item 9: AIM_LOCK_TIMEOUT


def test_lock_timeout_zero_takes_a_free_lock(planted):
    cache, canary, env = planted
    out = run({**env, "AIM_LOCK_TIMEOUT": "0"}, "cache", "remove", REPO)
    assert out.returncode == 0, out.stderr
    assert not cache.repo_dir.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "86401", "-1"])
def test_lock_timeout_must_be_a_finite_number_in_range(planted, value):
    cache, canary, env = planted
    out = run({**env, "AIM_LOCK_TIMEOUT": value}, "cache", "list")
    assert out.returncode == 2 and f"AIM_LOCK_TIMEOUT={value!r}" in out.stderr and "from 0 to 86400" in out.stderr


# -- items 13 and 14: `cache verify` says what it checked; `cache remove` takes real ids only


def test_verify_says_what_it_checked(tmp_path, planted):
    empty = run(env_for(tmp_path / "empty"), "cache", "verify")
    assert empty.returncode == 0 and "nothing to verify" in empty.stdout
    cache, canary, env = planted
    ok = run(env, "cache", "verify")
    assert ok.returncode == 0 and "checked 1 revision of 1 model (sizes): 1 ok, 0 damaged" in ok.stdout
    cache.marker.write_text('{"format": 1, "repo')
    bad = run(env, "cache", "verify")
    assert bad.returncode == 1 and "damaged" in bad.stdout and "not valid JSON" in bad.stdout


def test_remove_takes_only_real_ids(planted):
    cache, canary, env = planted
    before = tree_state(cache.root)
    for bad in ("org--tiny", "org/tiny/x", "../org", "org/.tiny", "org/tiny.git"):
        out = run(env, "cache", "remove", bad)
        assert out.returncode == 1 and "allowed: a Hugging Face id" in out.stderr, bad
    assert tree_state(cache.root) == before


# -- the real boot (`aim-engine serve`, a fake engine binary): a damaged marker never breaks it


@pytest.mark.parametrize("offline", [False, True])
def test_boot_with_a_marker_that_is_a_json_list(tmp_path, offline):
    from tests.e2e.harness import base_env, fake_engine_dir, start_agent

    repo = make_repo(tmp_path / "repo", shards=1, shard_bytes=10_000, decoys=False)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        assert run(env_for(tmp_path / "cache", HF_ENDPOINT=hub.url), "download", "--model", REPO).returncode == 0
        marker = next((tmp_path / "cache" / "aim" / "markers").rglob("main.json"))
        marker.write_text("[]")
        record = tmp_path / "engine.json"
        env = base_env({"AIM_MODEL_ID": REPO, "HF_ENDPOINT": hub.url, "AIM_FAIL_GRACE": "0",
                        "AIM_OFFLINE": "1" if offline else "0", "FAKE_ENGINE_RECORD": str(record)},
                       path_prefix=[fake_engine_dir(tmp_path / "bin")])
        agent = start_agent(tmp_path, env)
        code = agent.wait(120)
    log = agent.log()
    assert "Traceback" not in log and "this is a bug" not in log
    if offline:   # no network allowed: a clear error naming the marker, exit 1
        assert code == 1 and "main.json is damaged: it holds a JSON list" in log and not record.exists()
    else:         # the damaged marker is no marker: the boot downloads again and execs the engine
        assert code == 0, log
        assert json.loads(record.read_text())["argv"][1] == "serve"
        assert json.loads(marker.read_text())["repo_id"] == REPO


def test_markers_folder_that_is_a_file(tmp_path):
    repo = make_repo(tmp_path / "repo", shards=1, shard_bytes=10_000, decoys=False)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        (tmp_path / "cache" / "aim").mkdir(parents=True)
        (tmp_path / "cache" / "aim" / "markers").write_text("junk")
        out = run(env_for(tmp_path / "cache", HF_ENDPOINT=hub.url), "download", "--model", REPO)
    assert out.returncode == 1 and "cannot write the completeness marker" in out.stderr


def test_blobs_folder_unwritable_by_the_agent(shared_tmp):
    """A warm-up as uid 65534 into a cache whose blobs/ it cannot write: a clear error, not a bug."""
    repo = make_repo(shared_tmp / "repo", shards=1, shard_bytes=10_000, decoys=False)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        cache_root = shared_tmp / "cache"
        blobs = cache_root / "huggingface" / "hub" / "models--org--tiny" / "blobs"
        blobs.mkdir(parents=True)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(cache_root)], check=True)
        os.chown(blobs, 0, 0)
        blobs.chmod(0o555)
        hub.add_repo("org/warmup", repo.path)
        # The interpreter's files are not readable by uid 65534 here: a first download as root (into
        # another cache) loads every module the download needs, then the process drops root.
        script = ("import os, sys, aim_engine.cli as cli\n"
                  f"os.environ['AIM_CACHE_PATH'] = {str(shared_tmp / 'warmup')!r}\n"
                  "assert cli.main(['download', '--model', 'org/warmup']) == 0\n"
                  f"os.environ['AIM_CACHE_PATH'] = {str(cache_root)!r}\n"
                  f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
                  "sys.exit(cli.main(sys.argv[1:]))\n")
        out = subprocess.run([sys.executable, "-c", script, "download", "--model", REPO], cwd=ROOT,
                             env=env_for(cache_root, HF_ENDPOINT=hub.url), capture_output=True, text=True,
                             timeout=120)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode == 1 and "cannot write" in out.stderr and "Permission denied" in out.stderr, out.stderr


@pytest.mark.parametrize("folder", [".locks", "models--org--tiny/blobs", "models--org--tiny/snapshots"])
def test_download_never_writes_through_a_folder_linked_out_of_the_cache(tmp_path, folder):
    """huggingface_hub writes its lock files, blobs and snapshot links where the agent tells it:
    each of those folders must be a folder inside the cache before the download starts."""
    repo = make_repo(tmp_path / "repo", shards=1, shard_bytes=10_000, decoys=False)
    canary = Canary(tmp_path / "canary")
    link = tmp_path / "cache" / "huggingface" / "hub" / folder
    link.parent.mkdir(parents=True)
    link.symlink_to(canary.top)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        out = run(env_for(tmp_path / "cache", HF_ENDPOINT=hub.url), "download", "--model", REPO)
    assert canary.changes() == {}, "a file outside the cache was changed"
    assert out.returncode == 1 and "outside the cache" in out.stderr


@pytest.mark.parametrize("cache_path", ["/dev/null", "/proc/self"])
def test_boot_with_a_cache_path_that_cannot_hold_a_cache(tmp_path, cache_path):
    from tests.e2e.harness import base_env, fake_engine_dir, start_agent

    repo = make_repo(tmp_path / "repo", shards=1, shard_bytes=10_000, decoys=False)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        env = base_env({"AIM_MODEL_ID": REPO, "HF_ENDPOINT": hub.url, "AIM_FAIL_GRACE": "0",
                        "AIM_CACHE_PATH": cache_path, "FAKE_ENGINE_RECORD": str(tmp_path / "engine.json")},
                       path_prefix=[fake_engine_dir(tmp_path / "bin")])
        agent = start_agent(tmp_path, env)
        code = agent.wait(120)
    log = agent.log()
    assert "Traceback" not in log and "this is a bug" not in log
    assert code == 2 and f"AIM_CACHE_PATH={cache_path!r}" in log and not (tmp_path / "engine.json").exists()


def test_config_json_is_read_bounded(tmp_path):
    """config.json linked to a weights-sized file (sparse here: no disk used) is refused by its
    size, not read whole into memory (the same reader serves the cache's snapshots)."""
    model = tmp_path / "model"
    model.mkdir()
    big = tmp_path / "weights.bin"
    with open(big, "wb") as f:
        f.truncate(100 << 20)
    (model / "config.json").symlink_to(big)
    out = run(env_for(tmp_path / "cache", AIM_MODEL_ID=str(model)), "plan")
    assert out.returncode == 1 and "config.json" in out.stderr and "more than the" in out.stderr


def test_plan_of_a_model_outside_the_catalog_names_a_bad_cache_path(tmp_path):
    repo = make_repo(tmp_path / "repo", shards=1, shard_bytes=10_000, decoys=False)
    with HubServer() as hub:
        hub.add_repo(REPO, repo.path)
        out = run(env_for("/dev/null", HF_ENDPOINT=hub.url, AIM_MODEL_ID=REPO), "plan")
    assert out.returncode == 2 and "AIM_CACHE_PATH='/dev/null' is not a folder" in out.stderr
