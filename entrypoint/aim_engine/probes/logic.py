"""What each probe endpoint answers, as a pure function of the boot state and the engine check.

Kept apart from the HTTP server so every rule is testable with plain dictionaries:

- `/health/live`    200 while the agent (or, after the exec, the engine: the same PID) is alive;
                    once the engine has been ready, 200 only while the engine's own /health
                    answers 200 (a hung or broken engine is restarted); 503 once it has exited.
- `/health/ready`   200 only when the engine answers and lists the served model in /v1/models;
                    503 with the phase otherwise.
- `/health/startup` 200 once the engine has been ready (latched: a startup probe succeeds once,
                    then liveness takes over); 503 with the phase before that and after a failure.
- `/status`         200 with the whole state: phase, hardware, recipe and why, download progress,
                    engine, timings, last error, and how the engine exited (code, signal, time).
- `/group`          200 with the group as this node sees it (a leader: who joined, who is missing
                    or lost; a worker: its leader and the last heartbeat); `/health/joined` 200
                    when a worker has joined and its leader answers, or a leader's group is whole.

In a group (docs/multinode.md) readiness is the group's: a leader is ready only when its engine
is AND every worker has joined and heartbeats; a worker (whose engine serves no API) is ready
once it has exec'd its engine, has joined and its leader answers. A broken group is an error of
kind `group_lost`.

When the engine exits, the phase becomes `stopped` (exit 0, or SIGTERM/SIGINT) or `failed` (any
other end), with an error of kind `engine_exited`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENDPOINTS = ("/health/live", "/health/ready", "/health/startup", "/health/joined", "/status", "/group")


@dataclass(frozen=True)
class EngineCheck:
    """One look at the engine's /v1/models."""

    answering: bool                      # the engine answered HTTP at all
    models: tuple[str, ...] = ()         # ids it lists
    error: str | None = None             # why it did not answer (connection refused, 503, ...)
    checked_at: float = 0.0

    def lists(self, name: str | None) -> bool:
        return self.answering and name is not None and name in self.models


@dataclass
class View:
    """The probe's merged picture: the agent's last written state plus what the probe saw."""

    state: dict[str, Any] | None
    agent_alive: bool
    check: EngineCheck | None = None
    ever_ready: bool = False
    ready_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    health: EngineCheck | None = None            # the engine's own /health, once it has been ready
    exit: dict[str, Any] | None = None           # how the watched process ended (ExitStatus.to_dict)
    exit_clean: bool = False                     # ... exit 0 or a stop signal
    group: dict[str, Any] | None = None          # the probe's picture of the group (probes/group.py)
    now: float = 0.0                             # when the view was taken (waits' elapsed time)

    @property
    def engine_exited(self) -> bool:
        """The exec happened and the engine (not the agent) is gone."""
        return self.exit is not None and self.agent_phase in ("engine_starting", "ready")

    @property
    def role(self) -> str:
        return str(((self.state or {}).get("group") or {}).get("role") or "single")

    @property
    def group_ok(self) -> bool:
        """A leader's group is whole; a worker has joined and its leader answers; one node: True."""
        group = self.group or {}
        if self.role == "leader":
            return bool(group.get("complete"))
        if self.role == "worker":
            return bool(group.get("joined")) and not group.get("leader_lost")
        return True

    @property
    def group_error(self) -> dict[str, Any] | None:
        group = self.group or {}
        broken = group.get("broken") if self.role == "leader" else group.get("leader_lost")
        if not broken:
            return None
        return {"message": f"the group is broken: {broken.get('message')}",
                "hint": f"this node ends its engine {broken.get('end_at', 0) - broken.get('at', 0):g} s after the loss "
                        "so the whole group restarts (LeaderWorkerSet RecreateGroupOnPodRestart); see docs/multinode.md",
                "kind": "group_lost", "phase": self.agent_phase}

    @property
    def error(self) -> dict[str, Any] | None:
        if self.group_error is not None:
            return self.group_error
        if self.engine_exited and not self.exit_clean:
            assert self.exit is not None
            how = self.exit.get("description") or "exited"
            return {"message": f"the engine {how} {'after it was ready' if self.ever_ready else 'before it was ready'}",
                    "hint": "the engine's own log (the container's output) says why",
                    "kind": "engine_exited", "phase": "ready" if self.ever_ready else self.agent_phase}
        return (self.state or {}).get("error")

    @property
    def live(self) -> bool:
        if not self.agent_alive or self.engine_exited:
            return False
        if self.ever_ready and self.health is not None:
            return self.health.answering and self.health.error is None
        return True

    compile: dict[str, Any] = field(default_factory=dict)   # the compile cache hook's result at ready

    @property
    def agent_phase(self) -> str:
        return (self.state or {}).get("phase", "starting")

    @property
    def served_model_name(self) -> str | None:
        return ((self.state or {}).get("engine") or {}).get("served_model_name")

    @property
    def ready(self) -> bool:
        started = self.agent_phase in ("engine_starting", "ready") and not self.engine_exited
        if self.role == "worker":      # a headless engine: alive, joined and heard by its leader
            return started and self.agent_alive and self.group_ok
        return started and self.check is not None and self.check.lists(self.served_model_name) and self.group_ok

    @property
    def phase(self) -> str:
        if self.group_error is not None:
            return "failed"           # the group broke: this node is about to end its engine
        if self.engine_exited:
            return "stopped" if self.exit_clean else "failed"
        if self.ready:
            return "ready"
        return self.agent_phase


def models_from_payload(payload: Any) -> tuple[str, ...]:
    """Model ids from an OpenAI `/v1/models` body ({"data": [{"id": ...}, ...]})."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return ()
    return tuple(str(m["id"]) for m in payload["data"] if isinstance(m, dict) and "id" in m)


def status_document(view: View) -> dict[str, Any]:
    doc = dict(view.state or {"phase": "starting"})
    doc["phase"] = view.phase
    doc["ready"] = view.ready
    doc["agent_phase"] = view.agent_phase
    doc["error"] = view.error
    if view.exit is not None:
        doc["engine_exit" if view.engine_exited else "agent_exit"] = view.exit
    if view.health is not None:
        doc["engine_health"] = {"ok": view.health.answering and view.health.error is None,
                                "error": view.health.error, "checked_at": view.health.checked_at}
    if view.check is not None:
        doc["engine_check"] = {
            "answering": view.check.answering,
            "models": list(view.check.models),
            "error": view.check.error,
            "checked_at": view.check.checked_at,
        }
    if view.ready_at is not None:
        doc["ready_at"] = view.ready_at
        started = doc.get("started_at")
        if isinstance(started, (int, float)):
            doc.setdefault("timings", {})
            doc["timings"] = {**doc["timings"], "to_ready": round(view.ready_at - started, 3)}
    if view.compile and isinstance(doc.get("compile_cache"), dict):
        doc["compile_cache"] = {**doc["compile_cache"], **view.compile}
    if view.group is not None or isinstance(doc.get("group"), dict):
        doc["group"] = group_document(view)
    doc["probe"] = view.extra
    return doc


def group_document(view: View) -> dict[str, Any]:
    """The boot's `group` section (role, rank, the wait in progress) merged with the probe's
    picture (joined, lost, heartbeats), the wait's elapsed time computed now."""
    doc = {**((view.state or {}).get("group") or {}), **(view.group or {})}
    waiting = doc.get("waiting")
    if isinstance(waiting, dict) and isinstance(waiting.get("since"), (int, float)) and view.now:
        doc["waiting"] = {**waiting, "elapsed_s": round(view.now - waiting["since"], 1)}
    doc["ok"] = view.group_ok
    return doc


def respond(path: str, view: View) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one request path."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    phase = view.phase
    error = view.error
    if path == "/health/live":
        if view.live:
            return 200, {"live": True, "phase": phase}
        body = {"live": False, "phase": phase}
        if view.engine_exited:
            body["engine_exit"] = view.exit
        elif view.agent_alive and view.health is not None:
            body["engine_health"] = view.health.error
        return 503, body
    if path == "/health/ready":
        if view.ready:
            return 200, {"ready": True, "phase": phase, "model": view.served_model_name}
        body: dict[str, Any] = {"ready": False, "phase": phase}
        if error:
            body["error"] = error
        elif view.check is not None and view.check.error:
            body["engine"] = view.check.error
        return 503, body
    if path == "/health/joined":
        body = {"joined": view.group_ok, "role": view.role, "phase": phase}
        if view.group is not None:
            body["group"] = {k: view.group.get(k) for k in ("missing", "lost", "leader", "last_ack_age_s", "rank")
                             if k in view.group}
        return (200 if view.group_ok else 503), body
    if path == "/group":
        return 200, group_document(view) if view.role != "single" else {"role": "single", "nodes": 1}
    if path == "/health/startup":
        started = view.ever_ready or (view.role == "worker" and view.ready)
        if started and phase not in ("failed", "stopped"):
            return 200, {"started": True, "phase": phase}
        body = {"started": False, "phase": phase}
        if error:
            body["error"] = error
        return 503, body
    if path in ("/status", "/"):
        return 200, status_document(view)
    return 404, {"error": f"no such endpoint {path!r}", "endpoints": list(ENDPOINTS)}
