"""Logging: JSON lines vs console, level filtering, AIM_* configuration, redaction of every event."""

from __future__ import annotations

import io
import json

import pytest

from aim_engine import logs
from aim_engine.settings import Settings

TOKEN = "hf_" + "Zy9Xw8Vu7Ts6Rq5Po4Nm3L"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines():
    stream = io.StringIO()
    logs.configure(level="info", fmt="json", stream=stream)
    logs.get_logger().info("cache warmed", files=3)
    [record] = [json.loads(line) for line in lines(stream)]
    assert record["event"] == "cache warmed" and record["files"] == 3
    assert record["level"] == "info" and record["timestamp"].endswith("Z")


def test_auto_is_json_off_a_terminal_and_console_on_one():
    plain, tty = io.StringIO(), Tty()
    logs.configure(fmt="auto", stream=plain)
    logs.get_logger().info("hello")
    json.loads(lines(plain)[0])
    logs.configure(fmt="auto", stream=tty)
    logs.get_logger().info("hello")
    [line] = lines(tty)
    assert "hello" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_console_format_is_readable():
    stream = io.StringIO()
    logs.configure(fmt="console", stream=stream)
    logs.get_logger().warning("low memory", gpu=0)
    [line] = lines(stream)
    assert "low memory" in line and "gpu" in line and "warn" in line.lower()


@pytest.mark.parametrize("level, shown", [("debug", {"d", "i", "w", "e"}), ("info", {"i", "w", "e"}),
                                          ("warning", {"w", "e"}), ("error", {"e"})])
def test_level_filtering(level, shown):
    stream = io.StringIO()
    logs.configure(level=level, fmt="json", stream=stream)
    log = logs.get_logger()
    log.debug("d"), log.info("i"), log.warning("w"), log.error("e")
    assert {json.loads(line)["event"] for line in lines(stream)} == shown


def test_debug_flag_lowers_level():
    stream = io.StringIO()
    logs.configure(level="error", fmt="json", debug=True, stream=stream)
    logs.get_logger().debug("details")
    assert json.loads(lines(stream)[0])["event"] == "details"


def test_configure_from_settings():
    stream = io.StringIO()
    logs.configure_from(Settings.from_env({"AIM_LOG_LEVEL": "warning", "AIM_LOG_FORMAT": "json"}), stream=stream)
    logs.get_logger().info("hidden")
    logs.get_logger().warning("shown")
    assert [json.loads(line)["event"] for line in lines(stream)] == ["shown"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secrets_are_redacted_anywhere_in_an_event(fmt, monkeypatch):
    monkeypatch.setenv("PRIVATE_REGISTRY_PASSWORD", "correct-horse-battery")
    stream = io.StringIO()
    logs.configure(fmt=fmt, stream=stream)
    logs.get_logger().info(f"downloading with {TOKEN}", HF_TOKEN="plain-token-value",
                           env={"OPENAI_API_KEY": "sk-123456", "NESTED": [{"db_secret": "x1"}]},
                           url="https://u:correct-horse-battery@host/", argv=["--hf-token", TOKEN])
    text = stream.getvalue()
    for secret in (TOKEN, "plain-token-value", "sk-123456", "x1", "correct-horse-battery"):
        assert secret not in text
    assert "***" in text


def test_exceptions_render_in_json():
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    try:
        raise ValueError(f"bad {TOKEN}")
    except ValueError:
        logs.get_logger().exception("failed")
    record = json.loads(lines(stream)[0])
    assert "ValueError" in record["exception"]


# --- the JSON fast path renders exactly what the structlog chain renders --------------------------

class Shaped:
    def __structlog__(self) -> str:
        return "shaped!"


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def _render_both(monkeypatch, method: str, bound: dict, event, kw: dict) -> tuple[str, str]:
    """The same event through the fast path and through structlog, timestamps blanked."""
    import re

    out = []
    for fast in (True, False):
        stream = io.StringIO()
        logs.configure(level="debug", fmt="json", stream=stream)
        if not fast:
            monkeypatch.setattr(logs, "_json_stream", None)
        getattr(logs.get_logger("t", **bound), method)(event, **kw)
        out.append(re.sub(r'"timestamp": "[^"]+"', '"timestamp": "T"', stream.getvalue()))
    return out[0], out[1]


@pytest.mark.parametrize("method", ["debug", "info", "warning", "warn", "error", "critical"])
def test_fast_json_matches_structlog_for_every_level(method, monkeypatch):
    fast, reference = _render_both(monkeypatch, method, {"phase": "selecting"}, "phase done",
                                   {"duration_ms": 12.5, "phase": "override", "path": logs, "n": None})
    assert fast == reference and fast.count("\n") == 1


def test_fast_json_matches_structlog_for_odd_values(monkeypatch, tmp_path):
    kw = {"p": tmp_path, "t": (1, "a"), "s": {3}, "shaped": Shaped(), "o": Opaque(), "b": b"x",
          "nested": {"HF_TOKEN": "abcdefgh", 3: [TOKEN, {"k": 1.5e300}]}, "u": "ünï ✓", "f": float("inf")}
    fast, reference = _render_both(monkeypatch, "info", {}, f"with {TOKEN}", kw)
    assert fast == reference
    assert TOKEN not in fast and "shaped!" in fast and "<opaque>" in fast


def test_fast_json_without_an_event_matches_structlog(monkeypatch):
    fast, reference = _render_both(monkeypatch, "info", {"a": 1}, None, {"b": 2})
    assert fast == reference and '"event"' not in fast


def test_fast_json_is_used_in_json_mode_and_structlog_is_not_imported(tmp_path):
    """The point of the fast path: a JSON-mode process that logs plain events never imports structlog."""
    import subprocess
    import sys

    code = ("import sys, io\nfrom aim_engine import logs\nlogs.configure(fmt='json', stream=sys.stdout)\n"
            "logs.get_logger().info('hello', n=1)\nprint('structlog' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line, imported = out.splitlines()
    assert json.loads(line)["event"] == "hello" and imported == "False"


@pytest.mark.parametrize("call", ["exception", "args", "exc_info"])
def test_what_the_fast_path_does_not_cover_goes_to_structlog(call, monkeypatch):
    stream = io.StringIO()
    logs.configure(fmt="json", stream=stream)
    log = logs.get_logger()
    try:
        raise ValueError("boom")
    except ValueError:
        if call == "exception":
            log.exception("failed")
        elif call == "args":
            log.info("%s files", 3)
        else:
            log.error("failed", exc_info=True)
    record = json.loads(lines(stream)[0])
    assert record["event"] in ("failed", "3 files")
    if call != "args":
        assert "ValueError: boom" in record["exception"]


def test_fast_json_matches_structlog_for_arbitrary_events():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)

    @settings(max_examples=150, deadline=None)
    @given(event=st.text(), kw=st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in ("event", "self")),
                                          values, max_size=5))
    def check(event, kw):
        with pytest.MonkeyPatch.context() as mp:
            fast, reference = _render_both(mp, "info", {}, event, kw)
        assert fast == reference

    check()
