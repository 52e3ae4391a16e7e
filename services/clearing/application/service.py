"""Clearing use cases: ingest the settlement feed exactly once, post the ledger, build and move
the monthly statements. Reconciliation and the fund operations live beside this module."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from libs.core.errors import DomainError, Reason
from libs.platform import idempotency, metrics
from libs.platform.convert import CST
from libs.platform.logs import get_logger
from services.clearing.application.ports import ClearingRepo, ClearingStore, rejected_split
from services.clearing.domain import ledger
from services.clearing.domain.model import (
    NO_AMOUNTS,
    Category,
    FeedSettlement,
    PairKey,
    Side,
    Statement,
    StatementLine,
    assemble,
    clearing_month,
    next_signing_date,
    payment_deadline,
    statement_id,
)

_log = get_logger("medsettle.clearing")
FEED = "settlements"

SettlementFeed = Callable[[int], AsyncIterator[FeedSettlement]]
Clock = Callable[[], dt.datetime]


class ClearingService:
    def __init__(self, store: ClearingStore, *, clock: Clock | None = None) -> None:
        from services.clearing.application.funds import Funds
        from services.clearing.application.reconcile import Reconciliation

        self.store = store
        self._clock: Clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.last_event_time: dt.datetime | None = None
        self.funds = Funds(store, self._clock)
        self.reconciliation = Reconciliation(store, self._clock)

    def today(self) -> dt.date:
        return self._clock().astimezone(CST).date()

    # -- ingest ---------------------------------------------------------------------------
    async def ingest(self, batch: Sequence[FeedSettlement]) -> int:
        """One transaction per batch: the new rows (bulk), one summarised ledger posting and the
        cursor move together, so a restart resumes exactly where the last commit left off, and a
        re-delivered row (same settlement id) is skipped."""
        if not batch:
            return 0
        now = self._clock()
        async with self.store.transaction() as repo:
            known = await repo.known([b.settlement_id for b in batch])
            fresh: list[FeedSettlement] = []
            for b in batch:
                if b.settlement_id not in known:
                    known.add(b.settlement_id)
                    fresh.append(b)
            dates = {b.settlement_id: b.settle_date for b in fresh}
            originals = {b.cancels_settlement_id for b in fresh if b.is_cancellation and b.cancels_settlement_id}
            dates.update(await repo.settle_dates(sorted(originals - dates.keys())))
            months = {b.settlement_id: clearing_month(b, dates.get(b.cancels_settlement_id)) for b in fresh}
            await repo.add_settlements(fresh, months)
            if fresh:
                await repo.post(f"ingest:{fresh[0].position}-{fresh[-1].position}", ledger.batch_posting(fresh), now)
            cancelled = sorted(
                {b.cancels_settlement_id for b in fresh if b.is_cancellation and b.cancels_settlement_id}
            )
            if cancelled:
                await self._verifications_of_cancelled(repo, cancelled, now)
            cursor = await repo.cursor(FEED)
            await repo.set_cursor(FEED, max(cursor, max(b.position for b in batch)), now)
        self.last_event_time = now
        return len(fresh)

    @staticmethod
    async def _verifications_of_cancelled(repo: ClearingRepo, ids: Sequence[str], now: dt.datetime) -> None:
        """A cancellation returns the whole payment: an open verification of it closes with
        nothing to deduct, and a deduction already answered is given back in the ledger (the
        statements give it back when it was taken: ``claim_reinstatements``)."""
        for v in await repo.verifications_of(ids):
            if v.answered_at is None:
                if await repo.answer_verification(
                    v.verification_id, "the settlement was cancelled: nothing to deduct", NO_AMOUNTS, now
                ):
                    continue
                v = await repo.verification(v.verification_id)  # answered meanwhile: give it back below
            split = rejected_split(v)
            if sum(split):
                entries = ledger.rejection(
                    v.insured_province, v.treatment_province, v.institution_code, tuple(-x for x in split)
                )
                await repo.post(f"reinstated:{v.verification_id}", entries, now)

    async def cursor(self) -> int:
        async with self.store.read() as repo:
            return await repo.cursor(FEED)

    async def _ingest_reporting(self, batch: Sequence[FeedSettlement], *, caught_up: bool) -> None:
        await self.ingest(batch)
        if batch:
            last = batch[-1]
            metrics.record_feed_progress(last.position, last.position if caught_up else None, last.settled_at)

    async def follow(
        self, feed: SettlementFeed, stopping: asyncio.Event, *, batch_size: int = 2000, flush_seconds: float = 0.05
    ) -> None:
        """Follows the feed from the stored cursor in batches (a batch is flushed when full or
        when the feed goes quiet); reconnects with backoff when the peer goes away."""
        backoff = 0.05
        while not stopping.is_set():
            batch: list[FeedSettlement] = []
            stream: AsyncIterator[FeedSettlement] | None = None
            nxt: asyncio.Future[FeedSettlement] | None = None
            try:
                stream = feed(await self.cursor()).__aiter__()
                while True:
                    nxt = asyncio.ensure_future(anext(stream))
                    if batch:
                        done, _ = await asyncio.wait({nxt}, timeout=flush_seconds)
                        if not done:  # the feed went quiet: we hold everything published so far
                            await self._ingest_reporting(batch, caught_up=True)
                            batch = []
                    try:
                        item = await nxt
                    except StopAsyncIteration:
                        break
                    nxt = None
                    batch.append(item)
                    backoff = 0.05
                    if len(batch) >= batch_size:
                        await self._ingest_reporting(batch, caught_up=False)
                        batch = []
                await self._ingest_reporting(batch, caught_up=True)
            except asyncio.CancelledError:
                if nxt is not None:
                    nxt.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 -- the follower outlives any failure and retries
                _log.warning("feed_interrupted", error_type=type(exc).__name__, error=str(exc)[:200])
            finally:
                if nxt is not None and not nxt.done():
                    nxt.cancel()
                if stream is not None and hasattr(stream, "aclose"):
                    with contextlib.suppress(BaseException):
                        await stream.aclose()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 2.0)

    # -- monthly clearing -----------------------------------------------------------------
    async def run_monthly(
        self, request_id: str, fp: str, year: int, month: int, signing_date: dt.date | None
    ) -> list[Statement]:
        """Builds (or rebuilds) the month's draft statements, set-based: one aggregate over the
        month's rows up to the ingest cursor, plus claims of late rows and rejected amounts.
        Confirmed statements are frozen; what reaches a closed month later becomes an adjustment
        of the next month run."""

        async def attempt() -> list[Statement]:
            async with self.store.transaction() as repo:
                if await repo.request_ref(request_id, "run_monthly", fp):
                    raise idempotency.Replay(f"{year}-{month}")
                existing = await repo.lock_month(year, month)
                closed = {sid: st for sid, st in existing.items() if isinstance(st, Statement)}
                through = await repo.cursor(FEED)
                now = self._clock()
                await repo.release_claims([sid for sid in existing if sid not in closed])
                await repo.claim_late_rows(year, month, through)
                await self.funds.deduct_overdue(repo, self.today(), through, now)
                await repo.claim_reinstatements(year, month, through)
                base = _lines(await repo.month_aggregate(year, month, through))
                adjustments = await repo.adjustments_of(year, month)
                before = assemble(
                    year, month, base, adjustments, await repo.rejections_of(year, month), signing_date, through
                )
                # deductions never turn an amount due negative: one that does not fit waits
                room = {(st.insured_province, st.treatment_province): st.amount_due_fen for st in before}
                taken: list[str] = []
                for v in await repo.rejection_candidates(year, month, through):
                    pair = (v.insured_province, v.treatment_province)
                    if room.get(pair, 0) >= v.rejected_fen:
                        room[pair] -= v.rejected_fen
                        taken.append(v.verification_id)
                await repo.claim_rejections(taken, year, month)
                built = assemble(
                    year, month, base, adjustments, await repo.rejections_of(year, month), signing_date, through
                )
                out: dict[str, Statement] = dict(closed)
                fresh = [st for st in built if st.statement_id not in existing]
                drafts = [st for st in built if st.statement_id in existing and st.statement_id not in closed]
                await repo.save_drafts(fresh, drafts, now)  # closed statements stay as they were
                out.update({st.statement_id: st for st in fresh + drafts})
                for st in out.values():  # the answer's derived dates, computed before the commit
                    if st.signing_date is not None:
                        payment_deadline(st.signing_date)
                await repo.record_request(request_id, "run_monthly", fp, f"{year}-{month}")
            _log.info("monthly_clearing_ran", year=year, month=month, statements=len(out), through=through)
            return [out[k] for k in sorted(out)]

        async def replay(_: str) -> list[Statement]:
            return await self.statements(year, month)

        return await idempotency.run_once(attempt, replay)

    async def confirm(self, request_id: str, fp: str, sid: str, side: Side) -> Statement:
        async def change(repo: ClearingRepo, st: Statement, now: dt.datetime) -> Statement:
            new = st.confirm(side, now, self.today())
            if side is Side.INSURED and new.signing_date is not None:
                due = next_signing_date(await repo.calendar(), new.signing_date)
                new = replace(new, due_date=due)
                ledger_entries = ledger.clearing_drawn(st.insured_province, st.treatment_province, st.amount_due_fen)
                await repo.post(f"drawn:{sid}", ledger_entries, now)
            return new

        return await self._transition(request_id, fp, f"confirm_{side.value}", sid, change)

    async def disburse(self, request_id: str, fp: str, sid: str, on: dt.date, bank_charge_fen: int) -> Statement:
        async def change(repo: ClearingRepo, st: Statement, now: dt.datetime) -> Statement:
            new = st.disburse(on, bank_charge_fen)
            entries = ledger.disbursement(
                st.insured_province, st.treatment_province, st.amount_due_fen, bank_charge_fen
            )
            await repo.post(f"disbursed:{sid}", entries, now)
            return new

        return await self._transition(request_id, fp, "disburse", sid, change)

    async def _transition(
        self,
        request_id: str,
        fp: str,
        op: str,
        sid: str,
        change: Callable[[ClearingRepo, Statement, dt.datetime], Awaitable[Statement]],
    ) -> Statement:
        async def attempt() -> Statement:
            async with self.store.transaction() as repo:
                if await repo.request_ref(request_id, op, fp):
                    raise idempotency.Replay(sid)
                st = await repo.statement(sid, for_update=True)
                if st is None:
                    raise DomainError(Reason.STATEMENT_NOT_FOUND, f"no statement {sid}")
                now = self._clock()
                new = await change(repo, st, now)
                if not await repo.save_statement(new, now, expect=st.status):
                    raise DomainError(Reason.CONCURRENT_UPDATE, f"statement {sid} changed meanwhile; retry")
                await repo.record_request(request_id, op, fp, sid)
            _log.info("statement_changed", statement_id=sid, status=new.status.value)
            return new

        async def replay(ref: str) -> Statement:
            return await self.statement_by_id(ref)

        return await idempotency.run_once(attempt, replay)

    # -- queries --------------------------------------------------------------------------
    async def statements(self, year: int, month: int, province: str = "") -> list[Statement]:
        async with self.store.read() as repo:
            return await repo.statements_of_month(year, month, province)

    async def statement(self, ip: str, tp: str, year: int, month: int) -> Statement:
        return await self.statement_by_id(statement_id(ip, tp, year, month))

    async def statement_by_id(self, sid: str) -> Statement:
        async with self.store.read() as repo:
            st = await repo.statement(sid)
        if st is None:
            raise DomainError(Reason.STATEMENT_NOT_FOUND, f"no statement {sid}; run the monthly clearing first")
        return st

    async def balances(self, prefix: str) -> list[tuple[str, int]]:
        async with self.store.read() as repo:
            return await repo.balances(prefix)

    async def ingest_status(self) -> tuple[int, int]:
        async with self.store.read() as repo:
            return await repo.cursor(FEED), await repo.ingested_count()


def _lines(rows: Sequence[Any]) -> dict[PairKey, StatementLine]:
    return {
        (r.insured_province, r.treatment_province, Category(r.category)): StatementLine(
            category=Category(r.category),
            count=int(r.count),
            medical_total_fen=int(r.total_fen),
            pooled_fund_fen=int(r.pooled_fund_fen),
            large_amount_fen=int(r.large_amount_fen),
            critical_illness_fen=int(r.critical_illness_fen),
            assistance_fen=int(r.assistance_fen),
            other_fund_fen=int(r.other_fund_fen),
            fund_total_fen=int(r.fund_total_fen),
            personal_account_fen=int(r.personal_account_fen),
        )
        for r in rows
    }
