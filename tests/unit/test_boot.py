"""The boot's edges in-process: signals become `Stopped`, failures become /status + exit codes."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest

from aim_engine import boot
from aim_engine.errors import AimError, SettingsError
from aim_engine.settings import Settings
from aim_engine.state import read_state


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_become_stopped_and_handlers_are_restored(signum):
    before = signal.getsignal(signum)
    with pytest.raises(boot.Stopped) as caught:
        with boot.stop_on_signals():
            os.kill(os.getpid(), signum)   # the handler runs as soon as kill() returns
            raise AssertionError("the signal did not interrupt the block")
    assert caught.value.signum == signum and caught.value.exit_code == 128 + signum
    assert signal.getsignal(signum) is before
    # The watchdog that would force an exit is disarmed once the stack has unwound in time.
    assert all(t.finished.is_set() for t in threading.enumerate() if isinstance(t, threading.Timer))


def test_stopped_is_not_swallowed_by_except_exception():
    assert not issubclass(boot.Stopped, Exception)


def _boot(tmp_path, **settings) -> boot.Boot:
    return boot.Boot(Settings(cache_path=tmp_path / "c", **settings), state_dir=tmp_path / "state")


def test_failed_records_the_error_and_returns_its_exit_code(tmp_path):
    (tmp_path / "state").mkdir()
    b = _boot(tmp_path, fail_grace=0)
    b.state.enter("selecting")
    out = io.StringIO()
    assert b.failed(AimError("no recipe fits", "use more GPUs"), out) == 1
    assert b.failed(SettingsError(["AIM_X='y' is wrong"]), out) == 2
    doc = read_state(b.state.path)
    assert doc["phase"] == "failed" and doc["error"]["kind"] == "SettingsError"
    assert "aim-engine: error: no recipe fits" in out.getvalue()


def test_a_bug_is_reported_as_a_bug(tmp_path):
    (tmp_path / "state").mkdir()
    b = _boot(tmp_path, fail_grace=0)
    assert b.failed(KeyError("oops"), io.StringIO()) == 1
    error = read_state(b.state.path)["error"]
    assert error["kind"] == "bug" and "KeyError" in error["message"]


def test_stopped_records_the_signal(tmp_path):
    (tmp_path / "state").mkdir()
    b = _boot(tmp_path)
    b.state.enter("downloading")
    assert b.stopped(boot.Stopped(signal.SIGTERM)) == 143
    doc = read_state(b.state.path)
    assert doc["phase"] == "stopped" and doc["stopped_by"] == "SIGTERM"


def test_missing_engine_binary_is_a_clear_error(tmp_path):
    (tmp_path / "state").mkdir()
    b = _boot(tmp_path)

    class Launch:
        argv = ["definitely-not-an-engine-binary", "serve"]
        env = {"PATH": str(tmp_path)}
        engine = "vllm"

    with pytest.raises(AimError, match="not found on PATH"):
        b.exec(object(), Launch())
    assert read_state(b.state.path)["phase"] == "starting"   # never claimed the engine was starting
