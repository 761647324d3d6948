"""The leader's probe process as a worker's counterpart: the real `python -m aim_engine.probes`
on a real port, fed a leader's state file, answering joins and heartbeats over HTTP, and
refusing what is not a join (hostile bodies, a node that is no leader)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from aim_engine.probes import group as protocol
from aim_engine.state import write_json_atomic
from tests.e2e.harness import free_port, http_json, wait_until

FACTS = {"model": "m", "revision": "main", "recipe_id": "r", "engine": "vllm", "engine_version": "0.32.0",
         "precision": "bf16", "nodes": 2, "tensor_parallel": 2, "pipeline_parallel": 1, "data_parallel": 1,
         "backend": "native", "dist_port": 29500}


@pytest.fixture
def leader_probe(tmp_path: Path):
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    port = free_port()
    state = tmp_path / "state.json"
    write_json_atomic(state, {"phase": "downloading", "group": {
        "role": "leader", "rank": 0, "nodes": 2, "fingerprint": protocol.fingerprint(FACTS), "facts": FACTS}})
    proc = subprocess.Popen([sys.executable, "-m", "aim_engine.probes", "--state", str(state), "--port", str(port),
                             "--watch-pid", str(watched.pid)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_json(base + "/health/live")[0] != 0, 10, 0.05, "probe to listen")
    yield base, state
    proc.kill()
    proc.wait()
    watched.kill()
    watched.wait()


def _post_raw(url: str, data: bytes) -> int:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_join_and_its_heartbeats_over_http(leader_probe):
    base, _ = leader_probe
    join = {"rank": 1, "nodes": 2, "instance": "w1", "address": "10.0.0.2", "hostname": "w", "facts": FACTS,
            "fingerprint": protocol.fingerprint(FACTS)}
    code, body = http_json(base + protocol.JOIN_PATH, join)
    assert (code, body["accepted"], body["rank"]) == (200, True, 1)
    code, body = http_json(base + protocol.HEARTBEAT_PATH, {"rank": 1, "instance": "w1", "ready_to_start": True})
    assert code == 200 and body["leader_phase"] == "downloading" and body["released"] is False
    code, group = http_json(base + protocol.GROUP_PATH)
    assert code == 200 and group["complete"] and group["ready_to_start"] == [1] and group["missing"] == []
    assert http_json(base + "/health/joined")[0] == 200
    code, status = http_json(base + "/status")
    assert status["group"]["joined"][0]["address"] == "10.0.0.2" and status["group"]["ok"] is True
    code, body = http_json(base + protocol.HEARTBEAT_PATH, {"rank": 1, "instance": "someone-else"})
    assert code == 409 and "not in the leader's group" in body["error"]


def test_hostile_requests_are_refused_plainly(leader_probe):
    base, _ = leader_probe
    assert _post_raw(base + protocol.JOIN_PATH, b"{not json") == 400
    assert _post_raw(base + protocol.JOIN_PATH, b"[1, 2]") == 400
    assert _post_raw(base + protocol.JOIN_PATH, b"x" * (protocol.MAX_BODY + 1)) == 400
    assert _post_raw(base + "/status", b"{}") == 404
    code, body = http_json(base + protocol.JOIN_PATH, {"rank": "1; rm -rf /", "nodes": 2, "instance": "x" * 10_000,
                                                       "fingerprint": protocol.fingerprint(FACTS), "facts": FACTS})
    assert code == 409 and "out of range" in body["error"] and len(json.dumps(body)) < 1000
    assert http_json(base + "/health/live")[0] == 200         # still serving


def test_a_worker_is_no_leader(leader_probe):
    base, state = leader_probe
    write_json_atomic(state, {"phase": "downloading", "group": {"role": "worker", "rank": 1, "nodes": 2}})
    code, body = http_json(base + protocol.JOIN_PATH, {"rank": 1, "nodes": 2, "instance": "w"})
    assert code == 409 and "its role is worker (rank 1)" in body["error"]
