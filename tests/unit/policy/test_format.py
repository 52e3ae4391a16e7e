"""The policy file format an analyst writes from a notice (docs/policy-format.md): yuan and
percentage strings, the compact ratio table, services left out, supplementary band bases; and
the band detail of the trace."""

from __future__ import annotations

import copy
import dataclasses
import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.core.errors import DomainError, Reason
from libs.policy import (
    Accumulators,
    FeeLine,
    FilingType,
    InsuranceType,
    PersonType,
    Policy,
    ServiceType,
    TraceBand,
    Visit,
    parse_catalogue,
    parse_policy,
    reverse,
    settle,
)
from libs.policy.schema import money_value, ratio_value
from tests.unit.policy.builders import DRUG_A, SERVICE_A, catalogue_dict, make_catalogue, policy_dict

DAY = datetime.date(2026, 5, 1)
CAT = make_catalogue()


def _parse(data: dict[str, Any], origin: str = "f.yaml") -> Policy:
    return parse_policy(data, origin)


def _error(data: dict[str, Any]) -> DomainError:
    with pytest.raises(DomainError) as info:
        parse_policy(data, "f.yaml")
    assert info.value.reason is Reason.POLICY_DATA_INVALID
    return info.value


def _fields(err: DomainError) -> dict[str, str]:
    return {v.field: v.description for v in err.violations}


def _same_meaning(a: Policy, b: Policy) -> None:
    """Equal policies apart from the version (the file text differs, so does its hash)."""
    assert dataclasses.replace(a, version="", content_hash="") == dataclasses.replace(b, version="", content_hash="")


def visit(*lines: FeeLine, **kw: Any) -> Visit:
    base: dict[str, Any] = {
        "service_type": ServiceType.INPATIENT,
        "hospital_level": 3,
        "insurance_type": InsuranceType.EMPLOYEE,
        "person_type": PersonType.RETIRED,
        "filing_type": FilingType.RELOCATED_RETIREE,
        "settle_date": DAY,
        "lines": lines,
    }
    base.update(kw)
    return Visit(**base)


# ------------------------------------------------------------------- money and ratio strings


@pytest.mark.parametrize(
    ("raw", "fen"),
    [(130000, 130000), ("1300", 130000), ("1300.00", 130000), ("28700.5", 2870050), ("0.01", 1), (" 7 ", 700)],
)
def test_money_is_integer_fen_or_an_exact_yuan_string(raw: object, fen: int) -> None:
    assert money_value(raw) == fen


@pytest.mark.parametrize(
    ("raw", "bps"), [(8500, 8500), ("85%", 8500), ("92.2%", 9220), ("92.25%", 9225), ("0%", 0), ("100%", 10000)]
)
def test_a_ratio_is_integer_bps_or_a_percentage_string(raw: object, bps: int) -> None:
    assert ratio_value(raw) == bps


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (1300.0, "floats are not accepted"),
        ("1300.005", "at most two decimals"),
        ("-5", "yuan string"),
        ("85%", "not a percentage"),
        ("1,300", "yuan string"),
        (True, "integer fen"),
        ("+500", "yuan string"),
    ],
)
def test_bad_money_is_refused_with_the_reason(raw: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        money_value(raw)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (0.85, "floats are not accepted"),
        ("85.555%", "at most two decimals"),
        ("85", "percentage string"),
        ("+5%", "percentage string"),
        ("85 %%", "percentage string"),
    ],
)
def test_bad_ratios_are_refused_with_the_reason(raw: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ratio_value(raw)


def test_signed_adjustments_need_their_sign() -> None:
    assert ratio_value("+5%", signed=True) == 500
    assert ratio_value("-3%", signed=True) == -300
    assert ratio_value(-300, signed=True) == -300
    assert money_value("-650.00", signed=True) == -65000
    with pytest.raises(ValueError, match="with its sign"):
        ratio_value("5%", signed=True)


def _as_strings(data: dict[str, Any]) -> dict[str, Any]:
    """The builder's policy with every amount as a yuan string and every ratio as a percentage."""
    out = copy.deepcopy(data)

    def y(fen: int) -> str:
        return f"{fen // 100}.{fen % 100:02d}"

    def p(bps: int) -> str:
        return f"{bps // 100}.{bps % 100:02d}%"

    for s in out["services"].values():
        d = s["deductible"]
        for k in ("first_fen", "later_fen"):
            if k in d:
                d[k] = {person: [y(v) for v in row] for person, row in d[k].items()}
        for seg in s["segments"]:
            seg["from_fen"] = y(seg["from_fen"])
            seg["ratio_bps"] = {person: [p(v) for v in row] for person, row in seg["ratio_bps"].items()}
    for pool in out["pools"].values():
        pool["annual_cap_fen"] = y(pool["annual_cap_fen"])
    out["temporary_reduction_bps"] = {k: p(v) for k, v in out["temporary_reduction_bps"].items()}
    su = out["supplementary"]
    su["threshold_fen"] = y(su["threshold_fen"])
    su["annual_cap_fen"] = y(su["annual_cap_fen"])
    su["bands"] = [{**b, "from_fen": y(b["from_fen"]), "ratio_bps": p(b["ratio_bps"])} for b in su["bands"]]
    su["hardship"] = {"threshold_fen": y(su["hardship"]["threshold_fen"]), "ratio_bonus_bps": "5%"}
    for a in out["assistance"].values():
        a.update(
            deductible_fen=y(a["deductible_fen"]), ratio_bps=p(a["ratio_bps"]), annual_cap_fen=y(a["annual_cap_fen"])
        )
    return out


def test_strings_give_the_same_policy_as_integers() -> None:
    data = policy_dict(ip_deductible_fen=130_050, ip_ratio_bps=9225)
    as_ints, as_strings = _parse(data), _parse(_as_strings(data))
    _same_meaning(as_ints, as_strings)
    assert as_strings.benefits[ServiceType.INPATIENT].deductible.first_fen[PersonType.RETIRED][3] == 130_050
    assert as_ints.content_hash != as_strings.content_hash  # another file text is another version


def test_floats_are_refused_everywhere_and_every_problem_is_listed_at_once() -> None:
    data = policy_dict()
    data["pools"]["inpatient"]["annual_cap_fen"] = 500000.0
    data["services"]["inpatient"]["segments"][0]["ratio_bps"]["retired"][2] = 0.9
    data["services"]["inpatient"]["deductible"]["first_fen"]["in_service"][0] = "1300.001"
    data["supplementary"]["bands"][0]["ratio_bps"] = "60"
    data["temporary_reduction_bps"]["referral"] = 0.1
    err = _error(data)
    got = _fields(err)
    assert set(got) >= {
        "f.yaml:pools.inpatient.annual_cap_fen",
        "f.yaml:services.inpatient.segments[0].ratio_bps.retired[2]",
        "f.yaml:services.inpatient.deductible.first_fen.in_service[0]",
        "f.yaml:supplementary.bands[0].ratio_bps",
        "f.yaml:temporary_reduction_bps.referral",
    }, got
    assert "floats are not accepted" in got["f.yaml:pools.inpatient.annual_cap_fen"]
    assert "floats are not accepted" in got["f.yaml:services.inpatient.segments[0].ratio_bps.retired[2]"]
    assert "(+4 more)" in str(err)


def test_an_adjustment_in_a_grid_is_refused() -> None:
    data = policy_dict()
    data["services"]["inpatient"]["segments"][0]["ratio_bps"]["retired"][1] = "+5%"
    assert "f.yaml:services.inpatient.segments[0].ratio_bps.retired[1]" in _fields(_error(data))


def test_catalogue_rows_take_yuan_and_percentage_strings() -> None:
    rows = catalogue_dict()["items"]
    as_strings = copy.deepcopy(rows)
    for row in as_strings:
        if row[4] is not None:
            row[4] = f"{row[4] // 100}.{row[4] % 100:02d}"
        row[5] = f"{row[5] // 100}%"
    a = parse_catalogue(catalogue_dict(rows), "c.yaml")
    b = parse_catalogue(catalogue_dict(as_strings), "c.yaml")
    assert a.items == b.items
    as_strings[1][4] = 110.0
    as_strings[2][5] = "x%"
    with pytest.raises(DomainError) as info:
        parse_catalogue(catalogue_dict(as_strings), "c.yaml")
    assert {v.field for v in info.value.violations} == {
        "c.yaml:items[1].ceiling_fen",
        "c.yaml:items[2].self_pay_first_bps",
    }


# ------------------------------------------------------------------------ compact ratio tables

GRID = {"in_service": [8500, 8800, 8600, 8500], "retired": [9000, 9300, 9100, 9000]}
COMPACT = {"base": "85%", "person": {"retired": "+5%"}, "level": {"tier1": "+3%", "tier2": "+1%"}}


def test_the_compact_table_expands_to_the_grid_and_settles_identically() -> None:
    grid = policy_dict()
    compact = copy.deepcopy(grid)
    for data, table in ((grid, GRID), (compact, COMPACT)):
        data["services"]["inpatient"]["segments"] = [
            {"from_fen": 0, "to_fen": "10000", "ratio_bps": table},
            {"from_fen": "10000", "to_fen": None, "ratio_bps": table},
        ]
        data["services"]["inpatient"]["deductible"]["first_fen"] = (
            {"base": "1300", "person": {"retired": "-650"}, "level": {"unrated": "+200.50"}}
            if table is COMPACT
            else {"in_service": [150050, 130000, 130000, 130000], "retired": [85050, 65000, 65000, 65000]}
        )
    a, b = _parse(grid), _parse(compact)
    _same_meaning(a, b)
    for level in range(4):
        for person in (PersonType.IN_SERVICE, PersonType.RETIRED):
            v = visit(
                FeeLine(1, DRUG_A, 3000, 900_000),
                FeeLine(2, SERVICE_A, 1000, 37),
                hospital_level=level,
                person_type=person,
            )
            ra, rb = settle(a, CAT, v, Accumulators(2026)), settle(b, CAT, v, Accumulators(2026))
            assert dataclasses.replace(ra, policy_version="") == dataclasses.replace(rb, policy_version="")


def test_a_cell_above_100_percent_after_adjustment_is_named() -> None:
    data = policy_dict()
    data["services"]["inpatient"]["segments"][0]["ratio_bps"] = {
        "base": "95%",
        "person": {"retired": "+5%"},
        "level": {"tier1": "+3%"},
    }
    got = _fields(_error(data))
    cell = "f.yaml:services.inpatient.segments[0].ratio_bps.retired[1]"
    assert set(got) == {cell}, got
    assert got[cell] == "95% +5% (retired) +3% (tier1) = 103%: must be from 0 to 100%"


def test_the_compact_table_names_its_own_mistakes() -> None:
    data = policy_dict()
    data["services"]["inpatient"]["segments"][0]["ratio_bps"] = {
        "base": 0.85,
        "person": {"resident_adult": "+5%"},
        "level": {"tier4": "+1%", "tier2": "2%"},
        "extra": 1,
    }
    got = _fields(_error(data))
    p = "f.yaml:services.inpatient.segments[0].ratio_bps"
    assert set(got) == {f"{p}.base", f"{p}.person.resident_adult", f"{p}.level.tier4", f"{p}.level.tier2", f"{p}.extra"}
    assert "floats are not accepted" in got[f"{p}.base"]
    assert "with its sign" in got[f"{p}.level.tier2"]


# ---------------------------------------------------------------------------- services left out


def test_an_inpatient_only_policy_loads_and_refuses_the_rest() -> None:
    data = policy_dict()
    data["services"] = {"inpatient": data["services"]["inpatient"]}
    policy = _parse(data)
    assert set(policy.benefits) == {ServiceType.INPATIENT}
    settle(policy, CAT, visit(FeeLine(1, DRUG_A, 1000, 900_000)), Accumulators(2026))
    for service in (ServiceType.GENERAL_OUTPATIENT, ServiceType.CHRONIC_OUTPATIENT, ServiceType.PHARMACY):
        with pytest.raises(DomainError) as info:
            settle(policy, CAT, visit(FeeLine(1, DRUG_A, 1000, 900), service_type=service), Accumulators(2026))
        assert info.value.reason is Reason.SERVICE_NOT_COVERED
        assert info.value.metadata == {"policy_version": policy.version, "service_type": service.value}


def test_an_uncovered_service_is_refused_even_with_other_problems_in_the_visit() -> None:
    """The classified visit problems come first (INVALID); a well-formed visit of an uncovered
    service is SERVICE_NOT_COVERED, never a KeyError."""
    data = policy_dict()
    del data["services"]["pharmacy"]
    policy = _parse(data)
    with pytest.raises(DomainError) as info:
        settle(
            policy,
            CAT,
            visit(FeeLine(1, DRUG_A, 1000, 9), service_type=ServiceType.PHARMACY, hospital_level=7),
            Accumulators(2026),
        )
    assert info.value.reason is Reason.VALIDATION_FAILED
    assert [v.field for v in info.value.violations] == ["hospital_level"]


# --------------------------------------------------------------------- supplementary band bases


def _supp(data: dict[str, Any], **kw: Any) -> dict[str, Any]:
    data["supplementary"].update(kw)
    return data


def test_band_basis_is_required() -> None:
    data = policy_dict()
    del data["supplementary"]["band_basis"]
    got = _fields(_error(data))
    assert list(got) == ["f.yaml:supplementary.band_basis"]
    assert "required" in got["f.yaml:supplementary.band_basis"]
    assert (
        "got 'shifted'"
        in _fields(_error(_supp(policy_dict(), band_basis="shifted")))["f.yaml:supplementary.band_basis"]
    )


def test_published_bands_are_the_same_policy_as_shifted_ones() -> None:
    shifted = _supp(
        policy_dict(),
        threshold_fen="20000",
        band_basis="above_threshold",
        bands=[
            {"from_fen": 0, "to_fen": "280000", "ratio_bps": "85%"},
            {"from_fen": "280000", "to_fen": None, "ratio_bps": "90%"},
        ],
    )
    published = _supp(
        policy_dict(),
        threshold_fen="20000",
        band_basis="cumulative_burden",
        bands=[
            {"from_fen": "20000", "to_fen": "300000", "ratio_bps": "85%"},
            {"from_fen": "300000", "to_fen": None, "ratio_bps": "90%"},
        ],
    )
    a, b = _parse(shifted), _parse(published)
    _same_meaning(a, b)
    assert b.supplementary is not None
    assert [(x.from_fen, x.to_fen) for x in b.supplementary.bands] == [(0, 28_000_000), (28_000_000, None)]


def test_bands_that_contradict_their_basis_are_refused() -> None:
    published_as_shifted = _supp(
        policy_dict(),
        threshold_fen="20000",
        band_basis="above_threshold",
        bands=[{"from_fen": "20000", "to_fen": None, "ratio_bps": "85%"}],
    )
    got = _fields(_error(published_as_shifted))
    assert list(got) == ["f.yaml:supplementary.bands[0].from_fen"]
    assert "band_basis: cumulative_burden" in got["f.yaml:supplementary.bands[0].from_fen"]
    shifted_as_published = _supp(
        policy_dict(),
        threshold_fen="20000",
        band_basis="cumulative_burden",
        bands=[{"from_fen": 0, "to_fen": "280000", "ratio_bps": "85%"}, {"from_fen": "280000", "ratio_bps": "90%"}],
    )
    got = _fields(_error(shifted_as_published))
    assert "f.yaml:supplementary.bands[0].from_fen" in got
    assert "band_basis: above_threshold" in got["f.yaml:supplementary.bands[0].from_fen"]
    below = _supp(
        policy_dict(),
        threshold_fen="20000",
        band_basis="cumulative_burden",
        bands=[{"from_fen": "20000", "to_fen": "10000", "ratio_bps": "85%"}, {"from_fen": "10000", "ratio_bps": "90%"}],
    )
    assert "f.yaml:supplementary.bands[0].to_fen" in _fields(_error(below))


# ------------------------------------------------------------------------- trace band detail

FUND_STEPS = ("pooled_fund", "large_amount", "critical_illness", "assistance")


def _band_policy() -> Policy:
    data = policy_dict(
        supp_threshold_fen=200_000,
        supp_bands=[
            {"from_fen": 0, "to_fen": 300_000, "ratio_bps": 8333},
            {"from_fen": 300_000, "to_fen": None, "ratio_bps": 9111},
        ],
        assistance={"low_income": {"deductible_fen": 50_000, "ratio_bps": 7777, "annual_cap_fen": 90_000_000}},
    )
    data["services"]["inpatient"]["segments"] = [
        {"from_fen": 0, "to_fen": 100_001, "ratio_bps": {"base": "85.01%", "person": {"retired": "+3.33%"}}},
        {"from_fen": 100_001, "to_fen": 250_003, "ratio_bps": {"base": "88.89%"}},
        {"from_fen": 250_003, "to_fen": None, "ratio_bps": {"base": "93.07%"}},
    ]
    return _parse(data)


BAND_POLICY = _band_policy()


def _check_bands(result: Any, acc: Accumulators) -> None:
    steps = {t.step: t for t in result.trace}
    for t in result.trace:
        if t.step not in FUND_STEPS:
            assert t.bands == () and t.base_start_fen == 0, t
    pooled = steps["pooled_fund"]
    assert sum(b.paid_fen for b in pooled.bands) == pooled.amount_fen  # before the cap
    assert sum(b.base_fen for b in pooled.bands) == result.funds[0].base_fen
    assert pooled.base_start_fen == acc.pooled_base_fen
    for step in steps.values():
        for b in step.bands:
            # each band pays its exact part rounded down or up (largest remainder), never below 0
            exact = b.ratio_bps * b.base_fen
            assert exact // 10_000 <= b.paid_fen <= -(-exact // 10_000), (step, b)
    supp = steps.get("large_amount")
    if supp is not None:
        detail = next(f for f in result.funds if f.fund == "large_amount")
        uncapped = sum(b.paid_fen for b in supp.bands)
        assert supp.amount_fen == min(uncapped, detail.remaining_limit_before_fen)
        assert supp.base_start_fen == acc.ci_burden_fen
        assert supp.bands[0].from_fen == 200_000  # published coordinates: starts at the threshold
        in_bands = sum(b.base_fen for b in supp.bands)
        below = max(0, min(200_000 - acc.ci_burden_fen, detail.base_fen))
        assert in_bands == detail.base_fen - below
    assist = steps["assistance"]
    a_detail = next(f for f in result.funds if f.fund == "assistance")
    assert assist.amount_fen == min(sum(b.paid_fen for b in assist.bands), a_detail.remaining_limit_before_fen)
    assert assist.base_start_fen == acc.assistance_base_fen
    mirrored = reverse(result)
    for t, m in zip(result.trace, mirrored.trace[1:], strict=True):
        assert m.base_start_fen == t.base_start_fen
        assert m.bands == tuple(TraceBand(b.from_fen, b.to_fen, b.ratio_bps, -b.base_fen, -b.paid_fen) for b in t.bands)


@settings(max_examples=150, deadline=None)
@given(
    qty=st.integers(1, 40_000),
    price=st.integers(1, 2_000_000),
    base_before=st.integers(0, 400_000),
    burden_before=st.integers(0, 800_000),
    assist_before=st.integers(0, 100_000),
    retired=st.booleans(),
)
def test_the_bands_add_up_to_the_fund_step_exactly(
    qty: int, price: int, base_before: int, burden_before: int, assist_before: int, retired: bool
) -> None:
    acc = Accumulators(
        2026, pooled_base_fen=base_before, ci_burden_fen=burden_before, assistance_base_fen=assist_before
    )
    v = visit(
        FeeLine(1, DRUG_A, qty, price),
        FeeLine(2, SERVICE_A, 1000, 333),
        person_type=PersonType.RETIRED if retired else PersonType.IN_SERVICE,
        assistance_category="low_income",
    )
    _check_bands(settle(BAND_POLICY, CAT, v, acc), acc)


def test_a_visit_across_three_segments_shows_each_band() -> None:
    acc = Accumulators(2026, pooled_base_fen=50_000)
    v = visit(FeeLine(1, DRUG_A, 1000, 80_000 + 300_006))  # base 300 006 after the 80 000 deductible
    r = settle(BAND_POLICY, CAT, v, acc)
    pooled = next(t for t in r.trace if t.step == "pooled_fund")
    assert pooled.base_start_fen == 50_000
    # exact parts 44 170.8834 + 133 336.7778 + 93 072.7921 = 270 580.4533: the fund is 270 580.
    # Each rounded half-up they would add up to 270 581, so the largest-remainder rule: floors
    # 270 578, and the 2 fen left go to the largest fractions (.8834 and .7921).
    assert pooled.bands == (
        TraceBand(0, 100_001, 8834, 50_001, 44_171),
        TraceBand(100_001, 250_003, 8889, 150_002, 133_336),
        TraceBand(250_003, None, 9307, 100_003, 93_073),
    )
    assert pooled.amount_fen == r.pooled_fund_fen == 270_580 == 44_171 + 133_336 + 93_073


def test_tiny_bases_at_band_edges_never_pay_a_negative_band() -> None:
    """Fractions .5, .5, .4 of a fen: half-up per band gives 1 + 1 + 0 = 2 against the fund's 1;
    taking the fen back from the last band would make it -1."""
    data = policy_dict()
    data["services"]["inpatient"]["segments"] = [
        {"from_fen": 0, "to_fen": 1, "ratio_bps": {"base": 5000}},
        {"from_fen": 1, "to_fen": 2, "ratio_bps": {"base": 5000}},
        {"from_fen": 2, "to_fen": None, "ratio_bps": {"base": 4000}},
    ]
    policy = _parse(data)
    r = settle(policy, CAT, visit(FeeLine(1, DRUG_A, 1000, 80_003)), Accumulators(2026))
    pooled = next(t for t in r.trace if t.step == "pooled_fund")
    assert pooled.amount_fen == 1  # round(1.4)
    assert [b.paid_fen for b in pooled.bands] == [0, 1, 0]  # ties at .5: the later band
    assert all(b.paid_fen >= 0 for b in pooled.bands)
