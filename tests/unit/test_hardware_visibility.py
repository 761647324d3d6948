"""ROCR/HIP/CUDA_VISIBLE_DEVICES, applied as ROCm applies them (pure: plain lists and dicts)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aim_engine.hardware.visibility import apply

UUIDS = [f"GPU-{i:016x}" for i in range(0xA0, 0xA8)]  # 8 GPUs


def positions(environ, uuids=UUIDS):
    return [p for p, _ in apply(uuids, environ).selected()]


def test_nothing_set_shows_everything():
    assert positions({}) == list(range(8))


def test_rocr_indices_select_and_reorder():
    assert positions({"ROCR_VISIBLE_DEVICES": "3,1"}) == [3, 1]


def test_rocr_uuids_case_insensitive_and_mixed_with_indices():
    assert positions({"ROCR_VISIBLE_DEVICES": f"{UUIDS[5].upper()},2"}) == [5, 2]


def test_hip_indexes_into_the_rocr_visible_list():
    # ROCR keeps physical 4,5,6; HIP 1 is the second of those: physical 5.
    visible = apply(UUIDS, {"ROCR_VISIBLE_DEVICES": "4,5,6", "HIP_VISIBLE_DEVICES": "1"})
    assert visible.selected() == [(5, 1)]


def test_cuda_is_used_when_hip_is_unset():
    assert positions({"CUDA_VISIBLE_DEVICES": "2,0"}) == [2, 0]


def test_hip_wins_over_cuda_and_a_disagreement_is_reported():
    visible = apply(UUIDS, {"HIP_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": "1"})
    assert [p for p, _ in visible.selected()] == [0, 1]
    assert any("differ" in w and "vLLM" in w for w in visible.warnings)


def test_equal_hip_and_cuda_are_fine():
    visible = apply(UUIDS, {"HIP_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": "0, 1"})
    assert visible.warnings == []


def test_hip_uuid_selects_among_rocr_visible():
    assert positions({"ROCR_VISIBLE_DEVICES": "6,7", "HIP_VISIBLE_DEVICES": UUIDS[7]}) == [7]
    # a UUID hidden by ROCR cannot be selected by HIP
    visible = apply(UUIDS, {"ROCR_VISIBLE_DEVICES": "6,7", "HIP_VISIBLE_DEVICES": UUIDS[0]})
    assert visible.selected() == [] and visible.warnings


def test_first_invalid_entry_ends_the_list():
    visible = apply(UUIDS, {"ROCR_VISIBLE_DEVICES": "1,9,2"})
    assert [p for p, _ in visible.selected()] == [1]
    assert "out of range" in visible.warnings[0] and "'9,2'" in visible.warnings[0]


def test_garbage_and_duplicates_end_the_list():
    assert positions({"HIP_VISIBLE_DEVICES": "0,x,1"}) == [0]
    assert positions({"HIP_VISIBLE_DEVICES": "0,1,0,2"}) == [0, 1]


def test_minus_one_hides_every_gpu():
    visible = apply(UUIDS, {"HIP_VISIBLE_DEVICES": "-1"})
    assert visible.selected() == [] and visible.warnings == []


def test_empty_rocr_means_no_gpu_but_empty_hip_means_unset():
    assert positions({"ROCR_VISIBLE_DEVICES": ""}) == []
    assert positions({"HIP_VISIBLE_DEVICES": "", "CUDA_VISIBLE_DEVICES": ""}) == list(range(8))


def test_devices_without_uuid_can_still_be_chosen_by_index():
    assert positions({"ROCR_VISIBLE_DEVICES": "1"}, [None, None]) == [1]


@given(
    rocr=st.lists(st.integers(0, 7), unique=True, min_size=1, max_size=8),
    hip=st.lists(st.integers(0, 7), unique=True, max_size=8),
)
def test_hip_after_rocr_composes_like_list_indexing(rocr, hip):
    environ = {"ROCR_VISIBLE_DEVICES": ",".join(map(str, rocr))}
    if hip:
        environ["HIP_VISIBLE_DEVICES"] = ",".join(map(str, hip))
    got = positions(environ)
    expected_hip = hip if hip else list(range(len(rocr)))
    valid = []
    for i in expected_hip:  # the runtimes stop at the first index out of range
        if i >= len(rocr):
            break
        valid.append(i)
    assert got == [rocr[i] for i in valid]
    assert len(set(got)) == len(got)
