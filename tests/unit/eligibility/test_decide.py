"""The eligibility decision (pure): insured and active, filing valid for the region and day (or
emergency / retro), institution networked, special disease filed, never intra-province."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.core.errors import DomainError, Reason
from services.eligibility.domain.model import (
    EligibilityRules,
    FilingView,
    Institution,
    InsuredPerson,
    PersonStatus,
    ServiceType,
    decide,
    parse_rules,
)

DAY = dt.date(2026, 12, 31)
PERSON = InsuredPerson(
    person_no="P1",
    id_number="110105195403120027",
    name="W",
    insured_region="110100",
    insurance_type="employee",
    person_type="retired",
    status=PersonStatus.ACTIVE,
)
HOSPITAL = Institution(
    "H1", "Hospital", "310100", 3, frozenset(ServiceType) - {ServiceType.PHARMACY}, frozenset({"M03900"})
)


def view(**kw: object) -> FilingView:
    base = FilingView(
        filing_id="F1",
        person_no="P1",
        treatment_region="310100",
        filing_type="relocated_retiree",
        active=True,
        start_date=dt.date(2026, 1, 1),
        end_date=None,
        covers_from=dt.date(2026, 1, 1),
        end_effective_date=None,
        insured_region="110100",
        insurance_type="employee",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def reasons(*filings: FilingView, **kw: object) -> tuple[Reason, ...]:
    service = kw.pop("service", ServiceType.INPATIENT)
    day = kw.pop("day", DAY)
    person = kw.pop("person", PERSON)
    inst = kw.pop("institution", HOSPITAL)
    return decide(person, inst, list(filings), service, day, **kw).reasons  # type: ignore[arg-type]


def test_filed_active_person_at_a_networked_hospital_is_eligible_on_the_last_day_of_the_year() -> None:
    d = decide(PERSON, HOSPITAL, [view()], ServiceType.INPATIENT, DAY)
    assert d.eligible and d.filing is not None and d.filing.filing_id == "F1" and d.treatment_region == "310100"


def test_intra_province_treatment_is_not_cross_province() -> None:
    beijing = replace(HOSPITAL, region_code="110105")
    assert reasons(view(treatment_region="110105"), institution=beijing) == (Reason.INTRA_PROVINCE_NOT_CROSS_PROVINCE,)


def test_unknown_institution_and_not_networked_service() -> None:
    assert reasons(view(), institution=None) == (Reason.INSTITUTION_NOT_FOUND,)
    assert reasons(view(), service=ServiceType.PHARMACY) == (Reason.INSTITUTION_NOT_NETWORKED,)


def test_suspended_person_is_refused() -> None:
    assert reasons(view(), person=replace(PERSON, status=PersonStatus.SUSPENDED)) == (Reason.PERSON_NOT_ACTIVE,)


def test_no_filing_guides_the_person_to_file() -> None:
    d = decide(PERSON, HOSPITAL, [], ServiceType.INPATIENT, DAY)
    assert d.reasons == (Reason.FILING_REQUIRED,) and "file" in d.guidance


def test_filing_for_another_region_or_another_period() -> None:
    assert reasons(view(treatment_region="440100")) == (Reason.FILING_REGION_MISMATCH,)
    temporary = view(filing_type="referral", start_date=dt.date(2026, 1, 1), end_date=dt.date(2026, 6, 30))
    assert reasons(temporary, day=dt.date(2026, 6, 30)) == ()
    assert reasons(temporary, day=dt.date(2026, 7, 1)) == (Reason.FILING_NOT_VALID_ON_DATE,)
    assert reasons(view(start_date=dt.date(2027, 1, 1), covers_from=dt.date(2027, 1, 1))) == (
        Reason.FILING_NOT_VALID_ON_DATE,
    )


def test_a_change_of_employer_needs_a_new_filing() -> None:
    from dataclasses import replace

    at_a = replace(PERSON, employer_name="Acme Shanghai Branch")
    assert reasons(view(employer_name="Acme  shanghai branch"), person=at_a) == ()  # case and spacing
    assert reasons(view(employer_name="Other Co"), person=at_a) == (Reason.FILING_INSURED_RELATION_CHANGED,)
    assert reasons(view(employer_name=""), person=at_a) == ()  # not filed under an employer
    assert reasons(view(employer_name="Other Co")) == ()  # the insured place reports none


def test_filing_under_a_former_insured_relation_needs_a_new_filing() -> None:
    assert reasons(view(insurance_type="resident")) == (Reason.FILING_INSURED_RELATION_CHANGED,)
    assert reasons(view(insured_region="120100")) == (Reason.FILING_INSURED_RELATION_CHANGED,)


def test_on_the_day_a_new_filing_starts_it_replaces_the_old_one() -> None:
    change = dt.date(2026, 7, 1)
    old = view(active=False, end_effective_date=change)
    new = view(filing_id="F2", treatment_region="440100", start_date=change, covers_from=change)
    assert decide(PERSON, HOSPITAL, [old, new], ServiceType.INPATIENT, change - dt.timedelta(1)).eligible
    assert reasons(old, new, day=change) == (Reason.FILING_NOT_VALID_ON_DATE,)
    gz = replace(HOSPITAL, region_code="440100")
    d = decide(PERSON, gz, [old, new], ServiceType.INPATIENT, change)
    assert d.eligible and d.filing is not None and d.filing.filing_id == "F2"


def test_emergency_rescue_counts_as_filed_where_the_policy_says_so() -> None:
    d = decide(PERSON, HOSPITAL, [], ServiceType.INPATIENT, DAY, emergency=True)
    assert d.eligible and d.emergency_deemed_filed and d.filing is None
    no = decide(PERSON, HOSPITAL, [], ServiceType.INPATIENT, DAY, emergency=True, emergency_counts_as_filed=False)
    assert no.reasons == (Reason.FILING_REQUIRED,)


def test_retro_filing_covers_earlier_treatment_and_says_when_it_is_manual_reimbursement() -> None:
    retro = view(
        filing_type="referral",
        start_date=dt.date(2026, 3, 10),
        end_date=dt.date(2026, 9, 9),
        covers_from=dt.date(2026, 3, 1),
        retro=True,
        manual_reimbursement=True,
    )
    before = decide(PERSON, HOSPITAL, [retro], ServiceType.INPATIENT, dt.date(2026, 3, 1))
    assert before.eligible and before.manual_reimbursement
    after = decide(PERSON, HOSPITAL, [retro], ServiceType.INPATIENT, dt.date(2026, 3, 10))
    assert after.eligible and not after.manual_reimbursement
    assert reasons(retro, day=dt.date(2026, 2, 28)) == (Reason.FILING_NOT_VALID_ON_DATE,)


def test_special_disease_must_be_filed_with_this_institution_and_opened_there() -> None:
    sd = view(special_diseases={"M03900": ("H1",), "E11900": ("H1",)})
    ok = dict(service=ServiceType.CHRONIC_OUTPATIENT)
    assert reasons(sd, special_disease_code="M03900", **ok) == ()
    assert reasons(view(), special_disease_code="M03900", **ok) == (Reason.SPECIAL_DISEASE_NOT_FILED,)
    assert reasons(sd, special_disease_code="E11900", **ok) == (Reason.SPECIAL_DISEASE_NOT_OPENED,)


def test_trauma_declaration_is_recorded_from_the_desk_or_the_filing() -> None:
    assert decide(PERSON, HOSPITAL, [view()], ServiceType.INPATIENT, DAY, trauma_declared=True).trauma_declared
    assert decide(PERSON, HOSPITAL, [view(trauma_declared=True)], ServiceType.INPATIENT, DAY).trauma_declared
    assert not decide(PERSON, HOSPITAL, [view()], ServiceType.INPATIENT, DAY).trauma_declared


def test_every_reason_is_reported_at_once() -> None:
    got = reasons(person=replace(PERSON, status=PersonStatus.SUSPENDED), service=ServiceType.PHARMACY)
    assert got == (Reason.PERSON_NOT_ACTIVE, Reason.INSTITUTION_NOT_NETWORKED, Reason.FILING_REQUIRED)


def test_emergency_rule_is_policy_data_per_insured_region() -> None:
    rules = parse_rules({"emergency_counts_as_filed": {"default": True, "regions": {"110100": False}}})
    assert not rules.emergency_counts_as_filed("110100") and rules.emergency_counts_as_filed("510100")
    assert EligibilityRules().emergency_counts_as_filed("x")
    with pytest.raises(DomainError) as exc:
        parse_rules({"emergency_counts_as_filed": {"default": "yes", "regions": {"1101": 1}}}, "rules.yaml")
    assert exc.value.reason is Reason.POLICY_DATA_INVALID and len(exc.value.violations) == 3


def test_the_shipped_rules_file_is_valid() -> None:
    from services.eligibility.server import load_rules

    assert load_rules().emergency_counts_as_filed_default is True


@given(
    st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31)),
    st.integers(0, 500),
    st.one_of(st.none(), st.integers(180, 400)),
)
def test_a_filing_covers_exactly_its_period(day: dt.date, start_offset: int, length: int | None) -> None:
    start = dt.date(2025, 6, 1) + dt.timedelta(days=start_offset)
    end = None if length is None else start + dt.timedelta(days=length)
    d = decide(PERSON, HOSPITAL, [view(start_date=start, covers_from=start, end_date=end)], ServiceType.INPATIENT, day)
    assert d.eligible == (start <= day and (end is None or day <= end))
