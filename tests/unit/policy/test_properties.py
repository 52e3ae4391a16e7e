"""Property tests over random policies, catalogues, visits and person-years with reversals."""

from __future__ import annotations

import dataclasses
import datetime
import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.policy import (
    Accumulators,
    Catalogue,
    FilingType,
    InsuranceType,
    PersonType,
    Policy,
    ServiceType,
    SettlementResult,
    Visit,
    check_identities,
    generate_catalogue,
    generate_visit,
    parse_policy,
    reverse,
    settle,
)
from libs.policy.model import AMOUNT_FIELDS, PERSON_TYPES_OF, Pool
from tests.unit.policy.builders import policy_dict

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
YEAR = 2026


@functools.cache
def catalogue(seed: int) -> Catalogue:
    return generate_catalogue("990100", seed=seed, n_items=120)


@st.composite
def bands(draw: Any, max_edge: int) -> list[dict[str, Any]]:
    edges = sorted(set(draw(st.lists(st.integers(1, max_edge), max_size=2))))
    out, lo = [], 0
    for hi in [*edges, None]:
        out.append({"from_fen": lo, "to_fen": hi})
        lo = hi
    return out


@st.composite
def policies(draw: Any) -> Policy:
    it = draw(st.sampled_from(["employee", "resident"]))
    data = policy_dict(
        insurance_type=it,
        ip_deductible_fen=draw(st.integers(0, 200_000)),
        ip_later_deductible_fen=draw(st.integers(0, 100_000)),
        op_deductible_fen=draw(st.integers(0, 50_000)),
        segment_scope=draw(st.sampled_from(["per_visit", "per_year"])),
        ip_cap_fen=draw(st.integers(0, 3_000_000)),  # small caps so sequences hit them
        op_cap_fen=draw(st.integers(0, 300_000)),
        reductions={
            "referral": draw(st.integers(0, 1000)),
            "emergency": draw(st.integers(0, 1000)),
            "other_temporary": draw(st.integers(0, 2000)),
        },
        supp_threshold_fen=draw(st.integers(0, 500_000)),
        supp_cap_fen=draw(st.one_of(st.none(), st.integers(0, 1_000_000))),
        hardship={
            "threshold_fen": draw(st.integers(0, 300_000)),
            "ratio_bonus_bps": draw(st.integers(0, 2000)),
            "annual_cap_fen": draw(st.one_of(st.none(), st.integers(0, 1_000_000))),
        },
        assistance={
            "low_income": {
                "deductible_fen": draw(st.integers(0, 100_000)),
                "ratio_bps": draw(st.integers(0, 10_000)),
                "annual_cap_fen": draw(st.integers(0, 500_000)),
            }
        },
    )
    people = PERSON_TYPES_OF[InsuranceType(it)]
    for service in data["services"].values():
        segs = draw(bands(2_000_000))
        for seg in segs:
            seg["ratio_bps"] = {p: draw(st.lists(st.integers(0, 10_000), min_size=4, max_size=4)) for p in people}
        service["segments"] = segs
    sbands = draw(bands(1_000_000))
    for b in sbands:
        b["ratio_bps"] = draw(st.integers(0, 10_000))
    data["supplementary"]["bands"] = sbands
    return parse_policy(data, "random-policy.yaml")


@st.composite
def visits(draw: Any, policy: Policy, cat: Catalogue) -> Visit:
    people = policy.person_types
    return generate_visit(
        cat,
        seed=draw(st.integers(0, 10_000)),
        n_lines=draw(st.integers(1, 12)),
        n_refunds=draw(st.integers(0, 3)),
        n_unknown=draw(st.integers(0, 2)),
        service_type=draw(st.sampled_from(list(ServiceType))),
        insurance_type=policy.insurance_type,
        person_type=draw(st.sampled_from(people)),
        filing_type=draw(st.sampled_from(list(FilingType))),
        hospital_level=draw(st.integers(0, 3)),
        settle_date=datetime.date(YEAR, draw(st.integers(1, 12)), 1),
        use_personal_account=draw(st.booleans()),
        assistance_category=draw(st.sampled_from([None, "low_income"])),
        hardship=draw(st.booleans()),
    )


def fresh_acc(balance: int) -> Accumulators:
    return Accumulators(YEAR, account_balance_fen=balance)


def assert_within_caps(policy: Policy, acc: Accumulators, hardship_seen: bool, normal_seen: bool = True) -> None:
    assert acc.pooled_paid_fen <= policy.pool_caps_fen[Pool.INPATIENT]
    assert acc.outpatient_pooled_paid_fen <= policy.pool_caps_fen[Pool.OUTPATIENT]
    supp = policy.supplementary
    assert supp is not None
    # each visit is capped by the cap of its own group (hardship or not); None = no cap
    applicable = ([supp.annual_cap_fen] if normal_seen else []) + (
        [supp.hardship_annual_cap_fen] if hardship_seen else []
    )
    if applicable and None not in applicable:
        assert acc.ci_paid_fen <= max(c for c in applicable if c is not None)
    assert acc.assistance_paid_fen <= policy.assistance["low_income"].annual_cap_fen
    assert acc.account_balance_fen >= 0


@st.composite
def person_years(draw: Any) -> tuple[Policy, Catalogue, list[Visit], list[int | None], int]:
    policy = draw(policies())
    cat = catalogue(draw(st.integers(0, 3)))
    vs = draw(st.lists(visits(policy, cat), min_size=1, max_size=6))
    # for each step, optionally reverse an earlier (not yet reversed) settlement
    rev = draw(st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=len(vs), max_size=len(vs)))
    balance = draw(st.integers(0, 300_000)) if policy.personal_account else 0
    return policy, cat, vs, rev, balance


def assert_settlement_shape(r: SettlementResult) -> None:
    check_identities(r)
    for name in AMOUNT_FIELDS:
        assert getattr(r, name) >= 0, name
    assert all(f.paid_fen >= 0 for f in r.funds)


@FAST
@given(person_years())
def test_a_year_of_settlements_and_reversals_keeps_identities_and_caps(
    case: tuple[Policy, Catalogue, list[Visit], list[int | None], int],
) -> None:
    policy, cat, vs, rev, balance = case
    acc = fresh_acc(balance)
    live: list[SettlementResult] = []
    hardship_seen = normal_seen = False
    for v, r_idx in zip(vs, rev, strict=True):
        hardship_seen |= v.hardship
        normal_seen |= not v.hardship
        r = settle(policy, cat, v, acc)
        assert_settlement_shape(r)
        assert r.accumulators_before == acc
        acc = r.accumulators_after
        live.append(r)
        assert_within_caps(policy, acc, hardship_seen, normal_seen)
        if r_idx is not None and live:
            victim = live.pop(r_idx % len(live))
            back = reverse(victim, acc)
            assert back.accumulators_after == acc.minus(victim.accumulator_delta)
            acc = back.accumulators_after
            assert_within_caps(policy, acc, hardship_seen, normal_seen)
    # reversing everything that is left restores the empty year exactly
    for r in reversed(live):
        acc = reverse(r, acc).accumulators_after
    assert acc == fresh_acc(balance)


@FAST
@given(st.data())
def test_settle_then_reverse_is_the_exact_mirror_and_restores_accumulators(data: st.DataObject) -> None:
    policy = data.draw(policies())
    cat = catalogue(data.draw(st.integers(0, 3)))
    v = data.draw(visits(policy, cat))
    acc = fresh_acc(data.draw(st.integers(0, 300_000)) if policy.personal_account else 0)
    r = settle(policy, cat, v, acc)
    back = reverse(r)
    for name in AMOUNT_FIELDS:
        assert getattr(back, name) == -getattr(r, name)
    assert [tuple(-x if isinstance(x, int) else x for x in s[3:8]) for s in r.lines] == [
        tuple(s[3:8]) for s in back.lines
    ]
    assert [(f.fund, -f.base_fen, -f.paid_fen) for f in r.funds] == [
        (f.fund, f.base_fen, f.paid_fen) for f in back.funds
    ]
    assert back.accumulators_after == acc
    assert back.accumulator_delta == r.accumulator_delta.negated()


@FAST
@given(st.data())
def test_the_same_versions_replay_to_the_same_result(data: st.DataObject) -> None:
    policy = data.draw(policies())
    cat = catalogue(data.draw(st.integers(0, 3)))
    v = data.draw(visits(policy, cat))
    acc = fresh_acc(0)
    first = settle(policy, cat, v, acc)
    again = settle(policy, cat, v, acc)
    assert first == again
    assert first.policy_version == policy.version and first.catalogue_version == cat.version


@FAST
@given(st.data())
def test_swapping_two_visits_never_pays_more_than_the_annual_caps(data: st.DataObject) -> None:
    policy = data.draw(policies())
    cat = catalogue(data.draw(st.integers(0, 3)))
    a = data.draw(visits(policy, cat))
    b = data.draw(visits(policy, cat))
    a = dataclasses.replace(a, hardship=False)
    b = dataclasses.replace(b, hardship=False)
    for first, second in ((a, b), (b, a)):
        acc = fresh_acc(0)
        r1 = settle(policy, cat, first, acc)
        r2 = settle(policy, cat, second, r1.accumulators_after)
        end = r2.accumulators_after
        assert_within_caps(policy, end, hardship_seen=False)
        pooled = r1.pooled_fund_fen + r2.pooled_fund_fen
        assert pooled == end.pooled_paid_fen + end.outpatient_pooled_paid_fen
        assert pooled <= sum(policy.pool_caps_fen.values())
        supp = policy.supplementary
        assert supp is not None
        if supp.annual_cap_fen is not None:
            assert r1.large_amount_fen + r2.large_amount_fen + r1.critical_illness_fen + r2.critical_illness_fen <= (
                supp.annual_cap_fen
            )


def test_person_type_must_belong_to_the_scheme() -> None:
    assert PersonType.RESIDENT_ADULT not in PERSON_TYPES_OF[InsuranceType.EMPLOYEE]
