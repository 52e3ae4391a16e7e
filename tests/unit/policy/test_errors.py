"""Bad visits and bad policy/catalogue data give clear, classified errors naming the field."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from libs.core.errors import Category, DomainError, Reason
from libs.policy import (
    Accumulators,
    FeeLine,
    FilingType,
    InsuranceType,
    PersonType,
    ServiceType,
    Visit,
    check_identities,
    parse_catalogue,
    parse_policy,
    reverse,
    settle,
    validate_visit,
)
from libs.policy.money import INT64_MAX, round_half_up
from tests.unit.policy.builders import (
    DRUG_A,
    DRUG_B,
    SERVICE_A,
    UNKNOWN_DRUG,
    catalogue_dict,
    make_catalogue,
    make_policy,
    policy_dict,
)

DAY = datetime.date(2026, 5, 1)
CAT = make_catalogue()
POLICY = make_policy()


def visit(*lines: FeeLine, **kw: Any) -> Visit:
    base: dict[str, Any] = {
        "service_type": ServiceType.INPATIENT,
        "hospital_level": 3,
        "insurance_type": InsuranceType.EMPLOYEE,
        "person_type": PersonType.IN_SERVICE,
        "filing_type": FilingType.REFERRAL,
        "settle_date": DAY,
        "lines": lines,
    }
    base.update(kw)
    return Visit(**base)


def error_of(v: Visit, **kw: Any) -> DomainError:
    with pytest.raises(DomainError) as info:
        settle(POLICY, CAT, v, Accumulators(2026), **kw)
    return info.value


@pytest.mark.parametrize(
    ("line", "reason", "field"),
    [
        (FeeLine(1, "NOT-A-CODE", 1000, 100), Reason.ITEM_CODE_INVALID, "lines[0].item_code"),
        (FeeLine(1, "x" * 23, 1000, 100), Reason.ITEM_CODE_INVALID, "lines[0].item_code"),
        (FeeLine(1, DRUG_A, 1000, -1), Reason.PRICE_INVALID, "lines[0].unit_price_fen"),
        (FeeLine(1, DRUG_A, 0, 100), Reason.QUANTITY_INVALID, "lines[0].quantity_milli"),
        (FeeLine(1, DRUG_A, 1.5, 100), Reason.QUANTITY_INVALID, "lines[0].quantity_milli"),  # type: ignore[arg-type]
        (FeeLine(1, DRUG_A, 1000, 1.5), Reason.PRICE_INVALID, "lines[0].unit_price_fen"),  # type: ignore[arg-type]
        (FeeLine(1, DRUG_A, 1000, INT64_MAX + 1), Reason.AMOUNT_OUT_OF_RANGE, "lines[0]"),
        (FeeLine(1, DRUG_A, 10_000_000, INT64_MAX // 1000), Reason.AMOUNT_OUT_OF_RANGE, "lines[0]"),
        (FeeLine(0, DRUG_A, 1000, 100), Reason.FEE_LINE_INVALID, "lines[0].line_no"),
        (
            FeeLine(1, DRUG_A, 1000, 100, refund_of_line_no=1),
            Reason.FEE_LINE_INVALID,
            "lines[0].refund_of_line_no",
        ),
        (
            FeeLine(1, DRUG_A, -1000, 100, refund_of_line_no=7),
            Reason.REFUND_LINE_UNMATCHED,
            "lines[0].refund_of_line_no",
        ),
    ],
)
def test_a_bad_line_is_a_classified_invalid_error_naming_the_field(line: FeeLine, reason: Reason, field: str) -> None:
    err = error_of(visit(line))
    assert err.reason is reason
    assert err.category is Category.INVALID
    assert err.violations[0].field == field
    with pytest.raises(DomainError):
        validate_visit(visit(line), CAT)


def test_every_bad_line_is_reported_not_only_the_first() -> None:
    err = error_of(visit(FeeLine(1, DRUG_A, 0, 100), FeeLine(2, DRUG_A, 1000, -5), FeeLine(2, "bad", 1000, 1)))
    fields = [v.field for v in err.violations]
    assert fields[:3] == ["lines[0].quantity_milli", "lines[1].unit_price_fen", "lines[2].line_no"]


def test_a_visit_total_above_int64_is_out_of_range() -> None:
    big = INT64_MAX // 2  # each line fits in int64, the sum of three does not
    err = error_of(visit(FeeLine(1, DRUG_A, 1000, big), FeeLine(2, DRUG_A, 1000, big), FeeLine(3, DRUG_A, 1000, big)))
    assert err.reason is Reason.AMOUNT_OUT_OF_RANGE


def test_unknown_items_are_full_self_pay_or_an_error_when_strict() -> None:
    r = settle(POLICY, CAT, visit(FeeLine(1, UNKNOWN_DRUG, 1000, 500)), Accumulators(2026))
    assert r.lines[0].item_class is None and r.full_self_pay_fen == 500
    err = error_of(visit(FeeLine(1, UNKNOWN_DRUG, 1000, 500)), allow_unknown_items=False)
    assert err.reason is Reason.ITEM_CODE_INVALID and "not in catalogue" in err.violations[0].description


def test_refunds_must_match_the_original_line_and_not_exceed_it() -> None:
    ok = settle(
        POLICY,
        CAT,
        visit(
            FeeLine(1, DRUG_B, 3000, 12_000),
            FeeLine(2, DRUG_B, -1000, 12_000, 1),
            FeeLine(3, DRUG_B, -2000, 12_000, 1),
        ),
        Accumulators(2026),
    )
    assert ok.total_fen == 0 and ok.over_limit_fen == 0 and ok.pre_self_pay_fen == 0
    for bad in (
        FeeLine(2, DRUG_B, -4000, 12_000, 1),  # more than charged
        FeeLine(2, DRUG_B, -1000, 11_000, 1),  # other price
        FeeLine(2, DRUG_A, -1000, 12_000, 1),  # other item
    ):
        assert error_of(visit(FeeLine(1, DRUG_B, 3000, 12_000), bad)).reason is Reason.REFUND_LINE_UNMATCHED


def test_half_refunds_of_an_odd_amount_never_give_back_more_than_charged() -> None:
    cat = make_catalogue([[DRUG_B, "Drug B", "drug", "B", 10_001, 1500]])
    lines = (
        FeeLine(1, DRUG_B, 1000, 12_345),
        FeeLine(2, DRUG_B, -500, 12_345, 1),
        FeeLine(3, DRUG_B, -500, 12_345, 1),
    )
    r = settle(POLICY, cat, visit(*lines), Accumulators(2026))
    assert (r.total_fen, r.over_limit_fen, r.pre_self_pay_fen, r.in_scope_fen) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"lines": ()}, Reason.VISIT_HAS_NO_FEES, "lines"),
        ({"person_type": PersonType.RESIDENT_ADULT}, Reason.VALIDATION_FAILED, "person_type"),
        ({"insurance_type": InsuranceType.RESIDENT}, Reason.VALIDATION_FAILED, "insurance_type"),
        ({"hospital_level": 4}, Reason.VALIDATION_FAILED, "hospital_level"),
        ({"assistance_category": "nobody"}, Reason.VALIDATION_FAILED, "assistance_category"),
        ({"hospital_borne_fen": -1}, Reason.AMOUNT_OUT_OF_RANGE, "hospital_borne_fen"),
        ({"other_fund_fen": 10**9}, Reason.AMOUNT_OUT_OF_RANGE, "other_fund_fen"),
        ({"settle_date": datetime.date(2027, 1, 1)}, Reason.VALIDATION_FAILED, "accumulators.year"),
    ],
)
def test_a_bad_visit_is_classified(change: dict[str, Any], reason: Reason, field: str) -> None:
    err = error_of(dataclasses.replace(visit(FeeLine(1, SERVICE_A, 1000, 10_000)), **change))
    assert err.reason is reason
    assert err.violations[0].field == field


def test_a_policy_out_of_its_period_is_not_found() -> None:
    with pytest.raises(DomainError) as info:
        settle(
            POLICY,
            CAT,
            visit(FeeLine(1, SERVICE_A, 1000, 1), settle_date=datetime.date(2025, 5, 1)),
            Accumulators(2025),
        )
    assert info.value.reason is Reason.POLICY_NOT_FOUND


def test_a_tampered_result_is_an_invariant_violation_and_a_reversal_cannot_be_reversed() -> None:
    r = settle(POLICY, CAT, visit(FeeLine(1, SERVICE_A, 1000, 10_000)), Accumulators(2026))
    with pytest.raises(DomainError) as info:
        check_identities(dataclasses.replace(r, cash_fen=r.cash_fen + 1))
    assert info.value.reason is Reason.INVARIANT_VIOLATED
    assert info.value.category is Category.INTERNAL
    with pytest.raises(DomainError):
        reverse(reverse(r))


def test_round_half_up_is_exact_and_symmetric() -> None:
    assert [round_half_up(n, 10) for n in (14, 15, 16, -14, -15, -16)] == [1, 2, 2, -1, -2, -2]
    assert round_half_up(10**30 + 5, 10) == 10**29 + 1


# ---------------------------------------------------------------------------- policy data


def _policy_error(data: dict[str, Any]) -> DomainError:
    with pytest.raises(DomainError) as info:
        parse_policy(data, "bad.yaml")
    assert info.value.reason is Reason.POLICY_DATA_INVALID
    return info.value


def _with(path: list[Any], value: Any, **kw: Any) -> dict[str, Any]:
    data = policy_dict(**kw)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (
            ["services", "inpatient", "segments", 0, "ratio_bps", "in_service"],
            [0, 0, 0, 10_001],
            "bad.yaml:services.inpatient.segments[0].ratio_bps.in_service[3]",
        ),
        (
            ["services", "inpatient", "segments", 0, "ratio_bps", "in_service"],
            [0, 0, 0, -1],
            "bad.yaml:services.inpatient.segments[0].ratio_bps.in_service[3]",
        ),
        (
            ["services", "inpatient", "segments", 0, "ratio_bps", "in_service"],
            [0, 0, 0, 0.85],
            "bad.yaml:services.inpatient.segments[0].ratio_bps.in_service[3]",
        ),
        (["temporary_reduction_bps", "referral"], 1001, "bad.yaml:temporary_reduction_bps.referral"),
        (["temporary_reduction_bps", "emergency"], 1500, "bad.yaml:temporary_reduction_bps.emergency"),
        (
            ["temporary_reduction_bps", "other_temporary"],
            2001,
            "bad.yaml:temporary_reduction_bps.other_temporary",
        ),
        (
            ["temporary_reduction_bps", "long_term_resident"],
            100,
            "bad.yaml:temporary_reduction_bps.long_term_resident",
        ),
        (["pools", "inpatient", "annual_cap_fen"], -5, "bad.yaml:pools.inpatient.annual_cap_fen"),
        (["pools", "inpatient", "annual_cap_fen"], 2**63, "bad.yaml:pools.inpatient.annual_cap_fen"),
        (["source"], "", "bad.yaml:source"),
        (["insured_region"], 110100, "bad.yaml:insured_region"),
        (["version"], "110100-employee-2026.1", "bad.yaml:version"),
        (["supplementary", "fund"], "critical_illness", "bad.yaml:supplementary.fund"),
        (
            ["assistance"],
            {"x": {"deductible_fen": 0, "ratio_bps": 12_000, "annual_cap_fen": 1}},
            "bad.yaml:assistance.x.ratio_bps",
        ),
        (["services", "inpatient", "surprise"], 1, "bad.yaml:services.inpatient.surprise"),
    ],
)
def test_bad_policy_data_names_file_and_field(path: list[Any], value: Any, field: str) -> None:
    err = _policy_error(_with(path, value))
    assert field in [v.field for v in err.violations], err.violations


def test_unordered_segments_are_rejected() -> None:
    data = policy_dict()
    r = {"in_service": [8000] * 4, "retired": [8000] * 4}
    data["services"]["inpatient"]["segments"] = [
        {"from_fen": 0, "to_fen": 500_000, "ratio_bps": r},
        {"from_fen": 900_000, "to_fen": 300_000, "ratio_bps": r},
        {"from_fen": 300_000, "to_fen": None, "ratio_bps": r},
    ]
    fields = [v.field for v in _policy_error(data).violations]
    assert "bad.yaml:services.inpatient.segments[1].from_fen" in fields
    assert "bad.yaml:services.inpatient.segments[1].to_fen" in fields


def test_a_person_type_of_the_other_scheme_is_rejected() -> None:
    data = policy_dict()
    data["services"]["inpatient"]["segments"][0]["ratio_bps"]["resident_adult"] = [1, 1, 1, 1]
    fields = [v.field for v in _policy_error(data).violations]
    assert "bad.yaml:services.inpatient.segments[0].ratio_bps.resident_adult" in fields


def test_a_policy_without_services_is_rejected() -> None:
    data = policy_dict()
    data["services"] = {}
    assert "bad.yaml:services" in [v.field for v in _policy_error(data).violations]


def test_a_visit_of_a_service_the_policy_leaves_out_is_not_covered() -> None:
    data = policy_dict()
    del data["services"]["pharmacy"]
    policy = parse_policy(data, "pharmacy-less.yaml")
    assert ServiceType.PHARMACY not in policy.benefits
    v = visit(FeeLine(1, DRUG_A, 1000, 5_000), service_type=ServiceType.PHARMACY)
    with pytest.raises(DomainError) as info:
        settle(policy, CAT, v, Accumulators(2026))
    err = info.value
    assert err.reason is Reason.SERVICE_NOT_COVERED
    assert err.category is Category.REFUSED
    assert err.metadata == {"policy_version": policy.version, "service_type": "pharmacy"}
    assert [v.field for v in err.violations] == ["service_type"]
    # the services it does define still settle
    settle(policy, CAT, dataclasses.replace(v, service_type=ServiceType.GENERAL_OUTPATIENT), Accumulators(2026))


# ------------------------------------------------------------------------- catalogue data


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (["BADCODE", "x", "drug", "A", None, 0], "cat.yaml:items[0].code"),
        ([SERVICE_A, "x", "drug", "A", None, 0], "cat.yaml:items[0].kind"),
        ([DRUG_A, "x", "drug", "D", None, 0], "cat.yaml:items[0].class"),
        ([DRUG_A, "x", "drug", "A", -5, 0], "cat.yaml:items[0].ceiling_fen"),
        ([DRUG_A, "x", "drug", "A", None, 1000], "cat.yaml:items[0].self_pay_first_bps"),
        ([DRUG_A, "x", "drug", "B", None, 10_001], "cat.yaml:items[0].self_pay_first_bps"),
        ([DRUG_A, "x", "drug"], "cat.yaml:items[0]"),
    ],
)
def test_bad_catalogue_data_names_file_and_field(row: list[Any], field: str) -> None:
    with pytest.raises(DomainError) as info:
        parse_catalogue(catalogue_dict([row]), "cat.yaml")
    assert info.value.reason is Reason.CATALOGUE_DATA_INVALID
    assert info.value.violations[0].field == field


def test_duplicate_catalogue_codes_are_rejected() -> None:
    row = [DRUG_A, "x", "drug", "A", None, 0]
    with pytest.raises(DomainError) as info:
        parse_catalogue(catalogue_dict([row, row]), "cat.yaml")
    assert info.value.violations[0].field == "cat.yaml:items[1].code"
