"""`aim-engine download` and `aim-engine cache list|verify|remove` as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hf_server import HubServer
from tests.support.tiny_repo import make_repo

ROOT = Path(__file__).resolve().parents[2]
REPO = "org/tiny"


@pytest.fixture
def setup(tmp_path):
    repo = make_repo(tmp_path / "repo", shards=2, shard_bytes=100_000)
    with HubServer() as hub:
        sha = hub.add_repo(REPO, repo.path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "HF_"))}
        env.update(AIM_CACHE_PATH=str(tmp_path / "cache"), HF_ENDPOINT=hub.url, PYTHONPATH=str(ROOT),
                   AIM_LOG_LEVEL="warning")
        yield hub, repo, sha, env


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "aim_engine", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_download_then_list_verify_remove(setup, tmp_path):
    hub, repo, sha, env = setup
    out = cli(env, "download", "--model", REPO, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["commit"] == sha and result["files"] == len(repo.needed) and not result["already_warm"]

    again = cli({**env, "AIM_MODEL_ID": REPO}, "download")
    assert again.returncode == 0 and "already complete" in again.stdout

    listed = cli(env, "cache", "list")
    assert listed.returncode == 0
    assert REPO in listed.stdout and sha[:12] in listed.stdout and "complete" in listed.stdout

    ok = cli(env, "cache", "verify", "--full")
    assert ok.returncode == 0 and "ok" in ok.stdout

    # Same size, different content: only a hash check can see it.
    shard = Path(result["path"]) / repo.shards[0]
    blob = os.path.realpath(shard)
    with open(blob, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00" * 64)
    assert cli(env, "cache", "verify").returncode == 0
    bad = cli(env, "cache", "verify", "--full", "--repair")
    assert bad.returncode == 1 and repo.shards[0] in bad.stdout and "sha256" in bad.stdout
    fixed = cli(env, "download", "--model", REPO, "--json")
    assert json.loads(fixed.stdout)["downloaded_bytes"] == (repo.path / repo.shards[0]).stat().st_size
    assert shard.read_bytes() == (repo.path / repo.shards[0]).read_bytes()

    removed = cli(env, "cache", "remove", REPO)
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert not (tmp_path / "cache" / "huggingface" / "hub" / "models--org--tiny").exists()
    assert "no models" in cli(env, "cache", "list").stdout
    missing = cli(env, "cache", "remove", REPO)
    assert missing.returncode == 1 and "not in the cache" in missing.stderr and "Traceback" not in missing.stderr


def test_download_errors_are_one_clear_line(setup):
    hub, repo, sha, env = setup
    no_model = cli(env, "download")
    assert no_model.returncode == 1 and "AIM_MODEL_ID" in no_model.stderr
    token = "hf_" + "s" * 30
    hub.add_token(token)
    bad_rev = cli({**env, "HF_TOKEN": token}, "download", "--model", REPO, "--revision", "nope")
    assert bad_rev.returncode == 1 and "'nope'" in bad_rev.stderr
    assert "Traceback" not in bad_rev.stderr and token not in bad_rev.stderr + bad_rev.stdout
