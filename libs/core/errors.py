"""The project's error vocabulary: one reason catalogue, one domain error type.

Pure: no grpc, no SQLAlchemy. The reason values are the names of the proto enum
``medsettle.common.v1.Reason``; ``tests/unit/test_reason_catalogue.py`` keeps the two equal.
The one place that turns a :class:`DomainError` into a ``google.rpc.Status`` is
``libs.platform.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Category(Enum):
    """How a failure is classified; decides the gRPC status code (see STYLE.md)."""

    INVALID = "invalid"  # INVALID_ARGUMENT
    NOT_FOUND = "not_found"  # NOT_FOUND
    DUPLICATE = "duplicate"  # ALREADY_EXISTS
    REFUSED = "refused"  # FAILED_PRECONDITION: a business rule says no
    NOT_ALLOWED = "not_allowed"  # PERMISSION_DENIED
    UNAUTHENTICATED = "unauthenticated"  # UNAUTHENTICATED
    CONFLICT = "conflict"  # ABORTED: lost a race, retry
    UNAVAILABLE = "unavailable"  # UNAVAILABLE: a dependency is down
    INTERNAL = "internal"  # INTERNAL: a bug; text never leaves the process


class Reason(StrEnum):
    """Concise, classified reasons (like the national 'abnormal transaction' codes)."""

    # generic
    VALIDATION_FAILED = "REASON_VALIDATION_FAILED"
    REQUEST_ID_REUSED = "REASON_REQUEST_ID_REUSED"
    CONCURRENT_UPDATE = "REASON_CONCURRENT_UPDATE"
    DEPENDENCY_UNAVAILABLE = "REASON_DEPENDENCY_UNAVAILABLE"
    INSTITUTION_IDENTITY_MISSING = "REASON_INSTITUTION_IDENTITY_MISSING"
    NOT_AUTHORISED_FOR_INSTITUTION = "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    INTERNAL_ERROR = "REASON_INTERNAL_ERROR"
    INVARIANT_VIOLATED = "REASON_INVARIANT_VIOLATED"
    # regions, institutions, persons
    REGION_NOT_FOUND = "REASON_REGION_NOT_FOUND"
    INSTITUTION_NOT_FOUND = "REASON_INSTITUTION_NOT_FOUND"
    INSTITUTION_NOT_NETWORKED = "REASON_INSTITUTION_NOT_NETWORKED"
    PERSON_NOT_FOUND = "REASON_PERSON_NOT_FOUND"
    PERSON_NOT_ACTIVE = "REASON_PERSON_NOT_ACTIVE"
    # credentials
    CREDENTIAL_INVALID = "REASON_CREDENTIAL_INVALID"
    CREDENTIAL_EXPIRED = "REASON_CREDENTIAL_EXPIRED"
    CREDENTIAL_TAMPERED = "REASON_CREDENTIAL_TAMPERED"
    CREDENTIAL_REVOKED = "REASON_CREDENTIAL_REVOKED"
    CREDENTIAL_PERSON_MISMATCH = "REASON_CREDENTIAL_PERSON_MISMATCH"
    CARD_SERIAL_MISMATCH = "REASON_CARD_SERIAL_MISMATCH"
    # filing
    FILING_NOT_FOUND = "REASON_FILING_NOT_FOUND"
    FILING_REQUIRED = "REASON_FILING_REQUIRED"
    FILING_REGION_MISMATCH = "REASON_FILING_REGION_MISMATCH"
    FILING_PERIOD_INVALID = "REASON_FILING_PERIOD_INVALID"
    FILING_MIN_PERIOD_NOT_REACHED = "REASON_FILING_MIN_PERIOD_NOT_REACHED"
    FILING_NOT_ACTIVE = "REASON_FILING_NOT_ACTIVE"
    FILING_COMMITMENT_MISSING = "REASON_FILING_COMMITMENT_MISSING"
    SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS = "REASON_SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS"
    SPECIAL_DISEASE_NOT_OPENED = "REASON_SPECIAL_DISEASE_NOT_OPENED"
    SPECIAL_DISEASE_NOT_FILED = "REASON_SPECIAL_DISEASE_NOT_FILED"
    # policy and catalogue
    POLICY_NOT_FOUND = "REASON_POLICY_NOT_FOUND"
    POLICY_DATA_INVALID = "REASON_POLICY_DATA_INVALID"
    CATALOGUE_NOT_FOUND = "REASON_CATALOGUE_NOT_FOUND"
    CATALOGUE_DATA_INVALID = "REASON_CATALOGUE_DATA_INVALID"
    ITEM_CODE_INVALID = "REASON_ITEM_CODE_INVALID"
    FEE_LINE_INVALID = "REASON_FEE_LINE_INVALID"
    QUANTITY_INVALID = "REASON_QUANTITY_INVALID"
    PRICE_INVALID = "REASON_PRICE_INVALID"
    AMOUNT_OUT_OF_RANGE = "REASON_AMOUNT_OUT_OF_RANGE"
    REFUND_LINE_UNMATCHED = "REASON_REFUND_LINE_UNMATCHED"
    # settlement
    VISIT_NOT_FOUND = "REASON_VISIT_NOT_FOUND"
    VISIT_STATE_INVALID = "REASON_VISIT_STATE_INVALID"
    VISIT_HAS_NO_FEES = "REASON_VISIT_HAS_NO_FEES"
    SETTLEMENT_NOT_FOUND = "REASON_SETTLEMENT_NOT_FOUND"
    SETTLEMENT_ALREADY_REVERSED = "REASON_SETTLEMENT_ALREADY_REVERSED"
    TRANSACTION_NOT_FOUND = "REASON_TRANSACTION_NOT_FOUND"
    OVERLAPPING_INPATIENT_STAY = "REASON_OVERLAPPING_INPATIENT_STAY"
    # clearing
    STATEMENT_NOT_FOUND = "REASON_STATEMENT_NOT_FOUND"
    STATEMENT_STATE_INVALID = "REASON_STATEMENT_STATE_INVALID"
    PERIOD_CLOSED = "REASON_PERIOD_CLOSED"
    PREPAYMENT_NOT_FOUND = "REASON_PREPAYMENT_NOT_FOUND"
    TOP_UP_NOT_ALLOWED = "REASON_TOP_UP_NOT_ALLOWED"
    TOP_UP_ABOVE_CAP = "REASON_TOP_UP_ABOVE_CAP"
    VERIFICATION_NOT_FOUND = "REASON_VERIFICATION_NOT_FOUND"
    VERIFICATION_DEADLINE_PASSED = "REASON_VERIFICATION_DEADLINE_PASSED"


_R = Reason
_C = Category
CATEGORY_OF: dict[Reason, Category] = {
    _R.VALIDATION_FAILED: _C.INVALID,
    _R.REQUEST_ID_REUSED: _C.DUPLICATE,
    _R.CONCURRENT_UPDATE: _C.CONFLICT,
    _R.DEPENDENCY_UNAVAILABLE: _C.UNAVAILABLE,
    _R.INSTITUTION_IDENTITY_MISSING: _C.UNAUTHENTICATED,
    _R.NOT_AUTHORISED_FOR_INSTITUTION: _C.NOT_ALLOWED,
    _R.INTERNAL_ERROR: _C.INTERNAL,
    _R.INVARIANT_VIOLATED: _C.INTERNAL,
    _R.REGION_NOT_FOUND: _C.NOT_FOUND,
    _R.INSTITUTION_NOT_FOUND: _C.NOT_FOUND,
    _R.INSTITUTION_NOT_NETWORKED: _C.REFUSED,
    _R.PERSON_NOT_FOUND: _C.NOT_FOUND,
    _R.PERSON_NOT_ACTIVE: _C.REFUSED,
    _R.CREDENTIAL_INVALID: _C.INVALID,
    _R.CREDENTIAL_EXPIRED: _C.REFUSED,
    _R.CREDENTIAL_TAMPERED: _C.REFUSED,
    _R.CREDENTIAL_REVOKED: _C.REFUSED,
    _R.CREDENTIAL_PERSON_MISMATCH: _C.REFUSED,
    _R.CARD_SERIAL_MISMATCH: _C.REFUSED,
    _R.FILING_NOT_FOUND: _C.NOT_FOUND,
    _R.FILING_REQUIRED: _C.REFUSED,
    _R.FILING_REGION_MISMATCH: _C.REFUSED,
    _R.FILING_PERIOD_INVALID: _C.INVALID,
    _R.FILING_MIN_PERIOD_NOT_REACHED: _C.REFUSED,
    _R.FILING_NOT_ACTIVE: _C.REFUSED,
    _R.FILING_COMMITMENT_MISSING: _C.INVALID,
    _R.SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS: _C.REFUSED,
    _R.SPECIAL_DISEASE_NOT_OPENED: _C.REFUSED,
    _R.SPECIAL_DISEASE_NOT_FILED: _C.REFUSED,
    _R.POLICY_NOT_FOUND: _C.NOT_FOUND,
    _R.POLICY_DATA_INVALID: _C.INVALID,
    _R.CATALOGUE_NOT_FOUND: _C.NOT_FOUND,
    _R.CATALOGUE_DATA_INVALID: _C.INVALID,
    _R.ITEM_CODE_INVALID: _C.INVALID,
    _R.FEE_LINE_INVALID: _C.INVALID,
    _R.QUANTITY_INVALID: _C.INVALID,
    _R.PRICE_INVALID: _C.INVALID,
    _R.AMOUNT_OUT_OF_RANGE: _C.INVALID,
    _R.REFUND_LINE_UNMATCHED: _C.INVALID,
    _R.VISIT_NOT_FOUND: _C.NOT_FOUND,
    _R.VISIT_STATE_INVALID: _C.REFUSED,
    _R.VISIT_HAS_NO_FEES: _C.REFUSED,
    _R.SETTLEMENT_NOT_FOUND: _C.NOT_FOUND,
    _R.SETTLEMENT_ALREADY_REVERSED: _C.REFUSED,
    _R.TRANSACTION_NOT_FOUND: _C.NOT_FOUND,
    _R.OVERLAPPING_INPATIENT_STAY: _C.REFUSED,
    _R.STATEMENT_NOT_FOUND: _C.NOT_FOUND,
    _R.STATEMENT_STATE_INVALID: _C.REFUSED,
    _R.PERIOD_CLOSED: _C.REFUSED,
    _R.PREPAYMENT_NOT_FOUND: _C.NOT_FOUND,
    _R.TOP_UP_NOT_ALLOWED: _C.REFUSED,
    _R.TOP_UP_ABOVE_CAP: _C.REFUSED,
    _R.VERIFICATION_NOT_FOUND: _C.NOT_FOUND,
    _R.VERIFICATION_DEADLINE_PASSED: _C.REFUSED,
}


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
