"""The probe rules as a pure function: (state, engine check) -> (HTTP status, body)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aim_engine.probes.logic import EngineCheck, View, models_from_payload, respond
from aim_engine.state import PHASES

names = st.sampled_from(["demo", "org/model", "other"])


@given(phase=st.sampled_from(PHASES[:-2] + ("failed", "stopped")), served=names,
       listed=st.lists(names, max_size=3), answering=st.booleans(), alive=st.booleans())
def test_ready_iff_the_engine_lists_the_served_model_after_the_exec(phase, served, listed, answering, alive):
    state = {"phase": phase, "engine": {"served_model_name": served}}
    view = View(state, alive, EngineCheck(answering, tuple(listed)))
    code, body = respond("/health/ready", view)
    expected = phase in ("engine_starting", "ready") and answering and served in listed
    assert (code == 200) == expected
    assert body["phase"] == ("ready" if expected else phase)
    assert respond("/health/live", view)[0] == (200 if alive else 503)


def test_no_engine_check_yet_is_not_ready():
    view = View({"phase": "engine_starting", "engine": {"served_model_name": "demo"}}, True, None)
    assert respond("/health/ready", view) == (503, {"ready": False, "phase": "engine_starting"})


def test_startup_is_latched_but_not_after_a_failure():
    ready_once = View({"phase": "engine_starting", "engine": {"served_model_name": "m"}}, True,
                      EngineCheck(False, (), "refused"), ever_ready=True)
    assert respond("/health/startup", ready_once)[0] == 200
    failed = View({"phase": "failed", "error": {"message": "boom"}}, True, None, ever_ready=False)
    assert respond("/health/startup", failed) == (503, {"started": False, "phase": "failed",
                                                        "error": {"message": "boom"}})


def test_status_adds_what_the_probe_saw():
    view = View({"phase": "engine_starting", "started_at": 100.0, "timings": {"detecting": 0.1},
                 "engine": {"served_model_name": "m"}}, True, EngineCheck(True, ("m",), None, 130.0),
                ever_ready=True, ready_at=130.0, extra={"pid": 7})
    code, doc = respond("/status", view)
    assert code == 200
    assert doc["phase"] == "ready" and doc["agent_phase"] == "engine_starting" and doc["ready"] is True
    assert doc["timings"] == {"detecting": 0.1, "to_ready": 30.0}
    assert doc["probe"] == {"pid": 7}
    assert doc["engine_check"]["models"] == ["m"]


def test_paths_tolerate_query_strings_and_trailing_slashes():
    view = View({"phase": "detecting"}, True)
    assert respond("/health/live/?verbose=1", view)[0] == 200
    assert respond("/status?x", view)[0] == 200
    assert respond("/metrics", view)[0] == 404


def test_models_from_payload_is_defensive():
    assert models_from_payload({"data": [{"id": "a"}, {"id": 2}, {"nope": 1}, "x"]}) == ("a", "2")
    assert models_from_payload({"data": "x"}) == ()
    assert models_from_payload(None) == ()
