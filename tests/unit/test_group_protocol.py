"""The join protocol's bookkeeping (probes/group.Roster), the group's readiness rules
(probes/logic) and the prelude runner, each rule able to fail on its own."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from aim_engine.peers import PeerError, run_prelude
from aim_engine.probes import group as protocol
from aim_engine.probes.logic import EngineCheck, View, respond

FACTS = {"model": "m", "revision": "main", "recipe_id": "r", "engine": "vllm", "engine_version": "0.32.0",
         "precision": "bf16", "nodes": 2, "tensor_parallel": 8, "pipeline_parallel": 2, "data_parallel": 1,
         "backend": "native", "dist_port": 29500}
PRINT = protocol.fingerprint(FACTS)


def leader_group(nodes: int = 2, **extra):
    return {"role": "leader", "rank": 0, "nodes": nodes, "fingerprint": protocol.fingerprint({**FACTS, "nodes": nodes}),
            "facts": {**FACTS, "nodes": nodes}, **extra}


def join(roster, rank=1, nodes=2, facts=None, instance="a", address="10.0.0.2", phase="selecting", **kw):
    facts = {**FACTS, "nodes": nodes, **(facts or {})}
    body = {"rank": rank, "nodes": nodes, "instance": instance, "address": address, "hostname": "w",
            "facts": facts, "fingerprint": protocol.fingerprint(facts)}
    return roster.join(body, kw.pop("group", leader_group(kw.pop("leader_nodes", nodes))), phase, kw.pop("now", 100.0))


def test_fingerprint_is_stable_and_sensitive():
    assert protocol.fingerprint(dict(reversed(list(FACTS.items())))) == PRINT
    assert protocol.fingerprint({**FACTS, "engine_version": "0.33.0"}) != PRINT


def test_a_matching_worker_joins_and_the_group_is_complete():
    roster = protocol.Roster()
    code, body = join(roster)
    assert (code, body["accepted"], body["rank"]) == (200, True, 1)
    assert roster.complete(2) and roster.summary(leader_group(), 100.0)["missing"] == []


@pytest.mark.parametrize("kw, fragment", [
    ({"facts": {"recipe_id": "other"}}, "recipe_id: leader 'r', worker 'other'"),
    ({"facts": {"engine_version": "0.33.0"}}, "engine_version: leader '0.32.0', worker '0.33.0'"),
    ({"nodes": 3, "rank": 2, "leader_nodes": 2}, "the worker plans a group of 3 nodes, the leader 2"),
    ({"rank": 2}, "rank 2 is out of range: workers are ranks 1 to 1"),
    ({"rank": 0}, "rank 0 is the leader's"),
])
def test_a_wrong_worker_is_refused_and_remembered(kw, fragment):
    roster = protocol.Roster()
    code, body = join(roster, **kw)
    assert code == 409 and not body["accepted"] and fragment in body["error"]
    assert roster.rejected[-1]["error"] == body["error"] and not roster.complete(2)


def test_duplicate_rank_from_another_node_is_refused_but_a_restarted_node_replaces_itself():
    roster = protocol.Roster()
    assert join(roster, instance="a", address="10.0.0.2")[0] == 200
    code, body = join(roster, instance="b", address="10.0.0.3")
    assert code == 409 and "rank 1 has already joined from 10.0.0.2" in body["error"]
    assert join(roster, instance="c", address="10.0.0.2")[0] == 200
    assert roster.members[1].instance == "c"


def test_ranks_from_the_leader_are_the_lowest_free_and_a_full_group_says_so():
    roster = protocol.Roster()
    assert join(roster, rank=None, nodes=3, instance="a")[1]["rank"] == 1
    assert join(roster, rank=None, nodes=3, instance="b", address="10.0.0.3")[1]["rank"] == 2
    assert join(roster, rank=None, nodes=3, instance="a")[1]["rank"] == 1          # the same worker again
    code, body = join(roster, rank=None, nodes=3, instance="c", address="10.0.0.4")
    assert code == 409 and "the group is full" in body["error"]


def test_joins_wait_for_the_leaders_plan_and_a_worker_is_no_leader():
    roster = protocol.Roster()
    assert join(roster, group=None, phase="detecting")[0] == 503
    assert join(roster, group={"role": "leader", "nodes": 2}, phase="selecting")[0] == 503
    code, body = join(roster, group={"role": "worker", "rank": 1, "nodes": 2}, phase="downloading")
    assert code == 409 and "its role is worker (rank 1)" in body["error"]
    code, body = join(roster, group={"error": {"message": "no GPU"}}, phase="failed")
    assert code == 409 and "the leader's boot has failed: no GPU" in body["error"]


def test_after_the_leaders_exec_no_new_rank_joins():
    roster = protocol.Roster()
    code, body = join(roster, phase="engine_starting")
    assert code == 409 and "already started without rank 1" in body["error"]


def test_heartbeats_keep_a_worker_and_silence_loses_it():
    roster = protocol.Roster()
    join(roster, now=100.0)
    assert roster.heartbeat({"rank": 1, "instance": "a", "phase": "downloading"}, leader_group(), "downloading", 105.0)[0] == 200
    assert roster.sweep(105.0 + protocol.LOST_AFTER_S - 1, started=False) == []
    lost = roster.sweep(105.0 + protocol.LOST_AFTER_S + 1, started=False)
    assert [e["rank"] for e in lost] == [1] and roster.broken is None      # before the exec: it may join again
    code, body = roster.heartbeat({"rank": 1, "instance": "a"}, leader_group(), "downloading", 120.0)
    assert code == 409 and "lost after" in body["error"]
    assert join(roster, now=121.0)[0] == 200 and roster.complete(2)


def test_a_loss_after_the_exec_breaks_the_group():
    roster = protocol.Roster()
    join(roster, now=100.0)
    roster.heartbeat({"rank": 1, "instance": "a", "engine_alive": False}, leader_group(), "ready", 101.0)
    lost = roster.sweep(101.5, started=True)
    assert lost[0]["why"] == "its engine exited"
    assert roster.broken["rank"] == 1 and roster.broken["end_at"] == 101.5 + protocol.END_AFTER_S
    assert not roster.complete(2)


def _view(role, group, phase="ready", lists=True, alive=True):
    state = {"phase": phase, "engine": {"served_model_name": "m"}, "group": {"role": role}}
    check = EngineCheck(answering=True, models=("m",) if lists else ())
    return View(state=state, agent_alive=alive, check=check, group=group, now=1.0)


def test_a_leader_is_ready_only_when_its_engine_and_its_group_are():
    assert respond("/health/ready", _view("leader", {"complete": True}))[0] == 200
    assert respond("/health/ready", _view("leader", {"complete": False}))[0] == 503
    assert respond("/health/ready", _view("leader", {"complete": True}, lists=False))[0] == 503
    code, body = respond("/health/ready", _view("leader", {"complete": False, "broken": {
        "message": "worker rank 1 (x) was lost: its engine exited", "at": 1.0, "end_at": 6.0}}))
    assert code == 503 and body["error"]["kind"] == "group_lost" and "5 s after" in body["error"]["hint"]


def test_a_worker_is_ready_when_exec_d_joined_and_heard():
    assert respond("/health/ready", _view("worker", {"joined": True}, lists=False))[0] == 200
    assert respond("/health/ready", _view("worker", {"joined": True}, phase="downloading"))[0] == 503
    assert respond("/health/ready", _view("worker", {"joined": False}))[0] == 503
    assert respond("/health/joined", _view("worker", {"joined": True}, phase="downloading"))[0] == 200
    lost = _view("worker", {"joined": True, "leader_lost": {"message": "gone", "at": 1, "end_at": 6}})
    assert respond("/health/joined", lost)[0] == 503 and respond("/health/ready", lost)[0] == 503
    assert respond("/health/startup", _view("worker", {"joined": True}))[0] == 200


def test_one_node_is_unchanged():
    single = View(state={"phase": "ready", "engine": {"served_model_name": "m"}}, agent_alive=True,
                  check=EngineCheck(answering=True, models=("m",)))
    assert respond("/health/ready", single)[0] == 200 and respond("/health/joined", single)[0] == 200
    assert respond("/group", single) == (200, {"role": "single", "nodes": 1})
    assert "group" not in respond("/status", single)[1]


def test_status_shows_the_wait_with_its_elapsed_time():
    view = View(state={"phase": "waiting_for_workers", "group": {"role": "leader", "waiting": {
        "for": "workers", "since": 100.0, "timeout_s": 900}}}, agent_alive=True, group={"missing": [1]}, now=112.5)
    doc = respond("/status", view)[1]["group"]
    assert doc["waiting"] == {"for": "workers", "since": 100.0, "timeout_s": 900, "elapsed_s": 12.5}
    assert doc["missing"] == [1] and doc["ok"] is False


def _launch(*commands):
    import os

    return SimpleNamespace(prelude=tuple(tuple(c) for c in commands), env=dict(os.environ))


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, event, **kw):
        self.lines.append((event, kw))


def test_the_prelude_runs_in_order_and_a_failure_names_the_command(tmp_path):
    out = tmp_path / "order"
    log = _Log()
    run_prelude(_launch([sys.executable, "-c", f"open({str(out)!r}, 'a').write('1')"],
                        [sys.executable, "-c", f"open({str(out)!r}, 'a').write('2')"]), log)
    assert out.read_text() == "12" and [e for e, _ in log.lines].count("prelude done") == 2
    with pytest.raises(PeerError, match="prelude command exited with code 3: .* -c raise SystemExit.3."):
        run_prelude(_launch([sys.executable, "-c", "raise SystemExit(3)"]), log)
    with pytest.raises(PeerError, match="prelude command not found: 'no-such-ray'"):
        run_prelude(_launch(["no-such-ray", "start", "--head"]), log)


def _fake_ray_install(tmp_path, alive: int):
    """A stand-in Ray installation (like the fake `vllm`): a `ray` command whose shebang names an
    interpreter that finds a `ray` package answering `ray.nodes()` with `alive` live nodes."""
    import os

    site = tmp_path / "site"
    (site / "ray").mkdir(parents=True)
    (site / "ray" / "__init__.py").write_text(
        "def init(**kw):\n    assert kw.get('address') == 'auto'\n"
        f"def nodes():\n    return [{{'Alive': True}}] * {alive} + [{{'Alive': False}}]\n")
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    ray = tmp_path / "bin" / "ray"
    ray.write_text(f"#!{python}\nprint('ray')\n")
    ray.chmod(0o755)
    return {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_the_ray_node_count_is_asked_of_rays_own_python(tmp_path):
    from aim_engine.peers import ray_node_count, ray_python

    env = _fake_ray_install(tmp_path, alive=2)
    assert ray_python(env) == str(tmp_path / "bin" / "python")
    assert ray_node_count(SimpleNamespace(env=env)) == 2
    assert ray_node_count(SimpleNamespace(env={"PATH": str(tmp_path / "nothing")})) is None


def test_the_leader_waits_for_every_ray_node_and_times_out_naming_the_numbers(tmp_path):
    from aim_engine.peers import Peers
    from aim_engine.hardware.group import Group
    from aim_engine.state import BootState

    state = BootState(tmp_path / "state.json")
    settings = SimpleNamespace(health_port=8001, model_id="m", model_revision="main")
    clock = iter(range(0, 10_000, 5))
    group = Group(nodes=3, rank=0, leader_address="127.0.0.1", backend="ray", peer_timeout=30, leader_probe_port=8001)
    peers = Peers(state, settings, group, _Log(), clock=lambda: float(next(clock)), sleep=lambda s: None)
    counts = iter([1, 2, None, 3])
    assert peers.wait_for_ray(SimpleNamespace(env={}), count=lambda: next(counts)) == 3
    with pytest.raises(PeerError, match=r"the Ray cluster has 2 node\(s\) of 3 after 30 s \(AIM_PEER_TIMEOUT\)"):
        peers.wait_for_ray(SimpleNamespace(env={}), count=lambda: 2)


def test_a_hung_engine_and_its_children_are_killed_after_the_grace(monkeypatch):
    """A real process that ignores SIGTERM, with a child: both are gone after KILL_AFTER_S."""
    import subprocess
    import time

    monkeypatch.setattr(protocol, "KILL_AFTER_S", 0.5)
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n")
    engine = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(engine.stdout.readline())
    assert protocol.descendants(engine.pid) == [child]
    protocol.end_process(engine.pid, lambda: engine.poll() is None)
    assert engine.wait(20) == -9
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat", "rb") as handle:
                if handle.read().split(b") ")[1][:1] in (b"Z", b"X"):
                    break
        except OSError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the engine's child outlived it")


def test_group_metrics_and_a_broken_group_counts_as_a_failed_boot():
    from aim_engine.probes.metrics import families

    def samples(view):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families(view, now=10.0) for s in f.samples}

    whole = _view("leader", {"complete": True, "joined": [{"rank": 1}], "missing": [], "lost": []})
    whole.state["group"]["nodes"] = 2
    m = samples(whole)
    assert m[("aim_group_nodes", ())] == 2 and m[("aim_group_ok", ())] == 1
    assert m[("aim_group_workers", (("state", "joined"),))] == 1 and m[("aim_group_workers", (("state", "lost"),))] == 0
    broken = _view("leader", {"complete": False, "joined": [], "missing": [1], "lost": [{"rank": 1}],
                              "broken": {"message": "worker rank 1 lost", "at": 1.0, "end_at": 6.0}})
    m = samples(broken)
    assert m[("aim_group_ok", ())] == 0 and m[("aim_group_workers", (("state", "lost"),))] == 1
    assert m[("aim_boot_failures_total", (("reason", "peer_lost"),))] == 1
    assert respond("/status", broken)[1]["phase"] == "failed"
    single = View(state={"phase": "ready"}, agent_alive=True)
    assert not any(name.startswith("aim_group") for name, _ in samples(single))
