"""Daily and detail reconciliation: compare what a submitter says with what clearing holds (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.clearing.domain.model import FUND_FIELDS, Category

TOTAL_FIELDS = ("count", "medical_total_fen", "fund_total_fen", "personal_account_fen")
ITEM_FIELDS = ("medical_total_fen", "fund_total_fen", "personal_account_fen")


class DifferenceKind(StrEnum):
    MISSING_HERE = "missing_here"  # the submitter has it, clearing does not
    MISSING_THERE = "missing_there"  # clearing has it, the submitter does not
    AMOUNT_DIFFERS = "amount_differs"
    TOTALS_DIFFER = "totals_differ"


@dataclass(frozen=True, slots=True)
class Totals:
    """Net totals (cancellations count -1 and carry negative amounts); category None = all."""

    category: Category | None
    count: int = 0
    medical_total_fen: int = 0
    fund_total_fen: int = 0
    personal_account_fen: int = 0
    # each fund; None in a submission that does not give it (then it is not compared)
    pooled_fund_fen: int | None = None
    large_amount_fen: int | None = None
    critical_illness_fen: int | None = None
    assistance_fen: int | None = None
    other_fund_fen: int | None = None


@dataclass(frozen=True, slots=True)
class Item:
    settlement_id: str
    medical_total_fen: int
    fund_total_fen: int
    personal_account_fen: int


@dataclass(frozen=True, slots=True)
class Difference:
    kind: DifferenceKind
    settlement_id: str = ""
    category: Category | None = None
    expected_fen: int = 0  # the submitter's figure
    actual_fen: int = 0  # clearing's figure
    field: str = ""


def overall(per_category: Iterable[Totals]) -> Totals:
    rows = list(per_category)
    return Totals(
        None,
        *(sum(getattr(r, f) for r in rows) for f in TOTAL_FIELDS),
        *(sum(getattr(r, f) or 0 for r in rows) for f in FUND_FIELDS),
    )


def compare_totals(theirs: Sequence[Totals], ours: Mapping[Category | None, Totals]) -> list[Difference]:
    """Each submitted total against ours, field by field. A category clearing has but the
    submitter did not send is not a difference unless the submitter sent an overall total."""
    out: list[Difference] = []
    for t in theirs:
        mine = ours.get(t.category) or Totals(t.category)
        for f in TOTAL_FIELDS:
            if getattr(t, f) != getattr(mine, f):
                out.append(Difference(DifferenceKind.TOTALS_DIFFER, "", t.category, getattr(t, f), getattr(mine, f), f))
        for f in FUND_FIELDS:
            given, held = getattr(t, f), getattr(mine, f) or 0
            if given is not None and given != held:
                out.append(Difference(DifferenceKind.TOTALS_DIFFER, "", t.category, given, held, f))
    return out


def compare_items(theirs: Sequence[Item], ours: Sequence[Item]) -> list[Difference]:
    """Settlement by settlement: missing on either side, or amounts that differ (one difference
    per differing field). Sorted by settlement id so the answer is stable."""
    mine = {i.settlement_id: i for i in ours}
    given = {i.settlement_id: i for i in theirs}
    out: list[Difference] = []
    for sid in sorted(given.keys() | mine.keys()):
        t, m = given.get(sid), mine.get(sid)
        if m is None:
            assert t is not None
            out.append(Difference(DifferenceKind.MISSING_HERE, sid, None, t.fund_total_fen, 0, "fund_total_fen"))
        elif t is None:
            out.append(Difference(DifferenceKind.MISSING_THERE, sid, None, 0, m.fund_total_fen, "fund_total_fen"))
        else:
            for f in ITEM_FIELDS:
                if getattr(t, f) != getattr(m, f):
                    out.append(Difference(DifferenceKind.AMOUNT_DIFFERS, sid, None, getattr(t, f), getattr(m, f), f))
    return out


def duplicates(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for i in ids:
        if i in seen:
            dup.append(i)
        seen.add(i)
    return dup
