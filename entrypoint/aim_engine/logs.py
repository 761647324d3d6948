"""Logging with structlog: JSON lines in containers, readable lines on a terminal.

Every event passes through `redact_processor`, so a token can't reach the log whatever a caller
passes in. Call `configure()` once, early; `get_logger()` is cheap and safe before that.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from aim_engine import redact

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return redact.mask(event_dict)


def configure(level: str = "info", fmt: str = "auto", debug: bool = False, stream: TextIO | None = None) -> None:
    """Set up structlog. `fmt=auto` means JSON unless `stream` is a terminal."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS["debug" if debug else level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "aim_engine", **bound: Any) -> Any:
    return structlog.get_logger(name, **bound)


def configure_from(settings: Any, stream: TextIO | None = None) -> None:
    """Configure logging from a `Settings` (AIM_LOG_LEVEL, AIM_LOG_FORMAT, AIM_DEBUG)."""
    configure(settings.log_level, settings.log_format, settings.debug, stream)
