"""The agent's own Prometheus metrics, served by the probe process at `/metrics`.

Metrics live in the probe process, not in the agent: the agent already writes everything worth
measuring to its state file (phases and their durations, download progress, the cache result,
the plan, the error), and the probe process already outlives the exec and watches the engine.
So each scrape turns one `View` (the state plus what the probe saw) into metric families with
`prometheus_client`'s custom-collector API; the agent's boot path imports nothing new.

prometheus_client is imported on the first scrape (about 30 ms), never at probe start-up: the
probes must answer within the first second of a boot.

Labels are bounded: phases, reason classes and cache kinds come from fixed tables here; the
info metric's values (model, recipe, engine, version, GPU model, sizes) pass the one masking
pass (`aim_engine.redact`) and are cut to `MAX_LABEL_CHARS`. No error text is ever a label.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from aim_engine import redact
from aim_engine.probes.logic import View
from aim_engine.state import PHASES

MAX_LABEL_CHARS = 128
PREFIX = "aim"

# Failed boots by reason class: the error's kind first, then the phase it happened in.
REASON_BY_KIND = {
    "engine_exited": "engine_exited",
    "LockTimeout": "lock_timeout",
    "ReadOnlyCache": "cache_read_only",
    "HubError": "download",
    "bug": "bug",
    "group_lost": "peer_lost",
    "PeerError": "peers",
}
REASON_BY_PHASE = {
    "starting": "startup",
    "detecting": "hardware",
    "selecting": "selection",
    "downloading": "download",
    "rendering": "render",
    "joining": "peers",
    "waiting_for_leader": "peers",
    "waiting_for_workers": "peers",
    "prelude": "prelude",
    "engine_starting": "engine_start",
    "ready": "engine_exited",
}
REASONS: tuple[str, ...] = tuple(sorted({*REASON_BY_KIND.values(), *REASON_BY_PHASE.values(), "other"}))

# Cache results by cache kind -> the state key that holds `{"already_warm": bool}` for it.
# HOOK (compile cache): once engine compile/kernel caches live under AIM_CACHE_PATH, the agent
# writes `compile_cache={"already_warm": ...}` into its state and `cache="compile"` series appear
# here with no other change.
CACHE_STATE_KEYS = {"weights": "cache", "compile": "compile_cache"}


def reason_class(error: dict[str, Any] | None) -> str | None:
    """The bounded reason class of a failure (None: no failure)."""
    if not error:
        return None
    kind = str(error.get("kind") or "")
    if kind in REASON_BY_KIND:
        return REASON_BY_KIND[kind]
    return REASON_BY_PHASE.get(str(error.get("phase") or ""), "other")


def label(value: Any) -> str:
    """A label value: masked by the one masking pass, bounded, never None."""
    if value is None:
        return ""
    text = str(redact.mask(str(value)))
    return text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS - 1] + "…"


def info_labels(state: dict[str, Any]) -> dict[str, str]:
    plan = state.get("plan") or {}
    engine = state.get("engine") or {}
    devices = (state.get("hardware") or {}).get("devices") or []
    gpu = devices[0].get("model") if devices and isinstance(devices[0], dict) else ("cpu" if state.get("hardware") else None)
    return {
        "model": label(plan.get("model_id") or state.get("model_id")),
        "recipe": label((state.get("recipe") or {}).get("id") or plan.get("recipe_id")),
        "engine": label(engine.get("name") or plan.get("engine")),
        "engine_version": label(engine.get("version") or plan.get("engine_version")),
        "gpu_model": label(gpu),
        "tensor_parallel_size": label(plan.get("tensor_parallel")),
        "data_parallel_size": label(plan.get("data_parallel")),
    }


def boot_elapsed(view: View, now: float) -> float | None:
    """Seconds from the agent's start to ready; stops at ready or at the end of a failed or
    stopped boot; grows while the boot is under way."""
    state = view.state or {}
    started = state.get("started_at")
    if not isinstance(started, (int, float)):
        return None
    if view.ready_at is not None:
        return view.ready_at - started
    if view.exit is not None:
        return float(view.exit.get("at") or now) - started
    if view.phase in ("failed", "stopped"):
        phases = state.get("phases") or []
        last = phases[-1].get("started_at") if phases else None
        return (last if isinstance(last, (int, float)) else now) - started
    return now - started


def families(view: View, now: float | None = None) -> Iterator[Any]:
    """The metric families of one scrape."""
    from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily,
                                        StateSetMetricFamily)

    now = time.time() if now is None else now
    state = view.state or {}
    phase = view.phase

    yield StateSetMetricFamily(f"{PREFIX}_boot_phase", "The boot's current phase.",
                               {p: p == phase for p in PHASES})

    durations = GaugeMetricFamily(f"{PREFIX}_boot_phase_duration_seconds",
                                  "How long each boot phase took (the current one: so far).", labels=["phase"])
    for entry in state.get("phases") or []:
        name = entry.get("name")
        if name not in PHASES:
            continue
        duration = entry.get("duration_s")
        if duration is None and name == view.agent_phase and isinstance(entry.get("started_at"), (int, float)):
            end = view.ready_at or (view.exit or {}).get("at") or now
            duration = max(0.0, float(end) - entry["started_at"])
        if isinstance(duration, (int, float)):
            durations.add_metric([name], float(duration))
    yield durations

    started = state.get("started_at")
    if isinstance(started, (int, float)):
        yield GaugeMetricFamily(f"{PREFIX}_boot_start_time_seconds", "When the agent started (Unix time).",
                                value=float(started))
    elapsed = boot_elapsed(view, now)
    if elapsed is not None:
        yield GaugeMetricFamily(f"{PREFIX}_boot_elapsed_seconds",
                                "Seconds from the agent's start to ready (grows until ready, failed or stopped).",
                                value=max(0.0, elapsed))

    download = state.get("download") or {}
    yield GaugeMetricFamily(f"{PREFIX}_download_done_bytes", "Model bytes downloaded (or found) so far.",
                            value=float(download.get("bytes_done") or 0))
    yield GaugeMetricFamily(f"{PREFIX}_download_expected_bytes", "Model bytes expected in all.",
                            value=float(download.get("bytes_total") or 0))
    yield GaugeMetricFamily(f"{PREFIX}_download_rate_bytes_per_second",
                            "Download rate over the last few seconds (0 when not downloading).",
                            value=float(download.get("rate") or 0) if download.get("phase") == "downloading" else 0.0)

    yield GaugeMetricFamily(f"{PREFIX}_cache_lock_wait_seconds",
                            "Time spent waiting for another process's warm-up of the same model.",
                            value=lock_wait(state, now))

    lookups = CounterMetricFamily(f"{PREFIX}_cache_lookups", "Cache lookups at boot by result (hit: already warm).",
                                  labels=["cache", "result"])
    for kind, key in CACHE_STATE_KEYS.items():
        result = state.get(key)
        if isinstance(result, dict) and isinstance(result.get("already_warm"), bool):
            hit = result["already_warm"]
            lookups.add_metric([kind, "hit"], 1.0 if hit else 0.0)
            lookups.add_metric([kind, "miss"], 0.0 if hit else 1.0)
    yield lookups

    failures = CounterMetricFamily(f"{PREFIX}_boot_failures", "Failed boots by reason class.", labels=["reason"])
    failed = reason_class(view.error) if phase == "failed" else None
    for reason in REASONS:
        failures.add_metric([reason], 1.0 if reason == failed else 0.0)
    yield failures

    if state.get("plan"):
        yield InfoMetricFamily(f"{PREFIX}_engine", "What this pod serves and how.", value=info_labels(state))

    yield from group_families(view, GaugeMetricFamily)

    if view.exit is not None and view.engine_exited:
        yield GaugeMetricFamily(f"{PREFIX}_engine_exit_time_seconds", "When the engine exited (Unix time).",
                                value=float(view.exit.get("at") or now))


def group_families(view: View, gauge: Any) -> Iterator[Any]:
    """A multi-node group (docs/multinode.md): its size, and on the leader its workers by state
    (joined, missing, lost); on a worker whether it has joined. Nothing on one node."""
    if view.role == "single":
        return
    group = view.group or {}
    nodes = ((view.state or {}).get("group") or {}).get("nodes") or group.get("nodes")
    if isinstance(nodes, int):
        yield gauge(f"{PREFIX}_group_nodes", "Nodes in this node's serving group.", value=float(nodes))
    if view.role == "leader":
        members = gauge(f"{PREFIX}_group_workers", "The leader's workers by state.", labels=["state"])
        for name, key in (("joined", "joined"), ("missing", "missing"), ("lost", "lost")):
            members.add_metric([name], float(len(group.get(key) or [])))
        yield members
    yield gauge(f"{PREFIX}_group_ok", "1 when the group is whole (leader) or this worker has joined and hears "
                                       "its leader (worker).", value=1.0 if view.group_ok else 0.0)


def lock_wait(state: dict[str, Any], now: float) -> float:
    """The final lock wait once the warm-up is done; while waiting, the wait so far."""
    cache = state.get("cache") or {}
    if isinstance(cache.get("lock_wait_s"), (int, float)):
        return float(cache["lock_wait_s"])
    since = state.get("lock_wait_since")
    if (state.get("download") or {}).get("phase") == "waiting" and isinstance(since, (int, float)):
        return max(0.0, now - since)
    return 0.0


class Collector:
    """A prometheus_client collector over a function returning the current `View`."""

    def __init__(self, view: Any) -> None:
        self._view = view

    def collect(self) -> Iterator[Any]:
        yield from families(self._view())


class Exposition:
    """`/metrics` for the probe process: a registry holding only our collector, built on the
    first scrape."""

    def __init__(self, view: Any) -> None:
        self._view = view
        self._registry: Any = None

    def render(self, accept: str | None) -> tuple[bytes, str]:
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        if self._registry is None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(Collector(self._view))
            self._registry = registry
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._registry), content_type
