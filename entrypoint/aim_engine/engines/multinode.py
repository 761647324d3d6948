"""One plan, one command per rank: what a multi-node group adds to an engine's launch.

Pure: a plan's group, the engine and the checked flag list in; the backend (vLLM's own
multi-node path or Ray under it), each rank's extra engine args, the Ray commands and what the
rank serves out. The data is `multinode.yaml` (with its sources); launch.py layers the args
over the recipe's and checks them against the installed version's flag list like any other.
Nothing here runs on one node: launch.py imports this module only for a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from aim_engine.errors import AimError

BACKEND_VARIABLE = "AIM_MULTINODE_BACKEND"
REQUESTS = ("auto", "native", "ray")
# multinode.yaml `target_args` conditions, on the plan's group-wide pipeline parallel size.
CONDITIONS = {"pipeline": lambda pipeline: pipeline > 1}


@lru_cache(maxsize=None)
def table() -> Mapping[str, Any]:
    from aim_engine import yaml_documents

    return yaml_documents.load(Path(__file__).resolve().parent / "multinode.yaml") or {}


@dataclass(frozen=True)
class Backend:
    """The multi-node runtime a group's engine runs on, and why (for `plan`, /status, the docs)."""

    name: str          # "native" | "ray"
    requested: str     # "auto" | "native" | "ray"
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "requested": self.requested, "reason": self.reason}


def requested_backend(settings: Any) -> str:
    """What the operator asked for: AIM_MULTINODE_BACKEND (`settings.multinode_backend`), "auto"
    when unset. The renderer decides what "auto" means per engine and version (`choose_backend`):
    the group's resolver cannot, it runs before any engine is chosen."""
    wanted = str(getattr(settings, "multinode_backend", None) or "auto").strip().lower()
    if wanted not in REQUESTS:
        raise AimError(f"{BACKEND_VARIABLE}={wanted!r} is not a multi-node backend", hint=f"one of: {', '.join(REQUESTS)}")
    return wanted


def choose_backend(engine: str, flags: Any, group: Any, requested: str, label: str) -> Backend:
    """The backend for `engine` whose argv is checked against `flags` (an EngineFlags, named
    `label` in messages). See multinode.yaml `backends` for the rule and docs/multinode.md."""
    rules = table()["backends"][engine]
    supported = list(rules["supported"])
    if requested != "auto":
        if requested not in supported:
            raise AimError(f"{BACKEND_VARIABLE}={requested} is not available with {engine}",
                           hint=f"{engine} runs a group on: {', '.join(supported)} (or auto)")
        if requested == "native":
            _require_native(engine, flags, rules, label)
        return Backend(requested, requested, f"{BACKEND_VARIABLE}={requested}")
    source = getattr(group, "source", "")
    if source in rules["ray_sources"] and "ray" in supported:
        return Backend("ray", "auto", f"the group comes from {source}, whose multi-node runtime runs a Ray cluster")
    missing = [f for f in rules["native_needs"] if flags.get(f) is None]
    if not missing:
        return Backend("native", "auto",
                       f"{label} runs a group itself ({', '.join(rules['native_needs'])})")
    if "ray" not in supported:
        _require_native(engine, flags, rules, label)     # raises: names what is missing
    return Backend("ray", "auto", f"{label} lacks {', '.join(missing)}: the group runs on Ray")


def _require_native(engine: str, flags: Any, rules: Mapping[str, Any], label: str) -> None:
    missing = [f for f in rules["native_needs"] if flags.get(f) is None]
    if missing:
        raise AimError(f"{label} cannot run a multi-node group natively: it lacks {', '.join(missing)}",
                       hint="install a version that has them" + (", or set AIM_MULTINODE_BACKEND=ray"
                                                                  if "ray" in rules["supported"] else ""))


# ------------------------------------------------------------------ the group's values
def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address and not address.startswith("[") else f"{address}:{port}"


def values(group: Any, rank: int, gpus_per_node: int | None, target: str) -> dict[str, str | None]:
    """The template values of multinode.yaml for `rank` of `group` (None: not known here)."""
    leader = group.leader_address
    return {
        "nodes": str(group.nodes),
        "rank": str(rank),
        "leader": leader,
        "dist_port": str(group.dist_port),
        "ray_port": str(group.ray_port),
        "leader_hostport": _hostport(leader, group.dist_port) if leader else None,
        "leader_rayport": _hostport(leader, group.ray_port) if leader else None,
        "node_address": group.node_address if rank == group.rank else None,
        "gpus_per_node": str(gpus_per_node) if target == "gpu" and gpus_per_node else None,
    }


class _Missing(KeyError):
    pass


def _fill(template: Any, known: Mapping[str, str | None]) -> Any:
    """`template` with its {names} filled; raises _Missing when one is not known."""
    if not isinstance(template, str) or "{" not in template:
        return template

    class Lookup(dict):
        def __missing__(self, key: str) -> str:
            raise _Missing(key)

    filled = {k: v for k, v in known.items() if v is not None}
    return template.format_map(Lookup(filled))


def fill_args(args: Mapping[str, Any], known: Mapping[str, str | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, template in args.items():
        try:
            out[flag] = _fill(template, known)
        except _Missing:
            continue
    return out


def fill_command(command: list[Any], known: Mapping[str, str | None]) -> tuple[str, ...]:
    out: list[str] = []
    for token in command:
        try:
            out.append(str(_fill(token, known)))
        except _Missing:
            continue
    return tuple(out)


# ------------------------------------------------------------------ per rank
@dataclass(frozen=True)
class RankPlan:
    """What rank `rank` of the group runs: the engine (with `args` layered on), or only a Ray
    worker (`command`); and what it serves."""

    rank: int
    role: str                               # "leader" | "worker"
    backend: Backend
    args: dict[str, Any]                    # engine args to layer (empty for a Ray worker)
    runs_engine: bool                       # False: a Ray worker (argv is `command`)
    command: tuple[str, ...] = ()           # a Ray worker's whole argv
    prelude: tuple[tuple[str, ...], ...] = ()
    serves_api: bool = True
    serves_health: bool = True


def check_group(plan: Any, group: Any, rank: int, backend: Backend) -> None:
    """The group and the plan agree (clear errors naming the numbers; lane group validates the
    settings, this guards the plan handed to the renderer)."""
    if not 0 <= rank < group.nodes:
        raise AimError(f"rank {rank} is not in a group of {group.nodes} nodes",
                       hint=f"AIM_NODE_RANK takes 0..{group.nodes - 1}")
    if not group.leader_address:
        raise AimError(f"a group of {group.nodes} nodes needs the leader's address",
                       hint="set AIM_LEADER_ADDRESS (LeaderWorkerSet sets LWS_LEADER_ADDRESS)")
    tp, pp, dp = int(plan.tensor_parallel), int(getattr(plan, "pipeline_parallel", 1) or 1), int(plan.data_parallel)
    world = tp * pp * dp
    if world % group.nodes:
        raise AimError(f"{plan.engine}: tensor parallel {tp} x pipeline parallel {pp} x data parallel {dp} = {world} "
                       f"workers cannot be split evenly over {group.nodes} nodes",
                       hint="every node must run the same number of GPUs (workers on a CPU target)")
    if backend.name == "ray" and dp != 1:
        raise AimError(f"data parallel {dp} over a Ray cluster is not rendered by the agent",
                       hint="use AIM_MULTINODE_BACKEND=native (vLLM --nnodes), or one replica per group")


def rank_plan(plan: Any, group: Any, rank: int, backend: Backend) -> RankPlan:
    """Rank `rank`'s part of `plan` on `group`, from multinode.yaml."""
    check_group(plan, group, rank, backend)
    data = table()
    target = getattr(plan, "target", "gpu")
    known = values(group, rank, getattr(plan, "gpus_per_node", None), target)
    role = "leader" if rank == 0 else "worker"
    per_role = (data["args"].get(plan.engine) or {}).get(backend.name) or {}
    args = {**fill_args(per_role.get("every") or {}, known), **fill_args(per_role.get(role) or {}, known)}
    pipeline = int(getattr(plan, "pipeline_parallel", 1) or 1)
    for condition, extra in (((data.get("target_args") or {}).get(target) or {}).get(plan.engine) or {}).items():
        if CONDITIONS[condition](pipeline):
            args.update(extra)
    serves_health = role == "leader" or bool(data["worker_serves"][plan.engine][backend.name]["health"])
    if backend.name == "ray":
        ray = data["ray"]
        if role == "worker":
            return RankPlan(rank, role, backend, {}, runs_engine=False,
                            command=fill_command(ray["worker"], known), serves_api=False, serves_health=False)
        prelude = tuple(fill_command(c, known) for c in ray["leader_prelude"])
        return RankPlan(rank, role, backend, args, runs_engine=True, prelude=prelude)
    return RankPlan(rank, role, backend, args, runs_engine=True, serves_api=role == "leader",
                    serves_health=serves_health)


def reserved() -> Mapping[str, str]:
    """Flags the agent owns on a group -> the setting to use instead."""
    return table().get("reserved") or {}
