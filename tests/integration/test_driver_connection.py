"""Database.driver_connection: the hot path's direct asyncpg access to the pooled connections."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from libs.platform.db import Database
from services.settlement.adapters.hot import batch_unit

pytestmark = pytest.mark.db


@pytest.fixture
async def db(db_urls: dict[str, str], db_kind: str) -> AsyncIterator[Database]:
    """A PostgreSQL Database with one pooled connection (SQLite goes through SQLAlchemy)."""
    if db_kind != "postgres":
        pytest.skip("PostgreSQL only: SQLite goes through SQLAlchemy")
    db = Database(db_urls["settlement"], pool_size=1)
    try:
        yield db
    finally:
        await db.dispose()


async def test_a_connection_handed_back_inside_a_transaction_is_never_reused(db: Database) -> None:
    async with db.driver_connection() as con:
        assert await con.fetchval("SELECT 41 + $1::int", 1) == 42
        pid = await con.fetchval("SELECT pg_backend_pid()")
    async with db.driver_connection() as con:  # handed back clean: the same connection again
        assert await con.fetchval("SELECT pg_backend_pid()") == pid
        tx = con.transaction()
        await tx.start()  # ... and left open: a bug in a caller
        await con.execute("CREATE TEMP TABLE leftover (x int)")
    async with db.driver_connection() as con:
        assert not con.is_in_transaction()
        assert await con.fetchval("SELECT pg_backend_pid()") != pid  # the dirty one was discarded
        assert await con.fetchval("SELECT to_regclass('pg_temp.leftover') IS NULL")
    async with db.transaction() as conn:  # SQLAlchemy units of work share the pool, unharmed
        assert (await conn.exec_driver_sql("SELECT 1")).scalar_one() == 1


async def test_sqlite_has_no_driver_connection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(RuntimeError, match="PostgreSQL"):
            async with db.driver_connection():
                pass
    finally:
        await db.dispose()


async def test_the_settle_batch_plans_generically_and_leaves_the_pooled_connection_as_it_was(
    db: Database,
) -> None:
    async with db.driver_connection() as con:
        await con.execute("CREATE TEMP TABLE scratch (x int)")
        pid = await con.fetchval("SELECT pg_backend_pid()")
        default_mode = await con.fetchval("SHOW plan_cache_mode")
    assert default_mode != "force_generic_plan"
    async with batch_unit(db) as unit:
        con = unit.con  # type: ignore[attr-defined]
        assert await con.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        await con.execute("INSERT INTO scratch VALUES (1)")
    with pytest.raises(RuntimeError, match="the batch failed"):
        async with batch_unit(db) as unit:
            await unit.con.execute("INSERT INTO scratch VALUES (2)")  # type: ignore[attr-defined]
            raise RuntimeError("the batch failed")
    async with db.driver_connection() as con:
        assert await con.fetchval("SELECT pg_backend_pid()") == pid  # rolled back, not discarded
        assert await con.fetchval("SHOW plan_cache_mode") == default_mode  # SET LOCAL ended with the batch
        assert [r["x"] for r in await con.fetch("SELECT x FROM scratch")] == [1]
