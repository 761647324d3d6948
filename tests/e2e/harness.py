"""Driving `aim-engine serve` as a real process: ports, probes, process trees, a fake engine.

Used by tests/e2e (the real vLLM CPU build), tests/integration/test_serve*.py (a fake engine
binary, so the agent's own behaviour is tested in seconds) and tests/benchmarks/bench_serve.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port that was free a moment ago (the agent binds it itself, so it cannot be port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, payload: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON or text) of a GET (or a POST with `payload`); (0, error) when nothing answers."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body, code = response.read(), response.status
    except urllib.error.HTTPError as exc:
        body, code = exc.read(), exc.code
    except (OSError, ValueError) as exc:
        return 0, str(exc)
    try:
        return code, json.loads(body)
    except ValueError:
        return code, body.decode(errors="replace")


def pid_running(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def base_env(extra: Mapping[str, str] | None = None, path_prefix: list[Path] | None = None) -> dict[str, str]:
    """The environment of a test agent: ours without AIM_*/HF_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIM_", "HF_", "HUGGING_FACE", "VLLM_")) or k.startswith("AIM_TEST_")}
    env["AIM_LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    if path_prefix:
        env["PATH"] = os.pathsep.join([*(str(p) for p in path_prefix), env.get("PATH", os.defpath)])
    env.update(extra or {})
    return env


@dataclass
class Agent:
    """One `aim-engine serve` process and its ports."""

    proc: subprocess.Popen[bytes]
    port: int
    health_port: int
    log_path: Path
    seen_phases: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def probe(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        return http_json(f"http://127.0.0.1:{self.health_port}{path}", timeout=timeout)

    def engine(self, path: str, payload: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        return http_json(f"http://127.0.0.1:{self.port}{path}", payload, timeout=timeout)

    def status(self) -> dict[str, Any] | None:
        code, body = self.probe("/status")
        if code == 200 and isinstance(body, dict):
            if not self.seen_phases or self.seen_phases[-1] != body.get("phase"):
                self.seen_phases.append(body.get("phase"))
            return body
        return None

    def wait_phase(self, *phases: str, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode} before phase {phases}:\n{self.log()}")
            status = self.status()
            if status and status.get("phase") == "failed" and "failed" not in phases:
                raise AssertionError(f"boot failed while waiting for {phases}: {status.get('error')}")
            return status if status and status.get("phase") in phases else None

        return wait_until(check, timeout, 0.1, f"phase {phases}")

    def wait_listening(self, timeout: float = 10.0) -> float:
        """Seconds from process start until the probes answered (they must, within a second)."""
        started = time.monotonic()
        wait_until(lambda: self.probe("/health/live", timeout=1)[0] == 200, timeout, 0.02, "the probes to answer")
        return time.monotonic() - started

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill_tree(self) -> None:
        """Last-resort cleanup (a test failed midway): kill the agent/engine and everything under it."""
        if self.proc.poll() is not None:
            return
        pids = descendants(self.pid) | {self.pid}
        status = None
        try:
            status = self.status()
        except Exception:
            pass
        probe_pid = ((status or {}).get("probe") or {}).get("pid")
        if probe_pid:
            pids.add(int(probe_pid))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)


def start_agent(tmp: Path, env: Mapping[str, str], args: list[str] | None = None,
                python: str | None = None) -> Agent:
    """Start `python -m aim_engine serve` with `env` (see `base_env`) on fresh ports; `python`
    (default: this interpreter) picks the installation, e.g. a venv holding the built wheel."""
    env = dict(env)
    port = int(env.get("AIM_PORT") or free_port())
    health_port = int(env.get("AIM_HEALTH_PORT") or free_port())
    env["AIM_PORT"], env["AIM_HEALTH_PORT"] = str(port), str(health_port)
    env.setdefault("AIM_CACHE_PATH", str(tmp / "cache"))
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"agent-{health_port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([python or sys.executable, "-m", "aim_engine", "serve", *(args or [])], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp)
    return Agent(proc, port, health_port, log_path)


# --- a fake engine ------------------------------------------------------------------------------

FAKE_ENGINE = textwrap.dedent('''\
    #!{python}
    """A stand-in for `vllm serve` (tests only): records how it was started, then behaves as
    FAKE_ENGINE_MODE says: `serve` (an OpenAI-style /v1/models after FAKE_ENGINE_DELAY seconds,
    exit 0 on SIGTERM), `exit:N` (exit N after the delay) or `record` (exit 0 at once)."""
    import json, os, signal, sys, time
    record = os.environ.get("FAKE_ENGINE_RECORD")
    if record:
        with open(record, "w") as fh:
            json.dump({{"pid": os.getpid(), "argv": sys.argv, "started": time.time(),
                       "env": dict(os.environ)}}, fh)
    mode = os.environ.get("FAKE_ENGINE_MODE", "record")
    if mode == "record":
        sys.exit(0)
    time.sleep(float(os.environ.get("FAKE_ENGINE_DELAY", "0")))
    if os.environ.get("FAKE_ENGINE_COMPILE"):
        # Like vLLM 0.32: an index file under VLLM_CACHE_ROOT, read back with ast.literal_eval
        # without a guard (a corrupt one crashes the engine), written with a plain open("w").
        import ast
        root = os.environ.get("VLLM_CACHE_ROOT") or os.path.expanduser("~/.cache/vllm")
        index = os.path.join(root, "torch_compile_cache", "vllm_compile_cache.py")
        if os.path.exists(index):
            ast.literal_eval(open(index).read())
            outcome = "hit"
        else:
            os.makedirs(os.path.dirname(index), exist_ok=True)
            time.sleep(float(os.environ.get("FAKE_ENGINE_COMPILE_S", "0")))
            with open(index, "w") as fh:
                fh.write(repr({{"graph": os.getpid()}}))
            outcome = "compiled"
        with open(os.environ["FAKE_ENGINE_COMPILE"], "a") as fh:
            fh.write(outcome + "\\n")
    if mode.startswith("exit:"):
        print("fake engine: failing on purpose", file=sys.stderr)
        sys.exit(int(mode.split(":", 1)[1]))
    from http.server import BaseHTTPRequestHandler, HTTPServer
    args = sys.argv[1:]
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    if "--port" not in args:      # a headless rank of a multi-node group: no API, runs until stopped
        while True:
            time.sleep(3600)
    port = int(args[args.index("--port") + 1])
    name = args[args.index("--served-model-name") + 1]
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({{"object": "list", "data": [{{"id": name, "object": "model"}}]}}).encode()
            self.send_response(200 if self.path in ("/v1/models", "/health") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


def fake_engine_dir(directory: Path, name: str = "vllm", version: str | None = "0.32.0") -> Path:
    """A bin/ directory holding an executable fake `vllm`; put it first on PATH. Its prefix
    (`directory/..`) is laid out as pip leaves an install, with a `vllm-<version>.dist-info`
    (none when `version` is None), so the agent's inventory finds that version."""
    from tests.support.engine_installs import PY, make_prefix

    if directory.name != "bin":
        raise ValueError(f"fake_engine_dir wants a .../bin directory, got {directory}")
    make_prefix(directory.parent, {name: version} if version else {})
    script = directory / name
    script.write_text(FAKE_ENGINE.format(python=directory / PY))
    script.chmod(0o755)
    return directory


def fake_engine_prefix(directory: Path, versions: Mapping[str, str] | None = None) -> Path:
    """A fake engine installation (tests/support/engine_installs.py): `bin/vllm` is the fake engine,
    run by the prefix's interpreter, beside the dist-info of `versions` (default: the vLLM CPU
    build's), so the agent reads versions as it does from a real engine environment. Returns the
    `bin/` directory to put first on PATH."""
    from tests.support.engine_installs import PY, make_prefix

    bin_dir = make_prefix(directory, dict(versions or {"vllm": "0.32.0", "torch": "2.13.0+cpu"}))
    script = bin_dir / "vllm"
    script.write_text(FAKE_ENGINE.format(python=bin_dir / PY))
    script.chmod(0o755)
    return bin_dir


def build_demo_model(python: Path, out: Path) -> Path:
    """The tiny demo Llama (scripts/make_demo_model.py, run by the engine venv's python)."""
    subprocess.run([str(python), str(REPO / "scripts/make_demo_model.py"), str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    return out
