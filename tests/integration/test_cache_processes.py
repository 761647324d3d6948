"""The cache lock with real processes: concurrent warm-ups, a SIGKILLed holder, network-FS leases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aim_engine.cache import marker as markers
from aim_engine.cache.layout import Layout
from aim_engine.settings import Settings
from tests.conftest import require_root
from tests.support.hf_server import Fault, HubServer
from tests.support.tiny_repo import make_repo

REPO = "org/tiny"
ROOT = Path(__file__).resolve().parents[2]

LEASE_SCRIPT = """
import sys, json
from aim_engine import cache
from aim_engine.cache.lock import LockOptions
from aim_engine.logs import configure_from
from aim_engine.settings import Settings
settings = Settings.from_env()
configure_from(settings)
opts = cache.WarmOptions(lock=LockOptions(lease_duration=3, heartbeat=0.5, poll=0.2, use_flock=False))
r = cache.warm(sys.argv[1], settings, options=opts)
print(json.dumps({"already_warm": r.already_warm, "downloaded": r.downloaded_bytes}))
"""


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


def env_for(cache_path: Path, hub: HubServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIM_", "HF_"))}
    env.update(AIM_CACHE_PATH=str(cache_path), HF_ENDPOINT=hub.url, AIM_MODEL_ID=REPO, AIM_LOG_FORMAT="json",
               PYTHONPATH=str(ROOT), **extra)
    return env


def download(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aim_engine", "download", "--json"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def holder_progress(layout: Layout) -> dict:
    try:
        return json.loads(layout.holder(REPO).read_text())
    except (OSError, ValueError):
        return {}


class SnapshotWatcher(threading.Thread):
    """Polls the snapshot directories; records any visible file whose size is not the final one."""

    def __init__(self, hub_cache: Path, sizes: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.root = hub_cache / "models--org--tiny" / "snapshots"
        self.sizes = sizes
        self.partial: list[str] = []
        self.observed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.root.is_dir():
                for snap in self.root.iterdir():
                    for name, size in self.sizes.items():
                        p = snap / name
                        try:
                            actual = os.stat(p).st_size
                        except FileNotFoundError:
                            continue
                        self.observed += 1
                        if actual != size:
                            self.partial.append(f"{name}: {actual}/{size}")
            time.sleep(0.01)


def check_complete(settings: Settings, repo) -> None:
    m = markers.read(Layout.of(settings), REPO, "main")
    assert m is not None and sorted(f.path for f in m.files) == sorted(repo.needed)
    snap = Layout.of(settings).snapshot(REPO, m.commit)
    for name in repo.needed:
        assert (snap / name).read_bytes() == (repo.path / name).read_bytes(), name
    assert not list((snap.parent.parent / "blobs").glob("*.incomplete"))


def test_eight_processes_warming_at_once_download_each_file_once(hub, tmp_path):
    repo = make_repo(tmp_path / "repo", shards=3, shard_bytes=1_000_000)
    hub.add_repo(REPO, repo.path)
    hub.add_fault(Fault(path="*.safetensors", method="GET", rate=1_500_000))   # long enough to overlap
    cache_path = tmp_path / "cache"
    procs = [download(env_for(cache_path, hub)) for _ in range(8)]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert sum(1 for r in reports if not r["already_warm"]) == 1
    stats = hub.stats()
    for name in repo.needed:
        assert hub.file_bytes(REPO, name) == (repo.path / name).stat().st_size, name
    info_calls = sum(v.get("GET", 0) for p, v in stats["paths"].items() if p.startswith("/api/models/"))
    assert info_calls == 1
    check_complete(Settings.from_env({"AIM_CACHE_PATH": str(cache_path)}), repo)


def test_sigkilled_holder_is_taken_over_and_no_partial_file_is_ever_visible(hub, tmp_path):
    repo = make_repo(tmp_path / "repo", shards=3, shard_bytes=2_000_000)
    hub.add_repo(REPO, repo.path)
    # huggingface_hub reports progress per 10 MB chunk or finished file: one slow shard keeps the
    # holder mid-download after the others are in place.
    hub.add_fault(Fault(path=f"*/{repo.shards[2]}", method="GET", rate=150_000))
    cache_path = tmp_path / "cache"
    settings = Settings.from_env({"AIM_CACHE_PATH": str(cache_path)})
    layout = Layout.of(settings)
    watcher = SnapshotWatcher(settings.hub_cache, {n: (repo.path / n).stat().st_size for n in repo.needed})
    watcher.start()
    holder = download(env_for(cache_path, hub))
    try:
        wait_for(lambda: (holder_progress(layout).get("progress") or {}).get("bytes_done", 0) > 200_000,
                 what="the holder to be mid-download")
        waiter = download(env_for(cache_path, hub))
        wait_for(lambda: b"waiting for another warm-up" in _peek_stderr(waiter), timeout=60, what="the waiter")
        assert holder_progress(layout)["pid"] == holder.pid
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert markers.read(layout, REPO, "main") is None        # the killed holder left no marker
        hub.clear_faults()
        out, err = waiter.communicate(timeout=120)
    finally:
        for p in (holder,):
            if p.poll() is None:
                p.kill()
        watcher.stop.set()
        watcher.join()
    assert waiter.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["already_warm"] is False
    assert watcher.observed > 0 and watcher.partial == []
    check_complete(settings, repo)


_stderr_buffers: dict[int, bytearray] = {}


def _peek_stderr(proc: subprocess.Popen) -> bytes:
    """Read what the process has written to stderr so far (non-blocking), keeping it for later."""
    buf = _stderr_buffers.setdefault(proc.pid, bytearray())
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf.extend(chunk)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    return bytes(buf)


def test_lock_timeout_names_the_holder(hub, tmp_path):
    repo = make_repo(tmp_path / "repo", shards=2, shard_bytes=2_000_000)
    hub.add_repo(REPO, repo.path)
    hub.add_fault(Fault(path="*.safetensors", method="GET", rate=300_000))
    cache_path = tmp_path / "cache"
    layout = Layout.of(Settings.from_env({"AIM_CACHE_PATH": str(cache_path)}))
    holder = download(env_for(cache_path, hub))
    try:
        wait_for(lambda: holder_progress(layout).get("pid") == holder.pid, what="the holder")
        impatient = subprocess.run([sys.executable, "-m", "aim_engine", "download"], cwd=ROOT, capture_output=True,
                                   text=True, env=env_for(cache_path, hub, AIM_LOCK_TIMEOUT="1"), timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert impatient.returncode == 1
    assert "timed out" in impatient.stderr and f"pid {holder.pid}" in impatient.stderr
    assert "Traceback" not in impatient.stderr


def test_lease_expires_when_flock_is_a_no_op_and_the_holder_was_on_another_host(hub, tmp_path):
    """Emulates a network filesystem where flock excludes nobody: only the lease protects."""
    require_root("unshare", "hostname", why="a holder on another host needs a UTS namespace (root + unshare)")
    repo = make_repo(tmp_path / "repo", shards=2, shard_bytes=2_000_000)
    hub.add_repo(REPO, repo.path)
    hub.add_fault(Fault(path=f"*/{repo.shards[1]}", method="GET", rate=150_000))
    cache_path = tmp_path / "cache"
    settings = Settings.from_env({"AIM_CACHE_PATH": str(cache_path)})
    layout = Layout.of(settings)
    env = env_for(cache_path, hub)
    holder = subprocess.Popen(["unshare", "-u", "sh", "-c", 'hostname otherpod && exec "$0" -c "$1" "$2"',
                               sys.executable, LEASE_SCRIPT, REPO], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiter = None
    try:
        wait_for(lambda: (holder_progress(layout).get("progress") or {}).get("bytes_done", 0) > 100_000,
                 what="the holder to be mid-download")
        assert holder_progress(layout)["host"] == "otherpod"
        waiter = subprocess.Popen([sys.executable, "-c", LEASE_SCRIPT, REPO], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: b"waiting for another warm-up" in _peek_stderr(waiter), what="the waiter")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        hub.clear_faults()
        out, err = waiter.communicate(timeout=120)
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
    assert waiter.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["already_warm"] is False
    check_complete(settings, repo)
