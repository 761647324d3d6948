"""A hang guard for property tests: an input that makes a command loop forever fails the test
after `seconds` (SIGALRM), instead of hanging the suite. Not a timing assertion: the bound is far
above any normal run."""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

BOUND_S = 20


@contextlib.contextmanager
def bounded(what: str, seconds: int = BOUND_S) -> Iterator[None]:
    def expired(_signum: int, _frame: Any) -> None:
        raise AssertionError(f"{what} did not return within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
