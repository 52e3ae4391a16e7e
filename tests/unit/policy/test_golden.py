"""Settlements of the shipped policies and catalogues, pinned: every amount, line, fund,
accumulator and trace text, of the settlement and of its reversal, is what it was.

``golden_settlements.json`` holds, per case, the trace of the settlement (readable) and a digest
of the full ``repr`` of the settlement and of its reversal (or the classified error). It was
written by the engine before its speed-up (see README.md "Benchmark"); rewrite it only for an
intended change of results, with ``python -m tests.unit.policy.test_golden --write``.

Rewritten once since, deliberately, for added data only: the trace's band detail (each fund
step's ``bands`` and ``base_start_fen``) and the shipped policies' ``band_basis:
above_threshold`` line (a new content hash, so new policy versions in the digests). Every old
figure was checked unchanged then: each step's first five entries, and every amount, line, fund
and accumulator of the settlements and reversals, compared with the engine before the change.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from libs.policy import (
    Accumulators,
    Catalogue,
    FeeLine,
    FilingType,
    InsuranceType,
    Policy,
    ServiceType,
    Visit,
    default_books,
    generate_visit,
    reverse,
    settle,
)

GOLDEN = Path(__file__).with_name("golden_settlements.json")
DAY = datetime.date(2026, 6, 1)
REGIONS = ("110100", "310100", "420100", "440100", "510100")


def cases() -> list[tuple[str, Policy, Catalogue, Visit, Accumulators, bool]]:
    """(name, policy, catalogue, visit, accumulators, allow unknown items), deterministic."""
    policies, catalogues = default_books()
    out = []
    for r, region in enumerate(REGIONS):
        cat = catalogues.find(region, DAY)
        for it in InsuranceType:
            policy = policies.find(region, it, DAY)
            for k, service in enumerate(ServiceType):
                seed = 100 * r + 10 * k + (it is InsuranceType.RESIDENT)
                v = generate_visit(
                    cat,
                    seed=seed,
                    n_lines=6 + seed % 7,
                    n_refunds=seed % 3,
                    n_unknown=seed % 2,
                    service_type=service,
                    insurance_type=it,
                    person_type=policy.person_types[seed % 2],
                    filing_type=list(FilingType)[seed % len(FilingType)],
                    hospital_level=seed % 4,
                    settle_date=DAY,
                    use_personal_account=seed % 2 == 0,
                    assistance_category="low_income" if seed % 3 == 0 else None,
                    hardship=seed % 5 == 0,
                )
                acc = Accumulators(
                    2026,
                    admissions=seed % 3,
                    account_balance_fen=(seed * 7919) % 300_000,
                    pooled_base_fen=(seed % 4) * 3_000_000,
                    pooled_paid_fen=(seed % 4) * 2_000_000 + (seed % 5) * 10_000_000,
                    outpatient_pooled_base_fen=(seed % 3) * 100_000,
                    outpatient_pooled_paid_fen=(seed % 3) * 900_000,
                    ci_burden_fen=(seed % 5) * 600_000,
                    ci_paid_fen=(seed % 6) * 5_000_000,
                    assistance_base_fen=(seed % 2) * 50_000,
                    assistance_paid_fen=(seed % 7) * 1_000_000,
                )
                if seed % 4 == 3:
                    v = dataclasses.replace(v, new_admission=False, prior_stay_deductible_fen=20_000)
                if seed % 6 == 5:
                    v = dataclasses.replace(v, hospital_borne_fen=1_000, other_fund_fen=2_000)
                out.append((f"{region}-{it}-{service}", policy, cat, v, acc, True))
    # classified errors
    policy = policies.find("110100", InsuranceType.EMPLOYEE, DAY)
    cat = catalogues.find("110100", DAY)
    v = generate_visit(cat, seed=7, n_lines=5, n_unknown=1, settle_date=DAY)
    bad_lines = {
        "strict-unknown": v.lines,
        "bad-lines": (FeeLine(1, v.lines[1].item_code, 0, 100), FeeLine(1, "bad", 1000, -5), *v.lines[2:]),
        "over-refund": (*v.lines, FeeLine(9, v.lines[1].item_code, -(10**7), v.lines[1].unit_price_fen, 2)),
    }
    for name, lines in bad_lines.items():
        strict = name == "strict-unknown"
        out.append((name, policy, cat, dataclasses.replace(v, lines=lines), Accumulators(2026), not strict))
    borne = dataclasses.replace(v, hospital_borne_fen=10**12)
    out.append(("too-much-borne", policy, cat, borne, Accumulators(2026), True))
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def describe(
    case: tuple[str, Any, Any, Any, Any, bool], settle_: Callable[..., Any], reverse_: Callable[..., Any]
) -> dict[str, Any]:
    """What the engine gives for one case, as JSON data (works on any engine with this API)."""
    name, policy, cat, v, acc, allow_unknown = case
    try:
        result = settle_(policy, cat, v, acc, allow_unknown_items=allow_unknown)
    except Exception as e:
        if type(e).__name__ != "DomainError":  # by name: any engine's own error type
            raise
        return {"case": name, "error": [str(e.reason), str(e), [[x.field, x.description] for x in e.violations]]}  # type: ignore[attr-defined]
    return {
        "case": name,
        "trace": json.loads(json.dumps([list(t) for t in result.trace])),  # bands as lists, like the file
        "result": _digest(repr(result)),
        "reversal": _digest(repr(reverse_(result))),
    }


def dump(described: list[dict[str, Any]]) -> str:
    """One case a line."""
    return "[\n" + ",\n".join(json.dumps(d, ensure_ascii=False) for d in described) + "\n]\n"


def test_settlements_and_reversals_are_as_pinned() -> None:
    golden = json.loads(GOLDEN.read_text())
    now = [describe(case, settle, reverse) for case in cases()]
    assert [g["case"] for g in golden] == [n["case"] for n in now]
    for g, n in zip(golden, now, strict=True):
        assert n == g, g["case"]


if __name__ == "__main__":  # pragma: no cover - rewrites the pinned data
    if sys.argv[1:] != ["--write"]:
        pytest.exit("usage: python -m tests.unit.policy.test_golden --write")
    GOLDEN.write_text(dump([describe(c, settle, reverse) for c in cases()]))
