"""The settlement store: ``application.ports.Store`` over the service's database.

Units of work are SQLAlchemy connections (``SettlementRepository``, adapters/db.py); the hot
path's batch and PreSettle reads are adapters/hot.py (plain SQL on asyncpg on PostgreSQL); the
feed is the transactional outbox (libs/platform/outbox.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager

from libs.platform import outbox
from libs.platform.db import Database, Store
from services.settlement.adapters import hot
from services.settlement.adapters.db import SettlementRepository, settlement_events
from services.settlement.application.ports import BatchUnit, FeedRow, PreSettleReads


class SqlStore(Store[SettlementRepository]):
    repository = SettlementRepository

    def __init__(self, db: Database, notifier: outbox.FeedNotifier | None = None) -> None:
        super().__init__(db)
        self.notifier = notifier or outbox.FeedNotifier()

    def batch(self) -> AbstractAsyncContextManager[BatchUnit]:
        return hot.batch_unit(self.db)

    async def presettle_reads(self, visit_id: str, year: int) -> PreSettleReads | None:
        return await hot.presettle_reads(self.db, visit_id, year)

    async def follow(self, after: int, stopping: asyncio.Event | None) -> AsyncGenerator[Sequence[FeedRow], None]:
        feed = outbox.follow(self.db, settlement_events, after, self.notifier, stopping)
        try:
            async for rows in feed:
                yield rows
        finally:
            await feed.aclose()  # type: ignore[attr-defined]  # an async generator

    def notify(self) -> None:
        self.notifier.notify()
