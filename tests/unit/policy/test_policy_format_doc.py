"""docs/policy-format.md cannot drift: its worked example (docs/examples/440300-employee-2024.yaml)
loads with the real loader, the figures the doc quotes are recomputed by the engine here, and
every field of the file schema is documented.

To refresh the quoted figures after an intended change: ``python -m
tests.unit.policy.test_policy_format_doc`` prints the block to paste between the markers."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from libs.core.errors import DomainError, Reason
from libs.policy import (
    Accumulators,
    FeeLine,
    FilingType,
    InsuranceType,
    PersonType,
    ServiceType,
    SettlementResult,
    Visit,
    default_books,
    load_policy,
    settle,
)
from libs.policy import schema as sc
from libs.policy.money import pct, yuan

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "policy-format.md"
EXAMPLE = ROOT / "docs" / "examples" / "440300-employee-2024.yaml"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"

# The visits the doc describes: a Shenzhen tier-2 employee (in service) filed as a long-term
# resident of Shanghai, two admissions in 2026 at Shanghai hospitals (Shanghai's catalogue applies).
LINES = (
    FeeLine(1, "XG28DFQ462I743428889537", 4000, 185_000),  # oxaliplatin injection, class B, 15% self-pay first
    FeeLine(2, "XB82LRY560G937120076483", 10000, 32_050),  # albumin granules, class A
    FeeLine(3, "003598964264228", 12000, 700),  # intramuscular injection, class A, ceiling 6.36
    FeeLine(4, "XJ10RSZ416C938783622322", 30000, 120),  # furosemide capsule, class C
    FeeLine(5, "008070079985362", 6000, 4_500),  # wound dressing, class A
)
FIRST = Visit(
    ServiceType.INPATIENT,
    3,
    InsuranceType.EMPLOYEE,
    PersonType.IN_SERVICE,
    FilingType.LONG_TERM_RESIDENT,
    datetime.date(2026, 3, 10),
    LINES,
)
SECOND = Visit(
    ServiceType.INPATIENT,
    2,
    InsuranceType.EMPLOYEE,
    PersonType.IN_SERVICE,
    FilingType.LONG_TERM_RESIDENT,
    datetime.date(2026, 9, 2),
    LINES[1:3],
)


def _settlements() -> tuple[SettlementResult, SettlementResult]:
    policy = load_policy(EXAMPLE)
    _, catalogues = default_books()
    cat = catalogues.find("310100", FIRST.settle_date)
    first = settle(policy, cat, FIRST, Accumulators(2026))
    second = settle(policy, cat, SECOND, first.accumulators_after)
    return first, second


def _describe(title: str, r: SettlementResult) -> list[str]:
    out = [title]
    for t in r.trace:
        text = ", ".join(x for x in (t.parameter, t.note) if x)
        out.append(f"  {t.step:<15}{yuan(t.amount_fen):>10}  {text}".rstrip())
        for b in t.bands:
            edges = f"{yuan(b.from_fen)}+" if b.to_fen is None else f"{yuan(b.from_fen)}-{yuan(b.to_fen)}"
            out.append(
                f"  {'':<15}{'':>10}  band {edges} at {pct(b.ratio_bps)}: base {yuan(b.base_fen)} "
                f"pays {yuan(b.paid_fen)} (year-to-date base before: {yuan(t.base_start_fen)})"
            )
    out.append(
        f"  funds {yuan(r.fund_total_fen)}, personal part {yuan(r.personal_part_fen)}, cash {yuan(r.cash_fen)}; "
        f"year to date after: base {yuan(r.accumulators_after.pooled_base_fen)}, "
        f"pooled paid {yuan(r.accumulators_after.pooled_paid_fen)}, admissions {r.accumulators_after.admissions}"
    )
    return out


def figures() -> str:
    first, second = _settlements()
    lines = [
        "```text",
        *_describe("Admission 1 (2026-03-10, tier-3 hospital, first admission of the year):", first),
        "",
        *_describe("Admission 2 (2026-09-02, tier-2 hospital, second admission):", second),
        "```",
    ]
    return "\n".join(lines)


def test_the_example_loads_and_the_doc_quotes_the_engine_s_figures() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text
    quoted = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert quoted == figures()


def test_the_example_leaves_out_the_services_its_table_does_not_give() -> None:
    policy = load_policy(EXAMPLE)
    assert set(policy.benefits) == {ServiceType.INPATIENT}
    _, catalogues = default_books()
    cat = catalogues.find("310100", FIRST.settle_date)
    with pytest.raises(DomainError) as info:
        settle(policy, cat, Visit(**{**_fields(FIRST), "service_type": ServiceType.PHARMACY}), Accumulators(2026))
    assert info.value.reason is Reason.SERVICE_NOT_COVERED
    assert policy.version in DOC.read_text()  # the doc names the example's full version


def _fields(v: Visit) -> dict[str, object]:
    return {name: getattr(v, name) for name in v.__slots__}  # type: ignore[attr-defined]


def _model_fields(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def test_every_field_of_the_schema_is_documented() -> None:
    text = DOC.read_text()
    documented = set(re.findall(r"`([a-z_0-9]+)`", text))
    models = (
        sc.PolicyIn,
        sc.ServiceIn,
        sc.DeductibleIn,
        sc.SegmentIn,
        sc.PoolIn,
        sc.SupplementaryIn,
        sc.BandIn,
        sc.HardshipIn,
        sc.AssistanceIn,
        sc.CatalogueIn,
    )
    missing = {f"{m.__name__}.{f}" for m in models for f in _model_fields(m) if f not in documented}
    assert not missing, missing
    words = {*sc.ITEM_FIELDS, *sc.LEVEL_NAMES, *sc.BAND_BASES, "base", "person", "level"}
    assert not {w for w in words if w not in documented}


if __name__ == "__main__":  # pragma: no cover - prints the block for the doc
    print(figures())
