"""cache.warm against a real local hub server with the real huggingface_hub client (in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aim_engine import cache
from aim_engine.cache import marker as markers
from aim_engine.cache.download import RetryPolicy
from aim_engine.cache.layout import Layout
from aim_engine.errors import AimError
from aim_engine.settings import Settings
from tests.conftest import require_root
from tests.support.hf_server import Fault, HubServer
from tests.support.tiny_repo import make_repo

FAST = cache.WarmOptions(retry=RetryPolicy(attempts=4, base=0.05, max_wait=0.2, max_retry_after=0.5))
REPO = "org/tiny"


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture
def tiny(tmp_path):
    return make_repo(tmp_path / "repo", shards=3, shard_bytes=300_000)


def make_settings(cache_path: Path, hub: HubServer | None, **env: str) -> Settings:
    base = {"AIM_CACHE_PATH": str(cache_path)}
    if hub is not None:
        base["HF_ENDPOINT"] = hub.url
    base.update(env)
    return Settings.from_env(base)


def served_files(hub: HubServer, repo: str = REPO) -> dict[str, int]:
    out: dict[str, int] = {}
    for path, v in hub.stats()["paths"].items():
        prefix = f"/{repo}/resolve/"
        if path.startswith(prefix):
            name = path[len(prefix):].partition("/")[2]
            out[name] = out.get(name, 0) + v.get("bytes", 0)
    return out


def test_cold_warm_fetches_exactly_what_the_engine_needs(hub, tiny, tmp_path):
    sha = hub.add_repo(REPO, tiny.path)
    settings = make_settings(tmp_path / "cache", hub)
    result = cache.warm(REPO, settings, options=FAST)
    assert not result.already_warm and result.commit == sha and result.offline
    assert sorted(result.files) == sorted(tiny.needed)
    assert result.path == str(settings.hub_cache / "models--org--tiny" / "snapshots" / sha)
    served = served_files(hub)
    for name in tiny.needed:
        assert served.get(name) == (tiny.path / name).stat().st_size, name
        assert (Path(result.path) / name).read_bytes() == (tiny.path / name).read_bytes()
    for name in tiny.decoys:
        assert name not in served, f"decoy {name} was requested"
    assert (settings.hub_cache / "models--org--tiny" / "refs" / "main").read_text() == sha
    assert markers.read(Layout.of(settings), REPO, "main").commit == sha


def test_warm_boot_makes_zero_requests_and_imports_nothing_heavy(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    settings = make_settings(tmp_path / "cache", hub)
    cache.warm(REPO, settings, options=FAST)
    hub.reset_stats()
    script = (
        "import sys, json; from aim_engine import cache; from aim_engine.settings import Settings;"
        "r = cache.warm(sys.argv[1], Settings.from_env()); "
        "print(json.dumps({'warm': r.already_warm, 'heavy': sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('huggingface_hub', 'httpx2', 'httpx', 'filelock', 'requests'))}))"
    )
    env = {**os.environ, "AIM_CACHE_PATH": str(settings.cache_path), "HF_ENDPOINT": hub.url, "AIM_LOG_LEVEL": "error"}
    out = subprocess.run([sys.executable, "-c", script, REPO], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"warm": True, "heavy": []}
    assert hub.stats()["requests"] == 0


def test_bin_only_repo_fetches_the_bin_weights(hub, tmp_path):
    repo = make_repo(tmp_path / "binrepo", shards=2, shard_bytes=50_000, bin_only=True)
    hub.add_repo("org/bin", repo.path)
    result = cache.warm("org/bin", make_settings(tmp_path / "cache", hub), options=FAST)
    assert sorted(result.files) == sorted(repo.needed)
    assert "training_args.bin" not in served_files(hub, "org/bin")


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_file_is_detected_and_refetched_alone(hub, tiny, tmp_path, damage):
    hub.add_repo(REPO, tiny.path)
    settings = make_settings(tmp_path / "cache", hub)
    first = cache.warm(REPO, settings, options=FAST)
    victim = Path(first.path) / tiny.shards[1]
    if damage == "truncate":
        with open(os.path.realpath(victim), "r+b") as f:
            f.truncate(1000)
    else:
        victim.unlink()
    hub.reset_stats()
    again = cache.warm(REPO, settings, options=FAST)
    assert not again.already_warm
    size = (tiny.path / tiny.shards[1]).stat().st_size
    # A truncated blob is fetched again; a lost snapshot link to an intact blob is only re-linked.
    assert served_files(hub) == {tiny.shards[1]: size if damage == "truncate" else 0}
    assert victim.read_bytes() == (tiny.path / tiny.shards[1]).read_bytes()


def test_leftovers_of_a_killed_download_are_cleaned_and_only_missing_files_fetched(hub, tiny, tmp_path):
    sha = hub.add_repo(REPO, tiny.path)
    settings = make_settings(tmp_path / "cache", hub)
    cache.warm(REPO, settings, options=FAST)
    layout = Layout.of(settings)
    # What a SIGKILL mid-download leaves: no marker, one file not yet renamed into place.
    markers.remove(layout, REPO)
    shard = tiny.shards[0]
    pointer = layout.snapshot(REPO, sha) / shard
    blob = Path(os.path.realpath(pointer))
    pointer.unlink()
    partial = blob.with_name(blob.name + ".1a2b3c4d.incomplete")
    blob.rename(partial)
    with open(partial, "r+b") as f:
        f.truncate(777)
    hub.reset_stats()
    result = cache.warm(REPO, settings, options=FAST)
    assert served_files(hub) == {shard: (tiny.path / shard).stat().st_size}
    assert not partial.exists()
    assert result.downloaded_bytes == (tiny.path / shard).stat().st_size


def test_transient_faults_are_retried(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    hub.add_fault(
        Fault(path=f"/api/models/{REPO}/*", status=503, times=2),
        Fault(path="*/resolve/*/config.json", method="HEAD", status=429, retry_after=0, times=2),
        Fault(path=f"*/resolve/*/{tiny.shards[0]}", method="GET", status=500, times=2),
        Fault(path=f"*/resolve/*/{tiny.shards[1]}", method="GET", drop_after=10_000, times=2),
        Fault(path="*/resolve/*/tokenizer.json", method="GET", status=429, retry_after=0, times=1),
    )
    settings = make_settings(tmp_path / "cache", hub)
    result = cache.warm(REPO, settings, options=FAST)
    assert sorted(result.files) == sorted(tiny.needed)
    for name in tiny.needed:
        assert (Path(result.path) / name).read_bytes() == (tiny.path / name).read_bytes()
    paths = hub.stats()["paths"]
    assert sum(v.get("GET", 0) for p, v in paths.items() if p.startswith(f"/api/models/{REPO}")) == 3


def test_persistent_server_errors_end_in_a_clear_error(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    hub.add_fault(Fault(path=f"*/resolve/*/{tiny.shards[0]}", method="GET", status=500))
    with pytest.raises(AimError) as err:
        cache.warm(REPO, make_settings(tmp_path / "cache", hub), options=FAST)
    assert "HTTP 500" in str(err.value)
    assert markers.read(Layout.of(make_settings(tmp_path / "cache", hub)), REPO, "main") is None


@pytest.mark.parametrize("status, words", [
    (403, ["HTTP 403", "refused access", "org/tiny/config.json", "HF_TOKEN"]),
    (404, ["HTTP 404", "not found", "org/tiny/config.json", "AIM_MODEL_REVISION"]),
])
def test_forbidden_or_missing_file_fails_at_once_with_a_clear_error(hub, tiny, tmp_path, status, words):
    """huggingface_hub 2.x reports a 403/404 on a file's metadata HEAD as LocalEntryNotFoundError
    ("check your connection"); the cause is inspected, so there is one HEAD and a clear error."""
    hub.add_repo(REPO, tiny.path)
    token = "hf_" + "k" * 30
    hub.add_token(token)
    hub.add_fault(Fault(path="*/resolve/*/config.json", method="HEAD", status=status))
    settings = make_settings(tmp_path / "cache", hub, HF_TOKEN=token)
    with pytest.raises(AimError) as err:
        cache.warm(REPO, settings)    # the default policy: a retried call would make 6 HEADs
    text = str(err.value)
    for word in words:
        assert word in text, text
    assert "connection" not in text.lower() and token not in text
    assert hub.file_requests(REPO, "config.json", "HEAD") == 1
    assert hub.file_requests(REPO, "config.json", "GET") == 0
    assert markers.read(Layout.of(settings), REPO, "main") is None


def test_refused_connection_is_retried_then_named(tmp_path):
    import socket

    with socket.socket() as s:   # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings.from_env({"AIM_CACHE_PATH": str(tmp_path / "cache"), "HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    with pytest.raises(AimError) as err:
        cache.warm(REPO, settings, options=FAST)
    assert f"cannot reach http://127.0.0.1:{port}" in str(err.value) and "AIM_OFFLINE" in str(err.value)


def test_unknown_revision_and_unknown_repo(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    settings = make_settings(tmp_path / "cache", hub)
    with pytest.raises(AimError) as err:
        cache.warm(REPO, settings, revision="no-such-branch", options=FAST)
    assert "no-such-branch" in str(err.value) and "AIM_MODEL_REVISION" in str(err.value)
    with pytest.raises(AimError) as err:
        cache.warm("org/missing", settings, options=FAST)
    assert "org/missing" in str(err.value) and "not found" in str(err.value)


def test_gated_model_needs_a_granted_token_and_never_shows_it(hub, tiny, tmp_path):
    hub.add_repo("org/gated", tiny.path, gated=True)
    good, other, bad = "hf_" + "g" * 30, "hf_" + "o" * 30, "hf_" + "b" * 30
    hub.add_token(good, grant=["org/gated"])
    hub.add_token(other)
    for token, expect in [(None, "HF_TOKEN is not set"), (other, "has no access"), (bad, "rejected HF_TOKEN")]:
        env = {"HF_TOKEN": token} if token else {}
        with pytest.raises(AimError) as err:
            cache.warm("org/gated", make_settings(tmp_path / "cache", hub, **env), options=FAST)
        text = str(err.value)
        assert expect in text, text
        assert not token or token not in text
    result = cache.warm("org/gated", make_settings(tmp_path / "cache", hub, HF_TOKEN=good), options=FAST)
    assert sorted(result.files) == sorted(tiny.needed)


def test_other_revision_gets_its_own_commit_marker_and_ref(hub, tiny, tmp_path):
    main_sha = hub.add_repo(REPO, tiny.path)
    v2 = make_repo(tmp_path / "v2", shards=2, shard_bytes=10_000, seed=7)
    v2_sha = hub.add_repo(REPO, v2.path, revision="v2")
    settings = make_settings(tmp_path / "cache", hub)
    a = cache.warm(REPO, settings, options=FAST)
    b = cache.warm(REPO, settings, revision="v2", options=FAST)
    c = cache.warm(REPO, settings, revision=v2_sha, options=FAST)
    assert (a.commit, b.commit, c.commit) == (main_sha, v2_sha, v2_sha)
    assert c.already_warm is False and c.downloaded_bytes == 0   # same commit: nothing fetched again
    assert (settings.hub_cache / "models--org--tiny" / "refs" / "v2").read_text() == v2_sha


def test_offline_serves_a_complete_cache_and_refuses_an_incomplete_one(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    online = make_settings(tmp_path / "cache", hub)
    cache.warm(REPO, online, options=FAST)
    offline = make_settings(tmp_path / "cache", None, AIM_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    hub.reset_stats()
    assert cache.warm(REPO, offline).already_warm
    with pytest.raises(AimError) as err:
        cache.warm("org/other", offline)
    assert "AIM_OFFLINE" in str(err.value)
    assert hub.stats()["requests"] == 0


def test_disk_space_is_checked_against_the_listing(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    settings = make_settings(tmp_path / "cache", hub)
    options = cache.WarmOptions(retry=FAST.retry, free_space=lambda _p: 123_456)
    with pytest.raises(AimError) as err:
        cache.warm(REPO, settings, options=options)
    text = str(err.value)
    assert "not enough disk space" in text and "123456 bytes" in text
    assert not any(n.endswith(".safetensors") for n in served_files(hub))


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def needs_root() -> None:
    require_root("mount", "umount", why="mounting a tmpfs (real full/read-only filesystems) needs root")


def test_disk_full_on_a_real_small_filesystem(hub, tmp_path):
    needs_root()
    repo = make_repo(tmp_path / "big", shards=3, shard_bytes=1_000_000)
    hub.add_repo(REPO, repo.path)
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "1m")
    try:
        with pytest.raises(AimError) as err:
            cache.warm(REPO, make_settings(mnt, hub), options=FAST)
        assert "not enough disk space" in str(err.value)
        assert not list(mnt.rglob("*.safetensors"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_read_only_cache_is_used_when_complete_and_explained_when_not(hub, tiny, tmp_path):
    needs_root()
    hub.add_repo(REPO, tiny.path)
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "20m")
    try:
        settings = make_settings(mnt, hub)
        cache.warm(REPO, settings, options=FAST)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        hub.reset_stats()
        assert cache.warm(REPO, settings).already_warm
        assert hub.stats()["requests"] == 0
        with pytest.raises(AimError) as err:
            cache.warm("org/other", settings, options=FAST)
        text = str(err.value)
        assert "read-only" in text and "aim-engine download" in text
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_progress_reaches_listeners(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    seen: list[cache.Progress] = []
    cache.warm(REPO, make_settings(tmp_path / "cache", hub), on_progress=seen.append, options=FAST)
    phases = [p.phase for p in seen]
    for phase in ("resolving", "downloading", "verifying", "complete"):
        assert phase in phases
    done = [p for p in seen if p.phase == "complete"][-1]
    assert done.bytes_total > 0 and done.bytes_done == done.bytes_total


def test_full_verification_records_hashes(hub, tiny, tmp_path):
    hub.add_repo(REPO, tiny.path)
    settings = make_settings(tmp_path / "cache", hub, AIM_CACHE_VERIFY="full")
    result = cache.warm(REPO, settings, options=FAST)
    m = markers.read(Layout.of(settings), REPO, "main")
    assert m.verified == "full"
    shard = next(f for f in m.files if f.path == tiny.shards[0])
    assert shard.sha256 == markers.sha256_of(Path(result.path) / shard.path)


def test_local_directory_models_bypass_the_cache(tmp_path):
    repo = make_repo(tmp_path / "local", shards=1, shard_bytes=1000, decoys=False)
    settings = make_settings(tmp_path / "cache", None)
    result = cache.warm(str(repo.path), settings)
    assert result.local and result.path == str(repo.path.resolve()) and "config.json" in result.files
    assert not (tmp_path / "cache").exists()
    with pytest.raises(AimError) as err:
        cache.warm(str(tmp_path / "nope"), settings)
    assert "no such directory" in str(err.value)
