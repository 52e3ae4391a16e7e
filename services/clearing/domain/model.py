"""Clearing domain: what clearing keeps of a settlement, ledger postings, statements (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from libs.core.errors import DomainError, Reason


class Category(StrEnum):
    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"
    PHARMACY = "pharmacy"


class StatementStatus(StrEnum):
    DRAFT = "draft"
    CONFIRMED_BY_TREATMENT_SIDE = "confirmed_by_treatment_side"
    CONFIRMED_BY_INSURED_SIDE = "confirmed_by_insured_side"
    DISBURSED = "disbursed"


FUND_FIELDS = ("pooled_fund_fen", "large_amount_fen", "critical_illness_fen", "assistance_fen", "other_fund_fen")


@dataclass(frozen=True, slots=True)
class FeedSettlement:
    """One settlement (or cancellation, with negative amounts) as clearing ingests it."""

    position: int
    settlement_id: str
    kind: str  # settlement | cancellation
    cancels_settlement_id: str
    institution_code: str
    insured_region: str
    treatment_region: str
    category: Category
    settle_date: dt.date
    total_fen: int
    pooled_fund_fen: int
    large_amount_fen: int
    critical_illness_fen: int
    assistance_fen: int
    other_fund_fen: int
    fund_total_fen: int
    personal_account_fen: int
    cash_fen: int

    @property
    def insured_province(self) -> str:
        return self.insured_region[:2]

    @property
    def treatment_province(self) -> str:
        return self.treatment_region[:2]


@dataclass(frozen=True, slots=True)
class Entry:
    account: str
    amount_fen: int  # debit positive, credit negative


def postings_for(s: FeedSettlement) -> list[Entry]:
    """The fund part of a settlement: the treatment province advances it to the institution and
    is owed it by the insured province. Every posting sums to zero."""
    f = s.fund_total_fen
    if f == 0:
        return []
    entries = [
        Entry(f"treatment:{s.treatment_province}:receivable:{s.insured_province}", f),
        Entry(f"institution:{s.institution_code}:payable", -f),
        Entry(f"insured:{s.insured_province}:fund_expense", f),
        Entry(f"insured:{s.insured_province}:payable:{s.treatment_province}", -f),
    ]
    check_balanced(entries)
    return entries


def check_balanced(entries: list[Entry]) -> None:
    if sum(e.amount_fen for e in entries) != 0:
        raise DomainError(Reason.INVARIANT_VIOLATED, "a ledger posting does not balance")


@dataclass(frozen=True, slots=True)
class StatementLine:
    category: Category
    count: int
    medical_total_fen: int
    pooled_fund_fen: int
    large_amount_fen: int
    critical_illness_fen: int
    assistance_fen: int
    other_fund_fen: int
    fund_total_fen: int
    personal_account_fen: int
    adjustment_fen: int = 0
    rejected_fen: int = 0


@dataclass(frozen=True, slots=True)
class Statement:
    statement_id: str
    insured_province: str
    treatment_province: str
    year: int
    month: int
    status: StatementStatus
    lines: tuple[StatementLine, ...]
    signing_date: dt.date | None
    settlement_count: int

    @property
    def amount_due_fen(self) -> int:
        return sum(ln.fund_total_fen + ln.adjustment_fen - ln.rejected_fen for ln in self.lines)


def statement_id(ip: str, tp: str, year: int, month: int) -> str:
    return f"ST-{year:04d}{month:02d}-{ip}-{tp}"


def month_bounds(year: int, month: int) -> tuple[dt.date, dt.date]:
    start = dt.date(year, month, 1)
    end = dt.date(year + (month == 12), month % 12 + 1, 1)
    return start, end


def payment_deadline(signing: dt.date) -> dt.date:
    """Institutions are paid by the treatment place before the next monthly signing date."""
    nxt = month_bounds(signing.year, signing.month)[1]
    return dt.date(nxt.year, nxt.month, min(signing.day, 28))
