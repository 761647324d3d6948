"""hardware.group.resolve: the topology from explicit settings, LeaderWorkerSet or KServe,
validated together; one node with nothing set is exactly SINGLE; network defaults on loopback."""

from __future__ import annotations

import pytest

from aim_engine.errors import SettingsError
from aim_engine.hardware import detect, network
from aim_engine.hardware.group import SINGLE, resolve
from aim_engine.settings import Settings


def group(**env: str):
    return resolve(Settings.from_env(env))


def problems(**env: str) -> str:
    with pytest.raises(SettingsError) as info:
        group(**env)
    assert info.value.exit_code == 2
    return str(info.value)


def test_nothing_set_is_single_and_touches_no_network():
    class NoNetwork:
        def __getattr__(self, name):
            raise AssertionError(f"one node must not look at the network ({name})")

    assert resolve(Settings.from_env({}), network=NoNetwork()) is SINGLE


def test_a_group_of_one_is_single():
    assert group(AIM_NODE_COUNT="1") is SINGLE
    assert group(LWS_GROUP_SIZE="1", LWS_WORKER_INDEX="0", LWS_LEADER_ADDRESS="lead") is SINGLE


def test_explicit_worker():
    g = group(AIM_NODE_COUNT="2", AIM_NODE_RANK="1", AIM_LEADER_ADDRESS="127.0.0.1", AIM_DIST_PORT="29600",
              AIM_PEER_TIMEOUT="12", AIM_HEALTH_PORT="9001")
    assert (g.nodes, g.rank, g.role, g.source, g.leader_address) == (2, 1, "worker", "AIM_*", "127.0.0.1")
    assert (g.dist_port, g.peer_timeout, g.leader_probe_port, g.backend) == (29600, 12.0, 9001, "native")


def test_leader_probe_port_can_differ_for_two_agents_on_one_host():
    g = group(AIM_NODE_COUNT="2", AIM_NODE_RANK="1", AIM_LEADER_ADDRESS="127.0.0.1", AIM_HEALTH_PORT="9011",
              AIM_LEADER_HEALTH_PORT="9001")
    assert g.leader_probe_port == 9001


def test_leaderworkerset():
    g = group(LWS_GROUP_SIZE="4", LWS_WORKER_INDEX="3", LWS_LEADER_ADDRESS="llama-0.llama.default")
    assert (g.nodes, g.rank, g.leader_address, g.source, g.role) == (4, 3, "llama-0.llama.default",
                                                                     "LeaderWorkerSet", "worker")


def test_leaderworkerset_leader():
    g = group(LWS_GROUP_SIZE="2", LWS_WORKER_INDEX="0", LWS_LEADER_ADDRESS="127.0.0.1")
    assert g.is_leader and g.role == "leader" and g.node_address == "127.0.0.1"


def test_kserve_worker_gets_the_head_service_and_a_rank_from_the_leader():
    g = group(RAY_NODE_COUNT="3", HEAD_SVC="qwen-head-1", POD_NAMESPACE="team", POD_IP="10.1.2.3",
              TENSOR_PARALLEL_SIZE="8", PIPELINE_PARALLEL_SIZE="3")
    assert g.leader_address == "qwen-head-1.team.svc.cluster.local"
    assert (g.role, g.rank_from_leader, g.backend, g.source) == ("worker", True, "ray", "KServe")
    assert (g.requested_tensor_parallel, g.requested_pipeline_parallel, g.node_address) == (8, 3, "10.1.2.3")


def test_kserve_head_is_rank_zero_and_leads_at_its_own_address():
    g = group(RAY_NODE_COUNT="2", POD_IP="10.1.2.4", TENSOR_PARALLEL_SIZE="1", PIPELINE_PARALLEL_SIZE="2")
    assert (g.rank, g.role, g.leader_address, g.backend) == (0, "leader", "10.1.2.4", "ray")


def test_explicit_backend_and_settings_win_where_they_agree():
    g = group(LWS_GROUP_SIZE="2", LWS_WORKER_INDEX="1", LWS_LEADER_ADDRESS="lead", AIM_LEADER_ADDRESS="127.0.0.1",
              AIM_NODE_COUNT="2", AIM_MULTINODE_BACKEND="ray")
    assert (g.leader_address, g.backend, g.backend_setting) == ("127.0.0.1", "ray", "ray")


@pytest.mark.parametrize("env, fragments", [
    ({"AIM_NODE_COUNT": "2", "AIM_NODE_RANK": "2", "AIM_LEADER_ADDRESS": "h"},
     ["AIM_NODE_RANK=2 is not below AIM_NODE_COUNT=2", "0 (the leader) to 1"]),
    ({"AIM_NODE_RANK": "1", "AIM_LEADER_ADDRESS": "h"}, ["AIM_NODE_RANK=1 is not below AIM_NODE_COUNT=1"]),
    ({"AIM_NODE_COUNT": "2", "AIM_NODE_RANK": "1"}, ["AIM_LEADER_ADDRESS is not set", "worker rank 1 of 2"]),
    ({"LWS_GROUP_SIZE": "0", "LWS_WORKER_INDEX": "0", "LWS_LEADER_ADDRESS": "h"}, ["LWS_GROUP_SIZE='0'", "from 1 to 64"]),
    ({"LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "2", "LWS_LEADER_ADDRESS": "h"},
     ["LWS_WORKER_INDEX=2 is not below LWS_GROUP_SIZE=2"]),
    ({"LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1"}, ["LWS_LEADER_ADDRESS is not set"]),
    ({"LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1", "LWS_LEADER_ADDRESS": "h", "RAY_NODE_COUNT": "2"},
     ["both LeaderWorkerSet (LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX) and KServe (RAY_NODE_COUNT)"]),
    ({"LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1", "LWS_LEADER_ADDRESS": "h", "AIM_NODE_COUNT": "4"},
     ["AIM_NODE_COUNT=4 contradicts LWS_GROUP_SIZE=2"]),
    ({"LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "1", "LWS_LEADER_ADDRESS": "h", "AIM_NODE_RANK": "0"},
     ["AIM_NODE_RANK=0 contradicts LWS_WORKER_INDEX=1"]),
    ({"LWS_GROUP_SIZE": "two", "LWS_WORKER_INDEX": "-1", "LWS_LEADER_ADDRESS": "h"},
     ["LWS_GROUP_SIZE='two'", "LWS_WORKER_INDEX='-1'"]),
    ({"HEAD_SVC": "head"}, ["HEAD_SVC is set but RAY_NODE_COUNT is not"]),
    ({"RAY_NODE_COUNT": "2", "HEAD_SVC": "head", "AIM_MULTINODE_BACKEND": "native"},
     ["AIM_MULTINODE_BACKEND=native cannot run under KServe"]),
    ({"AIM_NODE_COUNT": "2", "AIM_NODE_RANK": "1", "AIM_LEADER_ADDRESS": "a_b!c"},
     ["AIM_LEADER_ADDRESS='a_b!c' is not a host name or an IP address"]),
    ({"AIM_NODE_COUNT": "2", "AIM_LEADER_ADDRESS": "127.0.0.1", "AIM_NETWORK_INTERFACE": "nosuch0"},
     ["AIM_NETWORK_INTERFACE='nosuch0' is not a network interface here", "lo"]),
])
def test_inconsistent_topologies_name_the_variables_and_values(env, fragments):
    text = problems(**env)
    for fragment in fragments:
        assert fragment in text


def test_every_problem_at_once():
    text = problems(LWS_GROUP_SIZE="2", LWS_WORKER_INDEX="5", AIM_NODE_COUNT="3")
    assert "AIM_NODE_COUNT=3 contradicts LWS_GROUP_SIZE=2" in text and "LWS_LEADER_ADDRESS is not set" in text


def test_node_address_precedence():
    base = {"AIM_NODE_COUNT": "2", "AIM_NODE_RANK": "1", "AIM_LEADER_ADDRESS": "127.0.0.1"}
    assert group(**base, AIM_NODE_ADDRESS="10.9.9.9", POD_IP="10.8.8.8").node_address == "10.9.9.9"
    assert group(**base, POD_IP="10.8.8.8").node_address == "10.8.8.8"
    routed = group(**base)
    assert routed.node_address == "127.0.0.1" and routed.interface == "lo"
    assert any("route to the leader" in n for n in routed.notes)


def test_interface_override():
    g = group(AIM_NODE_COUNT="2", AIM_NODE_RANK="1", AIM_LEADER_ADDRESS="127.0.0.1", AIM_NETWORK_INTERFACE="lo")
    assert g.interface == "lo"


def test_network_helpers_on_loopback():
    assert network.route_source("127.0.0.2") == "127.0.0.1"
    assert network.route_source("no-such-host.invalid") is None
    assert network.interface_of("127.0.0.1") == "lo"
    assert "lo" in network.interfaces()
    assert network.ipv4_of("lo") == "127.0.0.1"


def test_detect_carries_the_group(tmp_path):
    hardware = detect(Settings.from_env({"AIM_SYSFS_ROOT": str(tmp_path), "AIM_NODE_COUNT": "2",
                                         "AIM_LEADER_ADDRESS": "127.0.0.1"}), {}, use_amdsmi=False)
    assert hardware.group.nodes == 2 and hardware.group.role == "leader"
    assert any(n.startswith("group: leader rank 0 of 2") for n in hardware.notes)
    assert detect(Settings.from_env({"AIM_SYSFS_ROOT": str(tmp_path)}), {}, use_amdsmi=False).group is SINGLE


def test_detect_refuses_a_bad_topology_before_probing(tmp_path):
    with pytest.raises(SettingsError, match="AIM_NODE_RANK=3 is not below AIM_NODE_COUNT=2"):
        detect(Settings.from_env({"AIM_SYSFS_ROOT": str(tmp_path / "missing"), "AIM_NODE_COUNT": "2",
                                  "AIM_NODE_RANK": "3", "AIM_LEADER_ADDRESS": "h"}), {}, use_amdsmi=False)
