"""The use cases' inputs and outputs as small typed values.

Every mutating call is a :class:`Request` (who asks, under which idempotency key) and one
command. The gRPC servicers (adapters/rpc.py) build them from the protos after checking fields.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from libs.policy import ServiceType, SettlementResult
from services.settlement.domain.model import CredentialRef, SettlementRecord, UploadedLine, VisitRecord


@dataclass(frozen=True, slots=True)
class Request:
    """The idempotency key of a mutating call (already scoped to the caller), the fingerprint of
    its payload, and the calling institution (None: not authenticated)."""

    request_id: str
    fp: str
    caller: str | None


@dataclass(frozen=True, slots=True)
class OpenVisitCommand:
    institution_code: str
    hospital_visit_no: str
    credential: CredentialRef
    service_type: ServiceType
    admission_date: dt.date
    diagnosis_codes: tuple[str, ...]
    special_disease_code: str = ""
    emergency: bool = False
    trauma: bool = False


@dataclass(frozen=True, slots=True)
class UpdateVisitCommand:
    visit_id: str
    diagnosis_codes: tuple[str, ...] | None = None  # None: unchanged
    admission_date: dt.date | None = None  # None: unchanged


@dataclass(frozen=True, slots=True)
class CancelVisitCommand:
    visit_id: str


@dataclass(frozen=True, slots=True)
class UploadFeesCommand:
    visit_id: str
    lines: tuple[UploadedLine, ...]


@dataclass(frozen=True, slots=True)
class SettleCommand:
    visit_id: str
    use_account: bool
    interim: bool = False
    discharge_date: dt.date | None = None


@dataclass(frozen=True, slots=True)
class SettleCall:
    """One Settle as it waits in the group-commit queue."""

    request: Request
    command: SettleCommand


@dataclass(frozen=True, slots=True)
class CancelSettlementCommand:
    settlement_id: str


@dataclass(frozen=True, slots=True)
class ReverseCommand:
    original_request_id: str  # scoped to the caller, as request ids are


@dataclass(frozen=True, slots=True)
class SettleOutpatientCommand:
    visit: OpenVisitCommand
    lines: tuple[UploadedLine, ...]
    use_account: bool


@dataclass(frozen=True, slots=True)
class SubmitClaimCommand:
    visit: OpenVisitCommand
    discharge_date: dt.date
    lines: tuple[UploadedLine, ...]
    failure_reason: str


@dataclass(frozen=True, slots=True)
class ProcessClaimCommand:
    claim_id: str


@dataclass(frozen=True, slots=True)
class Committed:
    """A settlement or cancellation as committed, with its result and its visit after it."""

    record: SettlementRecord
    result: SettlementResult
    visit: VisitRecord
