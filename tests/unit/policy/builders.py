"""Test data builders: small policies and catalogues as file-shaped dicts, parsed by the real
schema code (so tests exercise the same validation as shipped files)."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from libs.policy import Catalogue, Policy, parse_catalogue, parse_policy

PEOPLE = {"employee": ("in_service", "retired"), "resident": ("resident_adult", "resident_minor")}


def levels(bps: int) -> list[int]:
    return [bps, bps, bps, bps]


def per_person(itype: str, value: int) -> dict[str, list[int]]:
    return {p: levels(value) for p in PEOPLE[itype]}


def policy_dict(
    *,
    insurance_type: str = "employee",
    region: str = "990100",
    ip_ratio_bps: int = 8500,
    ip_deductible_fen: int = 80_000,
    ip_later_deductible_fen: int | None = None,
    op_ratio_bps: int = 7000,
    op_deductible_fen: int = 180_000,
    segment_scope: str = "per_year",
    ip_cap_fen: int = 50_000_000,
    op_cap_fen: int = 2_000_000,
    reductions: dict[str, int] | None = None,
    supp_threshold_fen: int = 1_700_000,
    supp_bands: list[dict[str, Any]] | None = None,
    supp_cap_fen: int | None = 40_000_000,
    hardship: dict[str, Any] | None = None,
    assistance: dict[str, Any] | None = None,
    personal_account: bool | None = None,
) -> dict[str, Any]:
    it = insurance_type
    ip = {
        "pool": "inpatient",
        "deductible": {
            "mode": "per_admission",
            "first_fen": per_person(it, ip_deductible_fen),
            "later_fen": per_person(
                it, ip_deductible_fen if ip_later_deductible_fen is None else ip_later_deductible_fen
            ),
        },
        "segment_scope": segment_scope,
        "segments": [{"from_fen": 0, "to_fen": None, "ratio_bps": per_person(it, ip_ratio_bps)}],
        "supplementary": True,
    }
    op = {
        "pool": "outpatient",
        "deductible": {"mode": "annual", "first_fen": per_person(it, op_deductible_fen)},
        "segment_scope": "per_year",
        "segments": [{"from_fen": 0, "to_fen": None, "ratio_bps": per_person(it, op_ratio_bps)}],
        "supplementary": False,
    }
    chronic = copy.deepcopy(ip)
    chronic["deductible"] = {"mode": "none"}
    return {
        "schema": "medsettle.policy/v1",
        "version": f"{region}-{it}-2026.1",
        "insured_region": region,
        "region_name": "Test region",
        "insurance_type": it,
        "effective_from": datetime.date(2026, 1, 1),
        "effective_to": datetime.date(2026, 12, 31),
        "source": "test builder",
        "personal_account": (it == "employee") if personal_account is None else personal_account,
        "temporary_reduction_bps": reductions
        if reductions is not None
        else {"referral": 1000, "emergency": 1000, "other_temporary": 2000},
        "pools": {"inpatient": {"annual_cap_fen": ip_cap_fen}, "outpatient": {"annual_cap_fen": op_cap_fen}},
        "services": {
            "inpatient": ip,
            "general_outpatient": op,
            "chronic_outpatient": chronic,
            "pharmacy": copy.deepcopy(op),
        },
        "supplementary": {
            "fund": "large_amount" if it == "employee" else "critical_illness",
            "threshold_fen": supp_threshold_fen,
            "band_basis": "above_threshold",
            "bands": supp_bands or [{"from_fen": 0, "to_fen": None, "ratio_bps": 6000}],
            "annual_cap_fen": supp_cap_fen,
            "hardship": hardship or {"threshold_fen": supp_threshold_fen // 2, "ratio_bonus_bps": 500},
        },
        "assistance": assistance
        or {"low_income": {"deductible_fen": 0, "ratio_bps": 7000, "annual_cap_fen": 6_000_000}},
    }


def make_policy(**kw: Any) -> Policy:
    return parse_policy(policy_dict(**kw), "test-policy.yaml")


# national-style codes used by the tests
DRUG_A = "XA01ABD075A002010100000"
DRUG_B = "XJ01DCM038A001010100254"
DRUG_C = "ZA01AAX012T001020300001"
SERVICE_A = "001102000010000"
SERVICE_B = "001201000020000"
CONSUMABLE_B = "C14020214600000710000005000"
UNKNOWN_DRUG = "XZ99ZZZ999Z000000000001"


def catalogue_dict(items: list[list[Any]] | None = None, *, region: str = "990100") -> dict[str, Any]:
    return {
        "schema": "medsettle.catalogue/v1",
        "version": f"{region}-catalogue-2026.1",
        "region": region,
        "region_name": "Test region",
        "effective_from": datetime.date(2026, 1, 1),
        "effective_to": datetime.date(2026, 12, 31),
        "source": "test builder",
        "items": items
        if items is not None
        else [
            [DRUG_A, "Drug A", "drug", "A", None, 0],
            [DRUG_B, "Drug B", "drug", "B", 11_000, 1000],
            [DRUG_C, "Drug C", "drug", "C", None, 0],
            [SERVICE_A, "Service A", "service", "A", None, 0],
            [SERVICE_B, "Service B", "service", "B", 50_000, 2000],
            [CONSUMABLE_B, "Consumable B", "consumable", "B", 1_000_000, 3000],
        ],
    }


def make_catalogue(items: list[list[Any]] | None = None) -> Catalogue:
    return parse_catalogue(catalogue_dict(items), "test-catalogue.yaml")
