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
