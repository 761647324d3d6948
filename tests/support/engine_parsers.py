"""Feed argv to the REAL vLLM and SGLang parsers, in their cached environments.

Building vLLM's parser means importing vLLM: 15-25 s of CPU. So each (engine, environment) gets
ONE worker process per test process (tests/support/engine_parser_worker.py, run by the engine
venv's own interpreter, so the agent's environment never imports an engine): started on first
use, it builds the parser once and answers every later batch, until the test process ends
(`POOL.close`, from atexit and from pytest_unconfigure in tests/conftest.py; a test process that
is killed cannot close them, but then each worker reads end-of-file on its channel and exits).

Requests and answers travel on a private socket (the engines print to stdout/stderr while
importing and parsing); their output goes to an unlinked temporary file (nothing to clean up,
even after a kill) whose tail explains a worker that died or hung. Such a worker is killed and
forgotten: the next call starts a fresh one.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Sequence

from tests.support.engine_parser_worker import HEADER, encode

WORKER = Path(__file__).with_name("engine_parser_worker.py")

# What the engine needs to build its parser on a machine without a GPU.
ENGINE_ENV = {"vllm": {"VLLM_TARGET_DEVICE": "cpu"}, "sglang": {}}
LOG_TAIL = 4000          # characters of a failed worker's output quoted in the error


@dataclass(frozen=True)
class Parsed:
    """The real parser's verdict on one argv: accepted with these values, or the error."""

    ok: bool
    values: dict[str, Any] = field(default_factory=dict)
    error: str = ""


class WorkerFailed(RuntimeError):
    """A parser worker died or hung (its output's tail is in the message), or could not answer."""


@dataclass
class Worker:
    """One running parser process and our end of its channel."""

    engine: str
    venv: Path
    process: subprocess.Popen
    channel: socket.socket
    log: BinaryIO      # its stdout and stderr: an unlinked file, gone with the last process holding it

    def tail(self) -> str:
        fd = self.log.fileno()
        size = os.fstat(fd).st_size
        start = max(size - 4 * LOG_TAIL, 0)    # pread: the worker shares this file's offset
        return os.pread(fd, size - start, start).decode("utf-8", errors="replace")[-LOG_TAIL:]

    def exchange(self, request: dict, timeout: float) -> Any:
        """Send one request and wait for its answer, for at most `timeout` seconds in all."""
        import json

        deadline = time.monotonic() + timeout
        self.channel.settimeout(timeout)
        self.channel.sendall(encode(request))
        (size,) = HEADER.unpack(self._receive(HEADER.size, deadline))
        return json.loads(self._receive(size, deadline).decode("utf-8"))

    def _receive(self, size: int, deadline: float) -> bytes:
        chunks, missing = [], size
        while missing:
            self.channel.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = self.channel.recv(min(missing, 1 << 20))
            if not chunk:
                raise EOFError("the worker closed its channel")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def failure(self, exc: BaseException, timeout: float) -> WorkerFailed:
        """Why this worker failed, with its output's tail; it is ended (it may be hung) and cleaned up."""
        if isinstance(exc, TimeoutError):
            why = f"did not answer within {timeout:g} s (killed)"
        else:
            why = f"failed ({type(exc).__name__}: {exc}) and was killed"
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=1)    # a dying worker: let it finish, so its exit code is known
                why = f"exited with {self.process.returncode}"
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:
            why = f"exited with {self.process.returncode}"
        tail = self.tail()
        self.channel.close()
        self.log.close()
        return WorkerFailed(f"{self.engine} parser worker ({self.venv}, pid {self.process.pid}) {why}; "
                            f"its output ends:\n{tail}")

    def stop(self) -> None:
        """End the worker and reap it. Killed, not asked: it holds nothing worth a clean exit, and
        tearing down an interpreter that imported vLLM costs about 2 s of CPU."""
        self.channel.close()
        self.process.kill()
        self.process.wait()
        self.log.close()


def start_worker(engine: str, venv: Path, script: Path = WORKER) -> Worker:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "AIM_"))}
    env.update(ENGINE_ENV[engine])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    ours, theirs = socket.socketpair()
    log = tempfile.TemporaryFile(prefix=f"aim-parse-{engine}-")
    try:
        process = subprocess.Popen(
            [str(venv / "bin" / "python"), str(script), engine, str(theirs.fileno())],
            env=env, cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(theirs.fileno(),),
        )
    except BaseException:
        ours.close()
        log.close()
        raise
    finally:
        theirs.close()     # only the worker holds its end: our exit (even a kill) is its EOF
    return Worker(engine, venv, process, ours, log)


class ParserPool:
    """The running workers of this process, one per (engine, environment)."""

    def __init__(self, script: Path = WORKER) -> None:
        self.script = script
        self._workers: dict[tuple[str, str], Worker] = {}
        self._lock = threading.Lock()

    def parse(self, engine: str, venv: Path, argvs: Sequence[Sequence[str]], checks: Sequence[str] = (),
              timeout: float = 600) -> list[Parsed]:
        if not argvs:
            return []
        request = {"argvs": [list(a) for a in argvs], "checks": list(checks)}
        key = (engine, str(Path(venv).resolve()))
        with self._lock:
            if key not in self._workers:
                self._workers[key] = start_worker(engine, Path(venv), self.script)
            worker = self._workers[key]
            try:
                raw = worker.exchange(request, timeout)
            except (OSError, EOFError, ValueError) as exc:   # a timeout is an OSError too
                del self._workers[key]
                raise worker.failure(exc, timeout) from exc
        if isinstance(raw, dict) and "error" in raw:
            raise WorkerFailed(f"{engine} parser worker ({venv}) could not answer the batch:\n{raw['error']}")
        if not isinstance(raw, list) or len(raw) != len(argvs):
            raise WorkerFailed(f"{engine} parser worker ({venv}) answered {len(argvs)} argv with {raw!r:.300}")
        return [Parsed(ok=r["ok"], values=r.get("values", {}), error=r.get("error", "")) for r in raw]

    def pids(self) -> dict[tuple[str, str], int]:
        return {k: w.process.pid for k, w in self._workers.items()}

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.stop()


POOL = ParserPool()
atexit.register(POOL.close)


def parse_batch(engine: str, venv: Path, argvs: Sequence[Sequence[str]], timeout: float = 600,
                checks: Sequence[str] = ()) -> list[Parsed]:
    """Parse each argv (engine arguments, without the command) with `engine`'s real parser in
    `venv`, in this process's worker for them; `checks` (engine_parser_checks.py) check more."""
    return POOL.parse(engine, venv, argvs, checks, timeout)


def parse_one(engine: str, venv: Path, argv: Sequence[str]) -> Parsed:
    return parse_batch(engine, venv, [argv])[0]
