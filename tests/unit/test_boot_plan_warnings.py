"""A plan's warnings (e.g. a group larger than the model needs) reach the boot's log and /status,
not only `aim-engine plan`: an operator reading the pod's log or status must see them."""

from __future__ import annotations

import json

from aim_engine.boot import Boot
from aim_engine.settings import Settings


def test_a_plan_warning_reaches_the_boot_log_and_status(tmp_path, capsys):
    env = {"AIM_MODEL_ID": "meta-llama/Llama-3.1-8B-Instruct", "AIM_GPU_MODEL": "MI300X", "AIM_GPU_COUNT": "8",
           "AIM_NODE_COUNT": "2", "AIM_NODE_RANK": "0", "AIM_LEADER_ADDRESS": "127.0.0.1",
           "AIM_NODE_ADDRESS": "127.0.0.1", "AIM_OFFLINE": "1", "AIM_CACHE_PATH": str(tmp_path / "cache"),
           "AIM_LOG_FORMAT": "json"}
    (tmp_path / "state").mkdir()
    settings = Settings.from_env(env)
    from aim_engine.logs import configure_from

    configure_from(settings)
    boot = Boot(settings, state_dir=tmp_path / "state")
    hardware = boot.detect()
    boot.engines = None      # plan for a machine that has vLLM (none is installed in this test's env)
    plan = boot.select(hardware)

    assert plan.nodes == 2 and plan.warnings, plan.reasons
    status = json.loads((tmp_path / "state" / "state.json").read_text())
    assert list(plan.warnings) == [w for w in status["warnings"] if w in plan.warnings]
    out = capsys.readouterr()
    logged = [json.loads(line) for line in (out.err + out.out).splitlines() if line.startswith("{")]
    assert any(e.get("event") == "plan warning" and e.get("warning") == plan.warnings[0] for e in logged), logged
