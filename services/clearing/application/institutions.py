"""An institution's own view of clearing (national 3203/3204), read-only: what the treatment
place owes it for a month, line by line, and the payments it has received. Reads the same rows
the statements and the ledger are built from; writes nothing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.clearing.application.ports import ClearingStore
from services.clearing.domain.model import Category, StatementLine, StatementStatus, statement_id

PAYMENT_POSTING = "institution_paid:"  # the ledger posting of RecordInstitutionPayment


@dataclass(frozen=True, slots=True)
class InstitutionLine:
    insured_province: str
    line: StatementLine
    statement_id: str  # the province pair's statement of the month
    statement_status: StatementStatus | None  # None until the statement is built


@dataclass(frozen=True, slots=True)
class InstitutionMonth:
    institution_code: str
    treatment_province: str  # "" when clearing holds nothing of the institution for the month
    year: int
    month: int
    lines: tuple[InstitutionLine, ...]

    def total(self, field: str) -> int:
        return sum(int(getattr(ln.line, field)) for ln in self.lines)


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    amount_fen: int
    recorded_at: dt.datetime


@dataclass(frozen=True, slots=True)
class InstitutionPayments:
    institution_code: str
    payments: tuple[Payment, ...]
    outstanding_fen: int

    @property
    def paid_fen(self) -> int:
        return sum(p.amount_fen for p in self.payments)

    @property
    def owed_fen(self) -> int:
        return self.paid_fen + self.outstanding_fen


class InstitutionViews:
    def __init__(self, store: ClearingStore) -> None:
        self.store = store

    async def month(self, institution: str, year: int, month: int) -> InstitutionMonth:
        async with self.store.read() as repo:
            rows = await repo.institution_month(institution, year, month)
            ids = {
                (r.insured_province, r.treatment_province): statement_id(
                    r.insured_province, r.treatment_province, year, month
                )
                for r in rows
            }
            states = await repo.statement_states(sorted(set(ids.values())))
        lines = []
        for r in rows:
            sid = ids[(r.insured_province, r.treatment_province)]
            line = StatementLine(
                Category(r.category),
                int(r.count),
                int(r.total_fen),
                int(r.pooled_fund_fen),
                int(r.large_amount_fen),
                int(r.critical_illness_fen),
                int(r.assistance_fen),
                int(r.other_fund_fen),
                int(r.fund_total_fen),
                int(r.personal_account_fen),
            )
            status = states.get(sid)
            lines.append(InstitutionLine(r.insured_province, line, sid, StatementStatus(status) if status else None))
        tp = rows[0].treatment_province if rows else ""
        return InstitutionMonth(institution, tp, year, month, tuple(lines))

    async def payments(self, institution: str) -> InstitutionPayments:
        account = f"institution:{institution}:receivable"
        async with self.store.read() as repo:
            rows = await repo.account_entries(account, PAYMENT_POSTING)
            balance = await repo.balance(account)
        payments = tuple(
            Payment(r.posting_id.removeprefix(PAYMENT_POSTING), int(r.amount_fen), r.posted_at) for r in rows
        )
        return InstitutionPayments(institution, payments, -balance)
