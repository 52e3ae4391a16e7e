"""POLICY.md §7: the shared worked examples, reproduced exactly."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from libs.policy import (
    Accumulators,
    FeeLine,
    FilingType,
    InsuranceType,
    ItemClass,
    PersonType,
    ServiceType,
    Visit,
    default_books,
    reverse,
    settle,
)
from tests.unit.policy.builders import DRUG_A, DRUG_B, SERVICE_A, make_catalogue, make_policy

DAY = datetime.date(2026, 3, 14)


def visit(lines: tuple[FeeLine, ...], **kw: object) -> Visit:
    base: dict[str, object] = {
        "service_type": ServiceType.INPATIENT,
        "hospital_level": 3,
        "insurance_type": InsuranceType.EMPLOYEE,
        "person_type": PersonType.IN_SERVICE,
        "filing_type": FilingType.LONG_TERM_RESIDENT,
        "settle_date": DAY,
        "lines": lines,
    }
    base.update(kw)
    return Visit(**base)  # type: ignore[arg-type]


# ---- example 1 ------------------------------------------------------------------------------


def _example_1() -> tuple[object, ...]:
    policy, _ = default_books()[0].find("110100", InsuranceType.EMPLOYEE, DAY), None
    catalogue = make_catalogue(
        [
            [DRUG_B, "Drug B 10% self-pay first", "drug", "B", None, 1000],
            [DRUG_A, "Drug A", "drug", "A", None, 0],
        ]
    )
    v = visit(
        (FeeLine(1, DRUG_B, 1000, 230), FeeLine(2, DRUG_A, 1000, 222)),
        service_type=ServiceType.GENERAL_OUTPATIENT,
        use_personal_account=True,
    )
    acc = Accumulators(2026, account_balance_fen=137_815)
    return policy, catalogue, v, acc


def test_example_1_outpatient_below_deductible_is_paid_from_the_account() -> None:
    policy, catalogue, v, acc = _example_1()
    r = settle(policy, catalogue, v, acc)  # type: ignore[arg-type]
    assert (r.total_fen, r.pre_self_pay_fen, r.in_scope_fen) == (452, 23, 429)
    assert (r.full_self_pay_fen, r.over_limit_fen) == (0, 0)
    assert r.deductible_fen == 429
    assert (r.pooled_fund_fen, r.fund_total_fen) == (0, 0)
    assert (r.personal_part_fen, r.personal_account_fen, r.cash_fen) == (452, 452, 0)
    assert r.accumulators_before.account_balance_fen == 137_815
    assert r.accumulators_after.account_balance_fen == 137_363
    assert r.accumulators_after.outpatient_deductible_borne_fen == 429


def test_example_1_cancellation_is_the_exact_mirror_and_restores_deductible_and_balance() -> None:
    policy, catalogue, v, acc = _example_1()
    r = settle(policy, catalogue, v, acc)  # type: ignore[arg-type]
    back = reverse(r)
    assert back.is_reversal
    for f in dataclasses.fields(r):
        if f.name.endswith("_fen"):
            assert getattr(back, f.name) == -getattr(r, f.name), f.name
    assert [ln.amount_fen for ln in back.lines] == [-ln.amount_fen for ln in r.lines]
    assert back.accumulators_before.account_balance_fen == 137_363
    assert back.accumulators_after == acc  # 1378.15 -> 1373.63 -> 1378.15, deductible restored
    assert back.accumulators_after.outpatient_deductible_borne_fen == 0
    assert back.policy_version == r.policy_version and back.catalogue_version == r.catalogue_version


# ---- example 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filing", "pooled_fen"),
    [
        (FilingType.REFERRAL, 1_440_000),
        (FilingType.EMERGENCY, 1_440_000),
        (FilingType.OTHER_TEMPORARY, 1_248_000),
        (FilingType.LONG_TERM_RESIDENT, 1_632_000),
        (FilingType.RELOCATED_RETIREE, 1_632_000),
        (FilingType.STATIONED_STAFF, 1_632_000),
    ],
)
def test_example_2_temporary_treatment_reduces_the_ratio(filing: FilingType, pooled_fen: int) -> None:
    policy = make_policy(ip_ratio_bps=8500, ip_deductible_fen=80_000)
    catalogue = make_catalogue()
    r = settle(
        policy,
        catalogue,
        visit((FeeLine(1, SERVICE_A, 1000, 2_000_000),), filing_type=filing),
        Accumulators(2026),
    )
    assert r.in_scope_fen == 2_000_000
    assert r.deductible_fen == 80_000
    assert r.pooled_fund_fen == pooled_fen


def test_example_2_with_the_shipped_chengdu_policy() -> None:
    policies, _ = default_books()
    policy = policies.find("510100", InsuranceType.EMPLOYEE, DAY)  # tier 3: 85%, deductible 800
    catalogue = make_catalogue()
    got = {
        f: settle(
            policy,
            catalogue,
            visit((FeeLine(1, SERVICE_A, 1000, 2_000_000),), filing_type=f),
            Accumulators(2026),
        ).pooled_fund_fen
        for f in (FilingType.REFERRAL, FilingType.OTHER_TEMPORARY, FilingType.LONG_TERM_RESIDENT)
    }
    assert got == {
        FilingType.REFERRAL: 1_440_000,
        FilingType.OTHER_TEMPORARY: 1_248_000,
        FilingType.LONG_TERM_RESIDENT: 1_632_000,
    }


# ---- example 3 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("hardship", "paid_fen"), [(False, 1_980_000), (True, 2_697_500)])
def test_example_3_critical_illness_for_residents(hardship: bool, paid_fen: int) -> None:
    # pooled fund pays 50% of 100,000.00 with no deductible -> compliant burden 50,000.00
    policy = make_policy(
        insurance_type="resident",
        ip_ratio_bps=5000,
        ip_deductible_fen=0,
        supp_threshold_fen=1_700_000,
        supp_bands=[{"from_fen": 0, "to_fen": None, "ratio_bps": 6000}],
        supp_cap_fen=40_000_000,
        hardship={"threshold_fen": 850_000, "ratio_bonus_bps": 500},
    )
    v = visit(
        (FeeLine(1, SERVICE_A, 1000, 10_000_000),),
        insurance_type=InsuranceType.RESIDENT,
        person_type=PersonType.RESIDENT_ADULT,
        hardship=hardship,
    )
    r = settle(policy, make_catalogue(), v, Accumulators(2026))
    assert r.pooled_fund_fen == 5_000_000
    ci = next(f for f in r.funds if f.fund == "critical_illness")
    assert ci.base_fen == 5_000_000
    assert r.critical_illness_fen == paid_fen
    assert r.large_amount_fen == 0
    assert r.accumulators_after.ci_burden_fen == 5_000_000
    assert r.accumulators_after.ci_paid_fen == paid_fen


@pytest.mark.parametrize(("hardship", "paid_fen"), [(False, 1_980_000), (True, 2_697_500)])
def test_example_3_with_the_shipped_shanghai_resident_policy(hardship: bool, paid_fen: int) -> None:
    policies, _ = default_books()
    policy = policies.find("310100", InsuranceType.RESIDENT, DAY)  # threshold 17,000, 60%; hardship 8,500, +5
    cap = policy.pool_caps_fen[policy.benefits[ServiceType.INPATIENT].pool]
    acc = Accumulators(2026, pooled_paid_fen=cap, admissions=1)  # pooled cap used up: all in scope is burden
    v = visit(
        (FeeLine(1, SERVICE_A, 1000, 5_000_000),),
        insurance_type=InsuranceType.RESIDENT,
        person_type=PersonType.RESIDENT_ADULT,
        hardship=hardship,
    )
    r = settle(policy, make_catalogue(), v, acc)
    assert r.pooled_fund_fen == 0
    assert r.critical_illness_fen == paid_fen


# ---- example 4 ------------------------------------------------------------------------------


def test_example_4_line_split_over_limit_and_self_pay_first() -> None:
    catalogue = make_catalogue([[DRUG_B, "Drug B", "drug", "B", 11_000, 1000]])
    r = settle(make_policy(), catalogue, visit((FeeLine(1, DRUG_B, 1000, 12_000),)), Accumulators(2026))
    (line,) = r.lines
    assert line.item_class is ItemClass.B
    assert (
        line.amount_fen,
        line.over_limit_fen,
        line.pre_self_pay_fen,
        line.in_scope_fen,
        line.full_self_pay_fen,
    ) == (
        12_000,
        1_000,
        1_100,
        9_900,
        0,
    )
    assert line.catalogue_version == catalogue.version
