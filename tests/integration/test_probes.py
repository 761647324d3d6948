"""The probe process (`python -m aim_engine.probes`) as a real process on a real port.

It is driven the way the agent drives it: a state file written with `BootState`, a process it
watches, and an engine that comes up (an in-test OpenAI-style /v1/models server on loopback).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aim_engine import probes
from aim_engine.state import BootState
from tests.e2e.harness import free_port, http_json, pid_running, wait_until


class FakeEngine:
    """/v1/models on 127.0.0.1:port0; `models` is what it lists, `status` what it answers."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.status = 200
        self.health = 200
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = json.dumps({"object": "list", "data": [{"id": m} for m in engine.models]}).encode()
                codes = {"/v1/models": engine.status, "/health": engine.health}
                self.send_response(codes.get(self.path, 404))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/models"
        self.health_url = self.url.replace("/v1/models", "/health")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine():
    e = FakeEngine()
    yield e
    e.close()


@pytest.fixture
def watched():
    """A process standing in for the agent/engine the probe follows."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def probe_proc(tmp_path: Path, watched):
    port = free_port()
    state = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "aim_engine.probes", "--state", str(state), "--port", str(port),
                             "--watch-pid", str(watched.pid)], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_json(base + "/health/live")[0] != 0, 10, 0.05, "probe to listen")
    yield proc, base, state
    proc.kill()
    proc.wait()


def test_answers_before_any_state_exists(probe_proc):
    _, base, _ = probe_proc
    assert http_json(base + probes.LIVE_PATH) == (200, {"live": True, "phase": "starting"})
    assert http_json(base + probes.READY_PATH) == (503, {"ready": False, "phase": "starting"})
    assert http_json(base + probes.STARTUP_PATH) == (503, {"started": False, "phase": "starting"})
    code, status = http_json(base + probes.STATUS_PATH)
    assert code == 200 and status["phase"] == "starting" and status["ready"] is False
    assert http_json(base + "/nope")[0] == 404


def test_metrics_answer_before_any_state_exists(probe_proc):
    """/metrics is there from the first second: phase `starting`, nothing planned, no failure."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    _, base, _ = probe_proc
    with urllib.request.urlopen(base + probes.METRICS_PATH, timeout=10) as response:
        text = response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("aim_boot_phase", (("aim_boot_phase", "starting"),))] == 1
    assert sum(v for (name, _), v in samples.items() if name == "aim_boot_phase") == 1
    assert sum(v for (name, _), v in samples.items() if name == "aim_boot_failures_total") == 0
    assert not any(name == "aim_engine_info" for name, _ in samples)


def test_follows_the_boot_and_is_ready_only_when_the_engine_lists_the_model(probe_proc, engine):
    _, base, path = probe_proc
    state = BootState(path)
    state.enter("detecting")
    state.update(hardware={"cpu": {"cores": 2}})
    assert http_json(base + "/status")[1]["phase"] == "detecting"
    state.enter("downloading")
    state.progress(phase="downloading", bytes_done=10, bytes_total=100, final=True)
    code, status = http_json(base + "/status")
    assert status["download"] == {"phase": "downloading", "bytes_done": 10, "bytes_total": 100}
    assert [p["name"] for p in status["phases"]] == ["starting", "detecting", "downloading"]
    assert http_json(base + "/health/ready") == (503, {"ready": False, "phase": "downloading"})

    state.update(engine={"models_url": engine.url, "served_model_name": "demo"})
    state.enter("engine_starting")
    engine.status = 503                                  # answering, but not serving yet
    code, body = http_json(base + "/health/ready")
    assert (code, body["phase"], body["engine"]) == (503, "engine_starting", "HTTP 503")
    engine.status, engine.models = 200, ["other-model"]  # serving something else
    assert http_json(base + "/health/ready")[0] == 503
    engine.models = ["demo"]
    assert http_json(base + "/health/ready") == (200, {"ready": True, "phase": "ready", "model": "demo"})
    assert http_json(base + "/health/startup")[0] == 200
    code, status = http_json(base + "/status")
    assert status["phase"] == "ready" and status["agent_phase"] == "engine_starting"
    assert status["engine_check"]["models"] == ["demo"] and "to_ready" in status["timings"]

    engine.models = []                                   # the engine stops serving the model
    assert http_json(base + "/health/ready")[0] == 503
    assert http_json(base + "/health/startup")[0] == 200  # startup succeeded once: latched


def test_failed_boot_is_explained_on_every_endpoint(probe_proc):
    _, base, path = probe_proc
    state = BootState(path)
    state.enter("selecting")
    state.fail("no recipe fits", "use more GPUs", "AimError")
    code, body = http_json(base + "/health/ready")
    assert code == 503 and body["phase"] == "failed"
    assert body["error"] == {"message": "no recipe fits", "hint": "use more GPUs", "kind": "AimError",
                             "phase": "selecting"}
    assert http_json(base + "/health/startup")[1]["error"]["message"] == "no recipe fits"
    assert http_json(base + "/status")[1]["error"]["phase"] == "selecting"


def test_exits_when_the_watched_process_dies_and_ignores_sigint(probe_proc, watched):
    proc, base, _ = probe_proc
    proc.send_signal(signal.SIGINT)           # terminal Ctrl-C goes to the engine, not to the probe
    time.sleep(0.5)
    assert proc.poll() is None and http_json(base + "/health/live")[0] == 200
    watched.kill()
    watched.wait()
    assert proc.wait(timeout=10) == 0
    assert not pid_running(proc.pid)


def test_start_binds_now_and_the_probe_follows_its_parent(tmp_path):
    """`probes.start` from a parent that then exits: the probe serves meanwhile and then leaves."""
    port = free_port()
    script = (
        "import sys, time; from pathlib import Path; from aim_engine import probes\n"
        f"p = probes.start(Path({str(tmp_path / 'state.json')!r}), {port}, host='127.0.0.1', "
        f"cleanup_dir=Path({str(tmp_path)!r}))\n"
        "print(p.pid, flush=True); time.sleep(1.5)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    probe_pid = int(parent.stdout.readline())
    # The socket was bound before start() returned, so the first request succeeds right away.
    assert http_json(f"http://127.0.0.1:{port}/health/live", timeout=5)[0] == 200
    assert parent.wait(10) == 0
    wait_until(lambda: not pid_running(probe_pid), 10, 0.1, "probe to exit after its parent")
    assert not tmp_path.exists()              # the state directory is cleaned up


def test_start_reports_a_busy_port(tmp_path):
    import socket

    from aim_engine.errors import AimError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(AimError, match="AIM_HEALTH_PORT"):
            probes.start(tmp_path / "state.json", busy.getsockname()[1], host="127.0.0.1")


def test_liveness_follows_the_engines_health_once_it_has_been_ready(probe_proc, engine):
    _, base, path = probe_proc
    state = BootState(path)
    state.update(engine={"models_url": engine.url, "health_url": engine.health_url, "served_model_name": "demo"})
    state.enter("engine_starting")
    # Each check asks the engine afresh with a 0.9 s timeout: on a loaded machine one answer may
    # be late, so transitions are awaited (a probe that never follows still fails).
    engine.health = 503                                   # loading: the engine's /health is not ours to judge yet
    assert http_json(base + "/health/live")[0] == 200
    engine.models = ["demo"]
    assert http_json(base + "/health/ready")[0] == 200    # now it has been up
    body = wait_until(lambda: (r := http_json(base + "/health/live"))[0] == 503 and r[1], 10, 0.1, "live: 503")
    assert body["engine_health"] == "HTTP 503"
    assert http_json(base + "/status")[1]["engine_health"]["ok"] is False
    engine.health = 200
    wait_until(lambda: http_json(base + "/health/live") == (200, {"live": True, "phase": "ready"}), 10, 0.1,
               "live: 200 again")
    engine.close()                                        # the engine stops answering at all
    body = wait_until(lambda: (r := http_json(base + "/health/live"))[0] == 503 and r[1], 10, 0.1, "live: 503")
    assert "Connection" in body["engine_health"]


@pytest.mark.parametrize("how", ["code", "signal"])
def test_records_how_the_watched_process_ended_and_lingers_only_after_a_failure(tmp_path, engine, how):
    """The watched process (standing in for the exec'd engine) ends; the probe says how in
    /status, keeps answering for --linger seconds, then exits."""
    port = free_port()
    path = tmp_path / "state.json"
    state = BootState(path)
    state.update(engine={"models_url": engine.url, "health_url": engine.health_url, "served_model_name": "demo"})
    state.enter("engine_starting")
    watched = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1])); sys.exit(7)",
                                "1.5" if how == "code" else "300"])
    proc = subprocess.Popen([sys.executable, "-m", "aim_engine.probes", "--state", str(path), "--port", str(port),
                             "--watch-pid", str(watched.pid), "--linger", "30", "--log-format", "json"],
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_json(base + "/health/live")[0] == 200, 10, 0.05, "probe to listen")
        if how == "signal":
            watched.kill()
        watched.wait()                        # reaped by us, its parent: the probe still learns the status
        status = wait_until(lambda: (s := http_json(base + "/status")[1])["phase"] == "failed" and s, 10, 0.05,
                            "the exit to show")
        expected = (7, None) if how == "code" else (None, "SIGKILL")
        assert (status["engine_exit"]["code"], status["engine_exit"]["signal"]) == expected
        assert status["error"]["kind"] == "engine_exited"
        assert http_json(base + "/health/live")[0] == 503
        assert proc.poll() is None            # lingering: still answering
    finally:
        proc.terminate() if proc.poll() is None else None
        watched.kill()
        _, err = proc.communicate(timeout=10)
    assert '"event": "engine exited"' in err


def test_a_clean_engine_exit_is_stopped_and_the_probe_leaves_at_once(tmp_path, engine):
    port = free_port()
    path = tmp_path / "state.json"
    state = BootState(path)
    state.update(engine={"models_url": engine.url, "served_model_name": "demo"})
    state.enter("engine_starting")
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    proc = subprocess.Popen([sys.executable, "-m", "aim_engine.probes", "--state", str(path), "--port", str(port),
                             "--watch-pid", str(watched.pid), "--linger", "300"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/health/live")[0] == 200, 10, 0.05, "probe to listen")
        watched.terminate()                   # SIGTERM: how an orchestrator stops the engine
        watched.wait()
        assert proc.wait(timeout=20) == 0     # no linger after a clean stop
    finally:
        watched.kill()
        proc.kill()
        proc.wait()


def test_the_probe_still_leaves_when_its_log_stream_is_gone(tmp_path, engine):
    """In a container without its own PID namespace (buildah run), the stream the probe logs to
    is closed when the engine exits; the exit must still end the probe, not kill the thread that
    would have ended it (the CPU image test found a probe left serving forever)."""
    port = free_port()
    path = tmp_path / "state.json"
    state = BootState(path)
    state.update(engine={"models_url": engine.url, "served_model_name": "demo"})
    state.enter("engine_starting")
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    proc = subprocess.Popen([sys.executable, "-m", "aim_engine.probes", "--state", str(path), "--port", str(port),
                             "--watch-pid", str(watched.pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: http_json(f"http://127.0.0.1:{port}/health/live")[0] == 200, 10, 0.05, "probe to listen")
        proc.stdout.close()
        proc.stderr.close()
        watched.terminate()
        watched.wait()
        assert proc.wait(timeout=20) == 0
    finally:
        watched.kill()
        proc.kill()
        proc.wait()
