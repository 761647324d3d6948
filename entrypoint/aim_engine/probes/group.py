"""The group's coordination over the probe port (docs/multinode.md, "Coordination and failure").

The leader's probe process keeps the roster of its workers (`Roster`): a worker's boot joins it
(`POST /group/join`, with the facts of its plan and their fingerprint), then the worker's probe
process heartbeats it (`POST /group/heartbeat`) for as long as the worker lives, before and after
its exec (`LeaderLink`). A worker whose heartbeats stop for `LOST_AFTER_S` is lost: before the
leader's exec it may join again; after it, the group is broken, the leader stops being ready and,
`END_AFTER_S` later, its probe ends the engine (SIGTERM), so the container restarts and
LeaderWorkerSet's `RecreateGroupOnPodRestart` recreates the whole group. A worker whose leader
stops answering (or no longer knows it) ends the same way.

The probe process is the only one that holds the roster; the boot reads it over loopback
(`GET /group`), so the state file keeps its single writer. Stdlib only: the probe imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable

HEARTBEAT_S = 2.0        # a worker's probe heartbeats its leader this often
LOST_AFTER_S = 10.0      # ... and is lost (or finds its leader lost) after this long without an answer
END_AFTER_S = 5.0        # a broken group's node stays up, not ready, this long before it ends its engine
KILL_AFTER_S = 60.0      # SIGKILL when the engine has not ended this long after the SIGTERM
REQUEST_TIMEOUT_S = 3.0
MAX_BODY = 65536
MAX_REJECTED = 20

GROUP_PATH = "/group"
JOIN_PATH = "/group/join"
HEARTBEAT_PATH = "/group/heartbeat"

# The facts of a plan every rank must share (the boot fills them; peers.plan_facts).
FACT_FIELDS = ("model", "revision", "recipe_id", "engine", "engine_version", "precision", "nodes",
               "tensor_parallel", "pipeline_parallel", "data_parallel", "backend", "dist_port")


def fingerprint(facts: dict[str, Any]) -> str:
    """A short, stable digest of a plan's facts: equal on every rank of a sound group."""
    text = json.dumps({k: facts.get(k) for k in FACT_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(leader: dict[str, Any], worker: dict[str, Any]) -> list[str]:
    """`field: leader X, worker Y` for each fact that differs."""
    return [f"{k}: leader {_short(leader.get(k))}, worker {_short(worker.get(k))}"
            for k in FACT_FIELDS if leader.get(k) != worker.get(k)]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _text(value: Any, limit: int = 255) -> str | None:
    return None if value is None else str(value)[:limit]


@dataclass
class Member:
    """One worker as the leader knows it."""

    rank: int
    instance: str
    address: str | None
    hostname: str | None
    joined_at: float
    last_seen: float
    phase: str = "joining"
    ready_to_start: bool = False
    engine_alive: bool = True

    def to_dict(self, now: float) -> dict[str, Any]:
        return {**asdict(self), "age_s": round(now - self.last_seen, 3)}


class Roster:
    """The leader's picture of its workers. Pure bookkeeping (no I/O); `group` is the `group`
    section of the leader's state file (nodes, fingerprint, facts, phase), `now` a wall clock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.members: dict[int, Member] = {}
        self.lost: dict[int, dict[str, Any]] = {}
        self.rejected: list[dict[str, Any]] = []
        self.instance = uuid.uuid4().hex
        self.broken: dict[str, Any] | None = None      # the group broke after the leader's exec

    # --- requests -------------------------------------------------------------------------

    def _reject(self, request: dict[str, Any], message: str, now: float) -> tuple[int, dict[str, Any]]:
        self.rejected = [*self.rejected, {"at": now, "rank": request.get("rank"), "address": _text(request.get("address")),
                                          "error": message}][-MAX_REJECTED:]
        return 409, {"accepted": False, "error": message}

    def join(self, request: dict[str, Any], group: dict[str, Any] | None, leader_phase: str,
             now: float) -> tuple[int, dict[str, Any]]:
        """Accept or refuse one worker's join (HTTP status, JSON body)."""
        if leader_phase in ("failed", "stopped"):
            error = (((group or {}).get("error") or {}).get("message")) or "see its /status"
            return 409, {"accepted": False, "error": f"the leader's boot has {leader_phase}: {error}"}
        group = {k: v for k, v in (group or {}).items() if k != "error"}
        if not group and leader_phase in ("starting", "detecting", "selecting"):
            return 503, {"accepted": False, "error": f"the leader is not ready for joins yet (phase {leader_phase})",
                         "phase": leader_phase}
        if not group or group.get("role") != "leader":
            role = (group or {}).get("role", "single")
            where = f" (rank {group.get('rank')})" if group else ""
            return 409, {"accepted": False, "error": f"this node is not a group's leader: its role is {role}{where}"}
        if not group.get("fingerprint"):
            return 503, {"accepted": False, "error": f"the leader is not ready for joins yet (phase {leader_phase})",
                         "phase": leader_phase}
        nodes = int(group["nodes"])
        facts = request.get("facts") if isinstance(request.get("facts"), dict) else {}
        rank = request.get("rank")
        instance = _text(request.get("instance"), 64)
        address = _text(request.get("address"))
        with self.lock:
            if not instance:
                return self._reject(request, "a join needs the worker's instance id", now)
            if request.get("nodes") != nodes:
                return self._reject(request, f"the worker plans a group of {_short(request.get('nodes'))} nodes, the "
                                             f"leader {nodes} (AIM_NODE_COUNT / LWS_GROUP_SIZE / RAY_NODE_COUNT differ)",
                                    now)
            if request.get("fingerprint") != group["fingerprint"]:
                diff = differences(group.get("facts") or {}, facts) or ["(the fingerprints differ)"]
                return self._reject(request, f"the worker's plan differs from the leader's (fingerprint "
                                             f"{_short(request.get('fingerprint'))} vs {group['fingerprint']}): "
                                    + "; ".join(diff), now)
            if rank is None:
                held = {r for r, m in self.members.items() if m.instance != instance}
                free = [r for r in range(1, nodes) if r not in held]
                same = [r for r, m in self.members.items() if m.instance == instance]
                if same:
                    rank = same[0]
                elif not free:
                    return self._reject(request, f"the group is full: ranks 1 to {nodes - 1} have all joined", now)
                else:
                    rank = free[0]
            if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank < nodes:
                what = "rank 0 is the leader's (two nodes think they lead)" if rank == 0 else \
                    f"rank {_short(rank)} is out of range: workers are ranks 1 to {nodes - 1}"
                return self._reject(request, what, now)
            held_by = self.members.get(rank)
            if held_by is not None and held_by.instance != instance:
                if (held_by.address, held_by.hostname) != (address, _text(request.get("hostname"))):
                    return self._reject(request, f"rank {rank} has already joined from {held_by.address} "
                                                 f"(host {held_by.hostname}): two workers claim the same rank", now)
                # The same node (address and host name) again: its container restarted, the new boot replaces the old.
            if leader_phase in ("engine_starting", "ready") and (held_by is None or held_by.instance != instance):
                return self._reject(request, f"the leader's engine has already started without rank {rank}: "
                                             "the group must restart as a whole", now)
            joined_at = held_by.joined_at if held_by is not None and held_by.instance == instance else now
            self.members[rank] = Member(rank=rank, instance=instance, address=address,
                                        hostname=_text(request.get("hostname")), joined_at=joined_at, last_seen=now,
                                        phase=_text(request.get("phase"), 40) or "joining",
                                        ready_to_start=bool(request.get("ready_to_start")))
            self.lost.pop(rank, None)
            return 200, {"accepted": True, "rank": rank, "nodes": nodes, "leader_instance": self.instance,
                         "fingerprint": group["fingerprint"], "heartbeat_s": HEARTBEAT_S, "lost_after_s": LOST_AFTER_S,
                         "released": bool(group.get("released"))}

    def heartbeat(self, request: dict[str, Any], group: dict[str, Any] | None, leader_phase: str,
                  now: float) -> tuple[int, dict[str, Any]]:
        rank, instance = request.get("rank"), request.get("instance")
        with self.lock:
            member = self.members.get(rank) if isinstance(rank, int) else None
            if member is None or member.instance != instance:
                lost = self.lost.get(rank) if isinstance(rank, int) else None
                why = (f"it was lost after {LOST_AFTER_S:g} s without a heartbeat" if lost and lost.get("instance") == instance
                       else "the leader restarted or never saw this worker join")
                return 409, {"ok": False, "error": f"rank {_short(rank)} is not in the leader's group: {why}",
                             "leader_instance": self.instance}
            member.last_seen = now
            member.phase = _text(request.get("phase"), 40) or member.phase
            member.ready_to_start = bool(request.get("ready_to_start", member.ready_to_start))
            member.engine_alive = bool(request.get("engine_alive", True))
            return 200, {"ok": True, "leader_instance": self.instance, "leader_phase": leader_phase,
                         "released": bool((group or {}).get("released"))}

    # --- time -----------------------------------------------------------------------------

    def sweep(self, now: float, started: bool) -> list[dict[str, Any]]:
        """Move silent (or dead-engine) workers to `lost`; once the leader has exec'd (`started`)
        a loss breaks the group. Returns the newly lost."""
        newly = []
        with self.lock:
            for rank, member in list(self.members.items()):
                silent = now - member.last_seen
                if silent > LOST_AFTER_S or not member.engine_alive:
                    why = (f"no heartbeat for {silent:.0f} s (lost after {LOST_AFTER_S:g} s)" if member.engine_alive
                           else "its engine exited")
                    entry = {"rank": rank, "instance": member.instance, "address": member.address,
                             "hostname": member.hostname, "lost_at": now, "why": why}
                    self.lost[rank] = entry
                    del self.members[rank]
                    newly.append(entry)
                    if started and self.broken is None:
                        self.broken = {"message": f"worker rank {rank} ({member.address}) was lost: {why}",
                                       "at": now, "end_at": now + END_AFTER_S, "rank": rank}
        return newly

    def complete(self, nodes: int) -> bool:
        with self.lock:
            return self.broken is None and all(r in self.members for r in range(1, nodes))

    def summary(self, group: dict[str, Any] | None, now: float) -> dict[str, Any]:
        nodes = int((group or {}).get("nodes") or 1)
        with self.lock:
            joined = [self.members[r].to_dict(now) for r in sorted(self.members)]
            missing = [r for r in range(1, nodes) if r not in self.members]
            ready = [m["rank"] for m in joined if m["ready_to_start"]]
            return {"role": "leader", "nodes": nodes, "leader_instance": self.instance,
                    "fingerprint": (group or {}).get("fingerprint"), "released": bool((group or {}).get("released")),
                    "joined": joined, "missing": missing, "ready_to_start": ready,
                    "complete": self.broken is None and not missing, "lost": [self.lost[r] for r in sorted(self.lost)],
                    "rejected": list(self.rejected), "broken": self.broken,
                    "heartbeat_s": HEARTBEAT_S, "lost_after_s": LOST_AFTER_S}


# --- the worker's side ----------------------------------------------------------------------


def post_json(url: str, body: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S) -> tuple[int, dict[str, Any]]:
    """POST JSON, return (status, JSON body); status 0 when nothing answered (`error` says why)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    return _exchange(request, timeout)


def get_json(url: str, timeout: float = REQUEST_TIMEOUT_S) -> tuple[int, dict[str, Any]]:
    return _exchange(urllib.request.Request(url), timeout)


def _exchange(request: urllib.request.Request, timeout: float) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the leader's probe)
            status, raw = response.status, response.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(MAX_BODY)
    except (OSError, ValueError) as exc:
        return 0, {"error": f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"}
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    return status, body if isinstance(body, dict) else {}


def leader_url(group: dict[str, Any]) -> str:
    host = str(group.get("leader_address"))
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{group.get('leader_probe_port')}"


class LeaderLink:
    """A worker probe's tie to its leader: heartbeats every HEARTBEAT_S once the boot has joined
    (the state's `group.joined`); after LOST_AFTER_S without an answer, or when the leader no
    longer knows this worker, the leader is lost and `on_lost(message)` is called once."""

    def __init__(self, on_lost: Callable[[str], None]) -> None:
        self.on_lost = on_lost
        self.lock = threading.Lock()
        self.last_ack: float | None = None
        self.last_error: str | None = None
        self.leader_phase: str | None = None
        self.lost: dict[str, Any] | None = None
        self.leader_instance: str | None = None

    def beat(self, state: dict[str, Any] | None, engine_alive: bool, now: float) -> None:
        group = (state or {}).get("group") or {}
        joined = group.get("joined") or {}
        if group.get("role") != "worker" or not joined or self.lost is not None:
            return
        body = {"rank": joined.get("rank"), "instance": joined.get("instance"),
                "phase": (state or {}).get("phase"), "ready_to_start": bool(group.get("ready_to_start")),
                "engine_alive": engine_alive}
        status, answer = post_json(leader_url(group) + HEARTBEAT_PATH, body)
        with self.lock:
            since = self.last_ack or float(joined.get("at") or now)
            expected = joined.get("leader_instance")
            if status == 200 and (not expected or answer.get("leader_instance") == expected):
                self.last_ack, self.last_error = now, None
                self.leader_phase = answer.get("leader_phase")
                return
            if status == 200:
                message = "the leader restarted (a new leader instance answers): this worker's join is stale"
            elif status == 409:
                message = f"the leader dropped this worker: {answer.get('error')}"
            else:
                self.last_error = answer.get("error") or f"HTTP {status}"
                if now - since <= LOST_AFTER_S:
                    return
                message = (f"the leader at {leader_url(group)} has not answered for {now - since:.0f} s "
                           f"(lost after {LOST_AFTER_S:g} s): {self.last_error}")
            self.lost = {"message": message, "at": now, "end_at": now + END_AFTER_S}
        self.on_lost(message)

    def summary(self, state: dict[str, Any] | None, now: float) -> dict[str, Any]:
        group = (state or {}).get("group") or {}
        with self.lock:
            return {"role": "worker", "rank": (group.get("joined") or {}).get("rank", group.get("rank")),
                    "nodes": group.get("nodes"), "leader": leader_url(group) if group.get("leader_address") else None,
                    "joined": bool(group.get("joined")), "last_ack_age_s": round(now - self.last_ack, 3)
                    if self.last_ack else None, "leader_phase": self.leader_phase, "last_error": self.last_error,
                    "leader_lost": self.lost, "heartbeat_s": HEARTBEAT_S, "lost_after_s": LOST_AFTER_S}


def end_process(pid: int, alive: Callable[[], bool], log: Any = None, reason: str = "") -> None:
    """SIGTERM `pid` (the engine, or the boot before its exec); SIGKILL if it is still alive
    KILL_AFTER_S later. Runs in its own thread."""
    def run() -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        if log is not None:
            log.warning("ending the engine: the group is broken", pid=pid, signal="SIGTERM", reason=reason)
        deadline = time.monotonic() + KILL_AFTER_S
        while time.monotonic() < deadline:
            if not alive():
                return
            time.sleep(0.2)
        # A hung engine (vLLM with a dead pipeline stage does hang): its whole process tree goes,
        # children first, so none is left behind where the engine is not a container's PID 1.
        if log is not None:
            log.error("the engine did not end after SIGTERM: SIGKILL to its process tree", pid=pid,
                      after_s=KILL_AFTER_S)
        for victim in [*descendants(pid), pid]:
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass

    threading.Thread(target=run, name="group-end", daemon=True).start()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc/<pid>/task/*/children), deepest last."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as handle:
                    children = [int(c) for c in handle.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found and child != os.getpid():
                    found.append(child)
                    todo.append(child)
    return found
