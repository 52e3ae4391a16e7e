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


def configure_logging(level: str = "INFO", json: bool = True, stream: Any = None) -> None:
    """Idempotent; called once by the composition root."""
    out = stream or sys.stderr
    logging.basicConfig(level=level, stream=out, format="%(message)s", force=True)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _trace_processor,
            _process_processor,
            structlog.processors.format_exc_info,
            _mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
