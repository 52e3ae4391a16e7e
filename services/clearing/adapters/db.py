"""Clearing tables and repository. Ledger entries are append-only; balances are derived."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.platform import idempotency
from libs.platform.db import Store, upsert
from libs.platform.idempotency import idempotency_table
from services.clearing.application.ports import rejected_split
from services.clearing.domain.ledger import Entry, check_balanced
from services.clearing.domain.model import (
    FUND_FIELDS,
    NO_AMOUNTS,
    PAYER_FIELDS,
    Category,
    FeedSettlement,
    Statement,
    StatementLine,
    StatementStatus,
)

metadata = MetaData()

feed_cursor = Table(
    "feed_cursor",
    metadata,
    Column("feed", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The sub-ledger: every ingested settlement and cancellation, never updated.
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
    # yyyymm the row is cleared in: its own month; a cancellation's is the cancelled settlement's.
    Column("clearing_month", Integer, nullable=False),
)
Index(
    "ix_cleared_month_pair",
    cleared_settlements.c.settle_date,
    cleared_settlements.c.insured_province,
    cleared_settlements.c.treatment_province,
)
Index("ix_cleared_institution_date", cleared_settlements.c.institution_code, cleared_settlements.c.settle_date)
# cancellations by the settlement they cancel (partial: most rows are settlements)
Index(
    "ix_cleared_cancels",
    cleared_settlements.c.cancels_settlement_id,
    sqlite_where=cleared_settlements.c.cancels_settlement_id.is_not(None),
    postgresql_where=cleared_settlements.c.cancels_settlement_id.is_not(None),
)
Index(
    "ix_cleared_clearing_month",
    cleared_settlements.c.clearing_month,
    cleared_settlements.c.insured_province,
    cleared_settlements.c.treatment_province,
)

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
    Column("through_position", BigInteger, nullable=False, server_default="0"),
    Column("treatment_confirmed_at", DateTime(timezone=True), nullable=True),
    Column("insured_confirmed_at", DateTime(timezone=True), nullable=True),
    Column("disbursement_date", Date, nullable=True),
    Column("bank_charge_fen", BigInteger, nullable=False, server_default="0"),
    Column("due_date", Date, nullable=True),
)
Index("ix_statements_month", statements.c.year, statements.c.month)

# The monthly signing dates the national operator sets.
signing_calendar = Table(
    "signing_calendar",
    metadata,
    Column("signing_date", Date, primary_key=True),
    Column("year", Integer, nullable=False),
    Column("month", Integer, nullable=False),
)

# Late rows of a closed month, taken as adjustments by a later month's statement.
statement_adjustments = Table(
    "statement_adjustments",
    metadata,
    Column("settlement_id", String(40), primary_key=True),
    Column("statement_id", String(40), nullable=False),
)
Index("ix_statement_adjustments_statement", statement_adjustments.c.statement_id)

prepayments = Table(
    "prepayments",
    metadata,
    Column("insured_province", String(2), primary_key=True),
    Column("treatment_province", String(2), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("annual_prepayment_fen", BigInteger, nullable=False),
    Column("previous_q4_clearing_fen", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

top_ups = Table(
    "top_ups",
    metadata,
    Column("top_up_id", String(128), primary_key=True),
    Column("insured_province", String(2), nullable=False),
    Column("treatment_province", String(2), nullable=False),
    Column("year", Integer, nullable=False),
    Column("month", Integer, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # requested -> approved | refused (national operator) -> disbursed; rows from before the
    # review step were booked when requested
    Column("status", String(16), nullable=False, server_default="disbursed"),
    Column("reviewed_at", DateTime(timezone=True), nullable=True),
    Column("review_note", Text, nullable=True),
    Column("disbursement_date", Date, nullable=True),
)
Index("ix_top_ups_pair_year", top_ups.c.insured_province, top_ups.c.treatment_province, top_ups.c.year)

verifications = Table(
    "verifications",
    metadata,
    Column("verification_id", String(40), primary_key=True),
    Column("settlement_id", String(40), nullable=False),
    Column("institution_code", String(32), nullable=False),
    Column("insured_province", String(2), nullable=False),
    Column("treatment_province", String(2), nullable=False),
    Column("category", String(16), nullable=False),
    Column("clearing_month", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("answer_deadline", Date, nullable=False),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("answer", Text, nullable=True),
    Column("rejected_fen", BigInteger, nullable=False),
    Column("deducted_in_statement_id", String(40), nullable=True),
    # rejected_fen spread over the payers (JSON list in PAYERS order; rules.split_deduction)
    Column("rejected_split", Text, nullable=True),
    Column("questioned_fen", BigInteger, nullable=False, server_default="0"),
    Column("auto_deducted", Boolean, nullable=False, server_default=false()),
    # the settlement was cancelled after its deduction was taken: the statement giving it back
    Column("reinstated_in_statement_id", String(40), nullable=True),
)
Index("ix_verifications_settlement", verifications.c.settlement_id)
# at most one open (unanswered) verification per settlement, also against concurrent requests
Index(
    "ux_verifications_open",
    verifications.c.settlement_id,
    unique=True,
    sqlite_where=verifications.c.answered_at.is_(None),
    postgresql_where=verifications.c.answered_at.is_(None),
)

reconciliations = Table(
    "reconciliations",
    metadata,
    Column("reconciliation_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("submitter", String(32), nullable=False),
    Column("reconcile_date", Date, nullable=False),
    Column("matched", Boolean, nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

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
_COLUMNS = tuple(c.name for c in cleared_settlements.columns)
CLOSED = (
    StatementStatus.CONFIRMED_BY_TREATMENT_SIDE.value,
    StatementStatus.CONFIRMED_BY_INSURED_SIDE.value,
    StatementStatus.DISBURSED.value,
)


def _record(s: FeedSettlement, month: int) -> tuple[Any, ...]:
    """One row in ``_COLUMNS`` order (built directly: this runs once per ingested settlement)."""
    return (
        s.settlement_id,
        s.position,
        s.kind,
        s.cancels_settlement_id or None,
        s.institution_code,
        s.insured_region[:2],
        s.treatment_region[:2],
        s.insured_region,
        s.treatment_region,
        s.category.value,
        s.settle_date,
        s.total_fen,
        s.pooled_fund_fen,
        s.large_amount_fen,
        s.critical_illness_fen,
        s.assistance_fen,
        s.other_fund_fen,
        s.fund_total_fen,
        s.personal_account_fen,
        s.cash_fen,
        month,
    )


_RECORD_ORDER = (
    "settlement_id",
    "position",
    "kind",
    "cancels_settlement_id",
    "institution_code",
    "insured_province",
    "treatment_province",
    "insured_region",
    "treatment_region",
    "category",
    "settle_date",
    "total_fen",
    "pooled_fund_fen",
    "large_amount_fen",
    "critical_illness_fen",
    "assistance_fen",
    "other_fund_fen",
    "fund_total_fen",
    "personal_account_fen",
    "cash_fen",
    "clearing_month",
)
assert tuple(_RECORD_ORDER) == _COLUMNS, "keep _record in step with the table"
_COPY_MIN = 50  # below this a plain INSERT is as quick as COPY


async def _driver(conn: AsyncConnection) -> Any | None:
    """The asyncpg connection under the unit of work's transaction, on PostgreSQL; else None."""
    if conn.dialect.name != "postgresql":
        return None
    raw = await conn.get_raw_connection()
    return raw.driver_connection


def _sid_expr(year: int, month: int, ip: Any, tp: Any) -> Any:
    """statement_id() in SQL, so claims can be made set-based."""
    return literal(f"ST-{year:04d}{month:02d}-") + ip + literal("-") + tp


class ClearingRepository:
    """Clearing's tables inside one transaction or read (``ClearingRepo``)."""

    def __init__(self, session: AsyncConnection) -> None:
        self.s = session

    # -- requests (idempotency) -------------------------------------------------------------
    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        return await idempotency.check(self.s, idempotency_keys, request_id, operation, fingerprint)

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None:
        await idempotency.record(self.s, idempotency_keys, request_id, operation, fingerprint, ref)

    async def recorded_ref(self, request_id: str) -> str | None:
        found = await idempotency.lookup(self.s, idempotency_keys, request_id)
        return found[1] if found else None

    # -- ingest -----------------------------------------------------------------------------
    async def cursor(self, feed: str) -> int:
        value = (await self.s.execute(select(feed_cursor.c.position).where(feed_cursor.c.feed == feed))).scalar()
        return int(value or 0)

    async def set_cursor(self, feed: str, position: int, now: dt.datetime) -> None:
        await upsert(self.s, feed_cursor, "feed", {"feed": feed, "position": position, "updated_at": now})

    async def known(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        if len(ids) > _COPY_MIN and (driver := await _driver(self.s)) is not None:
            # one array parameter instead of thousands of bound ones
            rows_ = await driver.fetch(
                "SELECT settlement_id FROM cleared_settlements WHERE settlement_id = ANY($1::varchar[])", list(ids)
            )
            return {r[0] for r in rows_}
        rows = await self.s.execute(
            select(cleared_settlements.c.settlement_id).where(cleared_settlements.c.settlement_id.in_(list(ids)))
        )
        return set(rows.scalars())

    async def settle_dates(self, ids: Sequence[str]) -> dict[str, dt.date]:
        if not ids:
            return {}
        c = cleared_settlements.c
        rows = await self.s.execute(select(c.settlement_id, c.settle_date).where(c.settlement_id.in_(list(ids))))
        return {r.settlement_id: r.settle_date for r in rows}

    async def add_settlements(self, items: Sequence[FeedSettlement], months: Mapping[str, int]) -> None:
        """Bulk insert. On PostgreSQL a COPY inside the same transaction (far fewer round trips
        and less parsing than multi-row INSERTs)."""
        if not items:
            return
        records = [_record(s, months[s.settlement_id]) for s in items]
        if len(records) > _COPY_MIN and (driver := await _driver(self.s)) is not None:
            await driver.copy_records_to_table("cleared_settlements", records=records, columns=list(_COLUMNS))
            return
        await self.s.execute(insert(cleared_settlements), [dict(zip(_COLUMNS, r, strict=True)) for r in records])

    async def ingested_count(self) -> int:
        return int((await self.s.execute(select(func.count()).select_from(cleared_settlements))).scalar_one())

    async def cleared(self, settlement_id: str) -> Any:
        q = select(cleared_settlements).where(cleared_settlements.c.settlement_id == settlement_id)
        return (await self.s.execute(q)).first()

    # -- ledger -----------------------------------------------------------------------------
    async def post(self, posting_id: str, entries: Sequence[Entry], now: dt.datetime) -> None:
        check_balanced(entries)
        if len(entries) > _COPY_MIN and (driver := await _driver(self.s)) is not None:
            await driver.copy_records_to_table(
                "ledger_entries",
                records=[(posting_id, e.account, e.amount_fen, now) for e in entries],
                columns=["posting_id", "account", "amount_fen", "posted_at"],
            )
            return
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
            q = q.where(ledger_entries.c.account.startswith(prefix, autoescape=True))
        return [(a, int(b)) for a, b in (await self.s.execute(q.order_by(ledger_entries.c.account))).all()]

    async def balance(self, account: str) -> int:
        q = select(func.coalesce(func.sum(ledger_entries.c.amount_fen), 0)).where(ledger_entries.c.account == account)
        return int((await self.s.execute(q)).scalar_one())

    # -- monthly clearing -------------------------------------------------------------------
    async def lock_month(self, year: int, month: int) -> dict[str, Statement | StatementStatus]:
        """The month's statements, locked (PostgreSQL) so a confirmation cannot interleave with a
        rebuild (SQLite write transactions are serialised anyway). Drafts come back as their
        status only (they are about to be rebuilt), closed ones in full."""
        q = (
            select(statements.c.statement_id, statements.c.status)
            .where(and_(statements.c.year == year, statements.c.month == month))
            .with_for_update()
        )
        out: dict[str, Statement | StatementStatus] = {
            r.statement_id: StatementStatus(r.status) for r in (await self.s.execute(q)).all()
        }
        closed = [sid for sid, status in out.items() if status is not StatementStatus.DRAFT]
        if closed:
            rows = (await self.s.execute(select(statements).where(statements.c.statement_id.in_(closed)))).all()
            out.update({r.statement_id: statement_from_row(r) for r in rows})
        return out

    async def month_aggregate(self, year: int, month: int, through: int) -> list[Any]:
        c = cleared_settlements.c
        q = (
            select(
                c.insured_province,
                c.treatment_province,
                c.category,
                func.sum(case((c.kind == "settlement", 1), else_=-1)).label("count"),
                *[func.sum(getattr(c, a)).label(a) for a in _AMOUNTS],
            )
            .where(and_(c.clearing_month == year * 100 + month, c.position <= through))
            .group_by(c.insured_province, c.treatment_province, c.category)
        )
        return list((await self.s.execute(q)).all())

    async def release_claims(self, statement_ids: Sequence[str]) -> None:
        """A draft being rebuilt gives back its adjustments and deductions, to claim them again."""
        if not statement_ids:
            return
        ids = list(statement_ids)
        await self.s.execute(delete(statement_adjustments).where(statement_adjustments.c.statement_id.in_(ids)))
        await self.s.execute(
            update(verifications)
            .where(verifications.c.deducted_in_statement_id.in_(ids))
            .values(deducted_in_statement_id=None)
        )
        await self.s.execute(
            update(verifications)
            .where(verifications.c.reinstated_in_statement_id.in_(ids))
            .values(reinstated_in_statement_id=None)
        )

    async def claim_late_rows(self, year: int, month: int, through: int) -> None:
        """Rows of an earlier month that arrived after that month's statement was closed become
        adjustments of this month, unless this month's statement of the pair is closed too."""
        c, adj = cleared_settlements.c, statement_adjustments
        closed, mine = statements.alias("closed"), statements.alias("mine")
        target = _sid_expr(year, month, c.insured_province, c.treatment_province)
        q = (
            select(c.settlement_id, target)
            .select_from(
                cleared_settlements.join(
                    closed,
                    and_(
                        closed.c.insured_province == c.insured_province,
                        closed.c.treatment_province == c.treatment_province,
                        closed.c.year * 100 + closed.c.month == c.clearing_month,
                    ),
                )
            )
            .where(
                c.clearing_month < year * 100 + month,
                closed.c.status.in_(CLOSED),
                c.position > closed.c.through_position,
                c.position <= through,
                ~exists().where(adj.c.settlement_id == c.settlement_id),
                ~exists().where(and_(mine.c.statement_id == target, mine.c.status.in_(CLOSED))),
            )
        )
        await self.s.execute(insert(adj).from_select(["settlement_id", "statement_id"], q))

    def _cancelled(self, through: int) -> Any:
        """The verification's settlement has a cancellation ingested up to ``through``."""
        c, v = cleared_settlements.c, verifications.c
        return exists().where(and_(c.cancels_settlement_id == v.settlement_id, c.position <= through))

    async def rejection_candidates(self, year: int, month: int, through: int) -> list[Any]:
        """Answered deductions not yet taken by a statement, of this month or earlier, whose
        settlement is not cancelled and whose pair's statement of this month is still open;
        oldest answer first."""
        v = verifications.c
        target = _sid_expr(year, month, v.insured_province, v.treatment_province)
        mine = statements.alias("mine")
        q = (
            select(v.verification_id, v.insured_province, v.treatment_province, v.rejected_fen)
            .where(
                v.answered_at.is_not(None),
                v.rejected_fen > 0,
                v.deducted_in_statement_id.is_(None),
                v.clearing_month <= year * 100 + month,
                ~self._cancelled(through),
                ~exists().where(and_(mine.c.statement_id == target, mine.c.status.in_(CLOSED))),
            )
            .order_by(v.answered_at, v.verification_id)
        )
        return list((await self.s.execute(q)).all())

    async def claim_rejections(self, verification_ids: Sequence[str], year: int, month: int) -> None:
        if not verification_ids:
            return
        v = verifications.c
        await self.s.execute(
            update(verifications)
            .where(v.verification_id.in_(list(verification_ids)))
            .values(deducted_in_statement_id=_sid_expr(year, month, v.insured_province, v.treatment_province))
        )

    async def claim_reinstatements(self, year: int, month: int, through: int) -> None:
        """A deduction taken by a closed statement whose settlement was cancelled afterwards is
        given back by this month's statement (the cancellation returned the whole payment)."""
        v = verifications.c
        target = _sid_expr(year, month, v.insured_province, v.treatment_province)
        taken, mine = statements.alias("taken"), statements.alias("mine")
        await self.s.execute(
            update(verifications)
            .where(
                v.deducted_in_statement_id.is_not(None),
                v.reinstated_in_statement_id.is_(None),
                self._cancelled(through),
                exists().where(and_(taken.c.statement_id == v.deducted_in_statement_id, taken.c.status.in_(CLOSED))),
                ~exists().where(and_(mine.c.statement_id == target, mine.c.status.in_(CLOSED))),
            )
            .values(reinstated_in_statement_id=target)
        )

    async def adjustments_of(self, year: int, month: int) -> dict[tuple[str, str, Category], tuple[int, ...]]:
        """Late rows claimed by this month's statements, summed per pair and category, per payer."""
        c, adj = cleared_settlements.c, statement_adjustments.c
        q = (
            select(
                c.insured_province,
                c.treatment_province,
                c.category,
                *[func.sum(getattr(c, f)).label(f) for f in PAYER_FIELDS],
            )
            .select_from(statement_adjustments.join(cleared_settlements, adj.settlement_id == c.settlement_id))
            .where(adj.statement_id.startswith(f"ST-{year:04d}{month:02d}-"))
            .group_by(c.insured_province, c.treatment_province, c.category)
        )
        return {
            (r.insured_province, r.treatment_province, Category(r.category)): tuple(
                int(getattr(r, f)) for f in PAYER_FIELDS
            )
            for r in (await self.s.execute(q)).all()
        }

    async def rejections_of(self, year: int, month: int) -> dict[tuple[str, str, Category], tuple[int, ...]]:
        """Deductions claimed by this month's statements, per pair and category, per payer
        (verifications are few: summed here from each one's stored split)."""
        v = verifications.c
        prefix = f"ST-{year:04d}{month:02d}-"
        out: dict[tuple[str, str, Category], tuple[int, ...]] = {}
        for column, sign in ((v.deducted_in_statement_id, 1), (v.reinstated_in_statement_id, -1)):
            q = select(v.insured_province, v.treatment_province, v.category, v.rejected_fen, v.rejected_split).where(
                column.startswith(prefix)
            )
            for r in (await self.s.execute(q)).all():
                key = (r.insured_province, r.treatment_province, Category(r.category))
                split = rejected_split(r)
                out[key] = tuple(a + sign * b for a, b in zip(out.get(key, NO_AMOUNTS), split, strict=True))
        return out

    async def save_drafts(self, fresh: Sequence[Statement], drafts: Sequence[Statement], now: dt.datetime) -> None:
        """Set-based: the drafts being rebuilt are deleted and written again with the new ones
        in one bulk insert (COPY on PostgreSQL). The caller holds the month's lock."""
        if drafts:
            await self.s.execute(
                delete(statements).where(
                    statements.c.statement_id.in_([st.statement_id for st in drafts]),
                    statements.c.status == StatementStatus.DRAFT.value,
                )
            )
        rows = [{"statement_id": st.statement_id, **_row(st, now)} for st in [*fresh, *drafts]]
        if not rows:
            return
        if len(rows) > _COPY_MIN and (driver := await _driver(self.s)) is not None:
            cols = list(rows[0])
            await driver.copy_records_to_table(
                "statements", records=[tuple(r[c] for c in cols) for r in rows], columns=cols
            )
            return
        await self.s.execute(insert(statements), rows)

    async def save_statement(self, st: Statement, now: dt.datetime, *, expect: StatementStatus | None) -> bool:
        """Insert (``expect`` None), or update if the stored status is still ``expect``."""
        row = _row(st, now)
        if expect is None:
            await self.s.execute(insert(statements).values(statement_id=st.statement_id, **row))
            return True
        result = await self.s.execute(
            update(statements)
            .where(and_(statements.c.statement_id == st.statement_id, statements.c.status == expect.value))
            .values(**row)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def statement(self, statement_id: str, *, for_update: bool = False) -> Statement | None:
        q = select(statements).where(statements.c.statement_id == statement_id)
        if for_update:
            q = q.with_for_update()
        row = (await self.s.execute(q)).first()
        return statement_from_row(row) if row else None

    async def statements_of_month(self, year: int, month: int, province: str = "") -> list[Statement]:
        q = select(statements).where(and_(statements.c.year == year, statements.c.month == month))
        if province:
            q = q.where((statements.c.insured_province == province) | (statements.c.treatment_province == province))
        rows = (await self.s.execute(q.order_by(statements.c.statement_id))).all()
        return [statement_from_row(r) for r in rows]

    async def latest_signed(self, treatment_province: str) -> Statement | None:
        q = (
            select(statements)
            .where(statements.c.treatment_province == treatment_province, statements.c.signing_date.is_not(None))
            .order_by(statements.c.signing_date.desc())
            .limit(1)
        )
        row = (await self.s.execute(q)).first()
        return statement_from_row(row) if row else None

    # -- signing calendar and deadlines -------------------------------------------------------
    async def set_calendar(self, year: int, dates: Sequence[dt.date]) -> None:
        await self.s.execute(delete(signing_calendar).where(signing_calendar.c.year == year))
        if dates:
            await self.s.execute(
                insert(signing_calendar), [{"signing_date": d, "year": year, "month": d.month} for d in dates]
            )

    async def calendar(self, year: int | None = None) -> list[dt.date]:
        q = select(signing_calendar.c.signing_date).order_by(signing_calendar.c.signing_date)
        if year is not None:
            q = q.where(signing_calendar.c.year == year)
        return list((await self.s.execute(q)).scalars())

    async def signed_not_disbursed(self) -> list[Statement]:
        q = select(statements).where(statements.c.status == StatementStatus.CONFIRMED_BY_INSURED_SIDE.value)
        return [statement_from_row(r) for r in (await self.s.execute(q.order_by(statements.c.statement_id))).all()]

    async def owed_to_institutions(self) -> list[Any]:
        """Per institution and signed statement: what the statement holds for the institution
        (its rows of the month up to the statement's position, the late rows it claimed, less the
        deductions it took, plus those it gave back), with the statement's due date."""
        c, st_, adj, v = cleared_settlements.c, statements.c, statement_adjustments.c, verifications.c
        signed = st_.signing_date.is_not(None)
        own = (
            select(
                c.institution_code,
                st_.statement_id,
                st_.due_date,
                (c.fund_total_fen + c.personal_account_fen).label("fen"),
            )
            .select_from(
                cleared_settlements.join(
                    statements,
                    and_(
                        st_.insured_province == c.insured_province,
                        st_.treatment_province == c.treatment_province,
                        st_.year * 100 + st_.month == c.clearing_month,
                        c.position <= st_.through_position,
                    ),
                )
            )
            .where(signed)
        )
        claimed = (
            select(
                c.institution_code,
                st_.statement_id,
                st_.due_date,
                (c.fund_total_fen + c.personal_account_fen).label("fen"),
            )
            .select_from(
                statement_adjustments.join(cleared_settlements, adj.settlement_id == c.settlement_id).join(
                    statements, st_.statement_id == adj.statement_id
                )
            )
            .where(signed)
        )
        deducted = (
            select(v.institution_code, st_.statement_id, st_.due_date, (-v.rejected_fen).label("fen"))
            .select_from(verifications.join(statements, st_.statement_id == v.deducted_in_statement_id))
            .where(signed)
        )
        given_back = (
            select(v.institution_code, st_.statement_id, st_.due_date, v.rejected_fen.label("fen"))
            .select_from(verifications.join(statements, st_.statement_id == v.reinstated_in_statement_id))
            .where(signed)
        )
        u = own.union_all(claimed, deducted, given_back).subquery()
        q = select(u.c.institution_code, u.c.statement_id, u.c.due_date, func.sum(u.c.fen).label("fen")).group_by(
            u.c.institution_code, u.c.statement_id, u.c.due_date
        )
        return list((await self.s.execute(q)).all())

    async def institution_payments(self) -> dict[str, int]:
        e = ledger_entries.c
        q = (
            select(e.account, func.sum(e.amount_fen))
            .where(e.posting_id.startswith("institution_paid:"), e.account.startswith("institution:"))
            .group_by(e.account)
        )
        return {a.split(":")[1]: int(v) for a, v in (await self.s.execute(q)).all()}

    # -- prepayments ------------------------------------------------------------------------
    async def clearing_sum(
        self, ip: str, tp: str, year: int, months: Sequence[int], statuses: Sequence[str] = ()
    ) -> int:
        q = select(func.coalesce(func.sum(statements.c.amount_due_fen), 0)).where(
            statements.c.insured_province == ip,
            statements.c.treatment_province == tp,
            statements.c.year == year,
            statements.c.month.in_(list(months)),
        )
        if statuses:
            q = q.where(statements.c.status.in_(list(statuses)))
        return int((await self.s.execute(q)).scalar_one())

    async def prepayment(self, ip: str, tp: str, year: int) -> Any:
        p = prepayments.c
        q = select(prepayments).where(p.insured_province == ip, p.treatment_province == tp, p.year == year)
        return (await self.s.execute(q)).first()

    async def add_prepayment(self, ip: str, tp: str, year: int, amount: int, q4: int, now: dt.datetime) -> None:
        await self.s.execute(
            insert(prepayments).values(
                insured_province=ip,
                treatment_province=tp,
                year=year,
                annual_prepayment_fen=amount,
                previous_q4_clearing_fen=q4,
                created_at=now,
            )
        )

    async def top_ups_sum(
        self, ip: str, tp: str, year: int, month: int | None = None, statuses: Sequence[str] = ("disbursed",)
    ) -> int:
        t = top_ups.c
        q = select(func.coalesce(func.sum(t.amount_fen), 0)).where(
            t.insured_province == ip, t.treatment_province == tp, t.year == year, t.status.in_(list(statuses))
        )
        if month is not None:
            q = q.where(t.month == month)
        return int((await self.s.execute(q)).scalar_one())

    async def top_up(self, top_up_id: str, *, for_update: bool = False) -> Any:
        q = select(top_ups).where(top_ups.c.top_up_id == top_up_id)
        if for_update:
            q = q.with_for_update()
        return (await self.s.execute(q)).first()

    async def move_top_up(self, top_up_id: str, expect: str, values: Mapping[str, Any]) -> bool:
        result = await self.s.execute(
            update(top_ups).where(top_ups.c.top_up_id == top_up_id, top_ups.c.status == expect).values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def add_top_up(
        self, top_up_id: str, ip: str, tp: str, year: int, month: int, amount: int, now: dt.datetime
    ) -> None:
        await self.s.execute(
            insert(top_ups).values(
                top_up_id=top_up_id,
                insured_province=ip,
                treatment_province=tp,
                year=year,
                month=month,
                amount_fen=amount,
                created_at=now,
                status="requested",
            )
        )

    # -- verification -----------------------------------------------------------------------
    async def add_verification(self, row: Mapping[str, Any]) -> None:
        await self.s.execute(insert(verifications).values(**row))

    async def verification(self, verification_id: str) -> Any:
        q = select(verifications).where(verifications.c.verification_id == verification_id)
        return (await self.s.execute(q)).first()

    async def answer_verification(
        self, verification_id: str, answer: str, split: tuple[int, ...], now: dt.datetime, *, auto: bool = False
    ) -> bool:
        result = await self.s.execute(
            update(verifications)
            .where(verifications.c.verification_id == verification_id, verifications.c.answered_at.is_(None))
            .values(
                answer=answer,
                rejected_fen=sum(split),
                rejected_split=json.dumps(list(split)),
                answered_at=now,
                auto_deducted=auto,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def verifications_of(self, settlement_ids: Sequence[str]) -> list[Any]:
        if not settlement_ids:
            return []
        q = select(verifications).where(verifications.c.settlement_id.in_(list(settlement_ids)))
        return list((await self.s.execute(q.order_by(verifications.c.created_at))).all())

    async def overdue_verifications(self, today: dt.date, through: int) -> list[Any]:
        """Unanswered past their deadline, of settlements not cancelled."""
        v = verifications.c
        q = select(verifications).where(v.answered_at.is_(None), v.answer_deadline < today, ~self._cancelled(through))
        return list((await self.s.execute(q.order_by(v.created_at, v.verification_id))).all())

    async def cancellation_of(self, settlement_id: str) -> str | None:
        c = cleared_settlements.c
        q = select(c.settlement_id).where(c.cancels_settlement_id == settlement_id).limit(1)
        value = (await self.s.execute(q)).scalar()
        return str(value) if value is not None else None

    async def all_verifications(self) -> list[Any]:
        return list((await self.s.execute(select(verifications).order_by(verifications.c.created_at))).all())

    async def month_pairs_by_category(self, year: int, month: int) -> list[Any]:
        return await self.month_aggregate(year, month, through=2**62)

    async def institution_province(self, institution: str) -> str | None:
        c = cleared_settlements.c
        q = select(c.treatment_province).where(c.institution_code == institution).limit(1)
        value = (await self.s.execute(q)).scalar()
        return str(value) if value is not None else None

    # -- an institution's own view (national 3203/3204; read-only) ---------------------------
    async def institution_month(self, institution: str, year: int, month: int) -> list[Any]:
        """The institution's rows cleared in the month, summed per treatment province, insured
        province and category (the statements' base, restricted to one institution)."""
        c = cleared_settlements.c
        q = (
            select(
                c.treatment_province,
                c.insured_province,
                c.category,
                func.sum(case((c.kind == "settlement", 1), else_=-1)).label("count"),
                *[func.sum(getattr(c, a)).label(a) for a in _AMOUNTS],
            )
            .where(and_(c.institution_code == institution, c.clearing_month == year * 100 + month))
            .group_by(c.treatment_province, c.insured_province, c.category)
            .order_by(c.treatment_province, c.insured_province, c.category)
        )
        return list((await self.s.execute(q)).all())

    async def statement_states(self, statement_ids: Sequence[str]) -> dict[str, str]:
        if not statement_ids:
            return {}
        q = select(statements.c.statement_id, statements.c.status).where(statements.c.statement_id.in_(statement_ids))
        return {r.statement_id: r.status for r in (await self.s.execute(q)).all()}

    async def account_entries(self, account: str, posting_prefix: str) -> list[Any]:
        e = ledger_entries.c
        q = (
            select(e.posting_id, e.amount_fen, e.posted_at)
            .where(and_(e.account == account, e.posting_id.startswith(posting_prefix, autoescape=True)))
            .order_by(e.entry_id)
        )
        return list((await self.s.execute(q)).all())

    # -- reconciliation ---------------------------------------------------------------------
    @staticmethod
    def _day_filter(day: dt.date, institution: str, province: str) -> Any:
        c = cleared_settlements.c
        if institution:
            return and_(c.settle_date == day, c.institution_code == institution)
        return and_(c.settle_date == day, c.treatment_province == province)

    async def day_totals(self, day: dt.date, institution: str, province: str) -> list[Any]:
        c = cleared_settlements.c
        q = (
            select(
                c.category,
                func.sum(case((c.kind == "settlement", 1), else_=-1)).label("count"),
                func.sum(c.total_fen).label("medical_total_fen"),
                func.sum(c.fund_total_fen).label("fund_total_fen"),
                func.sum(c.personal_account_fen).label("personal_account_fen"),
                *[func.sum(getattr(c, f)).label(f) for f in FUND_FIELDS],
            )
            .where(self._day_filter(day, institution, province))
            .group_by(c.category)
        )
        return list((await self.s.execute(q)).all())

    async def day_items(self, day: dt.date, institution: str, province: str) -> list[Any]:
        c = cleared_settlements.c
        q = select(c.settlement_id, c.total_fen, c.fund_total_fen, c.personal_account_fen).where(
            self._day_filter(day, institution, province)
        )
        return list((await self.s.execute(q)).all())

    async def save_reconciliation(
        self, rid: str, kind: str, submitter: str, day: dt.date, matched: bool, result: str, now: dt.datetime
    ) -> None:
        await self.s.execute(
            insert(reconciliations).values(
                reconciliation_id=rid,
                kind=kind,
                submitter=submitter,
                reconcile_date=day,
                matched=matched,
                result=result,
                created_at=now,
            )
        )

    async def reconciliation(self, rid: str) -> Any:
        q = select(reconciliations).where(reconciliations.c.reconciliation_id == rid)
        return (await self.s.execute(q)).first()


def _row(st: Statement, now: dt.datetime) -> dict[str, Any]:
    return {
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
        "through_position": st.through_position,
        "treatment_confirmed_at": st.treatment_confirmed_at,
        "insured_confirmed_at": st.insured_confirmed_at,
        "disbursement_date": st.disbursement_date,
        "bank_charge_fen": st.bank_charge_fen,
        "due_date": st.due_date,
    }


def _line_doc(ln: StatementLine) -> dict[str, Any]:
    doc = {name: getattr(ln, name) for name in StatementLine.__dataclass_fields__}
    doc["category"] = ln.category.value
    doc["adjustments"], doc["deductions"] = list(ln.adjustments), list(ln.deductions)
    return doc


def _line_from_doc(d: dict[str, Any]) -> StatementLine:
    d = {**d, "category": Category(d["category"])}
    # statements written before the per-payer split: the adjustment and deduction as a whole
    d["adjustments"] = tuple(d.get("adjustments") or (d.get("adjustment_fen", 0), *NO_AMOUNTS[1:]))
    d["deductions"] = tuple(d.get("deductions") or (d.get("rejected_fen", 0), *NO_AMOUNTS[1:]))
    return StatementLine(**d)


def statement_from_row(r: Any) -> Statement:
    lines = tuple(_line_from_doc(d) for d in json.loads(r.lines))
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
        through_position=r.through_position,
        updated_at=r.updated_at,
        treatment_confirmed_at=r.treatment_confirmed_at,
        insured_confirmed_at=r.insured_confirmed_at,
        disbursement_date=r.disbursement_date,
        bank_charge_fen=r.bank_charge_fen,
        due_date=getattr(r, "due_date", None),
    )


class SqlClearingStore(Store[ClearingRepository]):
    """The clearing service's own database (``ClearingStore``)."""

    repository = ClearingRepository
