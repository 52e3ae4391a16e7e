"""Clearing use cases: ingest the settlement feed exactly once, post the ledger, build statements."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence

from libs.core.errors import DomainError, Reason
from libs.platform import idempotency
from libs.platform.db import Database
from libs.platform.logs import get_logger
from services.clearing.adapters.db import ClearingRepository, idempotency_keys
from services.clearing.domain.model import (
    Category,
    FeedSettlement,
    Statement,
    StatementLine,
    StatementStatus,
    postings_for,
    statement_id,
)

_log = get_logger("medsettle.clearing")
FEED = "settlements"

SettlementFeed = Callable[[int], AsyncIterator[FeedSettlement]]


class ClearingService:
    def __init__(self, db: Database, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.db = db
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.last_event_time: dt.datetime | None = None

    # -- ingest ---------------------------------------------------------------------------
    async def ingest(self, batch: Sequence[FeedSettlement]) -> int:
        """One transaction per batch: new settlements, their ledger postings and the cursor move
        together, so a restart resumes exactly where the last commit left off."""
        if not batch:
            return 0
        now = self._clock()
        async with self.db.transaction() as s:
            repo = ClearingRepository(s)
            known = await repo.known([b.settlement_id for b in batch])
            fresh = [b for b in batch if b.settlement_id not in known]
            await repo.add_settlements(fresh)
            for item in fresh:
                await repo.post(f"settlement:{item.settlement_id}", postings_for(item), now)
            await repo.set_cursor(FEED, max(b.position for b in batch), now)
        self.last_event_time = now
        return len(fresh)

    async def cursor(self) -> int:
        async with self.db.read() as s:
            return await ClearingRepository(s).cursor(FEED)

    async def follow(
        self, feed: SettlementFeed, stopping: asyncio.Event, *, batch_size: int = 500, flush_seconds: float = 0.05
    ) -> None:
        """Follows the feed from the stored cursor in batches (a batch is flushed when full or
        when the feed goes quiet); reconnects with backoff when the peer goes away."""
        backoff = 0.05
        while not stopping.is_set():
            batch: list[FeedSettlement] = []
            try:
                stream = feed(await self.cursor()).__aiter__()
                while True:
                    nxt = asyncio.ensure_future(anext(stream))
                    if batch:
                        done, _ = await asyncio.wait({nxt}, timeout=flush_seconds)
                        if not done:
                            await self.ingest(batch)
                            batch = []
                    try:
                        item = await nxt
                    except StopAsyncIteration:
                        break
                    batch.append(item)
                    backoff = 0.05
                    if len(batch) >= batch_size:
                        await self.ingest(batch)
                        batch = []
                await self.ingest(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the feed dropped: resume from the cursor
                _log.warning("feed_interrupted", error_type=type(exc).__name__, error=str(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 2.0)

    # -- monthly clearing -----------------------------------------------------------------
    async def run_monthly(
        self, request_id: str, fp: str, year: int, month: int, signing_date: dt.date | None
    ) -> list[Statement]:
        async def attempt() -> list[Statement]:
            async with self.db.transaction() as s:
                if await idempotency.check(s, idempotency_keys, request_id, "run_monthly", fp):
                    raise idempotency.Replay(f"{year}-{month}")
                repo = ClearingRepository(s)
                existing = {st.statement_id: st for st in await repo.statements_of_month(year, month)}
                pairs: dict[tuple[str, str], list[StatementLine]] = {}
                counts: dict[tuple[str, str], int] = {}
                for row in await repo.month_aggregate(year, month):
                    key = (row.insured_province, row.treatment_province)
                    pairs.setdefault(key, []).append(
                        StatementLine(
                            category=Category(row.category),
                            count=int(row.count),
                            medical_total_fen=int(row.total_fen),
                            pooled_fund_fen=int(row.pooled_fund_fen),
                            large_amount_fen=int(row.large_amount_fen),
                            critical_illness_fen=int(row.critical_illness_fen),
                            assistance_fen=int(row.assistance_fen),
                            other_fund_fen=int(row.other_fund_fen),
                            fund_total_fen=int(row.fund_total_fen),
                            personal_account_fen=int(row.personal_account_fen),
                        )
                    )
                    counts[key] = counts.get(key, 0) + int(row.count)
                out: list[Statement] = []
                for (ip, tp), lines in sorted(pairs.items()):
                    sid = statement_id(ip, tp, year, month)
                    old = existing.get(sid)
                    if old is not None and old.status is not StatementStatus.DRAFT:
                        out.append(old)  # confirmed statements are frozen; late changes become adjustments
                        continue
                    st = Statement(
                        sid,
                        ip,
                        tp,
                        year,
                        month,
                        StatementStatus.DRAFT,
                        tuple(sorted(lines, key=lambda ln: ln.category.value)),
                        signing_date,
                        counts[(ip, tp)],
                    )
                    await repo.save_statement(st, self._clock())
                    out.append(st)
                await idempotency.record(s, idempotency_keys, request_id, "run_monthly", fp, f"{year}-{month}")
            _log.info("monthly_clearing_ran", year=year, month=month, statements=len(out))
            return out

        async def replay(_: str) -> list[Statement]:
            return await self.statements(year, month)

        return await idempotency.run_once(attempt, replay)

    async def statements(self, year: int, month: int, province: str = "") -> list[Statement]:
        async with self.db.read() as s:
            return await ClearingRepository(s).statements_of_month(year, month, province)

    async def statement(self, ip: str, tp: str, year: int, month: int) -> Statement:
        async with self.db.read() as s:
            st = await ClearingRepository(s).statement(statement_id(ip, tp, year, month))
        if st is None:
            raise DomainError(
                Reason.STATEMENT_NOT_FOUND,
                f"no statement for {ip}->{tp} {year}-{month:02d}; run the monthly clearing first",
            )
        return st

    async def balances(self, prefix: str) -> list[tuple[str, int]]:
        async with self.db.read() as s:
            return await ClearingRepository(s).balances(prefix)

    async def ingest_status(self) -> tuple[int, int]:
        async with self.db.read() as s:
            repo = ClearingRepository(s)
            return await repo.cursor(FEED), await repo.ingested_count()
