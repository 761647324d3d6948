"""Cache benchmarks: cold warm-up vs plain `snapshot_download`, and the warm-cache check.

A repo of a few hundred MB is generated in a temp dir and served by the test hub in its own
process (so the server does not share this process's GIL). Both clients fetch the same file set
into fresh caches, alternating which goes first, best of ROUNDS rounds each: a transfer takes
about a second on loopback, and with two rounds the ratio swung between 0.94x and 1.19x.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from result import Result

from tests.support.hf_server import HubServer
from tests.support.tiny_repo import make_repo

REPO = "bench/model"
SHARDS, SHARD_BYTES = 4, 128 * 1024 * 1024
ROUNDS = 4


def _settings(cache_path: Path, url: str):
    from aim_engine.settings import Settings

    return Settings.from_env({"AIM_CACHE_PATH": str(cache_path), "HF_ENDPOINT": url, "AIM_LOG_LEVEL": "warning"})


def run() -> list[Result]:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from huggingface_hub import snapshot_download

    from aim_engine import cache
    from aim_engine.logs import configure

    configure("warning", "json")
    work = Path(tempfile.mkdtemp(prefix="aim-bench-cache-"))
    try:
        repo = make_repo(work / "repo", shards=SHARDS, shard_bytes=SHARD_BYTES)
        total = repo.needed_bytes
        with HubServer.spawn(repos={REPO: repo.path}) as hub:
            ours, plain = [], []
            for round_ in range(ROUNDS):
                for kind in ("plain", "ours") if round_ % 2 == 0 else ("ours", "plain"):
                    target = work / f"{kind}-{round_}"
                    started = time.perf_counter()
                    if kind == "plain":
                        snapshot_download(REPO, cache_dir=str(target / "hub"), endpoint=hub.url, token=False,
                                          allow_patterns=list(repo.needed))
                        plain.append(time.perf_counter() - started)
                    else:
                        result = cache.warm(REPO, _settings(target, hub.url))
                        ours.append(time.perf_counter() - started)
                        assert result.downloaded_bytes == total
                    shutil.rmtree(target)

            settings = _settings(work / "warm", hub.url)
            cache.warm(REPO, settings)
            hub.client.reset_stats()
            checks = []
            for _ in range(50):
                started = time.perf_counter()
                assert cache.warm(REPO, settings).already_warm
                checks.append(time.perf_counter() - started)
            requests = hub.client.stats()["requests"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours_rate, plain_rate = total / min(ours), total / min(plain)
    ratio = ours_rate / plain_rate
    check_ms = 1000 * statistics.median(checks)
    return [
        Result("cache: cold warm-up throughput vs snapshot_download", f"{ratio:.2f}×", "≥ 0.95×",
               f"{total / 1e6:.0f} MB, {len(repo.needed)} files; ours {ours_rate / 1e6:.0f} MB/s, "
               f"snapshot_download {plain_rate / 1e6:.0f} MB/s (best of {ROUNDS}, loopback)", met=ratio >= 0.95),
        Result("cache: warm-cache check (in-process)", f"{check_ms:.2f} ms", "< 20 ms",
               f"median of 50; {requests} hub requests", met=check_ms < 20 and requests == 0),
    ]


if __name__ == "__main__":
    print(Result.table(run()))
