"""Group commit for Settle.

Concurrent Settle calls queue to one writer, which settles a batch in ONE transaction: the visits
are row-locked in id order, the keys, lines, stays and person-year rows are read with one
statement each, every settlement is computed in memory (the same person twice in a batch sees the
accumulators the first one left), and each table is written with one multi-row statement. The
round trips and the commit are shared by the batch instead of paid by every call.

Per call, the answers are those of the one-at-a-time path: a bad call is answered with its own
error and does not fail the batch; a duplicate in the same batch, or a second call for the same
visit, is settled after the batch by the one-at-a-time path (which finds the stored key or the
new state); if the batch transaction itself fails (a database error, a race with another
replica), every call of the batch is retried one at a time.

Up to ``writers`` batches run at once (two on PostgreSQL): while one waits for the database
(most of all for its commit's fsync), the next locks, reads and computes. Two batches never
deadlock on each other: each locks all its visits, in id order, before any person's
accumulators, and those in (person, year) order; a batch that touches a visit or a person of the
batch before it waits for that one's commit and then reads what it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from libs.core.errors import Category, DomainError
from libs.platform.db import CommitUnknown
from libs.platform.idempotency import outcome_unknown
from libs.platform.logs import get_logger

if TYPE_CHECKING:
    from services.settlement.application.service import Committed, SettlementService

_log = get_logger("medsettle.settlement.batch")


@dataclass
class SettleCall:
    request_id: str
    fp: str
    caller: str | None
    visit_id: str
    use_account: bool
    interim: bool
    discharge_date: dt.date | None
    future: asyncio.Future[Committed] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # The caller's trace context: what the writer logs for this call carries the caller's trace id.
    trace_context: Context = field(default_factory=otel_context.get_current)


class SettleBatcher:
    def __init__(self, service: SettlementService, *, max_batch: int = 64, writers: int = 1) -> None:
        self.service = service
        self.max_batch = max_batch
        self.writers = writers
        self._queue: asyncio.Queue[SettleCall] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._running: dict[asyncio.Task[None], list[SettleCall]] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="settle-batcher")

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Lets the queued calls and the batch in flight finish, then stops the writer."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_seconds)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            for task, batch in list(self._running.items()):  # still running after the drain time
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                for call in batch:
                    if not call.future.done():
                        call.future.cancel()
        while not self._queue.empty():  # answer whatever was still queued, one at a time
            await self._one(self._queue.get_nowait())

    async def submit(self, call: SettleCall) -> Committed:
        if self._task is None:  # not started (no event loop worker): the one-at-a-time path
            await self._one(call)
        else:
            self._queue.put_nowait(call)
        return await call.future

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.writers)
        while True:
            first = await self._queue.get()
            try:
                await slots.acquire()  # calls that arrive meanwhile join this batch
            except asyncio.CancelledError:  # stopping: stop() answers it with the rest of the queue
                self._queue.put_nowait(first)
                self._queue.task_done()
                raise
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            task = asyncio.create_task(self._settle(batch), name="settle-batch")
            self._running[task] = batch
            task.add_done_callback(lambda t, n=len(batch): self._finished(t, n, slots))

    def _finished(self, task: asyncio.Task[None], size: int, slots: asyncio.Semaphore) -> None:
        self._running.pop(task, None)
        slots.release()
        for _ in range(size):
            self._queue.task_done()

    async def _settle(self, batch: list[SettleCall]) -> None:
        uncertain: CommitUnknown | None = None
        try:
            outcomes = await self.service.settle_batch(batch)
        except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: settle each on its own
            _log.warning("settle_batch_retried_one_by_one", size=len(batch), error_type=type(exc).__name__)
            outcomes = [None] * len(batch)
            if isinstance(exc, CommitUnknown):
                # The batch's COMMIT answer was lost: each call finds out (its key, once the old
                # transaction is over) or is answered COMMIT_OUTCOME_UNKNOWN, never a failure.
                uncertain = exc if await exc.settle() else None
                if uncertain is None:
                    for call in batch:
                        if not call.future.done():
                            call.future.set_exception(outcome_unknown(exc.dependency))
                    return
        for call, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                await self._one(call, uncertain=uncertain)
            elif call.future.done():
                continue  # the caller went away (cancelled RPC); the settlement stands, a retry replays it
            elif isinstance(outcome, BaseException):
                call.future.set_exception(outcome)
            else:
                call.future.set_result(outcome)

    async def _one(self, call: SettleCall, uncertain: CommitUnknown | None = None) -> None:
        try:
            result = await self.service.settle_one(
                call.request_id,
                call.fp,
                call.caller,
                call.visit_id,
                use_account=call.use_account,
                interim=call.interim,
                discharge_date=call.discharge_date,
            )
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who sees it as the RPC's error
            if uncertain is not None and (not isinstance(exc, DomainError) or exc.category is Category.UNAVAILABLE):
                exc = outcome_unknown(uncertain.dependency)  # the re-run could not find out either
            if not call.future.done():
                call.future.set_exception(exc)
            return
        if not call.future.done():
            call.future.set_result(result)
