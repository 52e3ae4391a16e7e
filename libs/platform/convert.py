"""Small proto <-> Python conversions shared by the service adapters."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from libs.core.errors import Violations
from libs.platform.clock import CST

__all__ = ["CST"]


MAX_REQUEST_ID = 128


def check_request_id(request_id: str, violations: Violations, field: str = "request_id") -> None:
    """Every mutating request carries its idempotency key."""
    violations.check(
        0 < len(request_id) <= MAX_REQUEST_ID, field, f"required, 1-{MAX_REQUEST_ID} characters (the idempotency key)"
    )


def date_from_proto(value: Any, field: str, violations: Violations, *, required: bool = True) -> dt.date | None:
    """``medsettle.common.v1.Date`` -> date; an all-zero Date means "not given"."""
    if value is None or (value.year == 0 and value.month == 0 and value.day == 0):
        if required:
            violations.add(field, "required")
        return None
    try:
        return dt.date(value.year, value.month, value.day)
    except ValueError as exc:
        violations.add(field, f"not a calendar date ({exc})")
        return None


def date_to_proto(value: dt.date | None, target: Any) -> None:
    if value is not None:
        target.year, target.month, target.day = value.year, value.month, value.day


def timestamp(value: dt.datetime | None) -> Timestamp:
    ts = Timestamp()
    if value is not None:
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        ts.FromDatetime(value)
    return ts


def fingerprint(message: Message, *, ignore: tuple[str, ...] = ("request_id",)) -> str:
    """A stable hash of a request without its idempotency key: same id + same payload = replay."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in ignore:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def today_cst() -> dt.date:
    return dt.datetime.now(CST).date()


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
