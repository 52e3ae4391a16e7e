"""Opaque page tokens for the list queries: URL-safe base64 of a small JSON object, bound to the
filters they were issued for (a digest), so a token used with other filters is refused instead
of silently paging something else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from libs.core.errors import DomainError, FieldViolation, Reason

MAX_TOKEN = 512


def digest(*parts: object) -> str:
    """A short, stable digest of the filters a token belongs to."""
    raw = json.dumps([str(p) for p in parts], separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def encode(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def invalid_token(description: str) -> DomainError:
    return DomainError(
        Reason.PAGE_TOKEN_INVALID,
        f"page_token: {description}",
        violations=[FieldViolation("page_token", description)],
    )


def decode(token: str, filters: str, keys: dict[str, type]) -> dict[str, Any]:
    """The token's fields; PAGE_TOKEN_INVALID if it is not one of ours, lacks a key of the right
    type, or was issued for other filters (``filters`` is the request's :func:`digest`)."""
    if len(token) > MAX_TOKEN:
        raise invalid_token(f"at most {MAX_TOKEN} characters")
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid_token("not a page token of this list") from None
    if not isinstance(doc, dict) or any(type(doc.get(k)) is not t for k, t in {"f": str, **keys}.items()):
        raise invalid_token("not a page token of this list")
    if doc["f"] != filters:
        raise invalid_token("issued for other filters: repeat the filters of the first page")
    return doc
