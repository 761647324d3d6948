"""The GPUs the agent decided to use are the GPUs the engine sees: detection (sysfs fixture
trees) -> selection (`Plan.visible_devices`) -> rendering (the engine's environment).

The strongest check replays ROCm's own composition (`hardware.visibility.apply`: ROCR first,
then HIP indexing into what ROCR left) on the environment the engine gets, and demands exactly
the devices the plan uses — so the indices are the ones HIP expects, not just some string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st

from aim_engine.engines import environment, render
from aim_engine.errors import AimError
from aim_engine.hardware import detect, visibility
from aim_engine.hardware.raw import ProbeResult
from aim_engine.planner.select import select
from tests.support import sysfs_tree
from tests.unit.selection_cases import catalog_of, model, recipe, settings

M = model()                     # 8B, TP 1/2/4/8 legal
ALL_SIZES = catalog_of((M,), (recipe(M, "MI300X", gpus_list=(1, 2, 4, 8), engines=("vllm",)),))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4x MI300X, 2x MI210, 1 unknown Radeon, in that KFD order."""
    root = tmp_path_factory.mktemp("mixed")
    sysfs_tree.build("mixed", root)
    return root


@pytest.fixture(scope="module")
def eight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mi300x-8")
    sysfs_tree.build("mi300x-8", root)
    return root


def _probe_uuids(root: Path) -> list[str | None]:
    """The UUIDs of every GPU the process can open, in KFD order (what ROCR indexes)."""
    from aim_engine.hardware import sysfs_probe

    result: ProbeResult = sysfs_probe.probe(root)
    return [g.uuid for g in result.gpus]


def _plan_and_env(root: Path, environ: Mapping[str, str], catalog=ALL_SIZES, **aim: str):
    s = settings(AIM_SYSFS_ROOT=str(root), AIM_MODEL_ID=M.model_id, **aim)
    hw = detect(s, environ, use_amdsmi=False)
    plan = select(s, hw, catalog)
    launch = render(plan, s, plan.checkpoint, cache_warm=False, base_env=dict(environ))
    return hw, plan, launch


def _engine_sees(root: Path, env: Mapping[str, str]) -> list[str | None]:
    """UUIDs of the devices a ROCm process started with `env` sees, in its device order."""
    uuids = _probe_uuids(root)
    return [uuids[p] for p, _ in visibility.apply(uuids, env).selected()]


def test_mixed_node_engine_sees_only_the_mi300x_group(mixed: Path) -> None:
    hw, plan, launch = _plan_and_env(mixed, {})
    assert hw.visible_count == 7 and hw.gpu_count == 4 and hw.gpu_model == "MI300X"
    assert plan.tensor_parallel == 4 and plan.visible_devices == "0,1,2,3"
    assert launch.env["HIP_VISIBLE_DEVICES"] == launch.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert "ROCR_VISIBLE_DEVICES" not in launch.env
    assert _engine_sees(mixed, launch.env) == [d.uuid for d in hw.devices]
    assert any("3 set aside by detection" in r for r in plan.reasons)
    assert plan.to_dict()["visible_devices"] == "0,1,2,3"


def test_indices_are_relative_to_the_rocr_list_which_stays_as_the_user_set_it(mixed: Path) -> None:
    # ROCR puts the two MI210 (KFD 4, 5) first: the MI300X group is at ROCR positions 2..5.
    environ = {"ROCR_VISIBLE_DEVICES": "4,5,0,1,2,3"}
    hw, plan, launch = _plan_and_env(mixed, environ)
    assert [d.rocr_index for d in hw.devices] == [2, 3, 4, 5] and hw.gpu_model == "MI300X"
    assert plan.visible_devices == "2,3,4,5"
    assert launch.env["ROCR_VISIBLE_DEVICES"] == "4,5,0,1,2,3"
    assert launch.env["HIP_VISIBLE_DEVICES"] == launch.env["CUDA_VISIBLE_DEVICES"] == "2,3,4,5"
    assert "ROCR_VISIBLE_DEVICES" not in launch.env_changes
    assert _engine_sees(mixed, launch.env) == [d.uuid for d in hw.devices]


def test_user_hip_list_narrowed_by_gpu_count(eight: Path) -> None:
    environ = {"HIP_VISIBLE_DEVICES": "1,3,5,7"}
    hw, plan, launch = _plan_and_env(eight, environ, AIM_GPU_COUNT="2")
    assert [d.rocr_index for d in hw.devices] == [1, 3]
    assert plan.tensor_parallel == 2 and plan.visible_devices == "1,3"
    assert launch.env["HIP_VISIBLE_DEVICES"] == launch.env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert _engine_sees(eight, launch.env) == [d.uuid for d in hw.devices]


def test_every_gpu_used_leaves_visibility_alone(eight: Path) -> None:
    hw, plan, launch = _plan_and_env(eight, {})
    assert plan.gpus_used == 8 and plan.visible_devices is None
    assert not {"HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"} & set(launch.env)
    hw, plan, launch = _plan_and_env(eight, {}, AIM_METRIC="throughput")
    assert (plan.tensor_parallel, plan.data_parallel, plan.visible_devices) == (1, 8, None)


def test_latency_tp_below_the_visible_gpus_hides_the_idle_ones(eight: Path) -> None:
    only_two = catalog_of((M,), (recipe(M, "MI300X", gpus_list=(1, 2), engines=("vllm",)),))
    hw, plan, launch = _plan_and_env(eight, {}, catalog=only_two)
    assert plan.tensor_parallel == 2 and plan.gpus_used == 2 and plan.visible_devices == "0,1"
    assert launch.env["HIP_VISIBLE_DEVICES"] == launch.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert any("6 left idle by the plan" in r for r in plan.reasons)


def test_throughput_replicas_that_do_not_fill_the_node_hide_the_rest(eight: Path) -> None:
    tp4 = catalog_of((M,), (recipe(M, "MI300X", gpus_list=(4,), engines=("vllm",)),))
    hw, plan, launch = _plan_and_env(eight, {}, catalog=tp4, AIM_METRIC="throughput", AIM_GPU_COUNT="6")
    assert (plan.tensor_parallel, plan.data_parallel, plan.gpus_used) == (4, 1, 4)
    assert plan.visible_devices == "0,1,2,3"
    hw, plan, launch = _plan_and_env(eight, {}, AIM_METRIC="throughput", AIM_GPU_COUNT="6")
    # 6 replicas fill the 6 GPUs in use; the 2 that AIM_GPU_COUNT set aside stay hidden.
    assert (plan.tensor_parallel, plan.data_parallel, plan.visible_devices) == (1, 6, "0,1,2,3,4,5")


def test_cpu_plan_has_no_visibility(eight: Path) -> None:
    hw, plan, launch = _plan_and_env(eight, {}, AIM_GPU_COUNT="0")
    assert plan.target == "cpu" and plan.visible_devices is None
    assert "HIP_VISIBLE_DEVICES" not in launch.env


def test_disagreeing_user_lists_are_made_to_agree_on_hip() -> None:
    base = {"HIP_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert environment.visibility(base, None) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert environment.visibility({"HIP_VISIBLE_DEVICES": "0, 1", "CUDA_VISIBLE_DEVICES": "0,1"}, None) == {}
    assert environment.visibility({"CUDA_VISIBLE_DEVICES": "2"}, None) == {}
    assert environment.visibility(base, "1") == {"HIP_VISIBLE_DEVICES": "1", "CUDA_VISIBLE_DEVICES": "1"}


ENTRY = st.sampled_from([str(i) for i in range(8)])
LISTS = st.none() | st.lists(ENTRY, min_size=1, max_size=8, unique=True).map(",".join)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rocr=LISTS, hip=LISTS, data=st.data())
def test_the_engine_sees_exactly_the_first_n_detected_gpus(eight: Path, rocr: str | None, hip: str | None,
                                                           data: st.DataObject) -> None:
    """For any ROCR/HIP combination and any number of GPUs used, ROCm's composition of the
    engine's environment selects exactly the first `used` devices the agent detected."""
    environ = {k: v for k, v in (("ROCR_VISIBLE_DEVICES", rocr), ("HIP_VISIBLE_DEVICES", hip)) if v is not None}
    try:
        hw = detect(settings(AIM_SYSFS_ROOT=str(eight)), environ, use_amdsmi=False)
    except AimError as exc:     # e.g. HIP indexes past a short ROCR list: every GPU hidden by mistake
        assert "hide every GPU" in str(exc)
        return
    if hw.is_cpu:       # ROCR/HIP hide every GPU on purpose (-1, empty): nothing to use, nothing to hide
        return
    used = data.draw(st.integers(1, hw.gpu_count))
    env = {**environ, **environment.visibility(environ, hw.hip_visible_devices(used))}
    sees = _engine_sees(eight, env)
    want = [d.uuid for d in hw.devices[:used]]
    assert sees[:used] == want
    if used < hw.gpu_count:
        assert sees == want          # restricted: nothing beyond what the plan uses
    else:
        assert sees == [d.uuid for d in hw.devices]
