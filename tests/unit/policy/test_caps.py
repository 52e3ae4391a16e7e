"""``remaining_caps``: every annual limit of a policy against a person's accumulators."""

from __future__ import annotations

import datetime

from libs.policy import Accumulators, InsuranceType, PersonType, default_books
from libs.policy.caps import CapLeft, remaining_caps
from libs.policy.model import DeductibleMode, Pool

DAY = datetime.date(2026, 7, 1)


def test_every_cap_with_what_is_left() -> None:
    policy = default_books()[0].find("110100", InsuranceType.EMPLOYEE, DAY)
    supp = policy.supplementary
    assert supp is not None
    category = sorted(policy.assistance)[0]
    rule = policy.assistance[category]
    acc = Accumulators(
        year=2026,
        pooled_paid_fen=policy.pool_caps_fen[Pool.INPATIENT] + 5,  # above the cap: nothing left, not negative
        outpatient_pooled_paid_fen=1_000,
        outpatient_deductible_borne_fen=300,
        ci_burden_fen=supp.threshold_fen // 2,
        ci_paid_fen=0,
        assistance_base_fen=rule.deductible_fen + 7,
        assistance_paid_fen=11,
    )
    caps = {
        c.cap: c
        for c in remaining_caps(
            policy, acc, person_type=PersonType.RETIRED, hospital_level=3, assistance_category=category
        )
    }
    assert caps["inpatient_pool"] == CapLeft(
        "inpatient_pool", policy.pool_caps_fen[Pool.INPATIENT], acc.pooled_paid_fen, 0
    )
    op_cap = policy.pool_caps_fen[Pool.OUTPATIENT]
    assert caps["outpatient_pool"] == CapLeft("outpatient_pool", op_cap, 1_000, op_cap - 1_000)
    assert caps["supplementary_threshold"].remaining_fen == supp.threshold_fen - supp.threshold_fen // 2
    supp_cap = caps[supp.fund.value]
    assert supp_cap.limit_fen == supp.annual_cap_fen
    assert caps["assistance"] == CapLeft("assistance", rule.annual_cap_fen, 11, rule.annual_cap_fen - 11)
    assert caps["assistance_deductible"].remaining_fen == 0
    annual = [
        s
        for s, b in policy.benefits.items()
        if b.deductible.mode is DeductibleMode.ANNUAL and b.pool is Pool.OUTPATIENT
    ]
    for service in annual:
        amount = policy.benefits[service].deductible.first_fen[PersonType.RETIRED][3]
        assert caps[f"deductible:{service.value}"] == CapLeft(
            f"deductible:{service.value}", amount, 300, max(amount - 300, 0)
        )
    per_admission = [s for s, b in policy.benefits.items() if b.deductible.mode is not DeductibleMode.ANNUAL]
    assert all(f"deductible:{s.value}" not in caps for s in per_admission)


def test_hardship_uses_its_own_threshold_and_cap_and_no_category_lists_no_assistance() -> None:
    policy = default_books()[0].find("510100", InsuranceType.RESIDENT, DAY)
    supp = policy.supplementary
    assert supp is not None
    acc = Accumulators(year=2026, ci_paid_fen=100)
    caps = {
        c.cap: c
        for c in remaining_caps(policy, acc, person_type=PersonType.RESIDENT_ADULT, hospital_level=2, hardship=True)
    }
    assert caps["supplementary_threshold"].limit_fen == supp.hardship_threshold_fen
    want = supp.hardship_annual_cap_fen
    assert caps[supp.fund.value] == CapLeft(supp.fund.value, want, 100, None if want is None else max(want - 100, 0))
    assert "assistance" not in caps
