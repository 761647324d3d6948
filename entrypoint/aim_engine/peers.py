"""The boot's side of a multi-node group (docs/multinode.md, "Coordination and failure").

    worker: selecting -> joining (POST the leader's /group/join with the plan's facts)
            -> downloading -> rendering -> [prelude] -> waiting_for_leader (until it says go) -> exec
    leader: selecting (the facts go to /status: joins are accepted from now on) -> downloading
            -> rendering -> [prelude, e.g. `ray start --head`] -> waiting_for_workers (every worker
            joined and ready to start; on Ray, every node in the Ray cluster) -> go -> exec

Workers join early, right after selecting, so a worker that belongs to another group (other
model, recipe, engine version, sizes) is refused within seconds, on both sides, not after a
download. Timeouts (AIM_PEER_TIMEOUT) count time *without an answer*: a leader that answers but
is still downloading is waited for; one that never answers ends the worker's boot, naming the
address, port and timeout. The leader's roster lives in its probe process (probes/group.py),
which the leader's boot reads over loopback.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any, Callable

from aim_engine.errors import AimError
from aim_engine.probes import group as protocol

POLL_S = 0.5
LOG_EVERY_S = 15.0


class PeerError(AimError):
    """The group could not be formed: a leader that never came, workers that never joined, a
    refused join, a failed prelude."""


def plan_facts(plan: Any, settings: Any, group: Any) -> dict[str, Any]:
    """What every rank of one group must agree on (protocol.FACT_FIELDS)."""
    return {"model": settings.model_id, "revision": settings.model_revision, "recipe_id": plan.recipe.recipe_id,
            "engine": plan.engine, "engine_version": plan.engine_version, "precision": plan.precision,
            "nodes": group.nodes, "tensor_parallel": plan.tensor_parallel,
            "pipeline_parallel": getattr(plan, "pipeline_parallel", 1), "data_parallel": plan.data_parallel,
            "backend": group.backend, "dist_port": group.dist_port}


class Peers:
    """One boot's coordination with its group. `state` is the boot's `BootState`."""

    def __init__(self, state: Any, settings: Any, group: Any, log: Any,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.state, self.settings, self.group, self.log = state, settings, group, log
        self.clock, self.sleep = clock, sleep
        self.instance = uuid.uuid4().hex
        self.facts: dict[str, Any] = {}
        self.fingerprint: str | None = None
        self.joined: dict[str, Any] | None = None
        self.url = protocol.leader_url({"leader_address": group.leader_address,
                                        "leader_probe_port": group.leader_probe_port or settings.health_port})
        self.timeout = float(group.peer_timeout)

    # --- both ---------------------------------------------------------------------------------

    def section(self, **extra: Any) -> dict[str, Any]:
        g = self.group
        base = {"role": g.role, "rank": g.rank, "nodes": g.nodes, "source": g.source, "backend": g.backend,
                "leader_address": g.leader_address, "leader_probe_port": g.leader_probe_port,
                "node_address": g.node_address, "interface": g.interface, "dist_port": g.dist_port,
                "peer_timeout_s": self.timeout, "fingerprint": self.fingerprint, "facts": self.facts,
                "rank_from_leader": g.rank_from_leader}
        current = dict(self.state.data.get("group") or {})
        current.update(base)
        current.update(extra)
        return current

    def publish(self, plan: Any) -> None:
        """Put the plan's facts in /status: from now on a leader's probe accepts joins."""
        self.facts = plan_facts(plan, self.settings, self.group)
        self.fingerprint = protocol.fingerprint(self.facts)
        self.state.update(group=self.section())

    def _waiting(self, since: float, **what: Any) -> None:
        self.state.update(group=self.section(waiting={"since": since, "timeout_s": self.timeout, **what}))

    # --- the worker -----------------------------------------------------------------------------

    def _join_request(self, ready: bool = False) -> dict[str, Any]:
        rank = None if self.group.rank_from_leader and not self.joined else \
            (self.joined or {}).get("rank", self.group.rank)
        return {"rank": rank, "nodes": self.group.nodes, "instance": self.instance,
                "address": self.group.node_address, "hostname": socket.gethostname(), "facts": self.facts,
                "fingerprint": self.fingerprint, "phase": self.state.phase, "ready_to_start": ready}

    def join(self) -> dict[str, Any]:
        """Join the leader (phase `joining`); raise PeerError when it refuses us or never answers
        within AIM_PEER_TIMEOUT."""
        start = self.clock()
        last_log, last_error = start, "no attempt yet"
        self._waiting(start, **{"for": "leader", "step": "join", "leader": self.url})
        while True:
            status, body = protocol.post_json(self.url + protocol.JOIN_PATH, self._join_request())
            if status == 200 and body.get("accepted"):
                self.joined = {"rank": body["rank"], "instance": self.instance, "at": self.clock(),
                               "leader_instance": body.get("leader_instance")}
                self.state.update(group=self.section(joined=self.joined, rank=body["rank"], waiting=None))
                self.log.info("joined the leader", leader=self.url, rank=body["rank"], nodes=self.group.nodes,
                              fingerprint=self.fingerprint, waited_s=round(self.clock() - start, 1))
                return self.joined
            if status == 409:
                raise PeerError(f"the leader at {self.url} refused this worker (rank "
                                f"{'to be assigned' if self.group.rank_from_leader else self.group.rank}): "
                                f"{body.get('error')}",
                                hint="every rank of a group must run the same model, recipe, engine version and "
                                     "sizes, with its own rank below the node count; check this node's and the "
                                     "leader's AIM_* settings (their /status shows both plans)")
            last_error = body.get("error") or f"HTTP {status}"
            now = self.clock()
            if now - start > self.timeout:
                raise self._never_came(last_error)
            if now - last_log >= LOG_EVERY_S:
                last_log = now
                self.log.info("waiting for the leader", leader=self.url, elapsed_s=round(now - start),
                              timeout_s=self.timeout, last_error=last_error)
            self._waiting(start, **{"for": "leader", "step": "join", "leader": self.url, "last_error": last_error})
            self.sleep(1.0)

    def _never_came(self, last_error: str) -> PeerError:
        g = self.group
        return PeerError(f"the leader never came: nothing answered at {self.url} (leader {g.leader_address}, probe "
                         f"port {g.leader_probe_port}) within {self.timeout:g} s (AIM_PEER_TIMEOUT); last: {last_error}",
                         hint="check that rank 0 runs, that this node reaches it at that address "
                              "(AIM_LEADER_ADDRESS / LWS_LEADER_ADDRESS / HEAD_SVC) and that its probe port is "
                              "AIM_LEADER_HEALTH_PORT (default AIM_HEALTH_PORT); raise AIM_PEER_TIMEOUT for slow starts")

    def wait_for_leader(self) -> dict[str, Any]:
        """Ready to start: tell the leader, then wait for its go (`released`). No timeout while the
        leader answers (it may still be downloading); AIM_PEER_TIMEOUT without an answer."""
        self.state.update(group=self.section(ready_to_start=True))
        assert self.joined is not None, "join() first"
        heartbeat = {"rank": self.joined["rank"], "instance": self.instance, "phase": "waiting_for_leader",
                     "ready_to_start": True, "engine_alive": True}
        protocol.post_json(self.url + protocol.HEARTBEAT_PATH, heartbeat)   # the leader hears it now, not in 2 s
        start = last_answer = last_log = self.clock()
        last_error = ""
        self._waiting(start, **{"for": "leader", "step": "go", "leader": self.url})
        while True:
            status, body = protocol.get_json(self.url + protocol.GROUP_PATH)
            now = self.clock()
            if status == 200:
                last_answer = now
                leader_instance = body.get("leader_instance")
                if self.joined.get("leader_instance") and leader_instance != self.joined["leader_instance"]:
                    raise PeerError(f"the leader at {self.url} restarted while this worker prepared: its join is "
                                    "stale; this worker ends so the group starts again together")
                ranks = [m.get("rank") for m in body.get("joined") or []]
                if self.joined["rank"] not in ranks:
                    lost = [e for e in body.get("lost") or [] if e.get("rank") == self.joined["rank"]]
                    why = lost[0].get("why") if lost else "it is not in the leader's roster"
                    raise PeerError(f"the leader at {self.url} dropped this worker (rank {self.joined['rank']}): {why}")
                if body.get("released"):
                    self.state.update(group=self.section(waiting=None, released_at=now))
                    self.log.info("the leader says go", leader=self.url, waited_s=round(now - start, 1))
                    return body
                leader_phase = body.get("leader_phase")
                if leader_phase in ("failed", "stopped"):
                    raise PeerError(f"the leader's boot has {leader_phase}; see its /status at {self.url}/status")
                self._waiting(start, **{"for": "leader", "step": "go", "leader": self.url,
                                        "missing": body.get("missing"), "leader_phase": leader_phase})
            else:
                last_error = body.get("error") or f"HTTP {status}"
                if now - last_answer > self.timeout:
                    raise self._never_came(last_error)
            if now - last_log >= LOG_EVERY_S:
                last_log = now
                self.log.info("waiting for the leader's go", leader=self.url, elapsed_s=round(now - start),
                              leader_phase=body.get("leader_phase"), last_error=last_error or None)
            self.sleep(POLL_S)

    # --- the leader -----------------------------------------------------------------------------

    def wait_for_workers(self, own_probe: str) -> dict[str, Any]:
        """Wait until every worker has joined and is ready to start (phase `waiting_for_workers`),
        then say go. AIM_PEER_TIMEOUT counts while some rank has not joined; a joined worker that
        is still preparing (downloading) is waited for as long as it heartbeats."""
        start = last_log = self.clock()
        missing_since: float | None = start
        seen: tuple[Any, ...] = ()
        self._waiting(start, **{"for": "workers"})
        while True:
            status, body = protocol.get_json(own_probe + protocol.GROUP_PATH)
            now = self.clock()
            if status != 200:
                raise PeerError(f"this leader's own probe does not answer at {own_probe}: {body.get('error')}")
            missing = list(body.get("missing") or [])
            ready = set(body.get("ready_to_start") or [])
            joined = [m.get("rank") for m in body.get("joined") or []]
            not_ready = [r for r in joined if r not in ready]
            if not missing and not not_ready:
                self.state.update(group=self.section(waiting=None, released=True, released_at=now))
                self.log.info("every worker joined: go", workers=joined, waited_s=round(now - start, 1))
                return body
            if missing and missing_since is None:
                missing_since = now           # a worker was lost before the exec: it may join again
            elif not missing:
                missing_since = None
            if missing_since is not None and now - missing_since > self.timeout:
                raise self._workers_never_came(missing, body)
            picture = (tuple(missing), tuple(joined), tuple(not_ready))
            if picture != seen or now - last_log >= LOG_EVERY_S:
                seen, last_log = picture, now
                self.log.info("waiting for workers", missing=missing, joined=joined, preparing=not_ready,
                              elapsed_s=round(now - start), timeout_s=self.timeout)
                self._waiting(missing_since or start, **{"for": "workers", "missing": missing, "joined": joined,
                                                         "preparing": not_ready})
            self.sleep(POLL_S)

    def _workers_never_came(self, missing: list[int], body: dict[str, Any]) -> PeerError:
        refused = "; ".join(f"rank {r.get('rank')} from {r.get('address')} was refused: {r.get('error')}"
                            for r in (body.get("rejected") or [])[-3:])
        g = self.group
        return PeerError(f"worker rank(s) {', '.join(map(str, missing))} of {g.nodes} never joined this leader "
                         f"({g.leader_address}, probe port {self.settings.health_port}) within {self.timeout:g} s "
                         f"(AIM_PEER_TIMEOUT)" + (f"; {refused}" if refused else ""),
                         hint="check that every worker runs and reaches this node at that address and port, and "
                              "that their logs or /status say why they did not join")

    def wait_for_ray(self, launch: Any, count: Callable[[], int | None] | None = None) -> int:
        """On Ray: after the go, wait until the Ray cluster has every node (the workers' `ray
        start --block` connected) before the leader's `vllm serve`."""
        count = count or (lambda: ray_node_count(launch))
        start = last_log = self.clock()
        nodes = self.group.nodes
        self._waiting(start, **{"for": "ray_nodes", "want": nodes})
        while True:
            found = count()
            now = self.clock()
            if found is not None and found >= nodes:
                self.log.info("the Ray cluster has every node", nodes=found, waited_s=round(now - start, 1))
                self.state.update(group=self.section(waiting=None, ray_nodes=found))
                return found
            if now - start > self.timeout:
                raise PeerError(f"the Ray cluster has {found if found is not None else 'no readable'} node(s) of "
                                f"{nodes} after {self.timeout:g} s (AIM_PEER_TIMEOUT)",
                                hint="the workers' `ray start --address=...` did not connect: see their logs "
                                     f"and that Ray's port {self.group.ray_port} on the leader is reachable")
            if now - last_log >= LOG_EVERY_S:
                last_log = now
                self.log.info("waiting for Ray nodes", have=found, want=nodes, elapsed_s=round(now - start))
            self._waiting(start, **{"for": "ray_nodes", "want": nodes, "have": found})
            self.sleep(2.0)


RAY_COUNT = ("import ray\n"
             "ray.init(address='auto', logging_level='ERROR', log_to_driver=False)\n"
             "print(sum(1 for n in ray.nodes() if n.get('Alive')))\n")


def ray_python(env: dict[str, str]) -> str | None:
    """The interpreter of the `ray` command on the engine's PATH (its shebang): the agent itself
    never imports ray."""
    import shutil

    found = shutil.which("ray", path=env.get("PATH", os.defpath))
    if not found:
        return None
    try:
        with open(found, "rb") as handle:
            first = handle.readline(4096).decode(errors="replace").strip()
    except OSError:
        return None
    return first[2:].split()[0] if first.startswith("#!") and first[2:].split() else None


def ray_node_count(launch: Any) -> int | None:
    """Alive nodes in the local Ray cluster, asked by Ray's own Python in a child process."""
    import subprocess

    python = ray_python(launch.env)
    if python is None:
        return None
    try:
        done = subprocess.run([python, "-c", RAY_COUNT], env=launch.env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return int(lines[-1]) if done.returncode == 0 and lines and lines[-1].isdigit() else None


def run_prelude(launch: Any, log: Any, timeout: float | None = None) -> None:
    """Run `launch.prelude` in order, each to completion, before the exec (e.g. `ray start
    --head`); its output goes to the container's log. A failure ends the boot, naming the command."""
    import subprocess

    from aim_engine import redact

    secrets = redact.secret_values(launch.env)
    for command in launch.prelude:
        shown = " ".join(redact.mask_argv(list(command), secrets))
        started = time.monotonic()
        log.info("prelude", command=shown)
        try:
            done = subprocess.run(list(command), env=launch.env, stdin=subprocess.DEVNULL, timeout=timeout or None)
        except FileNotFoundError:
            raise PeerError(f"prelude command not found: {command[0]!r} ({shown})",
                            hint="the engine's environment must provide it (Ray: pip install ray in the image)") from None
        except subprocess.TimeoutExpired:
            raise PeerError(f"prelude command did not finish within {timeout:g} s (AIM_PEER_TIMEOUT): {shown}") from None
        if done.returncode != 0:
            raise PeerError(f"prelude command exited with code {done.returncode}: {shown}",
                            hint="its output is in the log just above")
        log.info("prelude done", command=shown, duration_ms=round(1000 * (time.monotonic() - started), 1))
