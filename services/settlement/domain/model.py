"""Settlement domain: visits, eligibility decisions as stored on a visit, settlement records.
Pure: the money math itself is libs.policy."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy import FeeLine, FilingType, InsuranceType, PersonType, ServiceType


class VisitStatus(StrEnum):
    OPEN = "open"
    SETTLED = "settled"
    CANCELLED = "cancelled"


class SettlementKind(StrEnum):
    SETTLEMENT = "settlement"
    CANCELLATION = "cancellation"


class ClearingCategory(StrEnum):
    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"
    PHARMACY = "pharmacy"


def clearing_category(service: ServiceType) -> ClearingCategory:
    if service is ServiceType.INPATIENT:
        return ClearingCategory.INPATIENT
    if service is ServiceType.PHARMACY:
        return ClearingCategory.PHARMACY
    return ClearingCategory.OUTPATIENT


@dataclass(frozen=True, slots=True)
class CredentialRef:
    ecert_token: str = ""
    card_number: str = ""
    card_serial: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The eligibility decision, stored on the visit."""

    eligible: bool
    reasons: tuple[str, ...]
    guidance: str
    person_no: str
    insured_region: str
    treatment_region: str
    insurance_type: InsuranceType | None
    person_type: PersonType | None
    filing_id: str
    filing_type: FilingType | None
    emergency_deemed_filed: bool
    hospital_level: int
    assistance_category: str
    hardship: bool
    has_personal_account: bool
    sex: str
    birth_date: dt.date | None
    retro_filing: bool
    account_balance_fen: int = 0
    # filed after a self-paid discharge, the date before the filing's start: manual reimbursement
    manual_reimbursement: bool = False


def require_direct(d: Decision) -> None:
    """A stay the person paid themselves and filed for afterwards is reimbursed manually under
    the insured place's rules, never settled directly as well."""
    if d.manual_reimbursement:
        raise DomainError(
            Reason.MANUAL_REIMBURSEMENT_REQUIRED,
            f"filing {d.filing_id} was made after a self-paid discharge: the stay is reimbursed "
            "manually under the insured place's rules (SubmitManualClaim), not settled directly",
            metadata={"filing_id": d.filing_id},
        )


def require_not_after_today(field: str, day: dt.date, today: dt.date) -> None:
    """An admission (or visit, or discharge) date cannot lie in the future."""
    if day > today:
        raise DomainError(
            Reason.VALIDATION_FAILED,
            f"{field} {day.isoformat()} is after today ({today.isoformat()})",
            violations=[FieldViolation(field, f"must not be after today ({today.isoformat()})")],
        )


def fee_date_violations(fee_dates: list[dt.date | None], admission: dt.date, last_day: dt.date) -> list[FieldViolation]:
    """Fee lines are dated within the stay: from the admission date to ``last_day`` (the
    discharge date, or today while the person is still in hospital). Undated lines pass."""
    return [
        FieldViolation(
            f"lines[{i}].fee_date",
            f"must be within the stay, {admission.isoformat()} to {last_day.isoformat()}",
        )
        for i, day in enumerate(fee_dates)
        if day is not None and not admission <= day <= last_day
    ]


class StayRef(NamedTuple):
    """A treatment of the person at one institution, as the no-stay-twice rule sees it: a visit
    (with its live settlement id, "" if none) or a manual claim."""

    ref_id: str  # visit_id or claim_id
    hospital_visit_no: str
    admission_date: dt.date
    discharge_date: dt.date | None
    live_settlement: str = ""


def same_stay(
    a_no: str, a_start: dt.date, a_end: dt.date | None, b_no: str, b_start: dt.date, b_end: dt.date | None
) -> bool:
    """Two treatments of one person at one institution are one stay when they carry the same
    hospital visit number or their dates overlap (an open end: still in hospital)."""
    if a_no == b_no:
        return True
    return a_start <= (b_end or dt.date.max) and b_start <= (a_end or dt.date.max)


def require_eligible(d: Decision) -> None:
    if d.eligible:
        return
    reason = Reason.FILING_REQUIRED
    for r in d.reasons:
        try:
            reason = Reason(r)
            break
        except ValueError:
            continue
    raise DomainError(
        reason, d.guidance or "not eligible for direct settlement", metadata={"reasons": ",".join(d.reasons)}
    )


@dataclass(frozen=True, slots=True)
class VisitRecord:
    visit_id: str
    institution_code: str
    hospital_visit_no: str
    service_type: ServiceType
    status: VisitStatus
    decision: Decision
    admission_date: dt.date
    discharge_date: dt.date | None
    diagnosis_codes: tuple[str, ...]
    special_disease_code: str
    opened_at: dt.datetime
    fee_line_count: int = 0
    fee_total_fen: int = 0
    settled_stays: int = 0  # live (not cancelled) settlements of this visit
    emergency: bool = False
    trauma_declared: bool = False


@dataclass(frozen=True, slots=True)
class UploadedLine:
    line: FeeLine
    item_name: str
    fee_date: dt.date | None
    settlement_id: str = ""  # set once an (interim or final) settlement has settled the line


@dataclass(frozen=True, slots=True)
class MonitoringFlag:
    code: str
    detail: str
    line_no: int = 0


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    settlement_id: str
    request_id: str
    visit_id: str
    kind: SettlementKind
    cancels_settlement_id: str
    institution_code: str
    person_no: str
    insured_region: str
    treatment_region: str
    service_type: ServiceType
    category: ClearingCategory
    settle_date: dt.date
    settled_at: dt.datetime
    interim: bool
    result_json: str
    flags: tuple[MonitoringFlag, ...] = field(default_factory=tuple)
    cancelled_by: str = ""


def is_trauma(diagnosis_code: str) -> bool:
    """ICD-10 injuries (S00-T14): trauma the person must declare has no liable third party."""
    code = diagnosis_code.strip().upper()
    if code.startswith("S") and code[1:3].isdigit():
        return True
    return code.startswith("T") and code[1:3].isdigit() and int(code[1:3]) <= 14


def require_trauma_declaration(diagnosis_codes: tuple[str, ...], declared: bool) -> None:
    """Trauma is settled directly only with the person's declaration that no third party is
    liable (treatment-place management rules); otherwise the third party pays, not the fund."""
    if declared:
        return
    trauma = [c for c in diagnosis_codes if is_trauma(c)]
    if trauma:
        raise DomainError(
            Reason.TRAUMA_DECLARATION_REQUIRED,
            f"trauma diagnosis {trauma[0]}: the person must declare that no third party is liable",
            violations=[FieldViolation("trauma_no_third_party_declared", "required for a trauma diagnosis")],
        )


def check_owner(visit_institution: str, caller: str | None) -> None:
    if caller is None:
        raise DomainError(Reason.INSTITUTION_IDENTITY_MISSING, "the calling institution is not authenticated")
    if visit_institution != caller:
        raise DomainError(Reason.NOT_AUTHORISED_FOR_INSTITUTION, "this record belongs to another institution")


class ClaimStatus(StrEnum):
    SUBMITTED = "submitted"
    PROCESSED = "processed"


@dataclass(frozen=True, slots=True)
class ManualClaim:
    """Manual reimbursement: the hospital uploaded details because direct settlement was impossible;
    the insured place processes it later with the same policy engine."""

    claim_id: str
    institution_code: str
    hospital_visit_no: str
    service_type: ServiceType
    decision: Decision
    admission_date: dt.date
    discharge_date: dt.date
    diagnosis_codes: tuple[str, ...]
    lines: tuple[UploadedLine, ...]
    failure_reason: str
    status: ClaimStatus
    submitted_at: dt.datetime
    result_json: str = ""
    processed_at: dt.datetime | None = None
