"""The download pool gives up at once on a failure or a signal, and tells its workers to stop.

A stop must not wait for in-flight files (a throttled shard can take minutes): boot.py would
otherwise only end through its watchdog. No timing is measured here: the busy workers are held
on an event that the test sets only after `_run_parallel` has returned, so "returned while they
were still busy" is a fact, not a duration.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from aim_engine.cache.download import Cancelled, interruptible_sleep
from aim_engine.cache.progress import Tracker
from aim_engine.cache.warm import _run_parallel


class Interrupted(BaseException):
    """Stands in for boot.py's `Stopped` (also a BaseException raised by a signal handler)."""


class _Log:
    def __getattr__(self, _name):
        return lambda *a, **k: None


def _busy_pool(trigger):
    """Two busy workers that hold until `release`, and one that runs `trigger` once they are busy."""
    release, stop = threading.Event(), threading.Event()
    busy = threading.Semaphore(0)
    seen: dict[str, bool] = {}
    finished: list[str] = []

    def work(item: str) -> str:
        if item == "trigger":
            busy.acquire(timeout=30)
            busy.acquire(timeout=30)
            trigger()
            return item
        busy.release()
        release.wait(timeout=60)
        seen[item] = stop.is_set()
        finished.append(item)
        return item

    return work, release, stop, seen, finished


def test_a_failed_file_does_not_wait_for_the_others_and_stops_them():
    def fail():
        raise ValueError("HTTP 403 on one file")

    work, release, stop, seen, finished = _busy_pool(fail)
    with pytest.raises(ValueError, match="403"):
        _run_parallel(work, ["a", "b", "trigger"], workers=3, stop=stop)
    assert finished == []          # returned while both were still in flight
    assert stop.is_set()
    release.set()
    for t in [t for t in threading.enumerate() if t.name.startswith("aim-dl")]:
        t.join(timeout=30)
    assert seen == {"a": True, "b": True}   # each saw the stop flag when it resumed


def test_a_signal_in_the_main_thread_does_not_wait_for_in_flight_files():
    def handler(_signum, _frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        work, release, stop, seen, finished = _busy_pool(lambda: os.kill(os.getpid(), signal.SIGUSR1))
        with pytest.raises(Interrupted):
            _run_parallel(work, ["a", "b", "trigger", "queued-1", "queued-2"], workers=3, stop=stop)
        assert finished == [] and stop.is_set()
    finally:
        signal.signal(signal.SIGUSR1, previous)
        release.set()
    for t in [t for t in threading.enumerate() if t.name.startswith("aim-dl")]:
        t.join(timeout=30)
    assert "queued-1" not in finished and "queued-2" not in finished   # cancelled, never started


def test_results_come_back_in_order_when_nothing_fails():
    assert _run_parallel(lambda x: x * x, [3, 1, 2], workers=2) == [9, 1, 4]
    assert _run_parallel(lambda x: x, [], workers=2) == []


def test_workers_notice_the_stop_flag_in_progress_updates_and_backoff_waits():
    stop = threading.Event()
    counted = [0]
    bar = Tracker("org/m", [], _Log()).tqdm_class(counted, stop)()
    bar.update(10)
    assert counted == [10]
    stop.set()
    with pytest.raises(Cancelled):
        bar.update(10)
    assert counted == [10]
    with pytest.raises(Cancelled):
        interruptible_sleep(stop)(3600)    # returns at once: the flag is already set
    assert not issubclass(Cancelled, Exception)   # no `except Exception` retries or swallows it
