"""Filings: pure rules (no I/O). DOMAIN.md "Filing rules"."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum

from libs.core.errors import DomainError, FieldViolation, Reason, Violations


class FilingType(StrEnum):
    RELOCATED_RETIREE = "relocated_retiree"
    LONG_TERM_RESIDENT = "long_term_resident"
    STATIONED_STAFF = "stationed_staff"
    REFERRAL = "referral"
    EMERGENCY = "emergency"
    OTHER_TEMPORARY = "other_temporary"

    @property
    def long_term(self) -> bool:
        return self in _LONG_TERM


_LONG_TERM = {FilingType.RELOCATED_RETIREE, FilingType.LONG_TERM_RESIDENT, FilingType.STATIONED_STAFF}


class FilingStatus(StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"


class Channel(StrEnum):
    APP = "app"
    MINI_PROGRAM = "mini_program"
    WINDOW = "window"
    OTHER = "other"


MAX_SPECIAL_DISEASE_INSTITUTIONS = 2
TEMPORARY_MIN_MONTHS = 6


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day-of-month ``months`` later, clamped to the month's last day (31 Aug + 6 = 28/29 Feb)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class SpecialDisease:
    disease_code: str
    institution_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewFiling:
    """A validated request to file."""

    person_no: str
    insured_region: str
    treatment_region: str
    filing_type: FilingType
    insurance_type: str
    channel: Channel
    commitment_signed: bool
    start_date: dt.date
    end_date: dt.date | None
    treatment_start_date: dt.date | None = None
    special_diseases: tuple[SpecialDisease, ...] = ()
    trauma_declared: bool = False
    employer_name: str = ""


@dataclass(frozen=True, slots=True)
class Filing:
    filing_id: str
    person_no: str
    insured_region: str
    treatment_region: str
    filing_type: FilingType
    insurance_type: str
    channel: Channel
    commitment_signed: bool
    status: FilingStatus
    start_date: dt.date
    end_date: dt.date | None
    retro: bool
    special_diseases: tuple[SpecialDisease, ...]
    trauma_declared: bool
    employer_name: str
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime
    superseded_by: str = ""
    end_effective_date: dt.date | None = None
    treatment_start_date: dt.date | None = None

    @property
    def covers_from(self) -> dt.date:
        """A retro-filing also covers the treatment that began before it was filed."""
        if self.retro and self.treatment_start_date is not None:
            return min(self.start_date, self.treatment_start_date)
        return self.start_date

    def covers(self, region: str, day: dt.date) -> bool:
        """Valid for treatment in ``region`` on ``day``; a superseded or cancelled filing still
        covers the days before it ended."""
        if self.status is not FilingStatus.ACTIVE and (
            self.end_effective_date is None or day >= self.end_effective_date
        ):
            return False
        if region != self.treatment_region or day < self.covers_from:
            return False
        return self.end_date is None or day <= self.end_date


def is_region_code(code: str) -> bool:
    return len(code) == 6 and code.isdigit()


def validate_new_filing(f: NewFiling, *, today: dt.date, prefix: str = "") -> None:
    """Raises INVALID_ARGUMENT naming every bad field."""
    v = Violations()
    p = prefix
    v.check(bool(f.person_no) and len(f.person_no) <= 40, f"{p}person_no", "required, at most 40 characters")
    v.check(is_region_code(f.insured_region), f"{p}insured_region_code", "must be a 6-digit region code")
    v.check(is_region_code(f.treatment_region), f"{p}treatment_region_code", "must be a 6-digit region code")
    if is_region_code(f.insured_region) and is_region_code(f.treatment_region):
        v.check(
            f.insured_region[:2] != f.treatment_region[:2],
            f"{p}treatment_region_code",
            "must be in another province than the insured region (cross-province filing)",
        )
    v.check(f.insurance_type in ("employee", "resident"), f"{p}insurance_type", "required")
    if f.filing_type.long_term:
        v.check(f.end_date is None, f"{p}end_date", "long-term filings have no end date")
    elif f.end_date is None:
        v.add(f"{p}end_date", "temporary filings need an end date at least 6 months after the start")
    elif f.end_date < add_months(f.start_date, TEMPORARY_MIN_MONTHS) - dt.timedelta(days=1):
        v.add(f"{p}end_date", "temporary filings are valid at least 6 months")
    if f.treatment_start_date is not None:
        v.check(f.treatment_start_date <= today, f"{p}treatment_start_date", "cannot be in the future")
        v.check(
            f.treatment_start_date <= f.start_date,
            f"{p}treatment_start_date",
            "a retro-filing starts on or after the treatment start",
        )
    for i, sd in enumerate(f.special_diseases):
        v.check(bool(sd.disease_code), f"{p}special_diseases[{i}].disease_code", "required")
        v.check(
            1 <= len(sd.institution_codes) <= MAX_SPECIAL_DISEASE_INSTITUTIONS,
            f"{p}special_diseases[{i}].institution_codes",
            f"one or two designated institutions (at most {MAX_SPECIAL_DISEASE_INSTITUTIONS})",
        )
    v.raise_if_any()
    if not f.commitment_signed:
        raise DomainError(
            Reason.FILING_COMMITMENT_MISSING,
            "the personal commitment must be signed",
            violations=[FieldViolation(f"{p}commitment_signed", "must be true")],
        )


def supersede(old: Filing, new_id: str, effective: dt.date, now: dt.datetime) -> Filing:
    if old.status is not FilingStatus.ACTIVE:
        raise DomainError(Reason.FILING_NOT_ACTIVE, f"filing {old.filing_id} is {old.status.value}")
    return replace(
        old,
        status=FilingStatus.SUPERSEDED,
        superseded_by=new_id,
        revision=old.revision + 1,
        updated_at=now,
        end_effective_date=effective,
    )


def cancel(old: Filing, effective: dt.date, now: dt.datetime, *, min_months: int) -> Filing:
    if old.status is not FilingStatus.ACTIVE:
        raise DomainError(Reason.FILING_NOT_ACTIVE, f"filing {old.filing_id} is {old.status.value}")
    if old.filing_type.long_term and effective < add_months(old.start_date, min_months):
        raise DomainError(
            Reason.FILING_MIN_PERIOD_NOT_REACHED,
            f"a long-term filing can be changed or cancelled {min_months} months after its start",
            metadata={"earliest": add_months(old.start_date, min_months).isoformat()},
        )
    return replace(
        old,
        status=FilingStatus.CANCELLED,
        revision=old.revision + 1,
        updated_at=now,
        end_effective_date=effective,
    )
