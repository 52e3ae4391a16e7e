"""The visit lifecycle: which change a visit in which state allows, and the engine's view of it.

Pure rules over the records of ``model``: the use cases (application/) load the records, ask
these functions, and store what they answer. Every refusal is a :class:`DomainError` with its
reason, so a failing unit test names the rule.

    open ──UploadFees / UpdateVisit / interim Settle──▶ open
      │                                                  │
      ├──CancelVisit (no live settlement)──▶ cancelled   │
      └──final Settle──▶ settled ──CancelSettlement──▶ open (its lines unsettled again)
"""

from __future__ import annotations

import datetime as dt

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.policy import FeeLine, Visit
from services.settlement.domain import results
from services.settlement.domain.model import (
    UploadedLine,
    VisitRecord,
    VisitStatus,
    check_owner,
    require_not_after_today,
    require_trauma_declaration,
)


def writable(visit: VisitRecord | None, visit_id: str, caller: str | None) -> VisitRecord:
    """A visit the caller may change: it exists, is the caller's, and is open."""
    if visit is None:
        raise DomainError(Reason.VISIT_NOT_FOUND, f"no visit {visit_id}")
    check_owner(visit.institution_code, caller)
    if visit.status is not VisitStatus.OPEN:
        raise DomainError(Reason.VISIT_STATE_INVALID, f"visit {visit_id} is {visit.status.value}")
    return visit


def require_cancellable(visit: VisitRecord) -> None:
    """CancelVisit (national 2404): only with no live settlement."""
    if visit.settled_stays:
        raise DomainError(Reason.VISIT_STATE_INVALID, "the visit has live settlements: cancel them before the visit")


def visit_changes(
    visit: VisitRecord, diagnosis_codes: tuple[str, ...] | None, admission_date: dt.date | None, today: dt.date
) -> dict[str, object]:
    """UpdateVisit (national 2403): diagnoses any time while open (a trauma diagnosis only with
    the declaration made at opening); the admission date only before any settlement of the stay.
    Returns the columns to change (empty: nothing changes)."""
    values: dict[str, object] = {}
    if diagnosis_codes is not None:
        require_trauma_declaration(diagnosis_codes, visit.trauma_declared)
        values["diagnosis_codes"] = diagnosis_codes
    if admission_date is not None and admission_date != visit.admission_date:
        require_not_after_today("admission_date", admission_date, today)
        if visit.settled_stays:
            raise DomainError(
                Reason.VISIT_STATE_INVALID,
                "the admission date cannot change after an interim settlement; cancel it first",
            )
        values["admission_date"] = admission_date
    return values


def require_lines_replaceable(new: list[UploadedLine], existing: list[UploadedLine]) -> tuple[FeeLine, ...]:
    """A line already settled (by an interim settlement) cannot be replaced: cancel that
    settlement, or upload a refund line against an unsettled line. Returns the visit's unsettled
    lines after the upload: the request's first (their indices match the request), then the kept
    unsettled ones."""
    settled = {u.line.line_no: u.settlement_id for u in existing if u.settlement_id}
    clashes = [
        FieldViolation(f"lines[{i}].line_no", f"line {u.line.line_no} was settled by {settled[u.line.line_no]}")
        for i, u in enumerate(new)
        if u.line.line_no in settled
    ]
    if clashes:
        raise DomainError(Reason.VISIT_STATE_INVALID, "fee lines already settled cannot change", violations=clashes)
    replaced = {u.line.line_no for u in new}
    return tuple(u.line for u in new) + tuple(
        u.line for u in existing if u.line.line_no not in replaced and not u.settlement_id
    )


def settle_day(visit: VisitRecord, discharge_date: dt.date | None, today: dt.date) -> dt.date:
    """The day a settlement is made for: the discharge date (not after today), or today."""
    if discharge_date is not None:
        require_not_after_today("discharge_date", discharge_date, today)
    day = discharge_date or today
    if day < visit.admission_date:
        raise DomainError(
            Reason.VALIDATION_FAILED,
            "discharge_date is before the admission date",
            violations=[FieldViolation("discharge_date", "must be on or after the admission date")],
        )
    return day


def require_fees(lines: tuple[FeeLine, ...]) -> None:
    if not lines:
        raise DomainError(Reason.VISIT_HAS_NO_FEES, "no unsettled fee lines: upload fees before settling")


def status_after_settle(interim: bool) -> VisitStatus:
    """An interim settlement keeps the stay open; a final one settles the visit."""
    return VisitStatus.OPEN if interim else VisitStatus.SETTLED


def policy_visit(
    visit: VisitRecord,
    lines: tuple[FeeLine, ...],
    *,
    use_account: bool,
    settle_date: dt.date,
    prior_deductible_fen: int = 0,
    new_admission: bool | None = None,
) -> Visit:
    """The engine's visit; ``new_admission`` defaults to "no earlier live stay settlement"."""
    d = visit.decision
    if d.insurance_type is None or d.person_type is None or d.filing_type is None:
        raise DomainError(Reason.INVARIANT_VIOLATED, "visit decision lacks insurance, person or filing type")
    return Visit(
        service_type=visit.service_type,
        hospital_level=d.hospital_level,
        insurance_type=d.insurance_type,
        person_type=d.person_type,
        filing_type=d.filing_type,
        settle_date=settle_date,
        lines=lines,
        use_personal_account=use_account and d.has_personal_account,
        assistance_category=d.assistance_category or None,
        hardship=d.hardship,
        new_admission=visit.settled_stays == 0 if new_admission is None else new_admission,
        prior_stay_deductible_fen=prior_deductible_fen,
    )


def engine_inputs(visit: VisitRecord, use_account: bool, prior_deductible_fen: int) -> results.Inputs:
    """The engine inputs ``policy_visit`` derives from the visit, kept for recomputation."""
    return results.Inputs(
        new_admission=visit.settled_stays == 0,
        prior_stay_deductible_fen=prior_deductible_fen,
        use_personal_account=use_account and visit.decision.has_personal_account,
    )
