"""Eligibility: registry entities and the decision rules (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from libs.core.errors import DomainError, FieldViolation, Reason


class ServiceType(StrEnum):
    INPATIENT = "inpatient"
    GENERAL_OUTPATIENT = "general_outpatient"
    CHRONIC_OUTPATIENT = "chronic_outpatient"
    PHARMACY = "pharmacy"


class PersonStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Region:
    region_code: str
    name: str

    @property
    def province_code(self) -> str:
        return self.region_code[:2]


@dataclass(frozen=True, slots=True)
class Institution:
    institution_code: str
    name: str
    region_code: str
    level: int  # 0 unrated, 1..3 tiers
    networked_services: frozenset[ServiceType]
    special_disease_codes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class InsuredPerson:
    person_no: str
    id_number: str
    name: str
    insured_region: str
    insurance_type: str  # "employee" | "resident"
    person_type: str  # in_service | retired | resident_adult | resident_minor
    status: PersonStatus
    assistance_category: str = ""
    hardship: bool = False
    has_personal_account: bool = False
    card_number: str = ""
    card_serial: str = ""
    sex: str = ""
    birth_date: dt.date | None = None
    account_balance_fen: int = 0
    employer_name: str = ""


def _employer_key(name: str) -> str:
    """Employer names compare without case and spacing."""
    return "".join(name.split()).casefold()


@dataclass(frozen=True, slots=True)
class FilingView:
    """What eligibility keeps of a filing (from the WatchFilings stream)."""

    filing_id: str
    person_no: str
    treatment_region: str
    filing_type: str
    active: bool
    start_date: dt.date
    end_date: dt.date | None
    covers_from: dt.date
    end_effective_date: dt.date | None
    special_diseases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    trauma_declared: bool = False
    retro: bool = False
    insured_region: str = ""
    insurance_type: str = ""
    manual_reimbursement: bool = False
    employer_name: str = ""

    def in_period(self, day: dt.date) -> bool:
        """Valid on ``day`` (any region): a superseded or cancelled filing still covers the days
        before it ended; a retro-filing covers from the first day of treatment."""
        if not self.active and (self.end_effective_date is None or day >= self.end_effective_date):
            return False
        if day < self.covers_from:
            return False
        return self.end_date is None or day <= self.end_date

    def covers(self, region: str, day: dt.date) -> bool:
        return region == self.treatment_region and self.in_period(day)

    def matches(self, person: InsuredPerson) -> bool:
        """Filed under the person's current insured relation (a change of insured region,
        insurance type or employer needs a new filing). Unknown fields (old events, an employer
        not given on either side) do not refuse."""
        same_employer = (
            not self.employer_name
            or not person.employer_name
            or _employer_key(self.employer_name) == _employer_key(person.employer_name)
        )
        return (
            same_employer
            and (not self.insured_region or self.insured_region == person.insured_region)
            and (not self.insurance_type or self.insurance_type == person.insurance_type)
        )

    def manual_reimbursement_on(self, day: dt.date) -> bool:
        """Treatment before the filing start, self-paid and discharged before filing."""
        return self.manual_reimbursement and self.retro and day < self.start_date


@dataclass(frozen=True, slots=True)
class Decision:
    eligible: bool
    reasons: tuple[Reason, ...]
    guidance: str
    person: InsuredPerson | None
    institution: Institution | None
    filing: FilingView | None
    treatment_region: str
    emergency_deemed_filed: bool = False
    manual_reimbursement: bool = False
    trauma_declared: bool = False


# Emergency rescue counts as filed (policy flag per insured region; the national rule is yes).
EMERGENCY_COUNTS_AS_FILED_DEFAULT = True

_GUIDE_TO_FILE = "guide the person to file (national app, mini-program or service window), then settle"


def decide(
    person: InsuredPerson,
    institution: Institution | None,
    filings: list[FilingView],
    service: ServiceType,
    day: dt.date,
    *,
    special_disease_code: str = "",
    emergency: bool = False,
    emergency_counts_as_filed: bool = EMERGENCY_COUNTS_AS_FILED_DEFAULT,
    trauma_declared: bool = False,
) -> Decision:
    """Every reason that applies, so the desk can fix them all at once. Intra-province treatment
    is refused first: it is not cross-province settlement at all."""
    reasons: list[Reason] = []
    guidance: list[str] = []
    if institution is None:
        return Decision(
            False,
            (Reason.INSTITUTION_NOT_FOUND,),
            "the institution is not a designated institution in the registry",
            person,
            None,
            None,
            "",
            trauma_declared=trauma_declared,
        )
    region = institution.region_code
    if region[:2] == person.insured_region[:2]:
        return Decision(
            False,
            (Reason.INTRA_PROVINCE_NOT_CROSS_PROVINCE,),
            f"the person is insured in province {person.insured_region[:2]}, the same as the institution: "
            "settle under the province's own rules, not cross-province direct settlement",
            person,
            institution,
            None,
            region,
            trauma_declared=trauma_declared,
        )
    if person.status is not PersonStatus.ACTIVE:
        reasons.append(Reason.PERSON_NOT_ACTIVE)
        guidance.append("the person's insurance is suspended at the insured place")
    if service not in institution.networked_services:
        reasons.append(Reason.INSTITUTION_NOT_NETWORKED)
        guidance.append(f"the institution has not opened cross-province settlement for {service.value}")
    # Newest first: on the day a new filing starts, it (not the one it replaced) is the filing.
    ordered = sorted(filings, key=lambda f: (f.start_date, f.active), reverse=True)
    usable = [f for f in ordered if f.matches(person)]
    filing = next((f for f in usable if f.covers(region, day)), None)
    deemed = False
    if filing is None:
        if emergency and emergency_counts_as_filed:
            deemed = True
        elif any(f.covers(region, day) for f in ordered):
            reasons.append(Reason.FILING_INSURED_RELATION_CHANGED)
            guidance.append(
                "the filing was made under another insured region, insurance type or employer: "
                "the person must file again under the current insured relation"
            )
        elif any(f.treatment_region == region for f in usable):
            reasons.append(Reason.FILING_NOT_VALID_ON_DATE)
            guidance.append(f"the person's filing for this region is not valid on {day.isoformat()}: {_GUIDE_TO_FILE}")
        elif any(f.in_period(day) for f in ordered):
            reasons.append(Reason.FILING_REGION_MISMATCH)
            guidance.append(f"the person's filing is for another treatment region: {_GUIDE_TO_FILE}")
        else:
            reasons.append(Reason.FILING_REQUIRED)
            guidance.append(f"the person has not filed for out-of-province treatment here: {_GUIDE_TO_FILE}")
    if service is ServiceType.CHRONIC_OUTPATIENT:
        allowed = filing.special_diseases.get(special_disease_code, ()) if filing else ()
        if institution.institution_code not in allowed:
            reasons.append(Reason.SPECIAL_DISEASE_NOT_FILED)
            guidance.append(
                f"disease {special_disease_code} is not filed with this institution "
                "(file it with up to two designated institutions)"
            )
        elif special_disease_code not in institution.special_disease_codes:
            reasons.append(Reason.SPECIAL_DISEASE_NOT_OPENED)
            guidance.append("the institution has not opened direct settlement for this disease")
    return Decision(
        eligible=not reasons,
        reasons=tuple(reasons),
        guidance="; ".join(guidance),
        person=person,
        institution=institution,
        filing=filing,
        treatment_region=region,
        emergency_deemed_filed=deemed,
        manual_reimbursement=filing is not None and filing.manual_reimbursement_on(day),
        trauma_declared=trauma_declared or (filing is not None and filing.trauma_declared),
    )


@dataclass(frozen=True, slots=True)
class EligibilityRules:
    """Policy flags per insured region: does emergency rescue count as filed?"""

    emergency_counts_as_filed_default: bool = EMERGENCY_COUNTS_AS_FILED_DEFAULT
    emergency_counts_as_filed_by_region: Mapping[str, bool] = field(default_factory=dict)

    def emergency_counts_as_filed(self, insured_region: str) -> bool:
        return self.emergency_counts_as_filed_by_region.get(insured_region, self.emergency_counts_as_filed_default)


def parse_rules(data: object, source: str = "rules") -> EligibilityRules:
    """``{"emergency_counts_as_filed": {"default": true, "regions": {"110100": true}}}``."""
    if not isinstance(data, dict) or set(data) - {"emergency_counts_as_filed"}:
        raise DomainError(
            Reason.POLICY_DATA_INVALID,
            f"{source}: expected a mapping with emergency_counts_as_filed",
            violations=[FieldViolation(source, "expected a mapping with emergency_counts_as_filed")],
        )
    section = data.get("emergency_counts_as_filed") or {}
    bad: list[FieldViolation] = []
    where = f"{source}:emergency_counts_as_filed"
    if not isinstance(section, dict):
        section = {}
        bad.append(FieldViolation(where, "expected a mapping with default and regions"))
    default = section.get("default", EMERGENCY_COUNTS_AS_FILED_DEFAULT)
    if not isinstance(default, bool):
        bad.append(FieldViolation(f"{where}.default", "true or false"))
    regions = section.get("regions") or {}
    by_region: dict[str, bool] = {}
    for code, flag in regions.items() if isinstance(regions, dict) else ():
        key = str(code)
        if not (len(key) == 6 and key.isdigit()):
            bad.append(FieldViolation(f"{where}.regions.{key}", "must be a 6-digit region code"))
        if not isinstance(flag, bool):
            bad.append(FieldViolation(f"{where}.regions.{key}", "true or false"))
        by_region[key] = bool(flag)
    if bad:
        raise DomainError(Reason.POLICY_DATA_INVALID, f"{source}: {len(bad)} invalid entries", violations=bad)
    return EligibilityRules(bool(default), by_region)
