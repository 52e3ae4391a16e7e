"""Filing rules (pure): validity periods at their edges, the minimum period before a change,
retro-filing, special-disease institutions, and the min-period policy data."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.core.errors import DomainError, Reason
from services.filing.domain.model import (
    Channel,
    Filing,
    FilingStatus,
    FilingType,
    InstitutionInfo,
    MinPeriodRules,
    NewFiling,
    SpecialDisease,
    add_months,
    as_registered,
    cancel,
    check_min_period,
    check_replaces,
    check_special_disease_institutions,
    parse_min_period_rules,
    supersede,
    temporary_min_end,
    validate_new_filing,
)

TODAY = dt.date(2026, 3, 10)
NOW = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)


def new(**kw: object) -> NewFiling:
    base = NewFiling(
        person_no="P1",
        insured_region="110100",
        treatment_region="310100",
        filing_type=FilingType.REFERRAL,
        insurance_type="employee",
        channel=Channel.APP,
        commitment_signed=True,
        start_date=dt.date(2026, 1, 1),
        end_date=dt.date(2026, 6, 30),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def filing(**kw: object) -> Filing:
    base = Filing(
        filing_id="F1",
        person_no="P1",
        insured_region="110100",
        treatment_region="310100",
        filing_type=FilingType.RELOCATED_RETIREE,
        insurance_type="employee",
        channel=Channel.APP,
        commitment_signed=True,
        status=FilingStatus.ACTIVE,
        start_date=dt.date(2026, 1, 1),
        end_date=None,
        retro=False,
        special_diseases=(),
        trauma_declared=False,
        employer_name="",
        revision=1,
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def reason_of(fn: object, *args: object, **kw: object) -> Reason:
    with pytest.raises(DomainError) as exc:
        fn(*args, **kw)  # type: ignore[operator]
    return exc.value.reason


# -- temporary validity: at least six months, both ends included ------------------------------


@pytest.mark.parametrize(
    ("start", "earliest_end"),
    [
        (dt.date(2026, 1, 1), dt.date(2026, 6, 30)),
        (dt.date(2026, 8, 31), dt.date(2027, 2, 27)),  # 28 Feb is the clamped "same day"
        (dt.date(2027, 8, 31), dt.date(2028, 2, 28)),  # leap year: 29 Feb - 1
        (dt.date(2026, 7, 1), dt.date(2026, 12, 31)),  # ends on the last day of the year
        (dt.date(2026, 12, 31), dt.date(2027, 6, 29)),  # starts on the last day of the year
    ],
)
def test_temporary_filing_is_valid_at_least_six_months_to_the_day(start: dt.date, earliest_end: dt.date) -> None:
    assert temporary_min_end(start) == earliest_end
    validate_new_filing(new(start_date=start, end_date=earliest_end), today=TODAY)
    assert (
        reason_of(validate_new_filing, new(start_date=start, end_date=earliest_end - dt.timedelta(days=1)), today=TODAY)
        is Reason.FILING_PERIOD_INVALID
    )


def test_temporary_filing_needs_an_end_date_and_long_term_may_carry_one() -> None:
    assert reason_of(validate_new_filing, new(end_date=None), today=TODAY) is Reason.VALIDATION_FAILED
    long_term = new(filing_type=FilingType.LONG_TERM_RESIDENT, end_date=dt.date(2027, 1, 1))
    validate_new_filing(long_term, today=TODAY)  # the end date the person chooses
    validate_new_filing(replace(long_term, end_date=None), today=TODAY)  # or valid until changed
    before_start = replace(long_term, end_date=long_term.start_date - dt.timedelta(days=1))
    assert reason_of(validate_new_filing, before_start, today=TODAY) is Reason.VALIDATION_FAILED


def test_a_filing_starts_on_its_registration_day_a_backdated_one_is_a_retro_filing() -> None:
    today_ = new(start_date=TODAY, end_date=temporary_min_end(TODAY))
    assert as_registered(today_, TODAY) == today_ and not today_.retro
    later = replace(today_, start_date=TODAY + dt.timedelta(days=5))
    assert as_registered(later, TODAY) == later
    backdated = as_registered(replace(today_, start_date=TODAY - dt.timedelta(days=9)), TODAY)
    assert backdated.start_date == TODAY and backdated.retro
    assert backdated.treatment_start_date == TODAY - dt.timedelta(days=9)
    earlier = replace(
        today_, start_date=TODAY - dt.timedelta(days=2), treatment_start_date=TODAY - dt.timedelta(days=7)
    )
    assert as_registered(earlier, TODAY).treatment_start_date == TODAY - dt.timedelta(days=7)


def test_intra_province_filing_and_bad_codes_are_named_together() -> None:
    with pytest.raises(DomainError) as exc:
        validate_new_filing(new(treatment_region="110200", insurance_type="", person_no=""), today=TODAY)
    fields = {v.field for v in exc.value.violations}
    assert fields == {"treatment_region_code", "insurance_type", "person_no"}


def test_commitment_must_be_signed() -> None:
    assert reason_of(validate_new_filing, new(commitment_signed=False), today=TODAY) is Reason.FILING_COMMITMENT_MISSING


# -- retro-filing ----------------------------------------------------------------------------


def test_retro_filing_covers_the_treatment_before_it_and_may_enable_manual_reimbursement() -> None:
    n = new(start_date=TODAY, end_date=temporary_min_end(TODAY), treatment_start_date=dt.date(2026, 3, 1))
    validate_new_filing(n, today=TODAY)
    assert n.retro
    f = filing(start_date=TODAY, retro=True, treatment_start_date=dt.date(2026, 3, 1))
    assert f.covers("310100", dt.date(2026, 3, 1)) and not f.covers("310100", dt.date(2026, 2, 28))
    validate_new_filing(replace(n, self_paid_discharged=True), today=TODAY)


def test_self_paid_discharge_needs_a_retro_filing_and_treatment_cannot_be_in_the_future() -> None:
    with pytest.raises(DomainError) as exc:
        validate_new_filing(new(self_paid_discharged=True), today=TODAY)
    assert {v.field for v in exc.value.violations} == {"self_paid_discharged"}
    with pytest.raises(DomainError) as exc:
        validate_new_filing(
            new(
                start_date=dt.date(2026, 4, 1),
                end_date=dt.date(2026, 12, 31),
                treatment_start_date=TODAY + dt.timedelta(1),
            ),
            today=TODAY,
        )
    assert {v.field for v in exc.value.violations} == {"treatment_start_date"}


# -- minimum period before a long-term filing changes -----------------------------------------


@pytest.mark.parametrize("months", [0, 3, 6])
def test_long_term_filing_changes_only_after_the_insured_places_minimum_period(months: int) -> None:
    old = filing(start_date=dt.date(2025, 8, 31))
    earliest = add_months(old.start_date, months)
    check_min_period(old, earliest, months)
    cancel(old, earliest, NOW, min_months=months)
    if months:
        day_before = earliest - dt.timedelta(days=1)
        assert reason_of(check_min_period, old, day_before, months) is Reason.FILING_MIN_PERIOD_NOT_REACHED
        assert reason_of(cancel, old, day_before, NOW, min_months=months) is Reason.FILING_MIN_PERIOD_NOT_REACHED


def test_six_months_from_31_august_is_the_end_of_february() -> None:
    assert add_months(dt.date(2025, 8, 31), 6) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2027, 8, 31), 6) == dt.date(2028, 2, 29)
    assert add_months(dt.date(2026, 7, 15), 6) == dt.date(2027, 1, 15)  # across the year end


def test_temporary_filing_can_be_replaced_any_day() -> None:
    old = filing(filing_type=FilingType.REFERRAL, end_date=dt.date(2026, 6, 30))
    check_min_period(old, old.start_date, 6)


def test_a_new_filing_expires_the_old_one_on_its_start_day() -> None:
    old = filing()
    ended = supersede(old, "F2", dt.date(2026, 7, 1), NOW)
    assert ended.status is FilingStatus.SUPERSEDED and ended.superseded_by == "F2" and ended.revision == 2
    assert ended.covers("310100", dt.date(2026, 6, 30))
    assert not ended.covers("310100", dt.date(2026, 7, 1))
    assert reason_of(supersede, ended, "F3", dt.date(2026, 8, 1), NOW) is Reason.FILING_NOT_ACTIVE
    assert reason_of(cancel, ended, dt.date(2026, 8, 1), NOW, min_months=0) is Reason.FILING_NOT_ACTIVE


def test_a_new_filing_cannot_start_before_the_one_it_replaces() -> None:
    old = filing(start_date=dt.date(2026, 1, 1))
    assert (
        reason_of(check_replaces, old, new(start_date=dt.date(2025, 12, 31), end_date=dt.date(2026, 6, 30)))
        is Reason.FILING_PERIOD_INVALID
    )


# -- special diseases -------------------------------------------------------------------------


def test_special_disease_is_filed_with_at_most_two_institutions() -> None:
    two = new(special_diseases=(SpecialDisease("M03900", ("H1", "H2")),))
    validate_new_filing(two, today=TODAY)
    three = new(special_diseases=(SpecialDisease("M03900", ("H1", "H2", "H3")),))
    assert reason_of(validate_new_filing, three, today=TODAY) is Reason.SPECIAL_DISEASE_TOO_MANY_INSTITUTIONS
    dup = new(special_diseases=(SpecialDisease("M03900", ("H1", "H1")),))
    assert reason_of(validate_new_filing, dup, today=TODAY) is Reason.VALIDATION_FAILED


def info(code: str = "H1", **kw: object) -> InstitutionInfo:
    base = InstitutionInfo(code, "310100", True, frozenset({"M03900"}))
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        (None, Reason.INSTITUTION_NOT_FOUND),
        (info(region_code="320100"), Reason.INSTITUTION_REGION_MISMATCH),
        (info(chronic_outpatient_networked=False), Reason.INSTITUTION_NOT_NETWORKED),
        (info(special_disease_codes=frozenset({"M00000"})), Reason.SPECIAL_DISEASE_NOT_OPENED),
    ],
)
def test_special_disease_institution_must_be_opened_for_the_disease(
    found: InstitutionInfo | None, reason: Reason
) -> None:
    n = new(special_diseases=(SpecialDisease("M03900", ("H0", "H1")),))
    with pytest.raises(DomainError) as exc:
        check_special_disease_institutions(n, {"H0": info("H0"), "H1": found})
    assert exc.value.reason is reason
    assert exc.value.violations[0].field == "special_diseases[0].institution_codes[1]"
    check_special_disease_institutions(n, {"H0": info("H0"), "H1": info()})


# -- policy data ------------------------------------------------------------------------------


def test_min_period_rules_are_data_per_insured_region_with_a_default() -> None:
    rules = parse_min_period_rules({"default": 6, "regions": {"440100": 3, 420100: 0}})
    assert rules.months_for("440100") == 3 and rules.months_for("420100") == 0 and rules.months_for("110100") == 6
    assert MinPeriodRules().months_for("x") == 6


def test_min_period_above_six_months_is_refused_naming_the_entry() -> None:
    with pytest.raises(DomainError) as exc:
        parse_min_period_rules({"default": 7, "regions": {"440100": -1, "4401": 3, "510100": True}}, "rules.yaml")
    assert exc.value.reason is Reason.POLICY_DATA_INVALID
    assert {v.field for v in exc.value.violations} == {
        "rules.yaml:default",
        "rules.yaml:regions.440100",
        "rules.yaml:regions.4401",
        "rules.yaml:regions.510100",
    }


def test_the_shipped_min_period_file_is_valid() -> None:
    from services.filing.server import load_min_period_rules

    assert 0 <= load_min_period_rules().default_months <= 6


# -- properties -------------------------------------------------------------------------------

dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2090, 12, 31))


@given(dates)
def test_temporary_minimum_end_is_about_six_months_and_never_before_the_start(start: dt.date) -> None:
    end = temporary_min_end(start)
    assert 178 <= (end - start).days + 1 <= 184
    validate_new_filing(new(start_date=start, end_date=end, treatment_start_date=None), today=start)


@given(dates, st.integers(0, 6), st.integers(-400, 400))
def test_a_long_term_filing_changes_exactly_from_the_minimum_period(start: dt.date, months: int, offset: int) -> None:
    old = filing(start_date=start)
    day = add_months(start, months) + dt.timedelta(days=offset)
    ok = offset >= 0
    try:
        check_min_period(old, day, months)
        assert ok
    except DomainError as exc:
        assert not ok and exc.reason is Reason.FILING_MIN_PERIOD_NOT_REACHED


@given(dates, st.integers(0, 400), st.integers(-5, 400))
def test_a_superseded_filing_covers_exactly_the_days_before_the_new_start(
    start: dt.date, after: int, probe: int
) -> None:
    old = filing(start_date=start)
    new_start = start + dt.timedelta(days=after)
    ended = supersede(old, "F2", new_start, NOW)
    day = start + dt.timedelta(days=probe)
    assert ended.covers("310100", day) == (start <= day < new_start)
