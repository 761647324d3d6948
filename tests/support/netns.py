"""Two "nodes" on one machine: two network namespaces joined by a veth pair (tests only).

The two-node tests (tests/multinode/) run a leader and a worker that must reach each other only
through a network, as two hosts do: each node is a network namespace of its own, with `lo` up
and one end of a veth pair (10.77.0.1/24 and 10.77.0.2/24). A process is put on a node with
`ip netns exec`; the test itself reaches into a node with `Node.call`, which runs a function in a
thread that has entered the namespace (setns(2) moves only the calling thread, and a socket keeps
the namespace it was created in, so a server socket made there serves from any thread).

Where namespaces cannot be made (not root, no `ip`), `two_nodes()` falls back to two loopback
addresses of the host namespace (127.0.0.1 and 127.0.0.2, both on `lo`) and says why in
`TwoNodes.fallback`; with AIM_REQUIRE_ROOT_TESTS=1 (`make test` as root) the fallback is an error,
so the namespace path cannot silently stop running.

Namespaces and links are named after this process id and a counter (`aim2n<pid>_<n>l`/`w`, veth
ends `…a`/`…b`), so parallel runs never collide; leftovers of a killed run (their pid gone) are
removed by the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000          # <sched.h>
NETNS_DIR = Path("/run/netns")     # where `ip netns add` keeps its bind mounts
PREFIX = "aim2n"
SUBNET = "10.77.0"
_NAME = re.compile(rf"^{PREFIX}(\d+)_\d+[lw]$")
_COUNTER = iter(range(10**6))


class NamespaceError(RuntimeError):
    """The namespaces could not be made (the message says which command failed and why)."""


@dataclass(frozen=True)
class Node:
    """One node: the address its peers reach it at, its interface, and its namespace (None: the
    host's own namespace, the loopback fallback)."""

    role: str                 # "leader" | "worker"
    address: str
    interface: str
    netns: str | None = None

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run on this node (`ip netns exec` execs it: the process id is the command's)."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` with this node's network: sockets it opens are on this node."""
        if self.netns is None:
            return fn(*args, **kwargs)
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                _enter(self.netns)
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=run, name=f"netns-{self.role}", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]


@dataclass(frozen=True)
class TwoNodes:
    leader: Node
    worker: Node
    fallback: str | None = None   # why the loopback fallback is used; None: real namespaces

    @property
    def isolated(self) -> bool:
        return self.fallback is None


def _enter(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NamespaceError(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")


def _existing() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def remove_leftovers() -> list[str]:
    """Delete this module's namespaces whose creating process is gone (a SIGKILLed run)."""
    removed = []
    for name in _existing():
        match = _NAME.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            removed.append(name)
    return removed


def why_no_namespaces() -> str | None:
    """None when this process can make network namespaces, else the reason. AIM_TEST_LOOPBACK_NODES=1
    asks for the loopback fallback (to run the fallback path as root, e.g. to compare)."""
    if os.environ.get("AIM_TEST_LOOPBACK_NODES") == "1":
        return "AIM_TEST_LOOPBACK_NODES=1 asks for two loopback addresses"
    if os.geteuid() != 0:
        return "not running as root (network namespaces need CAP_SYS_ADMIN)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) not found on PATH"
    return None


def _names(stem: str) -> tuple[str, str, str, str]:
    """Leader and worker namespace, leader and worker veth end (at most 15 characters, IFNAMSIZ)."""
    return f"{stem}l", f"{stem}w", f"{stem}a", f"{stem}b"


def _make(stem: str) -> TwoNodes:
    leader_ns, worker_ns, leader_if, worker_if = _names(stem)
    _ip("netns", "add", leader_ns)
    _ip("netns", "add", worker_ns)
    _ip("link", "add", leader_if, "type", "veth", "peer", "name", worker_if)
    for ns, ifname, host in ((leader_ns, leader_if, 1), (worker_ns, worker_if, 2)):
        _ip("link", "set", ifname, "netns", ns)
        _ip("-n", ns, "addr", "add", f"{SUBNET}.{host}/24", "dev", ifname)
        _ip("-n", ns, "link", "set", ifname, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    return TwoNodes(Node("leader", f"{SUBNET}.1", leader_if, leader_ns),
                    Node("worker", f"{SUBNET}.2", worker_if, worker_ns))


def _remove(stem: str) -> None:
    """Deleting a namespace destroys the veth end inside it, and with it the peer; a veth pair
    still in the host namespace (a half-made pair) is deleted by name."""
    leader_ns, worker_ns, leader_if, _ = _names(stem)
    for ns in (leader_ns, worker_ns):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    subprocess.run(["ip", "link", "del", leader_if], capture_output=True, timeout=30)


LOOPBACK = TwoNodes(Node("leader", "127.0.0.1", "lo"), Node("worker", "127.0.0.2", "lo"))


@contextlib.contextmanager
def two_nodes(require_namespaces: bool = False) -> Iterator[TwoNodes]:
    """Two nodes for the duration of the block, removed after it (also on error).

    `require_namespaces`: raise NamespaceError instead of falling back to loopback addresses."""
    reason = why_no_namespaces()
    stem = f"{PREFIX}{os.getpid()}_{next(_COUNTER) % 10}"
    nodes: TwoNodes | None = None
    if reason is None:
        remove_leftovers()
        try:
            nodes = _make(stem)
        except NamespaceError as exc:
            _remove(stem)
            reason = str(exc)
    if nodes is None:
        if require_namespaces:
            raise NamespaceError(f"cannot make two network namespaces: {reason}")
        yield TwoNodes(LOOPBACK.leader, LOOPBACK.worker, fallback=reason)
        return
    try:
        yield nodes
    finally:
        _remove(stem)
