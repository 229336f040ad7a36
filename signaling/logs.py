"""structlog set-up: JSON lines for machines (stdout not a terminal), readable lines for people."""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

__all__ = ["configure_logging", "processors"]

LogFormat = Literal["auto", "json", "console"]


def processors(fmt: LogFormat, stream: Any) -> list[structlog.types.Processor]:
    """The processor chain; ``auto`` picks console output for a terminal and JSON lines for anything else."""
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    )
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]


def configure_logging(level: str = "info", fmt: LogFormat = "auto", stream: Any = None) -> None:
    """Process-wide configuration, once at start-up (loggers are cached on first use for speed)."""
    out = stream if stream is not None else sys.stdout
    structlog.configure(
        processors=processors(fmt, out),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
