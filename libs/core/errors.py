"""The project's error vocabulary: one reason catalogue, one domain error type.

Pure: no grpc, no SQLAlchemy. ``Reason`` and its table are generated from the proto enum
``medsettle.common.v1.Reason`` into ``libs/core/reasons.py`` (scripts/gen_reasons.py, `make
protos`); to add a reason, add it to the proto (docs/reasons.md "Adding a reason"), not here.
The one place that turns a :class:`DomainError` into a ``google.rpc.Status`` is
``libs.platform.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from libs.core.reasons import REASON_INFO, Reason

__all__ = [
    "CATEGORY_OF",
    "CODE_NAME_OF",
    "Category",
    "DomainError",
    "FieldViolation",
    "Reason",
    "Violations",
    "invalid",
]


class Category(Enum):
    """How a failure is classified; decides the gRPC status code (CODE_NAME_OF)."""

    INVALID = "invalid"  # INVALID_ARGUMENT
    NOT_FOUND = "not_found"  # NOT_FOUND
    DUPLICATE = "duplicate"  # ALREADY_EXISTS
    REFUSED = "refused"  # FAILED_PRECONDITION: a business rule says no
    NOT_ALLOWED = "not_allowed"  # PERMISSION_DENIED
    UNAUTHENTICATED = "unauthenticated"  # UNAUTHENTICATED
    CONFLICT = "conflict"  # ABORTED: lost a race, retry
    EXHAUSTED = "exhausted"  # RESOURCE_EXHAUSTED: a server limit was reached
    UNAVAILABLE = "unavailable"  # UNAVAILABLE: a dependency is down
    INTERNAL = "internal"  # INTERNAL: a bug; text never leaves the process


# The gRPC status code of each category (by name); a reason's category is the one of its code.
CODE_NAME_OF: dict[Category, str] = {
    Category.INVALID: "INVALID_ARGUMENT",
    Category.NOT_FOUND: "NOT_FOUND",
    Category.DUPLICATE: "ALREADY_EXISTS",
    Category.REFUSED: "FAILED_PRECONDITION",
    Category.NOT_ALLOWED: "PERMISSION_DENIED",
    Category.UNAUTHENTICATED: "UNAUTHENTICATED",
    Category.CONFLICT: "ABORTED",
    Category.EXHAUSTED: "RESOURCE_EXHAUSTED",
    Category.UNAVAILABLE: "UNAVAILABLE",
    Category.INTERNAL: "INTERNAL",
}
_CATEGORY_OF_CODE = {code: category for category, code in CODE_NAME_OF.items()}
# Generated from each reason's (reason_info) option in the proto, never kept by hand.
CATEGORY_OF: dict[Reason, Category] = {reason: _CATEGORY_OF_CODE[info.code] for reason, info in REASON_INFO.items()}


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: ``field`` is the request path (``lines[3].quantity_milli``)."""

    field: str
    description: str


class DomainError(Exception):
    """A failure the caller can act on. Carries a catalogue reason and, for bad input,
    the fields that were wrong. ``metadata`` goes into ``ErrorInfo.metadata`` and must never
    hold personal data (no ID numbers)."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        violations: tuple[FieldViolation, ...] | list[FieldViolation] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.violations = tuple(violations)
        self.metadata = dict(metadata or {})

    @property
    def category(self) -> Category:
        return CATEGORY_OF[self.reason]


def invalid(field: str, description: str, reason: Reason = Reason.VALIDATION_FAILED) -> DomainError:
    """Shorthand for a single-field INVALID_ARGUMENT error."""
    return DomainError(reason, f"{field}: {description}", violations=[FieldViolation(field, description)])


class Violations:
    """Collects every bad field of a request before failing, so the caller sees them all."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def check(self, ok: bool, field: str, description: str) -> None:
        if not ok:
            self.add(field, description)

    def raise_if_any(self, reason: Reason = Reason.VALIDATION_FAILED) -> None:
        if self._items:
            first = self._items[0]
            raise DomainError(
                reason,
                f"{len(self._items)} invalid field(s); first: {first.field}: {first.description}",
                violations=self._items,
            )
