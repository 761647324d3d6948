"""The probe process's `/metrics`: how fast a scrape answers, after a real boot.

A real `aim-engine serve` (editable checkout) boots the tiny repo from the local hub and execs a
fake engine that serves /v1/models, so the state behind the scrape is a real one (phases,
download, cache, plan, engine). Then one HTTP/1.1 connection (as Prometheus keeps one) asks
/metrics SCRAPES times; each request's wall time is measured. The first scrape, which imports
prometheus_client in the probe process, is reported separately.
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import time
from pathlib import Path

from result import Result

from tests.e2e.harness import base_env, fake_engine_dir, start_agent
from tests.support.hf_server import HubServer
from tests.support.tiny_repo import make_repo

SCRAPES = 300


def _get(conn: http.client.HTTPConnection) -> tuple[float, int]:
    started = time.perf_counter()
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200 or b"aim_boot_phase" not in body:
        raise RuntimeError(f"/metrics answered {response.status}: {body[:200]!r}")
    return elapsed, len(body)


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp_name:
        tmp = Path(tmp_name)
        repo = make_repo(tmp / "repo", shards=2, shard_bytes=200_000).path
        with HubServer() as hub:
            hub.add_repo("bench/tiny", repo)
            env = base_env({"AIM_MODEL_ID": "bench/tiny", "HF_ENDPOINT": hub.url, "FAKE_ENGINE_MODE": "serve"},
                           path_prefix=[fake_engine_dir(tmp / "bin")])
            agent = start_agent(tmp / "run", env)
            try:
                agent.wait_phase("ready", timeout=120)
                conn = http.client.HTTPConnection("127.0.0.1", agent.health_port, timeout=10)
                first, size = _get(conn)
                times = [_get(conn)[0] for _ in range(SCRAPES)]
                conn.close()
            finally:
                agent.kill_tree()
    times_ms = sorted(1000 * t for t in times)
    median = statistics.median(times_ms)
    p95 = times_ms[int(0.95 * len(times_ms)) - 1]
    return [Result("metrics: agent /metrics scrape (probe process, after the exec)", f"{median:.2f} ms", "< 10 ms",
                   met=median < 10,
                   detail=f"median of {SCRAPES} on one keep-alive connection; p95 {p95:.2f} ms; {size} bytes; "
                          f"first scrape (imports prometheus_client) {1000 * first:.0f} ms")]


if __name__ == "__main__":
    print(Result.table(run()))
