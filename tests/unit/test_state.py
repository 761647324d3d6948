"""BootState: phases with durations, atomic writes the probe can always parse, masking, throttling."""

from __future__ import annotations

import json
import threading

import pytest

from aim_engine import redact
from aim_engine.state import PHASES, BootState, read_state, write_json_atomic


def test_phases_are_recorded_in_order_with_durations(tmp_path):
    state = BootState(tmp_path / "s.json")
    state.enter("detecting")
    state.enter("selecting")
    doc = read_state(tmp_path / "s.json")
    assert doc["phase"] == "selecting"
    assert [p["name"] for p in doc["phases"]] == ["starting", "detecting", "selecting"]
    assert doc["phases"][-1]["duration_s"] is None               # still running
    assert set(doc["timings"]) == {"starting", "detecting"}
    assert all(v >= 0 for v in doc["timings"].values())


def test_unknown_phase_is_a_bug(tmp_path):
    with pytest.raises(ValueError):
        BootState(tmp_path / "s.json").enter("dancing")


def test_fail_records_where_and_why(tmp_path):
    state = BootState(tmp_path / "s.json")
    state.enter("downloading")
    state.fail("HTTP 403", "check the token", "HubError")
    doc = read_state(tmp_path / "s.json")
    assert doc["phase"] == "failed"
    assert doc["error"] == {"message": "HTTP 403", "hint": "check the token", "kind": "HubError",
                            "phase": "downloading"}


def test_the_masker_sees_everything_written(tmp_path):
    token = "hf_" + "A" * 30
    state = BootState(tmp_path / "s.json", masker=redact.mask)
    state.update(settings={"hf_token": token}, engine={"argv": ["vllm", f"--x={token}"]})
    text = (tmp_path / "s.json").read_text()
    assert token not in text and "***" in text


def test_progress_phase_changes_always_land(tmp_path, monkeypatch):
    state = BootState(tmp_path / "s.json")
    writes = []
    monkeypatch.setattr(state, "write", lambda: writes.append(state.data["download"]["phase"]))
    for phase in ("checking", "resolving", "downloading", "downloading", "verifying", "complete"):
        state.progress(phase=phase, bytes_done=0, bytes_total=1)
    assert writes == ["checking", "resolving", "downloading", "verifying", "complete"]


def test_progress_is_throttled_but_final_always_lands(tmp_path, monkeypatch):
    state = BootState(tmp_path / "s.json")
    writes = []
    monkeypatch.setattr(state, "write", lambda: writes.append(dict(state.data["download"])))
    for i in range(50):
        state.progress(phase="downloading", bytes_done=i, bytes_total=49)
    state.progress(phase="complete", bytes_done=49, bytes_total=49, final=True)
    assert 2 <= len(writes) < 10
    assert writes[-1] == {"phase": "complete", "bytes_done": 49, "bytes_total": 49}


def test_readers_never_see_a_partial_file(tmp_path):
    """Writers replace the file while a reader reads it in a loop: every read parses."""
    path = tmp_path / "s.json"
    write_json_atomic(path, {"n": 0})
    stop = threading.Event()
    bad: list[object] = []

    def reader() -> None:
        while not stop.is_set():
            doc = read_state(path)
            if doc is None or "pad" not in doc:
                bad.append(doc)

    write_json_atomic(path, {"n": 0, "pad": "x"})
    t = threading.Thread(target=reader)
    t.start()
    for i in range(300):
        write_json_atomic(path, {"n": i, "pad": "x" * 5000})
    stop.set()
    t.join()
    assert bad == []
    assert not [p for p in tmp_path.iterdir() if p.name != "s.json"]   # no temp files left behind


def test_read_state_of_nothing_or_garbage(tmp_path):
    assert read_state(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_state(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1]")
    assert read_state(tmp_path / "list.json") is None


def test_phases_table_is_in_boot_order():
    assert PHASES.index("detecting") < PHASES.index("selecting") < PHASES.index("downloading") \
        < PHASES.index("rendering") < PHASES.index("engine_starting") < PHASES.index("ready")
    assert json.dumps(list(PHASES))
