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

    @property
    def due_fen(self) -> int:
        return self.fund_total_fen + self.adjustment_fen - self.rejected_fen


def empty_line(category: Category) -> StatementLine:
    return StatementLine(category, 0, 0, 0, 0, 0, 0, 0, 0, 0)


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

    @property
    def amount_due_fen(self) -> int:
        return sum(ln.due_fen for ln in self.lines)

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


def payment_deadline(signing: dt.date) -> dt.date:
    """Institutions are paid by the treatment place before the next monthly signing date."""
    nxt = month_bounds(signing.year, signing.month)[1]
    return dt.date(nxt.year, nxt.month, min(signing.day, 28))


PairKey = tuple[str, str, Category]  # (insured province, treatment province, category)


def assemble(
    year: int,
    month: int,
    base: dict[PairKey, StatementLine],
    adjustments: dict[PairKey, int],
    rejections: dict[PairKey, int],
    signing_date: dt.date | None,
    through_position: int,
) -> list[Statement]:
    """Draft statements of a month, one per province pair that has anything to clear: the month's
    settlements by category, plus late rows of closed months (adjustments) and rejected amounts
    of answered verifications (deductions)."""
    keys = sorted(base.keys() | adjustments.keys() | rejections.keys())
    by_pair: dict[tuple[str, str], list[StatementLine]] = {}
    for ip, tp, cat in keys:
        line = base.get((ip, tp, cat)) or empty_line(cat)
        line = replace(
            line,
            adjustment_fen=adjustments.get((ip, tp, cat), 0),
            rejected_fen=rejections.get((ip, tp, cat), 0),
        )
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
