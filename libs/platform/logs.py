"""Structured logging: structlog JSON lines with trace ids; ID numbers are masked everywhere."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

# 18-character resident ID numbers (17 digits + digit or X) and 15-digit legacy ones, also glued
# to letters or punctuation ("P110105195403120027x"): only a longer run of digits is not one.
_ID_NUMBER = re.compile(r"(?<!\d)(\d{6})(\d{8}|\d{11})(\d{3}[\dXx]|\d)(?!\d)")


def mask_id_numbers(text: str) -> str:
    """Keeps the region prefix and the last 4 characters: 110105********123X."""

    def _mask(m: re.Match[str]) -> str:
        whole = m.group(0)
        if len(whole) not in (15, 18):
            return whole
        return whole[:6] + "*" * (len(whole) - 10) + whole[-4:]

    return _ID_NUMBER.sub(_mask, text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_id_numbers(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask_value(v) for v in value)
    return value


def _mask_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = _mask_value(value)
    return event


_PROCESS_FIELDS: dict[str, Any] = {}


def bind_process(**fields: Any) -> None:
    """Fields every log line of this process carries from now on (a worker's index and pid)."""
    _PROCESS_FIELDS.update(fields)


def _process_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in _PROCESS_FIELDS.items():
        event.setdefault(key, value)
    return event


def _trace_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


class _NoSqlValues(logging.Filter):
    """No line carries SQL parameters or rows, whatever level a logger was given: aiosqlite logs
    every statement with its parameters (and results) at DEBUG and INFO, SQLAlchemy's engine
    logs result rows at DEBUG (its statements come with parameters hidden, ``hide_parameters``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == "aiosqlite" or name.startswith("aiosqlite."):
            return record.levelno >= logging.WARNING
        if name.startswith("sqlalchemy.engine"):
            return record.levelno >= logging.INFO
        return True


def configure_logging(level: str = "INFO", json: bool = True, stream: Any = None) -> None:
    """Idempotent; called once by the composition root, before anything else logs. The standard
    library's records (alembic, SQLAlchemy, grpc, asyncio) are rendered like structlog's own: one
    JSON object per line, with level, logger, timestamp, trace and the call's context."""
    out = stream or sys.stderr
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _trace_processor,
        _process_processor,
        structlog.processors.format_exc_info,
        _mask_processor,
    ]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(_NoSqlValues())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # statements (never their parameters) only at DEBUG; aiosqlite's lines never
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO if level == "DEBUG" else logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
