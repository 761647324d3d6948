"""Rendering per rank: one plan of a multi-node group -> the command of each node.

vLLM native (`--nnodes/--node-rank/--master-addr/--master-port`, `--headless` on ranks >= 1), vLLM
on Ray (the leader's `ray start --head` prelude, workers' `ray start --block`), SGLang
(`--nnodes/--node-rank/--dist-init-addr` everywhere); the backend choice; the network
environment table; the errors. The same argv is fed to the real parsers of every installed
version in tests/integration/test_multinode_parsers.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest

from aim_engine.engines import environment, flags, multinode, render
from aim_engine.engines.flags import EngineFlags
from aim_engine.errors import AimError
from aim_engine.hardware.group import SINGLE, Group
from aim_engine.settings import Settings
from tests.support.engine_plans import pairs, plan
from tests.support.group_plans import LEADER, group_plan

BASE_ENV = {"PATH": "/nonexistent", "HOME": "/root"}


class _Asking:
    """Settings with AIM_MULTINODE_BACKEND, for as long as Settings does not parse it itself."""

    def __init__(self, settings: Settings, backend: str) -> None:
        self._settings, self.multinode_backend = settings, backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self._settings, name)


def settings(**env: str) -> Any:
    s = Settings.from_env({"AIM_CACHE_PATH": "/cache", "AIM_PORT": "8000", **env})
    backend = env.get("AIM_MULTINODE_BACKEND")
    if backend is not None and not hasattr(s, "multinode_backend"):
        return _Asking(s, backend)
    return s


def rendered(p: Any, rank: int | None = None, env: dict[str, str] | None = None, **settings_env: str):
    return render(p, settings(**settings_env), "/models/m", True, rank, base_env={**BASE_ENV, **(env or {})})


# ---------------------------------------------------------------- one node: unchanged
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("group", [None, SINGLE])
def test_one_node_renders_exactly_as_before(engine: str, group: Any) -> None:
    p = plan({"--dtype": "bfloat16"}, engine=engine, gpus=2)
    before = render(p, settings(), "/models/m", True, base_env=BASE_ENV)
    after = render(dataclasses.replace(p, group=group), settings(), "/models/m", True, base_env=BASE_ENV)
    assert after == before
    assert (after.rank, after.role, after.serves_api, after.prelude, after.backend) == (0, "single", True, (), None)
    assert not {"--nnodes", "--node-rank", "--headless", "--dist-init-addr"} & set(after.argv)
    assert "VLLM_HOST_IP" not in after.env_changes and "GLOO_SOCKET_IFNAME" not in after.env_changes


def test_a_rank_other_than_0_of_one_node_is_an_error() -> None:
    with pytest.raises(AimError, match="rank 1 asked of a single-node plan"):
        rendered(plan({}, gpus=1), 1)


# ---------------------------------------------------------------- vLLM native
def test_vllm_native_every_rank_gets_the_group_and_workers_are_headless() -> None:
    p = group_plan(nodes=3, tp=8, pp=3)
    launches = [rendered(p, r) for r in range(3)]
    for r, launch in enumerate(launches):
        o = pairs(launch.args)
        assert (o["--nnodes"], o["--node-rank"], o["--master-addr"], o["--master-port"]) == ("3", str(r), LEADER, "29500")
        assert o["--tensor-parallel-size"] == "8" and o["--pipeline-parallel-size"] == "3"
        assert o["--distributed-executor-backend"] == "mp"       # vLLM refuses --nnodes > 1 on ray
        assert launch.backend.name == "native" and launch.prelude == ()
        assert launch.argv[:2] == ["vllm", "serve"] and launch.args[0] == "/models/m"
    leader, *workers = launches
    assert "--headless" not in leader.args and leader.role == "leader" and leader.serves_api
    assert leader.health_url == "http://127.0.0.1:8000/health" and leader.models_url.endswith("/v1/models")
    for w in workers:        # a headless vLLM node starts no HTTP server at all (vllm/entrypoints/cli/serve.py)
        assert "--headless" in w.args and w.role == "worker" and not w.serves_api
        assert (w.health_url, w.models_url, w.metrics_url) == (None, None, None)


def test_rank_none_is_this_node_s_own_rank() -> None:
    p = group_plan(rank=1)
    assert rendered(p).rank == 1 and pairs(rendered(p).args)["--node-rank"] == "1"
    assert rendered(p, 0).rank == 0


def test_vllm_native_dist_port_comes_from_the_group() -> None:
    p = group_plan()
    p = dataclasses.replace(p, group=dataclasses.replace(p.group, dist_port=31000))
    assert pairs(rendered(p, 1).args)["--master-port"] == "31000"


def test_cpu_target_single_process_executor_becomes_mp_on_a_group() -> None:
    one = render(plan({}, target="cpu", hardware="CPU"), settings(), "/m", True, base_env=BASE_ENV)
    assert pairs(one.args)["--distributed-executor-backend"] == "uni"
    p = group_plan(target="cpu", tp=1, pp=2)
    for r in (0, 1):
        o = pairs(rendered(p, r).args)
        assert o["--distributed-executor-backend"] == "mp" and o["--pipeline-parallel-size"] == "2"


# ---------------------------------------------------------------- backend choice
def test_auto_is_native_where_the_installed_vllm_has_nnodes() -> None:
    for version in ("0.31.0", "0.32.0", "0.33.0"):
        launch = rendered(group_plan(engine_version=version))
        assert launch.backend.name == "native" and launch.backend.requested == "auto"
        assert f"vllm {version}" in launch.backend.reason


def test_auto_is_ray_for_a_kserve_group() -> None:
    launch = rendered(group_plan(source="KServe"))
    assert launch.backend.name == "ray" and "KServe" in launch.backend.reason


def _without(engine: str, *missing: str) -> EngineFlags:
    real = flags.load(engine)
    return dataclasses.replace(real, flags={k: v for k, v in real.flags.items() if k not in missing})


def test_auto_falls_back_to_ray_for_a_vllm_without_the_native_flags() -> None:
    old = _without("vllm", "--headless", "--nnodes")
    choice = multinode.choose_backend("vllm", old, Group(nodes=2, leader_address=LEADER), "auto", "vllm 0.9.0")
    assert choice.name == "ray" and "--nnodes" in choice.reason and "vllm 0.9.0" in choice.reason
    with pytest.raises(AimError) as err:
        multinode.choose_backend("vllm", old, Group(nodes=2, leader_address=LEADER), "native", "vllm 0.9.0")
    assert "vllm 0.9.0" in err.value.message and "--headless" in err.value.message
    assert "AIM_MULTINODE_BACKEND=ray" in err.value.hint


def test_sglang_has_no_ray_backend() -> None:
    with pytest.raises(AimError) as err:
        rendered(group_plan("sglang"), AIM_MULTINODE_BACKEND="ray")
    assert "AIM_MULTINODE_BACKEND=ray" in err.value.message and "native" in err.value.hint
    assert rendered(group_plan("sglang", source="KServe")).backend.name == "native"


def test_an_unknown_backend_request_names_the_variable() -> None:
    with pytest.raises(AimError) as err:
        multinode.requested_backend(_Asking(Settings.from_env({}), "mpi"))
    assert "AIM_MULTINODE_BACKEND='mpi'" in err.value.message and "auto, native, ray" in err.value.hint


# ---------------------------------------------------------------- vLLM on Ray
def test_vllm_on_ray_leader_has_the_head_prelude_and_one_serve_covering_every_gpu() -> None:
    p = group_plan(tp=8, pp=2)
    leader = rendered(p, 0, AIM_MULTINODE_BACKEND="ray")
    o = pairs(leader.args)
    assert o["--distributed-executor-backend"] == "ray"
    assert int(o["--tensor-parallel-size"]) * int(o["--pipeline-parallel-size"]) == 16 == p.gpus_used
    assert not {"--nnodes", "--node-rank", "--master-addr", "--headless"} & set(leader.args)
    assert leader.prelude == (("ray", "start", "--head", "--port=6379", "--node-ip-address=10.0.0.9", "--num-gpus=8",
                               "--disable-usage-stats", "--include-dashboard=false"),)
    assert leader.serves_api and leader.backend.name == "ray"


def test_vllm_on_ray_worker_execs_ray_start_block_and_serves_nothing() -> None:
    p = group_plan(rank=1)
    worker = rendered(p, AIM_MULTINODE_BACKEND="ray")
    assert worker.argv == ["ray", "start", "--address=10.0.0.1:6379", "--node-ip-address=10.0.0.9", "--num-gpus=8",
                           "--disable-usage-stats", "--block"]
    assert worker.args == [] and worker.prelude == ()
    assert (worker.serves_api, worker.health_url, worker.models_url, worker.role) == (False, None, None, "worker")
    # Ray's workers inherit the raylet's environment: the worker gets the engine's whole environment.
    assert worker.env["HF_HOME"] == "/cache/huggingface" and worker.env["VLLM_HOST_IP"] == "10.0.0.9"


def test_ray_on_cpu_states_no_gpus_and_another_rank_has_no_node_address() -> None:
    p = group_plan(target="cpu", tp=1, pp=2)
    worker = rendered(p, 1, AIM_MULTINODE_BACKEND="ray")       # rendered from rank 0's view (plan)
    assert worker.argv == ["ray", "start", "--address=10.0.0.1:6379", "--disable-usage-stats", "--block"]


def test_ray_with_data_parallel_is_refused() -> None:
    with pytest.raises(AimError, match="data parallel 2 over a Ray cluster"):
        rendered(group_plan(data_parallel=2), AIM_MULTINODE_BACKEND="ray")


# ---------------------------------------------------------------- SGLang
def test_sglang_every_node_gets_total_tp_nnodes_and_dist_init_addr() -> None:
    p = group_plan("sglang", tp=16, pp=1)
    for r in (0, 1):
        launch = rendered(p, r)
        o = pairs(launch.args)
        assert (o["--tp-size"], o["--nnodes"], o["--node-rank"], o["--dist-init-addr"]) == ("16", "2", str(r),
                                                                                          "10.0.0.1:29500")
        assert "--pp-size" not in o and launch.backend.name == "native"
    worker = rendered(p, 1)
    # SGLang ranks >= 1 run no tokenizer and no API, only launch_dummy_health_check_server on --port.
    assert not worker.serves_api and worker.models_url is None
    assert worker.health_url == "http://127.0.0.1:8000/health"


def test_sglang_pipeline_parallel_and_an_ipv6_leader() -> None:
    p = group_plan("sglang", tp=8, pp=2, leader="fd00::1")
    o = pairs(rendered(p, 1).args)
    assert o["--pp-size"] == "2" and o["--dist-init-addr"] == "[fd00::1]:29500"


# ---------------------------------------------------------------- the network environment
def test_network_variables_on_a_group() -> None:
    launch = rendered(group_plan(), 0)
    assert {k: launch.env_changes.get(k) for k in ("VLLM_HOST_IP", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")} == {
        "VLLM_HOST_IP": "10.0.0.9", "GLOO_SOCKET_IFNAME": "eth1", "NCCL_SOCKET_IFNAME": "eth1"}
    sg = rendered(group_plan("sglang"), 0)
    assert sg.env["SGLANG_HOST_IP"] == "10.0.0.9" and "VLLM_HOST_IP" not in sg.env


def test_another_rank_gets_no_guessed_address() -> None:
    other = rendered(group_plan(rank=0), 1)       # `plan` on the leader rendering the worker
    assert "VLLM_HOST_IP" not in other.env and other.env["GLOO_SOCKET_IFNAME"] == "eth1"


def test_the_user_s_network_variables_win() -> None:
    mine = {"VLLM_HOST_IP": "192.168.5.5", "GLOO_SOCKET_IFNAME": "ib0", "NCCL_SOCKET_IFNAME": "=ib0",
            "NCCL_IB_DISABLE": "1"}
    launch = rendered(group_plan(), 0, env=mine)
    assert {k: launch.env[k] for k in mine} == mine
    assert not set(mine) & set(launch.env_changes)


def test_no_nccl_ib_variable_is_set_unasked() -> None:
    launch = rendered(group_plan(), 0)
    assert not [k for k in launch.env_changes if k.startswith("NCCL_IB")]


def test_unknown_network_values_are_left_out() -> None:
    launch = rendered(group_plan(node_address=None, interface=None), 0)
    assert not {"VLLM_HOST_IP", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"} & set(launch.env)


def test_a_typo_in_the_network_table_is_an_error() -> None:
    ctx = environment.NetworkContext("vllm", "native", "gpu", "10.0.0.9", "eth0")
    with pytest.raises(ValueError, match="unknown `when`"):
        environment.network(ctx, ({"name": "X", "from": "interface", "when": {"engnie": "vllm"}},))
    with pytest.raises(ValueError, match="node_adress"):
        environment.network(ctx, ({"name": "X", "from": "node_adress"},))
    assert environment.network(ctx, ({"name": "X", "value": "1", "when": {"backend": "ray"}},)) == {}
    assert environment.network(ctx, ({"name": "X", "value": "1", "when": {"backend": "native"}},)) == {"X": "1"}


# ---------------------------------------------------------------- errors and owned flags
@pytest.mark.parametrize("engine,key,setting", [
    ("vllm", "--nnodes", "AIM_NODE_COUNT"), ("vllm", "--node_rank", "AIM_NODE_RANK"),
    ("vllm", "--master_addr", "AIM_LEADER_ADDRESS"), ("vllm", "--distributed-executor-backend", "AIM_MULTINODE_BACKEND"),
    ("sglang", "--nccl-init-addr", "AIM_LEADER_ADDRESS"),     # SGLang's alias of --dist-init-addr
])
def test_engine_args_may_not_set_the_group_s_flags(engine: str, key: str, setting: str) -> None:
    with pytest.raises(AimError) as err:
        rendered(group_plan(engine), 0, AIM_ENGINE_ARGS=json.dumps({key: "3"}))
    assert key in err.value.message and "multi-node group" in err.value.message and setting in err.value.hint


def test_one_node_may_still_set_the_executor_backend() -> None:
    launch = render(plan({}), settings(AIM_ENGINE_ARGS='{"--distributed-executor-backend": "mp"}'), "/m", True,
                    base_env=BASE_ENV)
    assert pairs(launch.args)["--distributed-executor-backend"] == "mp"


def test_a_world_that_does_not_split_over_the_nodes_names_the_numbers() -> None:
    with pytest.raises(AimError) as err:
        rendered(group_plan(nodes=3, tp=8, pp=2))
    assert "8 x pipeline parallel 2 x data parallel 1 = 16" in err.value.message and "3 nodes" in err.value.message


def test_a_rank_outside_the_group_and_a_missing_leader() -> None:
    with pytest.raises(AimError, match="rank 2 is not in a group of 2 nodes"):
        rendered(group_plan(), 2)
    with pytest.raises(AimError) as err:
        rendered(group_plan(leader=None))
    assert "AIM_LEADER_ADDRESS" in err.value.hint


def test_a_flag_the_installed_version_lacks_fails_on_every_rank() -> None:
    p = group_plan(engine_version="0.31.0")
    for r in (0, 1):
        with pytest.raises(AimError) as err:
            rendered(p, r, AIM_ENGINE_ARGS='{"--grpc-port": "9000"}')
        assert "'--grpc-port' is not a vllm 0.31.0 flag" in err.value.message


# ---------------------------------------------------------------- `aim-engine plan` text
def test_plan_text_shows_the_group_and_every_rank_s_command() -> None:
    from aim_engine.commands.plan import render_text

    p = group_plan(rank=0)
    ranks = [rendered(p, r, AIM_MULTINODE_BACKEND="ray").public_dict() for r in (0, 1)]
    data = {"hardware": {"devices": [{"memory_bytes": 192 << 30}], "gpu_count": 8, "gpu_model": "MI300X",
                         "gfx": "gfx942", "source": "test"},
            "plan": {**p.to_dict(), "rejected": []}, "launch": ranks[0], "ranks": ranks}
    out = io.StringIO()
    render_text(data, out)
    text = out.getvalue()
    assert "TP 8 × PP 2 × DP 1 = 16 GPU(s) over 2 nodes" in text
    assert "group:     2 nodes × 8 GPU(s), from AIM_*, leader 10.0.0.1, this node is rank 0 (leader)" in text
    assert "backend:   ray — AIM_MULTINODE_BACKEND=ray" in text
    assert "  before:  ray start --head --port=6379" in text
    assert "rank 1 (worker, no API, nothing listens on the engine port):" in text
    assert "  command: ray start --address=10.0.0.1:6379" in text
    assert "VLLM_HOST_IP (its own)" in text          # the worker's address is its own, not the leader's


def test_cpu_pipeline_stages_are_not_eager_but_cpu_tensor_parallel_is() -> None:
    # vLLM 0.32's CPU build crashes on the first request with pp > 1 and --enforce-eager
    # (twonode findings); tensor parallel over the nodes stays eager, as one node's CPU plan.
    pipeline = rendered(group_plan(target="cpu", tp=1, pp=2), 1)
    assert "--enforce-eager" not in pipeline.args and "--no-enforce-eager" in pipeline.args
    tensor = rendered(group_plan(target="cpu", tp=2, pp=1), 1)
    assert "--enforce-eager" in tensor.args
    gpu = rendered(group_plan(tp=8, pp=2, args={"--enforce-eager": "true"}), 1)
    assert "--enforce-eager" in gpu.args           # only the CPU build needs it


def test_plan_text_lists_the_planner_s_warnings_and_group_rejections() -> None:
    from aim_engine.commands.plan import render_text
    from aim_engine.planner.plan import Rejection

    p = dataclasses.replace(group_plan(), warnings=("the model fits 1 node of the 2",),
                            rejected=(Rejection("r-405b", "vllm", 8, "too small", nodes=4),))
    ranks = [rendered(p, r).public_dict() for r in (0, 1)]
    data = {"hardware": {"devices": [{"memory_bytes": 192 << 30}], "gpu_count": 8, "gpu_model": "MI300X",
                         "gfx": "gfx942", "source": "test"},
            "plan": p.to_dict(), "launch": ranks[0], "ranks": ranks}
    out = io.StringIO()
    render_text(data, out)
    assert "WARNING:   the model fits 1 node of the 2" in out.getvalue()
    assert "  - r-405b [vllm 4x8 GPU]: too small" in out.getvalue()
