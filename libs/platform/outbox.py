"""A transactional outbox whose feed never skips a late-committing row.

Writers insert events with ``position = NULL`` in the same transaction as the change they
describe. Positions are assigned *after* commit, by :func:`assign_positions`, which numbers the
committed, still-unnumbered rows in id order under an exclusive lock (PostgreSQL advisory lock;
SQLite's single writer). A transaction that commits late simply gets a later position, so a
reader that resumes from "after position N" can never miss it. Readers see only numbered rows.
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.platform.db import Database


def outbox_table(metadata: MetaData, name: str) -> Table:
    table = Table(
        name,
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("position", BigInteger, nullable=True, unique=True),
        Column("event_type", String(32), nullable=False),
        Column("entity_id", String(64), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    Index(
        f"ix_{name}_unpositioned",
        table.c.id,
        postgresql_where=table.c.position.is_(None),
        sqlite_where=table.c.position.is_(None),
    )
    return table


async def append(session: AsyncConnection, table: Table, event_type: str, entity_id: str, payload: bytes) -> None:
    await session.execute(table.insert(), {"event_type": event_type, "entity_id": entity_id, "payload": payload})


async def assign_positions(db: Database, table: Table, *, batch: int = 5000) -> int:
    """Numbers committed rows that have no position yet. Returns how many were numbered.

    A read-only probe first: readers poll, and an idle feed must not take the write lock (on
    SQLite that would stall writers every poll)."""
    async with db.read() as probe:
        if (await probe.execute(_pending_probe(table))).first() is None:
            return 0
    async with db.transaction() as session:
        if not db.is_sqlite:
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(table.name.encode())})
        pending = (
            (
                await session.execute(
                    select(table.c.id).where(table.c.position.is_(None)).order_by(table.c.id).limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not pending:
            return 0
        top = (await session.execute(select(func.coalesce(func.max(table.c.position), 0)))).scalar_one()
        await session.execute(
            update(table).where(table.c.id == bindparam("_id")).values(position=bindparam("_pos")),
            [{"_id": row_id, "_pos": top + i} for i, row_id in enumerate(pending, start=1)],
            execution_options={"synchronize_session": False},
        )
        return len(pending)


@functools.cache
def _pending_probe(table: Table) -> Select[Any]:
    return select(table.c.id).where(table.c.position.is_(None)).limit(1)


async def read_after(db: Database, table: Table, position: int, limit: int = 500) -> Sequence[Any]:
    async with db.read() as session:
        return (
            await session.execute(
                select(table.c.position, table.c.event_type, table.c.entity_id, table.c.payload, table.c.created_at)
                .where(table.c.position > position)
                .order_by(table.c.position)
                .limit(limit)
            )
        ).all()


async def follow(
    db: Database, table: Table, after: int, notifier: FeedNotifier, stopping: asyncio.Event | None = None
) -> AsyncIterator[Sequence[Any]]:
    """The feed after position ``after``: batches of committed events in position order. An
    empty batch says the reader is caught up; the generator then waits for a commit (or
    ``stopping``) before it looks again."""
    position = after
    while stopping is None or not stopping.is_set():
        # Shielded: a reader that goes away (a cancelled stream) must not cut a unit of work
        # short. Cancelled mid-transaction, a connection could keep SQLite's write lock and every
        # writer then failed with "database is locked" (tests/integration/test_outbox_cancel.py).
        await asyncio.shield(assign_positions(db, table))
        rows = await asyncio.shield(read_after(db, table, position))
        yield rows
        if rows:
            position = rows[-1].position
        else:
            await notifier.wait(stopping)


class FeedNotifier:
    """Wakes local feed readers when a writer in this process commits; readers also poll, so
    writers in other replicas are seen within ``poll_seconds``."""

    def __init__(self, poll_seconds: float = 0.2) -> None:
        self.poll_seconds = poll_seconds
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, stopping: asyncio.Event | None = None) -> None:
        waiters = [asyncio.ensure_future(self._event.wait())]
        if stopping is not None:
            waiters.append(asyncio.ensure_future(stopping.wait()))
        try:
            await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            self._event.clear()
