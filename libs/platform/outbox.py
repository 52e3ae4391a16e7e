"""A transactional outbox whose feed never skips a late-committing row.

Writers insert events with ``position = NULL`` in the same transaction as the change they
describe. Positions are assigned *after* commit, by :func:`assign_positions`, which numbers the
committed, still-unnumbered rows in id order under an exclusive lock (PostgreSQL advisory lock;
SQLite's single writer). A transaction that commits late simply gets a later position, so a
reader that resumes from "after position N" can never miss it. Readers see only numbered rows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
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

from libs.core.errors import DomainError, Reason
from libs.platform.db import Database
from libs.platform.logs import get_logger

_log = get_logger("medsettle.outbox")


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


# One batch a follower takes at once: bounded in rows and in payload bytes, so a follower costs
# at most one batch of memory whatever the backlog (the stream's writes wait for the client).
BATCH_ROWS = 500
BATCH_BYTES = 1 << 20
# The most recent rows the process keeps for its followers (in rows and payload bytes).
CACHE_ROWS = 5000
CACHE_BYTES = 16 << 20
MAX_FOLLOWERS = 1000


async def follow(
    db: Database, table: Table, after: int, notifier: FeedNotifier, stopping: asyncio.Event | None = None
) -> AsyncIterator[Sequence[Any]]:
    """The feed after position ``after``: batches of committed events in position order. An
    empty batch says the reader is caught up; the generator then waits for the next commit (or
    ``stopping``) before it looks again.

    One reader per process and table (``notifier``'s hub) numbers and reads new rows and fans
    them out from memory; only a follower behind the hub's recent rows reads its backlog from the
    database itself, and so does a follower's first "caught up" (the hub may not have read the
    latest commit yet: an empty batch must mean that everything committed before is delivered).
    Beyond ``notifier.max_followers`` concurrent followers a new one is refused
    with RESOURCE_EXHAUSTED (REASON_TOO_MANY_FOLLOWERS)."""
    hub = notifier.hub(db, table)
    with hub.joined(stopping):
        position = after
        current = False  # the first "caught up" is checked against the database itself
        while stopping is None or not stopping.is_set():
            rows = hub.cached_after(position)
            if rows is None or (not rows and not current):
                # Shielded: a reader that goes away (a cancelled stream) must not cut a unit of
                # work short. Cancelled mid-transaction, a connection could keep SQLite's write
                # lock and every writer then failed with "database is locked"
                # (tests/integration/test_outbox_cancel.py).
                await asyncio.shield(assign_positions(db, table))
                rows = _bounded(await asyncio.shield(read_after(db, table, position, BATCH_ROWS)))
            yield rows
            if rows:
                position = rows[-1].position
            else:
                current = True
                await hub.wait_beyond(position, stopping)


def _bounded(rows: Sequence[Any]) -> Sequence[Any]:
    """At most BATCH_BYTES of payload (always at least one row)."""
    size = 0
    for i, row in enumerate(rows):
        size += len(row.payload)
        if size > BATCH_BYTES and i > 0:
            return rows[:i]
    return rows


class _Hub:
    """The one reader of a table in this process, and the recent rows it read."""

    def __init__(self, notifier: FeedNotifier, db: Database, table: Table) -> None:
        self.notifier, self.db, self.table = notifier, db, table
        self.followers = 0
        self.head: int | None = None  # every row up to here is known; the cache holds (floor, head]
        self.floor: int | None = None
        self._cache: collections.deque[Any] = collections.deque()
        self._cache_bytes = 0
        self._advanced: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failing = False

    @contextlib.contextmanager
    def joined(self, stopping: asyncio.Event | None) -> Iterator[None]:
        limit = self.notifier.max_followers
        if self.followers >= limit:
            raise DomainError(
                Reason.TOO_MANY_FOLLOWERS,
                f"this server already serves {limit} feed streams; resume later from the last position",
                metadata={"limit": str(limit)},
            )
        self.followers += 1
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name=f"feed-reader-{self.table.name}")
        try:
            yield
        finally:
            self.followers -= 1
            if self.followers == 0:
                self.notifier.notify()  # lets the reader see it has no one left to read for

    def cached_after(self, position: int) -> Sequence[Any] | None:
        """The next batch after ``position`` from memory; [] when caught up; None when the hub
        cannot answer (not started, or ``position`` is older than what it keeps)."""
        if self.head is None or self.floor is None:
            return None
        if position >= self.head:
            return []
        if position < self.floor:
            return None
        cache = self._cache
        first = cache[0].position
        start = max(0, position - first + 1)  # positions are consecutive (assign_positions)
        fits = start < len(cache) and cache[start].position > position
        if fits and (start == 0 or cache[start - 1].position <= position):
            return _bounded(list(itertools.islice(cache, start, start + BATCH_ROWS)))
        return None  # not where expected (a gap): the database answers

    async def wait_beyond(self, position: int, stopping: asyncio.Event | None) -> None:
        """Until the hub knows a row after ``position``, ``stopping`` is set, or a poll passed."""
        if self.head is not None and self.head > position:
            return
        if self._advanced is None or self._advanced.done():
            self._advanced = asyncio.get_running_loop().create_future()
        waiters: list[asyncio.Future[Any]] = [self._advanced]
        stop_wait = asyncio.ensure_future(stopping.wait()) if stopping is not None else None
        if stop_wait is not None:
            waiters.append(stop_wait)
        try:
            # shielded: one follower going away must not cancel the others' shared future
            await asyncio.wait(
                [asyncio.shield(w) if w is self._advanced else w for w in waiters],
                timeout=self.notifier.poll_seconds * 5,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if stop_wait is not None:
                stop_wait.cancel()

    def _wake(self) -> None:
        if self._advanced is not None and not self._advanced.done():
            self._advanced.set_result(None)

    async def _read(self) -> None:
        """Numbers and reads new rows while anyone follows; polls for other replicas' writes."""
        while self.followers > 0:
            try:
                await asyncio.shield(assign_positions(self.db, self.table))
                if self.head is None:
                    self.head = self.floor = await asyncio.shield(_max_position(self.db, self.table))
                    self._wake()
                rows = await asyncio.shield(read_after(self.db, self.table, self.head, BATCH_ROWS))
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the reader outlives a database outage
                if not self._failing:
                    self._failing = True
                    _log.warning("feed_reader_waiting", table=self.table.name, error_type=type(exc).__name__)
                await self.notifier.wait()
                continue
            if rows:
                self._append(rows)
                self._wake()
            else:
                await self.notifier.wait()

    def _append(self, rows: Sequence[Any]) -> None:
        cache = self._cache
        for row in rows:
            cache.append(row)
            self._cache_bytes += len(row.payload)
        self.head = rows[-1].position
        while cache and (len(cache) > CACHE_ROWS or self._cache_bytes > CACHE_BYTES):
            gone = cache.popleft()
            self._cache_bytes -= len(gone.payload)
            self.floor = gone.position


async def _max_position(db: Database, table: Table) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.coalesce(func.max(table.c.position), 0)))).scalar_one())


class FeedNotifier:
    """Wakes the feed's reader when a writer in this process commits; the reader also polls, so
    writers in other replicas are seen within ``poll_seconds``. Holds the process's one reader
    per table (:func:`follow`)."""

    def __init__(self, poll_seconds: float = 0.2, max_followers: int = MAX_FOLLOWERS) -> None:
        self.poll_seconds = poll_seconds
        self.max_followers = max_followers
        self._event = asyncio.Event()
        self._hubs: dict[tuple[int, str], _Hub] = {}

    def hub(self, db: Database, table: Table) -> _Hub:
        key = (id(db), table.name)
        found = self._hubs.get(key)
        if found is None:
            found = self._hubs[key] = _Hub(self, db, table)
        return found

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
