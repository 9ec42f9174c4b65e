"""Logging, configured once: JSON lines in production, a readable console in a terminal.

Card numbers never reach a log line: `decode_command` masks them at the edge, and the
`_redact_pans` processor masks any 13–19 digit string that slips into an event anyway.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

from paystream.settings import Settings

_PAN = re.compile(r"\b(\d{6})\d{3,9}(\d{4})\b")


def _redact_pans(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and len(value) >= 13:
            event[key] = _PAN.sub(lambda m: m[1] + "******" + m[2], value)
    return event


def configure(settings: Settings | None = None) -> None:
    """Set up structlog for this process; safe to call more than once."""
    fmt = settings.log_format if settings else "auto"
    level = getattr(logging, (settings.log_level if settings else "info").upper(), logging.INFO)
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=lambda obj, **_: msgspec.json.encode(obj).decode())
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_pans,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # stderr as it is when a logger is made, not when this ran (tests swap the streams)
        logger_factory=lambda *_args: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(name: str, **bound: Any) -> Any:
    """A logger for one component, with `bound` fields on every line (e.g. `task=...`)."""
    return structlog.get_logger(name).bind(component=name, **bound)
