"""SQLAlchemy 2 async engine per service and the unit of work.

The use case owns the transaction: ``async with db.transaction() as tx`` commits when the block
ends normally and rolls back otherwise. Repositories never commit. A unit of work is a Core
``AsyncConnection``, not an ORM session: the repositories speak SQLAlchemy Core, and skipping the
ORM layer saves a good part of the per-statement overhead on the hot path.

SQLite (the embedded default) serialises writers. Write transactions start with
``BEGIN IMMEDIATE`` so a read-then-write unit of work takes the write lock up front and two of
them can never deadlock; read-only sessions use a plain deferred ``BEGIN``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_READONLY = "medsettle_readonly"


def _sqlite_connect(dbapi_conn: Any, _: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READONLY) else "BEGIN IMMEDIATE")


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if not self.is_sqlite:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One unit of work: commit on success, roll back on any exception."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit (rolled back when the block ends)."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.execution_options(**{_READONLY: True})
            yield conn

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """A pooled connection's own driver connection (asyncpg), for a hot path that speaks SQL
        directly instead of through SQLAlchemy (PostgreSQL only). The caller runs its own
        transaction on it (``async with conn.transaction():``) and ends it inside the block; a
        connection handed back still inside a transaction is discarded, never reused."""
        if self.is_sqlite:
            raise RuntimeError("driver_connection is for PostgreSQL; SQLite goes through SQLAlchemy")
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            try:
                yield driver
            finally:
                if driver is None or driver.is_closed() or driver.is_in_transaction():
                    await conn.invalidate()

    async def dispose(self) -> None:
        await self.engine.dispose()


async def upsert(conn: AsyncConnection, table: Table, key: str, row: dict[str, Any]) -> None:
    """Portable upsert (the same SQL on SQLite and PostgreSQL): update the row with this key,
    insert it when nothing matched. Callers hold the write lock or accept last-writer-wins."""
    values = {k: v for k, v in row.items() if k != key}
    result = await conn.execute(table.update().where(table.c[key] == row[key]).values(**values))
    if result.rowcount == 0:
        await conn.execute(table.insert().values(**row))
