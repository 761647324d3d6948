"""Where this node stands in a serving group: node count, rank and leader.

A group is hardware too (docs/multinode.md): the planner sizes a model over `nodes` x GPUs per
node, and the renderer emits each rank's command from one plan. One node with nothing set is
`SINGLE`, and everything behaves exactly as before groups existed.

`resolve(settings)` is the one place the topology is decided (called by `detect()`): explicit
AIM_* settings, LeaderWorkerSet's variables or KServe's, validated together; then, on a group,
the network defaults (this node's address, the interface to the leader) from `hardware.network`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

BACKENDS = ("native", "ray")     # the engine's own multi-node runtime, or a Ray cluster under it
DEFAULT_DIST_PORT = 29500        # the leader's rendezvous port (vLLM --master-port, SGLang --dist-init-addr)
DEFAULT_RAY_PORT = 6379          # Ray's GCS port on the leader (`ray start --head --port`)


@dataclass(frozen=True)
class Group:
    """This node's place in a group of `nodes` nodes (rank 0 leads and serves the API).

    - `source`: where the topology came from: "single" (nothing set), "AIM_*" (explicit
      settings), "LeaderWorkerSet" or "KServe".
    - `leader_address`: how every rank reaches the leader (None only when `nodes == 1`).
    - `node_address`: this node's own address as its peers reach it (VLLM_HOST_IP), None when
      not known yet; `interface`: the network interface to the leader (GLOO/NCCL_SOCKET_IFNAME).
    - `backend`: "native" (vLLM --nnodes/--headless, SGLang --nnodes) or "ray".
    """

    nodes: int = 1
    rank: int = 0
    leader_address: str | None = None
    dist_port: int = DEFAULT_DIST_PORT
    backend: str = "native"
    source: str = "single"
    node_address: str | None = None
    interface: str | None = None
    ray_port: int = DEFAULT_RAY_PORT
    peer_timeout: float = 900.0
    # Beyond the lead's skeleton (lane group):
    backend_setting: str = "auto"           # AIM_MULTINODE_BACKEND as given: "auto" lets the renderer choose per engine
    rank_from_leader: bool = False          # a KServe worker has no index: the leader gives it a rank at join
    leader_probe_port: int | None = None    # where workers join (AIM_LEADER_HEALTH_PORT, else AIM_HEALTH_PORT)
    requested_tensor_parallel: int | None = None    # KServe's TENSOR_PARALLEL_SIZE (the operator's ask)
    requested_pipeline_parallel: int | None = None  # KServe's PIPELINE_PARALLEL_SIZE
    notes: tuple[str, ...] = ()             # how each value was found (aim-engine detect shows them)

    @property
    def is_multi_node(self) -> bool:
        return self.nodes > 1

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def role(self) -> str:
        """"single", "leader" or "worker": what /status and the logs call this node."""
        if not self.is_multi_node:
            return "single"
        return "leader" if self.is_leader else "worker"

    def at_rank(self, rank: int) -> "Group":
        """The same group seen from `rank` (`aim-engine plan` renders every rank's command)."""
        from dataclasses import replace

        return replace(self, rank=rank, node_address=None if rank != self.rank else self.node_address)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "role": self.role}


SINGLE = Group()

LWS = ("LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX")
KSERVE = ("RAY_NODE_COUNT", "HEAD_SVC")     # RAY_NODE_COUNT on every pod; HEAD_SVC only on workers
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[?[0-9A-Fa-f:.]+\]?")
_DIGITS = re.compile(r"[0-9]{1,6}")


def _whole(env: Mapping[str, str], name: str, low: int, high: int, problems: list[str]) -> int | None:
    """A controller's number (LWS_GROUP_SIZE, RAY_NODE_COUNT, ...), bounded like our own."""
    value = env.get(name)
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        problems.append(f"{name}={value!r} is not a whole number from {low} to {high}")
        return None
    return int(value)


def _host(name: str, value: str | None, problems: list[str]) -> str | None:
    if value is not None and not _HOST.fullmatch(value):
        problems.append(f"{name}={value!r} is not a host name or an IP address")
        return None
    return value.strip("[]") if value else value


def _agree(explicit: tuple[str, Any], controller: tuple[str, Any], problems: list[str]) -> Any:
    """The explicit AIM_* value wins, but a different number than the controller's is a mistake
    (the pods of the group would disagree about its shape), not a preference."""
    (ename, evalue), (cname, cvalue) = explicit, controller
    if evalue is not None and cvalue is not None and evalue != cvalue:
        problems.append(f"{ename}={evalue} contradicts {cname}={cvalue}: unset {ename} (the controller's value is "
                        "the group's real shape) or make them equal")
    return evalue if evalue is not None else cvalue


def resolve(settings: Any, network: Any = None) -> Group:
    """This node's `Group` from `settings` (docs/multinode.md, "Topology"); `SINGLE` when nothing
    says there is a group. Raises `SettingsError` (exit 2) naming every variable and value that
    cannot make a group. `network`: the module that finds addresses and interfaces (default
    `hardware.network`; imported only on a real group, so one node pays nothing)."""
    from aim_engine.errors import SettingsError

    env: Mapping[str, str] = getattr(settings, "topology_env", None) or {}
    problems: list[str] = []
    notes: list[str] = []
    lws = [n for n in LWS if n in env]
    kserve = [n for n in KSERVE if n in env]
    if lws and kserve:
        problems.append(f"both LeaderWorkerSet ({', '.join(lws)}) and KServe ({', '.join(kserve)}) variables are set: "
                        "one controller places a group; remove the other's variables")
    nodes = rank = leader = None
    source, rank_from_leader = "single", False
    tp = pp = None
    if lws:
        source = "LeaderWorkerSet"
        nodes = _whole(env, "LWS_GROUP_SIZE", 1, 64, problems)
        rank = _whole(env, "LWS_WORKER_INDEX", 0, 63, problems)
        leader = _host("LWS_LEADER_ADDRESS", env.get("LWS_LEADER_ADDRESS"), problems)
        for name in LWS:
            if name not in env:
                problems.append(f"{name} is not set but {', '.join(lws)} {'are' if len(lws) > 1 else 'is'}: "
                                "LeaderWorkerSet sets all three on every pod")
    elif kserve:
        source = "KServe"
        nodes = _whole(env, "RAY_NODE_COUNT", 1, 64, problems)
        tp = _whole(env, "TENSOR_PARALLEL_SIZE", 1, 4096, problems)
        pp = _whole(env, "PIPELINE_PARALLEL_SIZE", 1, 64, problems)
        if "RAY_NODE_COUNT" not in env:
            problems.append("HEAD_SVC is set but RAY_NODE_COUNT is not: KServe sets both on a multi-node worker")
        head = _host("HEAD_SVC", env.get("HEAD_SVC"), problems)
        if head is None:
            rank = 0                # KServe's head pod: no HEAD_SVC
        else:
            namespace = env.get("POD_NAMESPACE")
            leader = f"{head}.{namespace}.svc.cluster.local" if namespace and "." not in head else head
            rank_from_leader = True  # a Deployment's replicas carry no index: the leader numbers them
    explicit = getattr(settings, "node_count", None) is not None or getattr(settings, "node_rank", None) is not None or getattr(settings, "leader_address", None)
    count_name, rank_name = {"LeaderWorkerSet": ("LWS_GROUP_SIZE", "LWS_WORKER_INDEX"),
                             "KServe": ("RAY_NODE_COUNT", "HEAD_SVC (unset: the KServe head, rank 0)")}.get(
        source, ("AIM_NODE_COUNT", "AIM_NODE_RANK"))
    nodes = _agree(("AIM_NODE_COUNT", getattr(settings, "node_count", None)), (count_name, nodes), problems)
    if getattr(settings, "node_rank", None) is not None and rank_from_leader:
        rank, rank_from_leader = getattr(settings, "node_rank", None), False     # a numbered KServe worker (set by hand)
    else:
        rank = _agree(("AIM_NODE_RANK", getattr(settings, "node_rank", None)), (rank_name, rank), problems)
    leader = _host("AIM_LEADER_ADDRESS", getattr(settings, "leader_address", None), problems) or leader
    if source == "single" and explicit:
        source = "AIM_*"
    if getattr(settings, "node_count", None) is not None:
        count_name = "AIM_NODE_COUNT"
    if getattr(settings, "node_rank", None) is not None or source != "LeaderWorkerSet":
        rank_name = "AIM_NODE_RANK"
    nodes = 1 if nodes is None else nodes
    rank = (1 if rank_from_leader else 0) if rank is None else rank
    if nodes < 1:
        problems.append(f"{count_name}={nodes}: a group has at least one node")
    elif rank >= nodes and not rank_from_leader:
        problems.append(f"{rank_name}={rank} is not below {count_name}={nodes}: ranks run from 0 (the leader) "
                        f"to {nodes - 1}")
    if nodes > 1 and 0 < rank < nodes and not leader and "LWS_LEADER_ADDRESS" not in " ".join(problems):
        problems.append(f"AIM_LEADER_ADDRESS is not set: worker rank {rank} of {nodes} must know where the leader "
                        "(rank 0) is (set AIM_LEADER_ADDRESS, or run under LeaderWorkerSet or KServe)")
    backend = getattr(settings, "multinode_backend", "auto")
    if source == "KServe" and backend == "native" and rank_from_leader:
        problems.append("AIM_MULTINODE_BACKEND=native cannot run under KServe: its workers are replicas without an "
                        "index, so they cannot be given --node-rank; use auto or ray (KServe's own runtime uses Ray)")
    if problems:
        raise SettingsError(problems)
    if nodes == 1:
        return SINGLE
    resolved_backend = "ray" if backend == "ray" or (backend == "auto" and source == "KServe") else "native"
    group = Group(nodes=nodes, rank=rank, leader_address=leader, dist_port=getattr(settings, "dist_port", DEFAULT_DIST_PORT),
                  backend=resolved_backend, source=source, peer_timeout=float(getattr(settings, "peer_timeout", 900.0)),
                  backend_setting=backend, rank_from_leader=rank_from_leader,
                  leader_probe_port=getattr(settings, "leader_health_port", None) or getattr(settings, "health_port", 8001),
                  requested_tensor_parallel=tp, requested_pipeline_parallel=pp)
    if network is None:
        from aim_engine.hardware import network
    return _with_network(group, settings, env, network, notes)


def _with_network(group: Group, settings: Any, env: Mapping[str, str], network: Any, notes: list[str]) -> Group:
    """Fill this node's address and interface (docs/multinode.md): explicit, else the pod's IP,
    else what the kernel's routing says about the way to the leader."""
    from aim_engine.errors import SettingsError

    problems: list[str] = []
    address = _host("AIM_NODE_ADDRESS", getattr(settings, "node_address", None), problems)
    if address:
        notes.append(f"node address {address} from AIM_NODE_ADDRESS")
    elif env.get("POD_IP"):
        address = _host("POD_IP", env["POD_IP"], problems)
        notes.append(f"node address {address} from POD_IP")
    elif group.leader_address:
        address = network.route_source(group.leader_address)
        if address:
            notes.append(f"node address {address}: the source address of the route to the leader {group.leader_address}")
    else:
        address = network.default_route_address()
        if address:
            notes.append(f"node address {address}: the address of the default route's interface")
    leader = group.leader_address
    if leader is None and group.is_leader:
        leader = address       # KServe's head: it is the leader; its own address is the leader's
        notes.append("leader address: this node's own (it is the leader)")
    if leader is None:
        problems.append("AIM_LEADER_ADDRESS is not set and this leader's own address cannot be found: set "
                        "AIM_LEADER_ADDRESS (or AIM_NODE_ADDRESS, or POD_IP from the downward API)")
    interface = getattr(settings, "network_interface", None)
    if interface:
        known = network.interfaces()
        if known and interface not in known:
            problems.append(f"AIM_NETWORK_INTERFACE={interface!r} is not a network interface here "
                            f"(this node has: {', '.join(sorted(known))})")
        notes.append(f"interface {interface} from AIM_NETWORK_INTERFACE")
    elif address:
        interface = network.interface_of(address)
        if interface:
            notes.append(f"interface {interface}: the one holding {address}")
    if address is None:
        notes.append("node address unknown: set AIM_NODE_ADDRESS (the engines then pick one themselves)")
    if problems:
        raise SettingsError(problems)
    return replace(group, node_address=address, interface=interface, leader_address=leader, notes=tuple(notes))

