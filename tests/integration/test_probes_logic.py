"""The probe rules as a pure function: (state, engine check) -> (HTTP status, body)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aim_engine.probes.exit_watch import decode_wait_status
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


def _exited(phase: str, ever_ready: bool, code: int | None, sig: str | None, clean: bool) -> View:
    return View({"phase": phase, "engine": {"served_model_name": "m"}}, False, EngineCheck(True, ("m",)),
                ever_ready=ever_ready, exit={"code": code, "signal": sig, "at": 5.0,
                                             "description": "exited with code 3" if code else "was killed by SIGKILL"},
                exit_clean=clean)


def test_an_engine_exit_ends_every_probe_and_says_how():
    before = _exited("engine_starting", False, 3, None, clean=False)
    assert before.phase == "failed" and not before.ready and not before.live
    assert before.error["kind"] == "engine_exited" and "before it was ready" in before.error["message"]
    after = _exited("engine_starting", True, None, "SIGKILL", clean=False)
    assert after.error["phase"] == "ready" and "after it was ready" in after.error["message"]
    assert respond("/health/startup", after)[0] == 503
    doc = respond("/status", after)[1]
    assert doc["engine_exit"]["signal"] == "SIGKILL" and doc["phase"] == "failed"
    stopped = _exited("engine_starting", True, 0, None, clean=True)
    assert stopped.phase == "stopped" and stopped.error is None


def test_an_agent_exit_before_the_exec_keeps_the_agents_own_error():
    view = View({"phase": "failed", "error": {"message": "no recipe", "kind": "AimError"}}, False,
                exit={"code": 1, "signal": None, "at": 1.0}, exit_clean=False)
    assert view.phase == "failed" and view.error == {"message": "no recipe", "kind": "AimError"}
    assert "agent_exit" in respond("/status", view)[1]


def test_liveness_consults_the_engines_health_only_once_it_has_been_ready():
    state = {"phase": "engine_starting", "engine": {"served_model_name": "m"}}
    sick = EngineCheck(True, (), "HTTP 503")
    assert View(state, True, None, ever_ready=False, health=sick).live
    assert not View(state, True, None, ever_ready=True, health=sick).live
    assert View(state, True, None, ever_ready=True, health=EngineCheck(True)).live
    assert View(state, True, None, ever_ready=True, health=None).live


@settings(deadline=None)      # a loaded CI machine must not turn a slow first example into a failure
@given(code=st.integers(0, 255), sig=st.integers(1, 64))
def test_wait_statuses_decode_to_code_or_signal(code, sig):
    assert decode_wait_status(code << 8) == (code, None)
    assert decode_wait_status(sig) == (None, sig)
