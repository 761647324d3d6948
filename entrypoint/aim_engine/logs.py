"""Logging with structlog: JSON lines in containers, readable lines on a terminal.

Every event passes through `redact_processor`, so a token can't reach the log whatever a caller
passes in. Call `configure()` once, early; `get_logger()` is cheap and safe before that.

structlog is imported when the first event that passes the level filter is logged, not when
this module is: importing it costs ~60 ms (it pulls in asyncio), more than a third of what
`aim-engine plan` may take, and commands that log nothing at the configured level should not
pay for it. `configure()` only records the settings; they are applied to structlog then.

In JSON mode a plain event (no positional arguments, no exception) is rendered here, exactly as
the structlog chain below renders it (add_log_level, TimeStamper(iso, utc), redaction,
JSONRenderer; `tests/unit/test_logs.py` holds the two outputs equal): a warm `aim-engine serve`
logs a handful of JSON lines and then execs the engine, and structlog's import alone was a
quarter of its 150 ms CPU budget. Console output, exceptions and anything else go to structlog.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from aim_engine import redact

# The `logging` module's numbers, which structlog's filtering loggers use (not imported: ~10 ms).
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50
_LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}

# What `configure()` asked for, applied to structlog on first use; None: structlog's defaults.
_pending: tuple[str, int, TextIO] | None = None
_threshold = 0           # events below this level are dropped without importing structlog
_json_stream: TextIO | None = None   # set in JSON mode: plain events are rendered by `_write_json`
_write_lock = threading.Lock()       # one line at a time, as structlog's PrintLogger does


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return redact.mask(event_dict)


def configure(level: str = "info", fmt: str = "auto", debug: bool = False, stream: TextIO | None = None) -> None:
    """Set up logging (applied to structlog when it is first needed). `fmt=auto` means JSON
    unless `stream` is a terminal."""
    global _pending, _threshold, _json_stream
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    _threshold = _LEVELS["debug" if debug else level]
    _pending = (fmt, _threshold, stream)
    _json_stream = stream if fmt == "json" else None
    if "structlog" in sys.modules:   # already paid for: apply now, as before
        _structlog()


def reset() -> None:
    """Forget `configure()`: structlog's defaults again, and no stream held.

    `configure()` keeps the stream it was given (sys.stderr by default), so a program that
    replaces or closes that stream must reset first; the test suite does so after every test,
    where pytest's capture streams are closed between tests."""
    global _pending, _threshold, _json_stream
    _pending, _threshold, _json_stream = None, 0, None
    if "structlog" in sys.modules:
        sys.modules["structlog"].reset_defaults()


def _structlog() -> Any:
    """structlog, with the pending configuration applied."""
    global _pending
    import structlog

    if _pending is not None:
        fmt, threshold, stream = _pending
        _pending = None
        renderer: Any
        if fmt == "json":
            renderer = structlog.processors.JSONRenderer(sort_keys=False)
        else:
            renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                redact_processor,
                structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(threshold),
            logger_factory=structlog.PrintLoggerFactory(file=stream),
            cache_logger_on_first_use=False,
        )
    return structlog


def _json_default(obj: Any) -> Any:
    """What structlog's JSONRenderer does with a value JSON has no type for."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


def _write_json(stream: TextIO, method: str, event_dict: dict[str, Any]) -> None:
    """One event as structlog's JSON chain would print it (see the module docstring)."""
    import datetime
    import json

    event_dict["level"] = method
    event_dict["timestamp"] = datetime.datetime.now(tz=datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    line = json.dumps(redact.mask(event_dict), default=_json_default)
    with _write_lock:   # one write per line: no interleaving with a line structlog prints meanwhile
        stream.write(line + "\n")
        stream.flush()


class Logger:
    """A structlog logger, created on the first event that passes the level filter.

    The level methods check the threshold first; anything else (`log`, `new`, `unbind`, ...)
    goes straight to the structlog logger."""

    __slots__ = ("_name", "_bound", "_real")

    def __init__(self, name: str, bound: dict[str, Any]) -> None:
        self._name, self._bound, self._real = name, bound, None

    def _logger(self) -> Any:
        structlog = _structlog()
        if self._real is None:
            self._real = structlog.get_logger(self._name, **self._bound)
        return self._real

    def _emit(self, method: str, level: int, event: Any, args: tuple, kw: dict[str, Any]) -> Any:
        if level < _threshold:
            return None
        stream = _json_stream
        if stream is not None and not args and "exc_info" not in kw and method != "exception":
            event_dict = {**self._bound, **kw}
            if event is not None:
                event_dict["event"] = event
            _write_json(stream, method, event_dict)
            return None
        return getattr(self._logger(), method)(event, *args, **kw)

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("debug", DEBUG, event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("info", INFO, event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("warning", WARNING, event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("error", ERROR, event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("exception", ERROR, event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("critical", CRITICAL, event, args, kw)

    def bind(self, **kw: Any) -> "Logger":
        return Logger(self._name, {**self._bound, **kw})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger(), name)


def get_logger(name: str = "aim_engine", **bound: Any) -> Logger:
    return Logger(name, bound)


def configure_from(settings: Any, stream: TextIO | None = None) -> None:
    """Configure logging from a `Settings` (AIM_LOG_LEVEL, AIM_LOG_FORMAT, AIM_DEBUG)."""
    configure(settings.log_level, settings.log_format, settings.debug, stream)
