"""Structured logs: one stream per process, every line through structlog.

paycell's own lines are structlog events; the standard library's records (Dramatiq,
aiohttp, asyncio, asyncpg) go through the same processors (structlog's ProcessorFormatter), so a
process writes one kind of line. Context bound through contextvars (payment_id, order_id, step,
request_id) is merged into every line of a request or an actor run, the libraries' included.

The format (PAYCELL_LOG_FORMAT): `json`, one JSON object per line (production, files, pipes);
`console`, readable key=value lines; `auto` (the default), console on a terminal outside
production, JSON otherwise.
"""
from __future__ import annotations

import logging
import os
import sys

import structlog

FORMATS = ("auto", "json", "console")


def use_json(fmt: str, *, stream=None) -> bool:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt != "auto":
        return fmt == "json"
    stream = stream or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    return not interactive or os.environ.get("PAYCELL_ENV", "").strip() == "production"


def configure(level: str = "info", fmt: str = "auto") -> None:
    json = use_json(fmt)
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # The libraries' records: their logger's name, the same processors, the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # One write per line (message and newline together): a line cannot be split by another
        # written from a signal handler, or by another process sharing the stream.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
