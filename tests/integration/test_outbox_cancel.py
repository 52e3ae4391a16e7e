"""A feed reader that goes away mid-unit-of-work never leaves a connection holding a lock.

The outbox follower numbers committed rows (a write transaction) and reads them (a read
transaction) in the stream handler's task. When the consumer disconnects, that task is cancelled
at whatever await it is on. Before the units of work were shielded, a cancellation at the wrong
moment left a SQLite connection holding the write lock, and the next writer failed with
"database is locked" (seen in CI as an INTERNAL answer to SettleOutpatient while clearing
stopped)."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import MetaData

from libs.platform import outbox
from libs.platform.db import Database

pytestmark = pytest.mark.db


async def test_cancelling_readers_at_random_moments_never_blocks_writers(db_urls: dict[str, str]) -> None:
    metadata = MetaData()
    table = outbox.outbox_table(metadata, "cancel_probe_events")
    db = Database(db_urls["clearing"], pool_size=5)
    rng = random.Random(7)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        notifier = outbox.FeedNotifier()

        async def reader() -> None:
            async for _ in outbox.follow(db, table, 0, notifier):
                pass

        for i in range(250):
            async with db.transaction() as s:
                await outbox.append(s, table, "probe", f"a{i}", b"x")
            task = asyncio.create_task(reader())
            await asyncio.sleep(rng.random() * 0.004)  # somewhere inside a unit of work, or not
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with asyncio.timeout(10):  # the next writer gets in at once
                async with db.transaction() as s:
                    await outbox.append(s, table, "probe", f"b{i}", b"y")
        await outbox.assign_positions(db, table)  # nothing lost: every event numbered, in commit order
        rows = await outbox.read_after(db, table, 0, limit=10_000)
        assert [r.entity_id for r in rows] == [f"{k}{i}" for i in range(250) for k in "ab"]
    finally:
        await db.dispose()
