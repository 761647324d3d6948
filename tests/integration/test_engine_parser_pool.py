"""The real-parser workers of tests/support/engine_parsers.py: one process per (engine,
environment) answers batch after batch; a worker that cannot start, dies or hangs is a clear
error quoting its output, and the next call starts a fresh one; no worker outlives its test
process, even one that is killed. Run on the SGLang environment (its parser builds in seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, engine_venv
from tests.support.engine_parsers import ParserPool, WorkerFailed

pytestmark = [pytest.mark.engine, pytest.mark.slow]

MINIMAL = ["--model-path", "/models/m"]
BUSY = [*MINIMAL, "--tp-size", "4", "--dp-size", "2", "--context-length", "8192", "--trust-remote-code",
        "--served-model-name", "a", "--mem-fraction-static", "0.5"]


@pytest.fixture(scope="module")
def pool():
    """One pool for the module (each start imports SGLang): a test that needs a worker gets the
    running one or starts one, whatever the tests before it did."""
    pool = ParserPool()
    yield pool
    pool.close()


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie has exited: it no longer holds memory or the engine)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _only_pid(pool: ParserPool) -> int:
    """The pid of the pool's SGLang worker, its only one."""
    (pid,) = pool.pids().values()
    return pid


def test_one_worker_answers_every_batch_and_parses_each_argv_afresh(pool):
    venv = engine_venv("sglang")
    first = pool.parse("sglang", venv, [BUSY, MINIMAL, ["--tp-size", "2"]])
    assert first[0].ok and first[0].values["tp_size"] == 4 and first[0].values["trust_remote_code"] is True
    assert "--model-path" in first[2].error            # refused: the required model path is missing
    pid = _only_pid(pool)
    again = pool.parse("sglang", venv, [MINIMAL])
    assert _only_pid(pool) == pid                       # the same process, not a new one
    # Nothing of the busy argv stays behind: the minimal argv gets the values a fresh worker gives it.
    fresh = ParserPool()
    try:
        alone = fresh.parse("sglang", venv, [MINIMAL])
        assert fresh.pids() and _only_pid(fresh) != pid
    finally:
        fresh.close()
    assert again[0] == first[1] == alone[0]
    assert again[0].values["tp_size"] == 1 and again[0].values["trust_remote_code"] is False


def test_a_worker_that_cannot_build_its_parser_is_an_error_quoting_its_output(pool):
    no_vllm = engine_venv("sglang")       # a real interpreter without the engine asked for
    with pytest.raises(WorkerFailed) as err:
        pool.parse("vllm", no_vllm, [["/models/m"]])
    message = str(err.value)
    assert "vllm parser worker" in message and "exited with 1" in message
    assert "ModuleNotFoundError: No module named 'vllm'" in message
    assert "vllm" not in {engine for engine, _ in pool.pids()}     # forgotten: the next call starts anew


def test_a_worker_killed_between_batches_is_an_error_and_the_next_call_starts_a_fresh_one(pool):
    venv = engine_venv("sglang")
    assert pool.parse("sglang", venv, [MINIMAL])[0].ok
    pid = _only_pid(pool)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerFailed, match=rf"sglang parser worker \(.*, pid {pid}\) exited with -9"):
        pool.parse("sglang", venv, [MINIMAL])
    assert pool.pids() == {}           # forgotten: the next call starts anew
    assert pool.parse("sglang", venv, [BUSY])[0].values["tp_size"] == 4
    assert _only_pid(pool) != pid


def test_a_hung_worker_is_killed_with_a_clear_error_and_replaced(pool):
    venv = engine_venv("sglang")
    assert pool.parse("sglang", venv, [MINIMAL])[0].ok
    pid = _only_pid(pool)
    os.kill(pid, signal.SIGSTOP)                   # it can no longer answer anything
    try:
        with pytest.raises(WorkerFailed, match=r"did not answer within 3 s \(killed\)"):
            pool.parse("sglang", venv, [MINIMAL], timeout=3)
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
    assert not _running(pid)
    assert pool.parse("sglang", venv, [MINIMAL])[0].ok and _only_pid(pool) != pid


def test_a_batch_the_worker_cannot_answer_is_an_error_and_the_worker_stays(pool):
    venv = engine_venv("sglang")
    with pytest.raises(WorkerFailed, match=r"unknown parser check\(s\) \['nope'\]; known: \['parallel_config'\]"):
        pool.parse("sglang", venv, [MINIMAL], checks=["nope"])
    pid = _only_pid(pool)
    assert pool.parse("sglang", venv, [MINIMAL])[0].ok and _only_pid(pool) == pid


def test_close_ends_every_worker(pool):
    venv = engine_venv("sglang")
    pool.parse("sglang", venv, [MINIMAL])
    pid = _only_pid(pool)
    pool.close()
    assert pool.pids() == {} and not _running(pid)


@pytest.mark.parametrize("ending", ["exit", "kill"])
def test_no_worker_outlives_its_test_process(ending):
    """Ended normally the test process closes its workers (atexit); killed, it cannot, and each
    worker ends on its own when its channel reads end-of-file."""
    venv = engine_venv("sglang")
    script = ("import json, sys\n"
              "from tests.support.engine_parsers import POOL, parse_batch\n"
              f"assert parse_batch('sglang', {str(venv)!r}, [{MINIMAL!r}])[0].ok\n"
              "print(json.dumps(list(POOL.pids().values())), flush=True)\n"
              "sys.stdin.readline()\n")                  # until the test says so
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        (pid,) = json.loads(proc.stdout.readline())
        assert _running(pid)
        if ending == "kill":
            proc.kill()
        else:
            proc.stdin.close()
        assert proc.wait(timeout=120) == (-9 if ending == "kill" else 0)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 120        # a worker still building its parser reads EOF when done
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(pid)
