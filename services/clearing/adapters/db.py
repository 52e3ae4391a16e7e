"""Clearing tables and repository. Ledger entries are append-only; balances are derived."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from libs.platform.idempotency import idempotency_table
from services.clearing.domain.model import (
    Category,
    Entry,
    FeedSettlement,
    Statement,
    StatementLine,
    StatementStatus,
    month_bounds,
)

metadata = MetaData()

feed_cursor = Table(
    "feed_cursor",
    metadata,
    Column("feed", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

cleared_settlements = Table(
    "cleared_settlements",
    metadata,
    Column("settlement_id", String(40), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("cancels_settlement_id", String(40), nullable=True),
    Column("institution_code", String(32), nullable=False),
    Column("insured_province", String(2), nullable=False),
    Column("treatment_province", String(2), nullable=False),
    Column("insured_region", String(6), nullable=False),
    Column("treatment_region", String(6), nullable=False),
    Column("category", String(16), nullable=False),
    Column("settle_date", Date, nullable=False),
    Column("total_fen", BigInteger, nullable=False),
    Column("pooled_fund_fen", BigInteger, nullable=False),
    Column("large_amount_fen", BigInteger, nullable=False),
    Column("critical_illness_fen", BigInteger, nullable=False),
    Column("assistance_fen", BigInteger, nullable=False),
    Column("other_fund_fen", BigInteger, nullable=False),
    Column("fund_total_fen", BigInteger, nullable=False),
    Column("personal_account_fen", BigInteger, nullable=False),
    Column("cash_fen", BigInteger, nullable=False),
)
Index(
    "ix_cleared_month_pair",
    cleared_settlements.c.settle_date,
    cleared_settlements.c.insured_province,
    cleared_settlements.c.treatment_province,
)
Index("ix_cleared_institution_date", cleared_settlements.c.institution_code, cleared_settlements.c.settle_date)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("posting_id", String(64), nullable=False),
    Column("account", String(96), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
)
Index("ix_ledger_account", ledger_entries.c.account)
Index("ix_ledger_posting", ledger_entries.c.posting_id)

statements = Table(
    "statements",
    metadata,
    Column("statement_id", String(40), primary_key=True),
    Column("insured_province", String(2), nullable=False),
    Column("treatment_province", String(2), nullable=False),
    Column("year", Integer, nullable=False),
    Column("month", Integer, nullable=False),
    Column("status", String(40), nullable=False),
    Column("lines", Text, nullable=False),
    Column("amount_due_fen", BigInteger, nullable=False),
    Column("settlement_count", BigInteger, nullable=False),
    Column("signing_date", Date, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_statements_month", statements.c.year, statements.c.month)

idempotency_keys = idempotency_table(metadata)

_AMOUNTS = (
    "total_fen",
    "pooled_fund_fen",
    "large_amount_fen",
    "critical_illness_fen",
    "assistance_fen",
    "other_fund_fen",
    "fund_total_fen",
    "personal_account_fen",
    "cash_fen",
)


class ClearingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def cursor(self, feed: str) -> int:
        value = (await self.s.execute(select(feed_cursor.c.position).where(feed_cursor.c.feed == feed))).scalar()
        return int(value or 0)

    async def set_cursor(self, feed: str, position: int, now: dt.datetime) -> None:
        result = await self.s.execute(
            update(feed_cursor).where(feed_cursor.c.feed == feed).values(position=position, updated_at=now)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            await self.s.execute(insert(feed_cursor).values(feed=feed, position=position, updated_at=now))

    async def known(self, ids: Sequence[str]) -> set[str]:
        rows = await self.s.execute(
            select(cleared_settlements.c.settlement_id).where(cleared_settlements.c.settlement_id.in_(list(ids)))
        )
        return set(rows.scalars())

    async def add_settlements(self, items: Sequence[FeedSettlement]) -> None:
        if not items:
            return
        await self.s.execute(
            insert(cleared_settlements),
            [
                {
                    "settlement_id": s.settlement_id,
                    "position": s.position,
                    "kind": s.kind,
                    "cancels_settlement_id": s.cancels_settlement_id or None,
                    "institution_code": s.institution_code,
                    "insured_province": s.insured_province,
                    "treatment_province": s.treatment_province,
                    "insured_region": s.insured_region,
                    "treatment_region": s.treatment_region,
                    "category": s.category.value,
                    "settle_date": s.settle_date,
                    **{a: getattr(s, a) for a in _AMOUNTS},
                }
                for s in items
            ],
        )

    async def post(self, posting_id: str, entries: Sequence[Entry], now: dt.datetime) -> None:
        if entries:
            await self.s.execute(
                insert(ledger_entries),
                [
                    {"posting_id": posting_id, "account": e.account, "amount_fen": e.amount_fen, "posted_at": now}
                    for e in entries
                ],
            )

    async def balances(self, prefix: str = "") -> list[tuple[str, int]]:
        q = select(ledger_entries.c.account, func.sum(ledger_entries.c.amount_fen)).group_by(ledger_entries.c.account)
        if prefix:
            q = q.where(ledger_entries.c.account.startswith(prefix))
        return [(a, int(b)) for a, b in (await self.s.execute(q.order_by(ledger_entries.c.account))).all()]

    async def month_aggregate(self, year: int, month: int) -> list[Any]:
        start, end = month_bounds(year, month)
        c = cleared_settlements.c
        return list(
            (
                await self.s.execute(
                    select(
                        c.insured_province,
                        c.treatment_province,
                        c.category,
                        func.sum(case((c.kind == "settlement", 1), else_=-1)).label("count"),
                        *[func.sum(getattr(c, a)).label(a) for a in _AMOUNTS],
                    )
                    .where(and_(c.settle_date >= start, c.settle_date < end))
                    .group_by(c.insured_province, c.treatment_province, c.category)
                )
            ).all()
        )

    async def save_statement(self, st: Statement, now: dt.datetime) -> None:
        row = {
            "insured_province": st.insured_province,
            "treatment_province": st.treatment_province,
            "year": st.year,
            "month": st.month,
            "status": st.status.value,
            "lines": json.dumps([_line_doc(ln) for ln in st.lines]),
            "amount_due_fen": st.amount_due_fen,
            "settlement_count": st.settlement_count,
            "signing_date": st.signing_date,
            "updated_at": now,
        }
        result = await self.s.execute(
            update(statements).where(statements.c.statement_id == st.statement_id).values(**row)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            await self.s.execute(insert(statements).values(statement_id=st.statement_id, **row))

    async def statement(self, statement_id: str) -> Statement | None:
        row = (await self.s.execute(select(statements).where(statements.c.statement_id == statement_id))).first()
        return statement_from_row(row) if row else None

    async def statements_of_month(self, year: int, month: int, province: str = "") -> list[Statement]:
        q = select(statements).where(and_(statements.c.year == year, statements.c.month == month))
        if province:
            q = q.where((statements.c.insured_province == province) | (statements.c.treatment_province == province))
        rows = (await self.s.execute(q.order_by(statements.c.statement_id))).all()
        return [statement_from_row(r) for r in rows]

    async def ingested_count(self) -> int:
        return int((await self.s.execute(select(func.count()).select_from(cleared_settlements))).scalar_one())


def _line_doc(ln: StatementLine) -> dict[str, Any]:
    return {
        name: (getattr(ln, name).value if name == "category" else getattr(ln, name))
        for name in StatementLine.__dataclass_fields__
    }


def statement_from_row(r: Any) -> Statement:
    lines = tuple(StatementLine(**{**d, "category": Category(d["category"])}) for d in json.loads(r.lines))
    return Statement(
        statement_id=r.statement_id,
        insured_province=r.insured_province,
        treatment_province=r.treatment_province,
        year=r.year,
        month=r.month,
        status=StatementStatus(r.status),
        lines=lines,
        signing_date=r.signing_date,
        settlement_count=r.settlement_count,
    )
