"""StreamSettlements: the outbox feed for clearing, in position order. Positions are assigned
after commit (libs/platform/outbox.py), so a reader that resumes from a position never skips a
late commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from libs.core.errors import DomainError, Reason
from libs.policy import SettlementResult
from services.settlement.application.context import SettlementContext
from services.settlement.domain import results
from services.settlement.domain.model import SettlementRecord


class Feed:
    def __init__(self, ctx: SettlementContext) -> None:
        self.ctx = ctx

    async def stream(
        self, after: int, follow: bool, stopping: asyncio.Event | None
    ) -> AsyncIterator[tuple[int, SettlementRecord, SettlementResult]]:
        store = self.ctx.store
        async with contextlib.aclosing(store.follow(after, stopping)) as batches:
            async for rows in batches:
                if not rows:
                    if not follow:
                        return
                    continue
                async with store.read() as repo:
                    found = await repo.settlements_by_ids([row.entity_id for row in rows])
                for row in rows:
                    rec = found.get(row.entity_id)
                    if rec is None:
                        raise DomainError(Reason.INVARIANT_VIOLATED, f"feed event of no settlement {row.entity_id}")
                    yield row.position, rec, results.load(rec.result_json)
