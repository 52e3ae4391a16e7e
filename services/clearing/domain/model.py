"""Clearing domain: what clearing keeps of a settlement, statements and their states (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
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


class Side(StrEnum):
    TREATMENT = "treatment"
    INSURED = "insured"


FUND_FIELDS = ("pooled_fund_fen", "large_amount_fen", "critical_illness_fen", "assistance_fen", "other_fund_fen")
# Everything the insured place pays for a settlement the treatment place advanced: each fund and
# the personal account (the hospital took no cash for it either). Statements, the ledger and
# reconciliation carry each of them on its own line, in this order.
PAYER_FIELDS = (*FUND_FIELDS, "personal_account_fen")


class Payer(StrEnum):
    POOLED_FUND = "pooled_fund"
    LARGE_AMOUNT = "large_amount"
    CRITICAL_ILLNESS = "critical_illness"
    ASSISTANCE = "assistance"
    OTHER_FUND = "other_fund"
    PERSONAL_ACCOUNT = "personal_account"


PAYERS = tuple(Payer)  # in PAYER_FIELDS order
FUNDS = PAYERS[:-1]
NO_AMOUNTS = (0,) * len(PAYERS)


def payer_amounts(obj: object) -> tuple[int, ...]:
    """An object's amounts per payer (fields named as in PAYER_FIELDS), in PAYERS order."""
    return tuple(int(getattr(obj, f)) for f in PAYER_FIELDS)


def add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


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
    settled_at: dt.datetime | None = None  # when settlement committed it (feed lag)

    @property
    def owed_fen(self) -> int:
        """What the insured place owes for it: every fund and the personal account."""
        return self.fund_total_fen + self.personal_account_fen

    @property
    def insured_province(self) -> str:
        return self.insured_region[:2]

    @property
    def treatment_province(self) -> str:
        return self.treatment_region[:2]

    @property
    def is_cancellation(self) -> bool:
        return self.kind == "cancellation"


def month_key(d: dt.date) -> int:
    """A month as one sortable int, 202611."""
    return d.year * 100 + d.month


def clearing_month(item: FeedSettlement, original_date: dt.date | None) -> int:
    """The month a row is cleared in: a settlement's own month; a cancellation nets against the
    month of the settlement it cancels (once that month's statement is closed, the row arrives
    late and becomes an adjustment of a later month: see ``is_late``)."""
    if item.is_cancellation and original_date is not None:
        return month_key(original_date)
    return month_key(item.settle_date)


def is_late(row_position: int, closed_through_position: int | None) -> bool:
    """A row of a month whose statement was closed (confirmed) before the row was ingested."""
    return closed_through_position is not None and row_position > closed_through_position


@dataclass(frozen=True, slots=True)
class Owed:
    """One payer's part of a statement (line): the month's settlements net of their
    cancellations, late rows of closed months, deductions after expense verification."""

    payer: Payer
    settled_fen: int
    adjustment_fen: int
    deducted_fen: int

    @property
    def due_fen(self) -> int:
        return self.settled_fen + self.adjustment_fen - self.deducted_fen


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One clearing category of a statement. The fund columns and ``personal_account_fen`` are
    the month's settlements; ``adjustments`` and ``deductions`` are per payer (PAYERS order),
    ``adjustment_fen`` / ``rejected_fen`` their sums."""

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
    adjustments: tuple[int, ...] = NO_AMOUNTS
    deductions: tuple[int, ...] = NO_AMOUNTS

    @property
    def due_fen(self) -> int:
        return self.fund_total_fen + self.personal_account_fen + self.adjustment_fen - self.rejected_fen

    @property
    def owed(self) -> tuple[Owed, ...]:
        settled = payer_amounts(self)
        return tuple(Owed(p, settled[i], self.adjustments[i], self.deductions[i]) for i, p in enumerate(PAYERS))


def empty_line(category: Category) -> StatementLine:
    return StatementLine(category, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def with_claims(line: StatementLine, adjustments: tuple[int, ...], deductions: tuple[int, ...]) -> StatementLine:
    return replace(
        line,
        adjustments=adjustments,
        deductions=deductions,
        adjustment_fen=sum(adjustments),
        rejected_fen=sum(deductions),
    )


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
    through_position: int = 0
    updated_at: dt.datetime | None = None
    treatment_confirmed_at: dt.datetime | None = None
    insured_confirmed_at: dt.datetime | None = None
    disbursement_date: dt.date | None = None
    bank_charge_fen: int = 0
    # set at the signing: the next signing date of the operator's calendar; the insured place's
    # disbursement and the treatment place's payments to institutions are due by it
    due_date: dt.date | None = None

    @property
    def amount_due_fen(self) -> int:
        return sum(ln.due_fen for ln in self.lines)

    @property
    def owed(self) -> tuple[Owed, ...]:
        """Per payer over every category: what the insured place owes the treatment place."""
        out = [Owed(p, 0, 0, 0) for p in PAYERS]
        for ln in self.lines:
            for i, o in enumerate(ln.owed):
                cur = out[i]
                out[i] = Owed(
                    o.payer,
                    cur.settled_fen + o.settled_fen,
                    cur.adjustment_fen + o.adjustment_fen,
                    cur.deducted_fen + o.deducted_fen,
                )
        return tuple(out)

    @property
    def closed(self) -> bool:
        return self.status is not StatementStatus.DRAFT

    def confirm(self, side: Side, now: dt.datetime, today: dt.date) -> Statement:
        """draft -> confirmed by the treatment side -> confirmed by the insured side (the signing)."""
        if side is Side.TREATMENT:
            if self.status is not StatementStatus.DRAFT:
                raise _state(self, "the treatment side confirms a draft statement")
            return replace(self, status=StatementStatus.CONFIRMED_BY_TREATMENT_SIDE, treatment_confirmed_at=now)
        if self.status is not StatementStatus.CONFIRMED_BY_TREATMENT_SIDE:
            raise _state(self, "the insured side confirms after the treatment side")
        return replace(
            self,
            status=StatementStatus.CONFIRMED_BY_INSURED_SIDE,
            insured_confirmed_at=now,
            signing_date=self.signing_date or today,
        )

    def disburse(self, on: dt.date, bank_charge_fen: int) -> Statement:
        if self.status is not StatementStatus.CONFIRMED_BY_INSURED_SIDE:
            raise _state(self, "only a statement confirmed by both sides is disbursed")
        return replace(self, status=StatementStatus.DISBURSED, disbursement_date=on, bank_charge_fen=bank_charge_fen)


def _state(st: Statement, rule: str) -> DomainError:
    return DomainError(
        Reason.STATEMENT_STATE_INVALID,
        f"statement {st.statement_id} is {st.status.value}: {rule}",
        metadata={"status": st.status.value},
    )


def statement_id(ip: str, tp: str, year: int, month: int) -> str:
    return f"ST-{year:04d}{month:02d}-{ip}-{tp}"


def month_bounds(year: int, month: int) -> tuple[dt.date, dt.date]:
    start = dt.date(year, month, 1)
    end = dt.date(year + (month == 12), month % 12 + 1, 1)
    return start, end


def next_signing_date(calendar: list[dt.date], signing: dt.date) -> dt.date:
    """The first signing date of the operator's calendar after ``signing``; without one, the
    same day of the next month (``payment_deadline``)."""
    later = sorted(d for d in calendar if d > signing)
    return later[0] if later else payment_deadline(signing)


def is_overdue(due: dt.date | None, done: bool, as_of: dt.date) -> bool:
    """Due by the next signing date: overdue from the day after it when not yet done."""
    return due is not None and not done and as_of > due


def payment_deadline(signing: dt.date) -> dt.date:
    """Without a signing calendar: the same day of the next month (at most the 28th)."""
    nxt = month_bounds(signing.year, signing.month)[1]
    return dt.date(nxt.year, nxt.month, min(signing.day, 28))


PairKey = tuple[str, str, Category]  # (insured province, treatment province, category)


def assemble(
    year: int,
    month: int,
    base: dict[PairKey, StatementLine],
    adjustments: dict[PairKey, tuple[int, ...]],
    rejections: dict[PairKey, tuple[int, ...]],
    signing_date: dt.date | None,
    through_position: int,
) -> list[Statement]:
    """Draft statements of a month, one per province pair that has anything to clear: the month's
    settlements by category, plus late rows of closed months (adjustments) and rejected amounts
    of answered verifications (deductions), both per payer (PAYERS order)."""
    keys = sorted(base.keys() | adjustments.keys() | rejections.keys())
    by_pair: dict[tuple[str, str], list[StatementLine]] = {}
    for ip, tp, cat in keys:
        line = base.get((ip, tp, cat)) or empty_line(cat)
        line = with_claims(line, adjustments.get((ip, tp, cat), NO_AMOUNTS), rejections.get((ip, tp, cat), NO_AMOUNTS))
        by_pair.setdefault((ip, tp), []).append(line)
    return [
        Statement(
            statement_id(ip, tp, year, month),
            ip,
            tp,
            year,
            month,
            StatementStatus.DRAFT,
            tuple(lines),
            signing_date,
            sum(ln.count for ln in lines),
            through_position,
        )
        for (ip, tp), lines in by_pair.items()
    ]
