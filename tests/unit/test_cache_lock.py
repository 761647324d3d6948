"""The cache lock's timeout semantics and its holder file (real files, real flock, one process)."""

from __future__ import annotations

import json

import pytest

from aim_engine.cache.layout import Layout
from aim_engine.cache.lock import LockTimeout, ModelLock, describe_holder


def test_timeout_zero_tries_once_and_does_not_wait(tmp_path):
    layout = Layout(tmp_path, tmp_path / "huggingface" / "hub")
    first, second = ModelLock(layout, "org/m"), ModelLock(layout, "org/m")
    first.acquire(0)                      # free: taken at the first try
    try:
        with pytest.raises(LockTimeout) as err:
            second.acquire(0)             # held: fails at once, naming the holder
        assert "AIM_LOCK_TIMEOUT is 0 (try once, do not wait)" in str(err.value)
        assert "pid" in str(err.value)
    finally:
        first.release()
    second.acquire(0)
    second.release()


@pytest.mark.parametrize("info", [
    {"pid": "x", "host": None, "started": "yesterday", "progress": {"bytes_total": "10", "bytes_done": [1]}},
    {"started": float("nan"), "progress": {"bytes_total": 1e300, "phase": "\x1b[31mred"}},
    {"started": -5, "progress": "downloading"}, {"pid": "9" * 500}, [], None, {},
])
def test_a_planted_holder_file_is_described_never_trusted(info):
    text = describe_holder(info if isinstance(info, dict) else None)
    assert text and "\x1b" not in text and len(text) < 400
    json.dumps(text)
