"""Eligibility: registry entities and the decision rules (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from libs.core.errors import Reason


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

    def covers(self, region: str, day: dt.date) -> bool:
        if not self.active and (self.end_effective_date is None or day >= self.end_effective_date):
            return False
        if region != self.treatment_region or day < self.covers_from:
            return False
        return self.end_date is None or day <= self.end_date


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


# Emergency rescue counts as filed (policy flag per insured region; the national rule is yes).
EMERGENCY_COUNTS_AS_FILED_DEFAULT = True


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
) -> Decision:
    reasons: list[Reason] = []
    guidance: list[str] = []
    if person.status is not PersonStatus.ACTIVE:
        reasons.append(Reason.PERSON_NOT_ACTIVE)
        guidance.append("the person's insurance is suspended at the insured place")
    if institution is None:
        return Decision(False, (*reasons, Reason.INSTITUTION_NOT_FOUND), "unknown institution", person, None, None, "")
    region = institution.region_code
    if service not in institution.networked_services:
        reasons.append(Reason.INSTITUTION_NOT_NETWORKED)
        guidance.append(f"the institution has not opened cross-province settlement for {service.value}")
    filing = next((f for f in filings if f.covers(region, day)), None)
    deemed = False
    if filing is None:
        if emergency and emergency_counts_as_filed:
            deemed = True
        elif any(f.active for f in filings):
            reasons.append(Reason.FILING_REGION_MISMATCH)
            guidance.append("the person's filing is for another treatment place or period: file again")
        else:
            reasons.append(Reason.FILING_REQUIRED)
            guidance.append(
                "the person has not filed for out-of-province treatment here: guide them to file "
                "(app, mini-program or service window)"
            )
    if service is ServiceType.CHRONIC_OUTPATIENT:
        allowed = filing.special_diseases.get(special_disease_code, ()) if filing else ()
        if institution.institution_code not in allowed:
            reasons.append(Reason.SPECIAL_DISEASE_NOT_FILED)
            guidance.append("the special disease is not filed with this institution")
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
    )
