"""Filings: pure rules (no I/O). DOMAIN.md "Filing rules"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
    self_paid_discharged: bool = False

    @property
    def retro(self) -> bool:
        return self.treatment_start_date is not None and self.treatment_start_date < self.start_date


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
    manual_reimbursement: bool = False

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


def temporary_min_end(start: dt.date) -> dt.date:
    """The earliest end date of a temporary filing: six months of validity, both ends included
    (1 Jan -> 30 Jun; 31 Aug -> 27 Feb or 28 Feb in a leap year)."""
    return add_months(start, TEMPORARY_MIN_MONTHS) - dt.timedelta(days=1)


def as_registered(f: NewFiling, today: dt.date) -> NewFiling:
    """A filing starts on its registration day. Asked to start earlier, it is a retro-filing:
    it starts today and covers the treatment from the day asked (or from an earlier
    ``treatment_start_date``), flagged as such (``retro``)."""
    if f.start_date >= today:
        return f
    treated = min(f.start_date, f.treatment_start_date or f.start_date)
    return replace(f, start_date=today, treatment_start_date=treated)


def validate_new_filing(f: NewFiling, *, today: dt.date, prefix: str = "") -> None:
    """Raises INVALID_ARGUMENT naming every bad field; then the rule refusals (period, commitment,
    special-disease institution count) each with its own reason."""
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
    v.check(len(f.employer_name) <= 200, f"{p}employer_name", "at most 200 characters")
    if f.filing_type.long_term:
        # valid until changed, or until the end date the person chooses
        v.check(f.end_date is None or f.end_date >= f.start_date, f"{p}end_date", "on or after the start date")
    elif f.end_date is None:
        v.add(f"{p}end_date", "temporary filings need an end date at least 6 months after the start")
    if f.treatment_start_date is not None:
        v.check(f.treatment_start_date <= today, f"{p}treatment_start_date", "cannot be in the future")
        v.check(
            f.treatment_start_date <= f.start_date,
            f"{p}treatment_start_date",
            "the treatment of a retro-filing starts on or before the filing start",
        )
    if f.self_paid_discharged:
        v.check(
            f.retro,
            f"{p}self_paid_discharged",
            "only for a retro-filing (treatment_start_date before start_date)",
        )
    seen: set[str] = set()
    for i, sd in enumerate(f.special_diseases):
        v.check(bool(sd.disease_code), f"{p}special_diseases[{i}].disease_code", "required")
        v.check(sd.disease_code not in seen, f"{p}special_diseases[{i}].disease_code", "filed twice")
        seen.add(sd.disease_code)
        v.check(bool(sd.institution_codes), f"{p}special_diseases[{i}].institution_codes", "at least one")
        v.check(
            len(set(sd.institution_codes)) == len(sd.institution_codes),
            f"{p}special_diseases[{i}].institution_codes",
            "an institution is listed twice",
        )
    v.raise_if_any()
    if not f.filing_type.long_term and f.end_date is not None and f.end_date < temporary_min_end(f.start_date):
        raise DomainError(
            Reason.FILING_PERIOD_INVALID,
            f"a temporary filing is valid at least {TEMPORARY_MIN_MONTHS} months: "
            f"end on or after {temporary_min_end(f.start_date).isoformat()}",
            violations=[FieldViolation(f"{p}end_date", f"on or after {temporary_min_end(f.start_date).isoformat()}")],
            metadata={"earliest_end_date": temporary_min_end(f.start_date).isoformat()},
        )
    for i, sd in enumerate(f.special_diseases):
        if len(sd.institution_codes) > MAX_SPECIAL_DISEASE_INSTITUTIONS:
            raise DomainError(
                Reason.SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS,
                f"disease {sd.disease_code} is filed with at most {MAX_SPECIAL_DISEASE_INSTITUTIONS} institutions",
                violations=[
                    FieldViolation(
                        f"{p}special_diseases[{i}].institution_codes",
                        f"at most {MAX_SPECIAL_DISEASE_INSTITUTIONS} designated institutions",
                    )
                ],
            )
    if not f.commitment_signed:
        raise DomainError(
            Reason.FILING_COMMITMENT_MISSING,
            "the personal commitment must be signed",
            violations=[FieldViolation(f"{p}commitment_signed", "must be true")],
        )


@dataclass(frozen=True, slots=True)
class InstitutionInfo:
    """What filing needs to know of a designated institution (owned by eligibility)."""

    institution_code: str
    region_code: str
    chronic_outpatient_networked: bool
    special_disease_codes: frozenset[str]


def check_special_disease_institutions(
    f: NewFiling, found: Mapping[str, InstitutionInfo | None], *, prefix: str = ""
) -> None:
    """Each institution of a special-disease filing is a designated institution in the treatment
    region, networked for chronic/special disease outpatient, with this disease opened."""
    for i, sd in enumerate(f.special_diseases):
        for j, code in enumerate(sd.institution_codes):
            where = f"{prefix}special_diseases[{i}].institution_codes[{j}]"
            info = found.get(code)
            if info is None:
                raise DomainError(
                    Reason.INSTITUTION_NOT_FOUND,
                    f"no designated institution {code}",
                    violations=[FieldViolation(where, "not a designated institution")],
                )
            if info.region_code != f.treatment_region:
                raise DomainError(
                    Reason.INSTITUTION_REGION_MISMATCH,
                    f"institution {code} is not in the treatment region {f.treatment_region}",
                    violations=[FieldViolation(where, f"must be in {f.treatment_region}")],
                )
            if not info.chronic_outpatient_networked:
                raise DomainError(
                    Reason.INSTITUTION_NOT_NETWORKED,
                    f"institution {code} is not networked for chronic/special disease outpatient settlement",
                    violations=[FieldViolation(where, "not networked for chronic/special disease outpatient")],
                )
            if sd.disease_code not in info.special_disease_codes:
                raise DomainError(
                    Reason.SPECIAL_DISEASE_NOT_OPENED,
                    f"institution {code} has not opened direct settlement for disease {sd.disease_code}",
                    violations=[FieldViolation(where, f"has not opened disease {sd.disease_code}")],
                )


def check_replaces(old: Filing, new: NewFiling, *, prefix: str = "") -> None:
    """A new filing replaces the person's current one from its start date onwards."""
    if new.start_date < old.start_date:
        raise DomainError(
            Reason.FILING_PERIOD_INVALID,
            f"the new filing cannot start before the filing it replaces ({old.start_date.isoformat()})",
            violations=[FieldViolation(f"{prefix}start_date", f"on or after {old.start_date.isoformat()}")],
        )


def earliest_change(old: Filing, min_months: int) -> dt.date:
    """The first day a long-term filing may be changed or cancelled (temporary: any day)."""
    return add_months(old.start_date, min_months) if old.filing_type.long_term else old.start_date


def check_min_period(old: Filing, effective: dt.date, min_months: int) -> None:
    earliest = earliest_change(old, min_months)
    if effective < earliest:
        raise DomainError(
            Reason.FILING_MIN_PERIOD_NOT_REACHED,
            f"the long-term filing {old.filing_id} can be changed or cancelled {min_months} months after its start, "
            f"from {earliest.isoformat()}",
            metadata={"earliest": earliest.isoformat()},
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
    check_min_period(old, effective, min_months)
    return replace(
        old,
        status=FilingStatus.CANCELLED,
        revision=old.revision + 1,
        updated_at=now,
        end_effective_date=effective,
    )


# -- policy data: the insured place's minimum period before a long-term filing may change ----

MAX_MIN_MONTHS_BEFORE_CHANGE = 6


@dataclass(frozen=True, slots=True)
class MinPeriodRules:
    """Months a long-term filing must last before a change or cancellation, per insured
    coordinating region (the national ceiling is 6; each insured place may set less)."""

    default_months: int = MAX_MIN_MONTHS_BEFORE_CHANGE
    by_region: Mapping[str, int] = field(default_factory=dict)

    def months_for(self, insured_region: str) -> int:
        return self.by_region.get(insured_region, self.default_months)


def parse_min_period_rules(data: object, source: str = "rules") -> MinPeriodRules:
    """``{"default": 6, "regions": {"110100": 6, ...}}`` -> rules; every bad entry is named."""
    v = Violations()
    if not isinstance(data, dict):
        raise DomainError(
            Reason.POLICY_DATA_INVALID,
            f"{source}: expected a mapping",
            violations=[FieldViolation(source, "expected a mapping with default and regions")],
        )

    def months(value: object, where: str) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MIN_MONTHS_BEFORE_CHANGE
        v.check(ok, where, f"an integer number of months, 0..{MAX_MIN_MONTHS_BEFORE_CHANGE}")
        return value if ok else 0  # type: ignore[return-value]

    unknown = set(data) - {"default", "regions"}
    v.check(not unknown, f"{source}", f"unknown keys: {sorted(unknown)}")
    default = months(data.get("default", MAX_MIN_MONTHS_BEFORE_CHANGE), f"{source}:default")
    regions = data.get("regions") or {}
    by_region: dict[str, int] = {}
    if not isinstance(regions, dict):
        v.add(f"{source}:regions", "expected a mapping of region code to months")
    else:
        for code, value in regions.items():
            key = str(code)
            v.check(is_region_code(key), f"{source}:regions.{key}", "must be a 6-digit region code")
            by_region[key] = months(value, f"{source}:regions.{key}")
    v.raise_if_any(Reason.POLICY_DATA_INVALID)
    return MinPeriodRules(default, by_region)
