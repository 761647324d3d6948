"""The probe process: a tiny stdlib HTTP server that outlives the agent's exec.

It reads the agent's state file on every request, watches the engine's /v1/models itself once
the agent has exec'd (and, once the engine has been ready, the engine's /health for liveness),
and exits as soon as the process it watches (the agent, which becomes the engine: same PID) is
gone — so it never outlives the container's main process. It records how that process ended
(`exit_watch`); when the engine failed, it keeps telling so for `--linger` seconds first (the
agent's AIM_FAIL_GRACE), which only matters where the engine is not the container's PID 1.

Stdlib only (http.server, urllib, threading): it must answer within the first second of a boot.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aim_engine.probes import exit_watch
from aim_engine.probes import group as peers
from aim_engine.probes.logic import EngineCheck, View, models_from_payload, respond
from aim_engine.state import TERMINAL, read_state

WATCH_INTERVAL_S = 0.2        # how quickly the probe notices its process is gone
POLL_STARTING_S = 0.5         # engine polling while it starts
POLL_READY_S = 10.0         # ... and once it is ready (kubelet probes ask fresh anyway)
CHECK_TIMEOUT_S = 2.0
HEALTH_TIMEOUT_S = 0.9        # inside kubelet's default 1 s probe timeout


def pid_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie (a dead engine its parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # state is the field after the parenthesised command name
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def check_engine(url: str, timeout: float = CHECK_TIMEOUT_S, parse: bool = True) -> EngineCheck:
    """One GET of the engine's `url` (/v1/models, or /health with `parse=False`)."""
    now = time.time()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL from our own state)
            body = response.read()
            payload = json.loads(body or b"null") if parse else None
    except urllib.error.HTTPError as exc:
        return EngineCheck(answering=True, error=f"HTTP {exc.code}", checked_at=now)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return EngineCheck(answering=False, error=f"{type(exc).__name__}: {reason}", checked_at=now)
    return EngineCheck(answering=True, models=models_from_payload(payload), checked_at=now)


class Probe:
    """Shared state of the probe process (the server threads and the two background loops)."""

    def __init__(self, state_path: Path, watch_pid: int, linger: float = 0.0, log: Any = None) -> None:
        self.state_path = state_path
        self.watch_pid = watch_pid
        self.parent_watch = watch_pid == os.getppid()
        self.pidfd = exit_watch.open_pidfd(watch_pid)
        self.linger = linger
        self.log = log
        self.lock = threading.Lock()
        self.check: EngineCheck | None = None
        self.health: EngineCheck | None = None
        self.exit: exit_watch.ExitStatus | None = None
        self.ever_ready = False
        self.ready_at: float | None = None
        self.stop = threading.Event()
        self.started_at = time.time()
        self.compile_result: dict[str, Any] = {}   # what the compile cache hook did at ready
        self.metrics: Any = None          # probes.metrics.Exposition, built on the first scrape
        self.metrics_lock = threading.Lock()
        self.roster = peers.Roster()      # a leader's workers (docs/multinode.md)
        self.link = peers.LeaderLink(self._leader_lost)    # a worker's tie to its leader
        self.ending = False               # the group broke: this node's engine is being ended

    def render_metrics(self, accept: str | None) -> tuple[bytes, str]:
        with self.metrics_lock:
            if self.metrics is None:
                from aim_engine.probes.metrics import Exposition   # imports prometheus_client: not at start-up

                self.metrics = Exposition(self.view)
            return self.metrics.render(accept)

    # --- facts ---------------------------------------------------------------------------------

    def watched_alive(self) -> bool:
        if self.exit is not None:
            return False
        if self.pidfd is not None:
            return not exit_watch.wait_readable(self.pidfd, 0)
        if self.parent_watch:
            # Our parent did the exec, so the engine is our parent: once it dies we are
            # re-parented at once (before anyone reaps it), which is the earliest sign.
            return os.getppid() == self.watch_pid
        return pid_alive(self.watch_pid)

    def engine_url(self, state: dict[str, Any] | None) -> str | None:
        if not state or state.get("phase") not in ("engine_starting", "ready"):
            return None
        engine = state.get("engine") or {}
        if engine.get("serves_api") is False:      # a worker's headless engine serves no API to ask
            return None
        return engine.get("models_url")

    def refresh(self, state: dict[str, Any] | None) -> None:
        url = self.engine_url(state)
        if url is None or self.exit is not None:
            return
        check = check_engine(url)
        with self.lock:
            self.check = check
            name = ((state or {}).get("engine") or {}).get("served_model_name")
            if check.lists(name) and not self.ever_ready:
                self.ever_ready = True
                self.ready_at = check.checked_at
                threading.Thread(target=self._compile_ready, args=(state,), name="compile-cache",
                                 daemon=True).start()
        if self.ever_ready:
            self.refresh_health(state)

    def _compile_ready(self, state: dict[str, Any] | None) -> None:
        from aim_engine.probes import compiled

        result = compiled.on_ready(state)
        with self.lock:
            self.compile_result = result

    def refresh_health(self, state: dict[str, Any] | None) -> None:
        """Once the engine has been up, liveness is the engine's own /health."""
        url = ((state or {}).get("engine") or {}).get("health_url")
        if not self.ever_ready or not url or self.exit is not None:
            return
        health = check_engine(url, timeout=HEALTH_TIMEOUT_S, parse=False)
        with self.lock:
            self.health = health

    def view(self, fresh: str | None = None) -> View:
        """The merged picture; `fresh="ready"` asks the engine's /v1/models now, `fresh="live"`
        its /health (kubelet probes want today's answer, not the poller's last one)."""
        state = read_state(self.state_path)
        if fresh == "ready":
            self.refresh(state)
        elif fresh == "live":
            self.refresh_health(state)
        alive = self.watched_alive()
        group = self.group_picture(state)
        with self.lock:
            exit_status = self.exit
            return View(
                state=state, agent_alive=alive, check=self.check,
                ever_ready=self.ever_ready, ready_at=self.ready_at, compile=dict(self.compile_result),
                extra={"pid": os.getpid(), "watch_pid": self.watch_pid, "started_at": self.started_at},
                health=self.health, exit=exit_status.to_dict() if exit_status else None,
                exit_clean=bool(exit_status and exit_status.clean), group=group, now=time.time(),
            )

    # --- the group (probes/group.py) ------------------------------------------------------------

    @staticmethod
    def role(state: dict[str, Any] | None) -> str:
        return str(((state or {}).get("group") or {}).get("role") or "single")

    def group_picture(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        role, now = self.role(state), time.time()
        if role == "leader":
            return {**self.roster.summary((state or {}).get("group"), now),
                    "leader_phase": (state or {}).get("phase")}
        if role == "worker":
            return self.link.summary(state, now)
        return None

    def group_request(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A worker's join or heartbeat, answered by the leader's roster."""
        state = read_state(self.state_path)
        phase = str((state or {}).get("phase") or "starting")
        group = dict((state or {}).get("group") or {})
        if state and state.get("error"):
            group["error"] = state["error"]
        if self.exit is not None:
            phase = "stopped" if self.exit.clean else "failed"
        if path == peers.JOIN_PATH:
            code, answer = self.roster.join(body, group or None, phase, time.time())
            if self.log is not None:
                if code == 200:
                    self.log.info("worker joined", rank=answer.get("rank"), address=body.get("address"),
                                  hostname=body.get("hostname"))
                elif code == 409:
                    self.log.error("worker join refused", rank=body.get("rank"), address=body.get("address"),
                                   error=answer.get("error"))
            return code, answer
        return self.roster.heartbeat(body, group or None, phase, time.time())

    def _leader_lost(self, message: str) -> None:
        if self.log is not None:
            self.log.error("leader lost: this worker ends", reason=message, after_s=peers.END_AFTER_S)

    def watch_group(self) -> None:
        """Sweep a leader's roster / heartbeat a worker's leader; end this node's engine (or boot)
        when the group has broken, END_AFTER_S after it broke (docs/multinode.md)."""
        next_beat = 0.0
        while not self.stop.wait(0.5):
            state = read_state(self.state_path)
            role, now = self.role(state), time.time()
            started = (state or {}).get("phase") in ("engine_starting", "ready")
            if role == "single" and (started or (state or {}).get("phase") in TERMINAL):
                return          # one node: it never becomes a group; stop reading the state for it
            broken: dict[str, Any] | None = None
            if role == "leader":
                for lost in self.roster.sweep(now, started):
                    if self.log is not None:
                        self.log.error("worker lost", **lost, leader_started=started)
                broken = self.roster.broken
            elif role == "worker":
                if now >= next_beat:
                    next_beat = now + peers.HEARTBEAT_S
                    self.link.beat(state, self.watched_alive(), now)
                broken = self.link.lost
            if broken is not None and not self.ending and now >= broken["end_at"] and self.watched_alive():
                self.ending = True
                peers.end_process(self.watch_pid, self.watched_alive, self.log, broken["message"])

    # --- loops ---------------------------------------------------------------------------------

    def poll_engine(self) -> None:
        while not self.stop.is_set():
            self.refresh(read_state(self.state_path))
            self.stop.wait(POLL_READY_S if self.ever_ready else POLL_STARTING_S)

    def watch(self, server: ThreadingHTTPServer) -> None:
        """Wait for the watched process to end; record how; linger if the engine failed."""
        while not self.stop.is_set():
            if self.pidfd is not None:
                if exit_watch.wait_readable(self.pidfd, WATCH_INTERVAL_S):
                    break
            elif self.stop.wait(WATCH_INTERVAL_S) or not self.watched_alive():
                break
        try:
            if not self.stop.is_set():
                self.record_exit()
        finally:                              # whatever recording did, the probe ends with the engine
            self.stop.set()
            server.shutdown()

    def record_exit(self) -> None:
        status = exit_watch.read_exit(self.watch_pid, self.pidfd)
        with self.lock:
            self.exit = status
        view = self.view()
        if self.log is not None:
            event = "engine exited" if view.engine_exited else "agent exited"
            level = "info" if status.clean or view.agent_phase in TERMINAL else "error"
            try:
                getattr(self.log, level)(event, pid=self.watch_pid, code=status.code,
                                         signal=view.exit["signal"] if view.exit else None,
                                         phase=view.phase, was_ready=self.ever_ready)
            except OSError:
                pass    # the log stream closed with the engine (a container without a PID namespace)
        if view.engine_exited and not status.clean and self.linger > 0:
            # /status and /metrics keep saying why for a moment (outside a container's PID 1).
            time.sleep(self.linger)


FRESH = {"/health/ready": "ready", "/health/live": "live"}
METRICS_PATH = "/metrics"


def make_handler(probe: Probe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aim-engine-probe"
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without TCP_NODELAY the body waits for the
        # client's delayed ACK (40 ms) on a kept-alive connection, e.g. every Prometheus scrape.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            path = self.path.split("?", 1)[0]
            if path.rstrip("/") == METRICS_PATH:
                code, ctype = 200, ""
                data, ctype = probe.render_metrics(self.headers.get("Accept"))
            else:
                code, body = respond(path, probe.view(fresh=FRESH.get(path.rstrip("/"))))
                data, ctype = json.dumps(body, default=str).encode(), "application/json"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        do_HEAD = do_GET

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            if path not in (peers.JOIN_PATH, peers.HEARTBEAT_PATH):
                code, body = 404, {"error": f"no such endpoint {path!r}", "post": [peers.JOIN_PATH, peers.HEARTBEAT_PATH]}
            else:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 < length <= peers.MAX_BODY:
                    code, body = 400, {"error": f"a JSON body of 1 to {peers.MAX_BODY} bytes is expected"}
                else:
                    try:
                        request = json.loads(self.rfile.read(length))
                    except ValueError:
                        request = None
                    if not isinstance(request, dict):
                        code, body = 400, {"error": "the body is not a JSON object"}
                    else:
                        code, body = probe.group_request(path, request)
            data = json.dumps(body, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: kubelet probes every few seconds
            pass

    return Handler


def serve(sock: socket.socket, state_path: Path, watch_pid: int, cleanup_dir: Path | None = None,
          linger: float = 0.0, log: Any = None) -> int:
    """Serve the probes on an already listening socket until the watched process is gone."""
    probe = Probe(state_path, watch_pid, linger=linger, log=log)
    server = ThreadingHTTPServer(sock.getsockname()[:2], make_handler(probe), bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    threading.Thread(target=probe.poll_engine, name="engine-poll", daemon=True).start()
    threading.Thread(target=probe.watch, args=(server,), name="watch", daemon=True).start()
    threading.Thread(target=probe.watch_group, name="group", daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        probe.stop.set()
        server.server_close()
        from aim_engine.probes import compiled

        compiled.on_exit(read_state(state_path), probe.ever_ready)
        if cleanup_dir is not None:
            for child in cleanup_dir.glob("*"):
                try:
                    child.unlink()
                except OSError:
                    pass
            try:
                cleanup_dir.rmdir()
            except OSError:
                pass
    return 0
