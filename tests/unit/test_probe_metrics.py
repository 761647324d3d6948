"""The agent's metrics as a pure function of the probe's view, read back with prometheus_client's
own parsers (the Prometheus text format and OpenMetrics)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from aim_engine.probes.logic import EngineCheck, View
from aim_engine.probes.metrics import MAX_LABEL_CHARS, REASONS, Exposition, reason_class
from aim_engine.state import PHASES

STATE = {
    "phase": "engine_starting", "started_at": 1000.0, "model_id": "org/model",
    "phases": [{"name": "starting", "started_at": 1000.0, "duration_s": 0.01},
               {"name": "detecting", "started_at": 1000.01, "duration_s": 0.02},
               {"name": "selecting", "started_at": 1000.03, "duration_s": 0.05},
               {"name": "downloading", "started_at": 1000.08, "duration_s": 12.0},
               {"name": "rendering", "started_at": 1012.08, "duration_s": 0.01},
               {"name": "engine_starting", "started_at": 1012.09, "duration_s": None}],
    "hardware": {"devices": [{"model": "MI300X"}, {"model": "MI300X"}]},
    "plan": {"model_id": "org/model", "recipe_id": "model-mi300x-bf16", "engine": "vllm", "tensor_parallel": 2,
             "data_parallel": 1},
    "recipe": {"id": "model-mi300x-bf16"},
    "engine": {"name": "vllm", "version": "0.32.0", "served_model_name": "org/model"},
    "download": {"phase": "complete", "bytes_done": 500, "bytes_total": 500, "rate": 0.0},
    "cache": {"already_warm": False, "lock_wait_s": 3.5},
}


def scrape(view: View, openmetrics: bool = False) -> dict[str, dict[tuple, float]]:
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
    body, ctype = Exposition(lambda: view).render(accept)
    assert ctype.startswith("application/openmetrics-text" if openmetrics else "text/plain")
    parse = parse_openmetrics if openmetrics else parse_text
    out: dict[str, dict[tuple, float]] = {}
    for family in parse(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_a_boot_waiting_for_its_engine():
    view = View(STATE, True, EngineCheck(False, (), "refused"))
    m = scrape(view)
    assert m["aim_boot_phase"] == {(("aim_boot_phase", p),): float(p == "engine_starting") for p in PHASES}
    assert m["aim_boot_phase_duration_seconds"][(("phase", "downloading"),)] == 12.0
    assert m["aim_boot_phase_duration_seconds"][(("phase", "engine_starting"),)] > 0   # so far
    assert m["aim_download_done_bytes"][()] == 500 and m["aim_download_expected_bytes"][()] == 500
    assert m["aim_cache_lock_wait_seconds"][()] == 3.5
    assert m["aim_cache_lookups_total"] == {(("cache", "weights"), ("result", "hit")): 0.0,
                                            (("cache", "weights"), ("result", "miss")): 1.0}
    assert set(m["aim_boot_failures_total"].values()) == {0.0}
    assert len(m["aim_boot_failures_total"]) == len(REASONS)
    (labels, value), = m["aim_engine_info"].items()
    assert value == 1 and dict(labels) == {"model": "org/model", "recipe": "model-mi300x-bf16", "engine": "vllm",
                                           "engine_version": "0.32.0", "gpu_model": "MI300X",
                                           "tensor_parallel_size": "2", "data_parallel_size": "1"}


def test_ready_freezes_the_boot_time_and_openmetrics_parses_too():
    view = View(STATE, True, EngineCheck(True, ("org/model",)), ever_ready=True, ready_at=1042.0)
    m = scrape(view, openmetrics=True)
    assert m["aim_boot_phase"][(("aim_boot_phase", "ready"),)] == 1
    assert m["aim_boot_elapsed_seconds"][()] == 42.0
    assert m["aim_boot_phase_duration_seconds"][(("phase", "engine_starting"),)] == 1042.0 - 1012.09


def test_a_failed_boot_counts_its_reason_class_only():
    state = {**STATE, "phase": "failed", "error": {"message": "hf_" + "x" * 30 + " went wrong", "kind": "HubError",
                                                   "phase": "downloading"}}
    m = scrape(View(state, True))
    assert m["aim_boot_phase"][(("aim_boot_phase", "failed"),)] == 1
    assert {dict(k)["reason"]: v for k, v in m["aim_boot_failures_total"].items() if v} == {"download": 1.0}


def test_an_engine_exit_is_a_failure_of_class_engine_exited():
    view = View(STATE, False, ever_ready=True, ready_at=1042.0,
                exit={"code": None, "signal": "SIGKILL", "at": 1100.0, "description": "was killed by SIGKILL"})
    m = scrape(view)
    assert {dict(k)["reason"]: v for k, v in m["aim_boot_failures_total"].items() if v} == {"engine_exited": 1.0}
    assert m["aim_engine_exit_time_seconds"][()] == 1100.0


def test_labels_are_masked_and_bounded():
    token = "hf_" + "T" * 34
    state = {**STATE, "plan": {**STATE["plan"], "model_id": f"https://host/{token}/" + "m" * 500}}
    body = Exposition(lambda: View(state, True)).render("text/plain")[0].decode()
    assert token not in body
    (labels, _), = scrape(View(state, True))["aim_engine_info"].items()
    assert all(len(v) <= MAX_LABEL_CHARS for _, v in labels)


@settings(deadline=None)      # a loaded CI machine must not turn a slow example into a failure
@given(kind=st.text(max_size=40), phase=st.text(max_size=20) | st.sampled_from(PHASES))
def test_reason_classes_are_a_fixed_set_whatever_the_error_says(kind, phase):
    assert reason_class({"kind": kind, "phase": phase}) in REASONS
