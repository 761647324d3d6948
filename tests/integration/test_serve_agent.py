"""`aim-engine serve` through the real entrypoint, with a fake engine binary on PATH.

Everything here is real except the engine: real processes, the real probe process on a real
port, the real huggingface_hub client against the local hub server, real signals. The fake
`vllm` (tests/e2e/harness.py) records its PID, argv and environment, so the exec itself is
checked: same PID as the agent, the rendered flags, HF_HUB_OFFLINE. The real vLLM runs in
tests/e2e/test_serve_vllm.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import (Agent, base_env, fake_engine_dir, free_port, pid_running, start_agent,
                               wait_until)
from tests.support import sysfs_tree
from tests.support.hf_server import Fault, HubServer
from tests.support.tiny_repo import make_repo

REPO_ID = "aim-test/tiny"


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo") / "tiny", shards=2, shard_bytes=200_000).path


@pytest.fixture(scope="module")
def hub(tiny_repo: Path):
    with HubServer() as server:
        server.add_repo(REPO_ID, tiny_repo)
        yield server


def _env(tmp_path: Path, fake_bin: Path | None, **extra: str) -> dict[str, str]:
    record = tmp_path / "engine.json"
    env = base_env({"FAKE_ENGINE_RECORD": str(record), "AIM_FAIL_GRACE": "60", **extra},
                   path_prefix=[fake_bin] if fake_bin else None)
    if fake_bin is None:  # no engine anywhere on PATH: only the system directories
        env["PATH"] = "/usr/bin:/bin"
    return env


def _record(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "engine.json").read_text())


def _events(agent: Agent) -> list[dict]:
    return [json.loads(line) for line in agent.log_path.read_text().splitlines() if line.startswith("{")]


def _probe_pid(status: dict) -> int:
    return int(status["probe"]["pid"])


# --- the happy path ------------------------------------------------------------------------------

def test_boot_execs_the_engine_in_place_and_probes_follow_it(tmp_path, fake_bin, hub, agents):
    token = "hf_" + "s" * 30
    hub.add_token(token, grant=[REPO_ID])
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=REPO_ID, HF_ENDPOINT=hub.url,
               FAKE_ENGINE_MODE="serve", FAKE_ENGINE_DELAY="1.5", HF_TOKEN=token)
    agent = start_agent(tmp_path, env)
    agents.append(agent)

    # Probes answer from the first second, before the engine exists.
    first = wait_until(lambda: agent.probe("/health/live")[0] == 200, 10, 0.05, "live probe")
    assert first
    starting = agent.wait_phase("engine_starting", timeout=60)
    assert agent.probe("/health/ready")[0] == 503
    assert agent.probe("/health/startup")[0] == 503
    ready = agent.wait_phase("ready", timeout=30)
    code, body = agent.probe("/health/ready")
    assert (code, body["model"]) == (200, REPO_ID)
    assert agent.probe("/health/startup")[0] == 200

    # The engine replaced the agent: same PID, our flags, a warm cache and no token.
    record = _record(tmp_path)
    assert record["pid"] == agent.pid
    argv = record["argv"]
    assert argv[1] == "serve" and Path(argv[2]).is_dir() and "snapshots" in argv[2]
    assert argv[argv.index("--port") + 1] == str(agent.port)
    assert argv[argv.index("--served-model-name") + 1] == REPO_ID
    assert record["env"]["HF_HUB_OFFLINE"] == "1"
    assert record["env"]["HF_HOME"] == str(tmp_path / "cache" / "huggingface")
    assert "HF_TOKEN" not in record["env"]

    # /status tells the whole story, secrets masked.
    names = [p["name"] for p in ready["phases"]]
    assert names == ["starting", "detecting", "selecting", "downloading", "rendering", "engine_starting"]
    assert set(ready["timings"]) >= {"detecting", "selecting", "downloading", "rendering", "to_ready"}
    assert ready["recipe"]["id"] and ready["recipe"]["why"]
    assert ready["plan"]["engine_version"] == "0.32.0" and ready["engines"]["installed"]["vllm"]["version"] == "0.32.0"
    assert ready["hardware"]["cpu"]["cores"] >= 1
    assert ready["download"]["phase"] == "complete" and ready["download"]["bytes_total"] > 0
    assert ready["engine"]["argv"][1:3] == ["serve", argv[2]]
    assert "s" * 30 not in json.dumps(ready) and ready["settings"]["hf_token"] == "***"
    assert starting["engine"]["served_model_name"] == REPO_ID

    # The log: every phase once, and the final line names recipe, engine and argv.
    events = [json.loads(line) for line in agent.log_path.read_text().splitlines() if line.startswith("{")]
    done = [e["phase"] for e in events if e.get("event") == "phase done"]
    assert done == ["detecting", "selecting", "downloading", "rendering"]
    last = [e for e in events if e.get("event") == "exec engine"]
    assert len(last) == 1 and last[0]["engine"] == "vllm" and last[0]["recipe"] == ready["recipe"]["id"]
    assert "s" * 30 not in agent.log_path.read_text()

    # SIGTERM belongs to the engine now: it exits 0, and the probe process follows it.
    probe_pid = _probe_pid(ready)
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    wait_until(lambda: not pid_running(probe_pid), 10, 0.1, "probe process to exit")


def test_second_boot_of_a_warm_cache_makes_no_hub_requests(tmp_path, fake_bin, hub, agents):
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=REPO_ID, HF_ENDPOINT=hub.url, FAKE_ENGINE_MODE="record")
    first = start_agent(tmp_path, env)
    agents.append(first)
    assert first.wait(60) == 0, first.log()
    hub.reset_stats()
    second = start_agent(tmp_path, env)
    agents.append(second)
    assert second.wait(60) == 0, second.log()
    assert hub.stats()["requests"] == 0
    assert _record(tmp_path)["env"]["HF_HUB_OFFLINE"] == "1"


def test_local_directory_skips_the_cache(tmp_path, fake_bin, tiny_repo, agents):
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=str(tiny_repo), AIM_SERVED_MODEL_NAME="tiny",
               FAKE_ENGINE_MODE="record", HF_ENDPOINT="http://127.0.0.1:9")  # no hub at all
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    assert agent.wait(60) == 0, agent.log()
    record = _record(tmp_path)
    assert record["argv"][2] == str(tiny_repo)
    assert record["env"]["HF_HUB_OFFLINE"] == "1"
    assert not (tmp_path / "cache" / "huggingface" / "hub").exists() or \
        not any((tmp_path / "cache" / "huggingface" / "hub").iterdir())
    assert '"phase": "downloading"' not in agent.log_path.read_text()


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path, fake_bin, tiny_repo, aim_cli):
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=str(tiny_repo), FAKE_ENGINE_MODE="record")
    port = free_port()
    env["AIM_HEALTH_PORT"] = str(port)
    out = subprocess.run([*aim_cli, "serve", "--dry-run", "--json"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["plan"]["target"] == "cpu" and data["launch"]["argv"][1] == "serve"
    assert not (tmp_path / "engine.json").exists()          # the engine never ran
    text = subprocess.run([*aim_cli, "serve", "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "recipe:" in text.stdout and "command:" in text.stdout


# --- failures through the real entrypoint -------------------------------------------------------

def _expect_failure(agent: Agent, words: list[str], failed_phase: str, code: int | None = None) -> dict:
    """The boot fails: /status explains it while the process lingers; SIGTERM then ends it with
    the failure's exit code; stderr carries the same message."""
    status = agent.wait_phase("failed", timeout=90)
    error = status["error"]
    assert error["phase"] == failed_phase
    message = (error["message"] + " " + (error["hint"] or "")).lower()
    for word in words:
        assert word.lower() in message, (word, error)
    assert agent.probe("/health/ready")[0] == 503
    assert agent.probe("/health/ready")[1]["error"]["message"] == error["message"]
    assert agent.probe("/health/live")[0] == 200
    probe_pid = _probe_pid(status)
    agent.signal(signal.SIGTERM)                      # ends the grace period early
    rc = agent.wait(30)
    assert rc != 0 and (code is None or rc == code)
    assert "aim-engine: error:" in agent.log() and "Traceback" not in agent.log()
    wait_until(lambda: not pid_running(probe_pid), 10, 0.1, "probe process to exit")
    return status


def test_unknown_model(tmp_path, fake_bin, hub, agents):
    agent = start_agent(tmp_path, _env(tmp_path, fake_bin, AIM_MODEL_ID="nobody/nothing", HF_ENDPOINT=hub.url))
    agents.append(agent)
    _expect_failure(agent, ["nobody/nothing", "was not found on"], "selecting", code=1)


def test_no_fitting_recipe(tmp_path, fake_bin, agents):
    sysfs = sysfs_tree.of_model("MI210", 1).write(tmp_path / "sysfs")    # the memory its driver reports
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID="meta-llama/Llama-3.1-405B-Instruct", AIM_SYSFS_ROOT=str(sysfs))
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    _expect_failure(agent, ["does not fit"], "selecting", code=1)


def test_download_error(tmp_path, fake_bin, hub, agents):
    hub.add_fault(Fault(path="*.safetensors", method="GET", status=403))
    try:
        agent = start_agent(tmp_path, _env(tmp_path, fake_bin, AIM_MODEL_ID=REPO_ID, HF_ENDPOINT=hub.url))
        agents.append(agent)
        _expect_failure(agent, [REPO_ID, "HTTP 403"], "downloading", code=1)
    finally:
        hub.clear_faults()
    snapshots = list((tmp_path / "cache" / "huggingface" / "hub").rglob("*.safetensors"))
    assert all(p.stat().st_size > 0 for p in snapshots)   # nothing half-written is visible


def test_engine_binary_missing(tmp_path, tiny_repo, agents):
    """No engine anywhere on PATH: the boot stops once the plan is made, before any download."""
    agent = start_agent(tmp_path, _env(tmp_path, None, AIM_MODEL_ID=str(tiny_repo)))
    agents.append(agent)
    status = _expect_failure(agent, ["vLLM is not installed here", "found: no engine"], "selecting", code=1)
    assert status["engines"]["installed"] == {} and status["plan"]["engine_installed"] is False


def test_aim_engine_sglang_without_sglang_fails_before_any_download(tmp_path, fake_bin, hub, agents):
    """An image that carries vLLM only, asked for SGLang: an error at once naming the image flavour
    that has SGLang; the hub sees no request at all (the model is not even resolved)."""
    before = hub.stats()["requests"]
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=REPO_ID, HF_ENDPOINT=hub.url, AIM_ENGINE="sglang",
               AIM_GPU_MODEL="MI300X", AIM_IMAGE_FLAVOUR="rocm-vllm")
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    status = _expect_failure(agent, ["AIM_ENGINE=sglang", "SGLang is not installed in this image (flavour rocm-vllm)",
                                     "vllm 0.32.0", "rocm-sglang image flavour"], "selecting", code=1)
    assert status["engines"]["installed"]["vllm"]["version"] == "0.32.0"
    assert status["engines"]["flavour"] == "rocm-vllm"
    assert "download" not in status and not (tmp_path / "cache" / "huggingface").exists()
    assert hub.stats()["requests"] == before


@pytest.mark.parametrize("failure", ["binary-missing", "download-refused"])
def test_a_stop_the_moment_status_says_failed_exits_with_the_failure_code(failure, tmp_path, tiny_repo, fake_bin,
                                                                         hub, agents):
    """An operator (or `_expect_failure`) reads `failed` in /status and sends SIGTERM at once: the
    agent must already handle it, and still log and print the failure. CI caught the gap between
    the state write and the grace period's handler (exit -15 instead of 1); then a stop delivered
    to a download worker thread (a refused download leaves them alive) cut the message short.
    /status is polled as fast as it answers."""
    if failure == "binary-missing":
        env, words = _env(tmp_path, None, AIM_MODEL_ID=str(tiny_repo)), "not installed here"
    else:
        hub.add_fault(Fault(path="*.safetensors", method="GET", status=403))
        env, words = _env(tmp_path, fake_bin, AIM_MODEL_ID=REPO_ID, HF_ENDPOINT=hub.url), "HTTP 403"
    try:
        for attempt in range(3):
            agent = start_agent(tmp_path / f"a{attempt}", dict(env, AIM_CACHE_PATH=str(tmp_path / f"c{attempt}")))
            agents.append(agent)
            wait_until(lambda: (agent.status() or {}).get("phase") == "failed", 60, 0.002, "phase failed")
            agent.signal(signal.SIGTERM)
            assert agent.wait(30) == 1, agent.log()
            log = agent.log()
            assert f"aim-engine: error:" in log and words in log and '"boot failed"' in log, log
    finally:
        hub.clear_faults()


def test_engine_exit_code_propagates(tmp_path, fake_bin, tiny_repo, agents):
    """With no grace period the probe process leaves with the failed engine at once."""
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=str(tiny_repo), FAKE_ENGINE_MODE="exit:3",
               FAKE_ENGINE_DELAY="2", AIM_FAIL_GRACE="0")
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    status = agent.wait_phase("engine_starting", timeout=60)   # while the engine lives, /status says so
    assert status["engine"]["argv"][1] == "serve"
    assert agent.wait(60) == 3
    assert "failing on purpose" in agent.log()
    wait_until(lambda: not pid_running(_probe_pid(status)), 10, 0.1, "probe process to exit")


def test_engine_exit_before_ready_is_a_failed_boot_in_status(tmp_path, fake_bin, tiny_repo, agents):
    """The engine dies while loading: /status says failed, with its exit code and time, the
    probes all say not-ok, and the probe process leaves once AIM_FAIL_GRACE is over."""
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=str(tiny_repo), FAKE_ENGINE_MODE="exit:3",
               FAKE_ENGINE_DELAY="2", AIM_FAIL_GRACE="8")
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    starting = agent.wait_phase("engine_starting", timeout=60)
    failed = wait_until(lambda: (s := agent.status()) and s["phase"] == "failed" and s, 30, 0.1,
                        "/status to say failed")
    exit_ = failed["engine_exit"]
    assert (exit_["code"], exit_["signal"]) == (3, None)
    assert failed["started_at"] < exit_["at"] <= time.time()
    assert failed["error"]["kind"] == "engine_exited" and failed["error"]["phase"] == "engine_starting"
    assert "exited with code 3 before it was ready" in failed["error"]["message"]
    assert failed["agent_phase"] == "engine_starting" and failed["ready"] is False
    code, live = agent.probe("/health/live")
    assert code == 503 and live["engine_exit"]["code"] == 3
    assert agent.probe("/health/ready")[1]["error"]["kind"] == "engine_exited"
    assert agent.probe("/health/startup")[0] == 503
    assert agent.wait(60) == 3
    events = _events(agent)
    assert [(e["code"], e["phase"]) for e in events if e.get("event") == "engine exited"] == [(3, "failed")]
    wait_until(lambda: not pid_running(_probe_pid(starting)), 30, 0.1, "probe process to exit after the grace")


def test_bad_settings_exit_2_with_every_problem(tmp_path, aim_cli):
    env = base_env({"AIM_PORT": "eighty", "AIM_PRECISION": "fp7", "AIM_MODEL_ID": "x/y"})
    out = subprocess.run([*aim_cli, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "AIM_PORT='eighty'" in out.stderr and "AIM_PRECISION='fp7'" in out.stderr


def test_health_port_in_use_is_a_clear_error(tmp_path, fake_bin, tiny_repo):
    import socket

    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = _env(tmp_path, fake_bin, AIM_MODEL_ID=str(tiny_repo), AIM_HEALTH_PORT=str(port))
        agent = start_agent(tmp_path, env)
        assert agent.wait(30) == 1
    assert f"cannot listen for health probes on 0.0.0.0:{port}" in agent.log()


# --- signals before the exec --------------------------------------------------------------------

def test_sigterm_during_download_stops_promptly_and_leaves_the_cache_consistent(tmp_path, fake_bin, hub, tiny_repo,
                                                                                agents):
    hub.add_fault(Fault(path="*.safetensors", rate=20_000))   # 200 kB shards take ~10 s each
    try:
        env = _env(tmp_path, fake_bin, AIM_MODEL_ID=REPO_ID, HF_ENDPOINT=hub.url, AIM_LOCK_TIMEOUT="20")
        agent = start_agent(tmp_path, env)
        agents.append(agent)
        wait_until(lambda: ((agent.status() or {}).get("download") or {}).get("phase") == "downloading", 60, 0.1,
                   "the download to start")
        time.sleep(0.5)
        probe_pid = _probe_pid(agent.status())
        agent.signal(signal.SIGTERM)
        assert agent.wait(30) == 128 + signal.SIGTERM
        # Stopped by unwinding (threads told to stop, lock released), not by boot.py's watchdog,
        # which would log the same event with forced_after_s set.
        stops = [e for e in _events(agent) if e.get("event") == "boot stopped by signal"]
        assert len(stops) == 1, agent.log()
        assert stops[0].get("forced_after_s") is None, stops[0]
        assert stops[0]["phase"] == "downloading"
        wait_until(lambda: not pid_running(probe_pid), 10, 0.1, "probe process to exit")
    finally:
        hub.clear_faults()

    # Nothing half-written is visible in the snapshot: every file there is whole.
    hub_dir = tmp_path / "cache" / "huggingface" / "hub"
    for path in hub_dir.glob("models--aim-test--tiny/snapshots/*/**/*"):
        if path.is_file():
            source = tiny_repo / path.relative_to(next(p for p in path.parents if p.parent.name == "snapshots"))
            assert path.stat().st_size == source.stat().st_size, path

    # The lock is free and nothing looks complete: the next boot fetches the shards the stopped
    # one never finished (so it did stop mid-download), and runs.
    hub.reset_stats()
    env["FAKE_ENGINE_MODE"] = "record"
    again = start_agent(tmp_path, env)
    agents.append(again)
    assert again.wait(60) == 0, again.log()
    assert sum(hub.file_bytes(REPO_ID, shard) for shard in ("model-00001-of-00002.safetensors",
                                                            "model-00002-of-00002.safetensors")) > 0
    assert _record(tmp_path)["env"]["HF_HUB_OFFLINE"] == "1"


def _blocking_sysfs(root: Path) -> Path:
    """A sysfs tree whose first KFD node's properties file is a FIFO: reading it blocks, so
    detection hangs until a signal arrives (a real hang, no sleep injected into the agent)."""
    node = root / "sys/class/kfd/kfd/topology/nodes/0"
    node.mkdir(parents=True)
    os.mkfifo(node / "properties")
    return root


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_detection_stops_promptly(tmp_path, fake_bin, tiny_repo, agents, signum):
    env = _env(tmp_path, fake_bin, AIM_MODEL_ID=str(tiny_repo), AIM_SYSFS_ROOT=str(_blocking_sysfs(tmp_path / "sys")))
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    status = agent.wait_phase("detecting", timeout=30)
    time.sleep(0.3)
    agent.signal(signum)
    assert agent.wait(15) == 128 + signum
    wait_until(lambda: not pid_running(_probe_pid(status)), 10, 0.1, "probe process to exit")
    assert not (tmp_path / "engine.json").exists()


def test_an_installed_version_without_a_flag_list_is_checked_against_the_nearest_loudly(tmp_path, tiny_repo, agents):
    """vLLM 0.32.7 (no list of its own): argv is checked against 0.32.0's, and the log and /status
    say so; the boot goes on."""
    fake = fake_engine_dir(tmp_path / "engine" / "bin", version="0.32.7")
    env = _env(tmp_path, fake, AIM_MODEL_ID=str(tiny_repo), FAKE_ENGINE_MODE="exit:0", FAKE_ENGINE_DELAY="3")
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    status = agent.wait_phase("engine_starting", timeout=60)
    flags = status["engine"]["flags"]
    assert (flags["installed"], flags["version"], flags["basis"]) == ("0.32.7", "0.32.0", "nearest")
    assert status["plan"]["engine_version"] == "0.32.7"
    assert any("no flag list for the installed vllm 0.32.7" in w for w in status["warnings"]), status["warnings"]
    assert agent.wait(60) == 0
    warned = [e for e in _events(agent) if e.get("event") == "engine flag list is not the installed version's"]
    assert len(warned) == 1 and warned[0]["checked_against"] == "0.32.0", warned


def test_a_flag_the_installed_version_lacks_fails_before_the_download(tmp_path, hub, agents):
    """vLLM 0.31.0 installed, AIM_ENGINE_ARGS asks for 0.32's --grpc-port: an error naming the flag
    and the version, in `selecting`, with nothing downloaded."""
    shard = "model-00001-of-00002.safetensors"
    before = hub.file_requests(REPO_ID, shard)         # the hub is shared by this module's tests
    fake = fake_engine_dir(tmp_path / "engine" / "bin", version="0.31.0")
    env = _env(tmp_path, fake, AIM_MODEL_ID=REPO_ID, HF_ENDPOINT=hub.url, AIM_ENGINE_ARGS='{"--grpc-port": "9000"}')
    agent = start_agent(tmp_path, env)
    agents.append(agent)
    status = _expect_failure(agent, ["'--grpc-port' is not a vllm 0.31.0 flag"], "selecting", code=1)
    assert "download" not in status
    assert hub.file_requests(REPO_ID, shard) == before
