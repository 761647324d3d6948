"""Where this node stands in a serving group: node count, rank and leader.

A group is hardware too (docs/multinode.md): the planner sizes a model over `nodes` x GPUs per
node, and the renderer emits each rank's command from one plan. One node with nothing set is
`SINGLE`, and everything behaves exactly as before groups existed.

This module holds the value type only; `resolve()` (reading AIM_NODE_*, LeaderWorkerSet's and
KServe's variables from `Settings`) is built on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
