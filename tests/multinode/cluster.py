"""Processes on the two test nodes (tests/support/netns.py): start one on a node in a session of
its own, reach its ports from the node's network, kill its whole process group.

Shared by the raw-engine two-node test, the agents' two-node test and the two-node benchmark.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from tests.e2e.harness import http_json
from tests.support.netns import NamespaceError, Node, TwoNodes, two_nodes

READY_TIMEOUT = 600       # two real vLLM boots on a loaded 2-core machine can take minutes


def require_namespaces() -> bool:
    """Under `make test` as root (AIM_REQUIRE_ROOT_TESTS=1) the namespace path must run: the
    loopback fallback is only for runs by hand without root."""
    return os.environ.get("AIM_REQUIRE_ROOT_TESTS") == "1"


@contextlib.contextmanager
def nodes_for_test() -> Iterator[TwoNodes]:
    """`two_nodes()` for a fixture: namespaces required but impossible is a test failure with the
    reason (never a silent fallback); the loopback fallback says why in a warning."""
    import pytest

    try:
        with two_nodes(require_namespaces=require_namespaces()) as nodes:
            if nodes.fallback:
                warnings.warn(f"two-node test on loopback addresses, not network namespaces: {nodes.fallback}")
            yield nodes
    except NamespaceError as exc:
        pytest.fail(f"{exc} (AIM_REQUIRE_ROOT_TESTS=1: the namespace path must run)")


@dataclass
class NodeProcess:
    """One process started on a node, in a session of its own (its group is its whole tree)."""

    node: Node
    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, node: Node, argv: list[str], env: Mapping[str, str], log_path: Path,
              cwd: Path | None = None) -> "NodeProcess":
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(node.command(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
        return cls(node, proc, log_path)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def get(self, port: int, path: str, payload: Any = None, timeout: float = 10.0,
            host: str = "127.0.0.1") -> tuple[int, Any]:
        """An HTTP request to `host:port` from this process's node (its own loopback by default)."""
        return self.node.call(http_json, f"http://{host}:{port}{path}", payload, timeout)

    def log(self, tail: int = 8000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the group, SIGKILL what is left after `grace`, and reap."""
        if self.proc.poll() is None:
            self.kill_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def wait_http_ok(owner: NodeProcess, port: int, path: str, watch: list[NodeProcess],
                 timeout: float = READY_TIMEOUT) -> float:
    """Seconds until `path` on `owner`'s node answers 200; fails at once (with the logs) when a
    process in `watch` exits first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for p in watch:
            if p.proc.poll() is not None:
                raise AssertionError(f"{p.node.role} process exited {p.proc.returncode} before {path} "
                                     f"answered:\n{p.log()}")
        if owner.get(port, path, timeout=5)[0] == 200:
            return time.monotonic() - started
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.node.role}:\n{p.log()}" for p in watch)
    raise AssertionError(f"{path} not 200 after {timeout:.0f}s:\n{logs}")


def chat(owner: NodeProcess, port: int, model: str, timeout: float = 120.0) -> tuple[int, Any]:
    payload = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    return owner.get(port, "/v1/chat/completions", payload, timeout=timeout)


__all__ = ["NodeProcess", "READY_TIMEOUT", "TwoNodes", "chat", "nodes_for_test", "require_namespaces", "wait_http_ok"]
