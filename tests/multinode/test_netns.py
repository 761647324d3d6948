"""The two-node fixture itself (tests/support/netns.py): two namespaces joined by a veth pair,
reachable from each other only through it, and gone afterwards — including a killed run's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.harness import http_json
from tests.multinode.cluster import nodes_for_test
from tests.support import netns
from tests.support.hf_server import HubServer


def _namespaces() -> set[str]:
    return set(netns._existing()) if netns.why_no_namespaces() is None else set()


def test_two_nodes_are_two_hosts_joined_by_one_link_and_are_removed_after() -> None:
    before = _namespaces()
    with nodes_for_test() as nodes:
        assert nodes.leader.address != nodes.worker.address
        if not nodes.isolated:
            pytest.skip(reason=f"loopback fallback, nothing to isolate: {nodes.fallback}")
        assert {nodes.leader.netns, nodes.worker.netns} <= _namespaces() - before
        # A server made on the leader listens there; served from this (host) thread.
        hub = nodes.leader.call(HubServer, host="0.0.0.0")
        with hub:
            port = hub.url.rsplit(":", 1)[1]
            path = "/api/models/none/nothing"
            # The worker reaches it at the leader's address, across the veth ...
            assert nodes.worker.call(http_json, f"http://{nodes.leader.address}:{port}{path}")[0] == 401
            # ... but not on its own loopback (nor does the host's loopback).
            assert nodes.worker.call(http_json, f"http://127.0.0.1:{port}{path}")[0] == 0
            assert http_json(f"http://127.0.0.1:{port}{path}", timeout=2)[0] == 0
        # A process put on a node sees only that node's interfaces.
        links = subprocess.run(nodes.worker.command(["ip", "-o", "link"]), capture_output=True, text=True,
                               check=True).stdout
        assert nodes.worker.interface in links and nodes.leader.interface not in links
    assert _namespaces() == before


def test_a_killed_runs_namespaces_are_removed_by_the_next_run() -> None:
    if netns.why_no_namespaces():
        pytest.skip(reason=f"cannot make namespaces here: {netns.why_no_namespaces()}")
    # A child makes its pair and dies without cleaning up (os._exit skips every finally).
    code = ("import os; from tests.support import netns; "
            "cm = netns.two_nodes(require_namespaces=True); n = cm.__enter__(); "
            "print(n.leader.netns, n.worker.netns, flush=True); os._exit(0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=netns.Path(__file__).resolve().parents[2])
    left = set(done.stdout.split())
    assert len(left) == 2 and left <= _namespaces()
    assert left <= set(netns.remove_leftovers())
    assert not left & _namespaces()
