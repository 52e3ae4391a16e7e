"""Group commit: concurrent calls queued to one writer, settled in shared transactions.

Generic plumbing, built by a service's composition root from settings. It knows nothing of what
a call is: it is given two functions,

- ``batch(items)``: settles many calls in ONE transaction and answers, per call, its result,
  its own error, or None (settle that one on its own after the batch);
- ``one(item)``: the one-at-a-time path.

Per call, the answers are those of the one-at-a-time path: a bad call is answered with its own
error and does not fail the batch; if the batch transaction itself fails (a database error, a
race with another replica), every call of the batch is retried one at a time. When the batch's
COMMIT answer was lost (:class:`CommitUnknown`), each call finds out once the old transaction is
over (the re-run reads its key) or is answered COMMIT_OUTCOME_UNKNOWN, never a failure.

Up to ``writers`` batches run at once: while one waits for the database (most of all for its
commit's fsync), the next locks, reads and computes. Each queued call keeps the caller's trace
context (:attr:`Queued.context`), so what the writer logs for it carries the caller's trace id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import Context

from libs.core.errors import Category, DomainError
from libs.platform.db import CommitUnknown
from libs.platform.idempotency import outcome_unknown
from libs.platform.logs import get_logger

T = TypeVar("T")
R = TypeVar("R")

_log = get_logger("medsettle.group_commit")


@dataclass(slots=True)
class Queued(Generic[T, R]):
    """One call waiting in the queue: the item, its answer, the caller's trace context."""

    item: T
    future: asyncio.Future[R] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    context: Context = field(default_factory=otel_context.get_current)


BatchFn = Callable[[Sequence[Queued[T, R]]], Awaitable[Sequence[R | BaseException | None]]]
OneFn = Callable[[T], Awaitable[R]]


class GroupCommit(Generic[T, R]):
    def __init__(self, batch: BatchFn[T, R], one: OneFn[T, R], *, max_batch: int = 64, writers: int = 1) -> None:
        if max_batch < 1 or writers < 1:
            raise ValueError("max_batch and writers must be at least 1")
        self._batch = batch
        self._one_fn = one
        self.max_batch = max_batch
        self.writers = writers
        self._queue: asyncio.Queue[Queued[T, R]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._running: dict[asyncio.Task[None], list[Queued[T, R]]] = {}

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Lets the queued calls and the batches in flight finish, then stops the writer."""
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
                for queued in batch:
                    if not queued.future.done():
                        queued.future.cancel()
        while not self._queue.empty():  # answer whatever was still queued, one at a time
            await self._one(self._queue.get_nowait())

    async def submit(self, item: T) -> R:
        queued: Queued[T, R] = Queued(item)
        if self._task is None:  # not started (no writer): the one-at-a-time path
            await self._one(queued)
        else:
            self._queue.put_nowait(queued)
        return await queued.future

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
            task = asyncio.create_task(self._settle(batch), name="group-commit-batch")
            self._running[task] = batch
            task.add_done_callback(functools.partial(self._finished, size=len(batch), slots=slots))

    def _finished(self, task: asyncio.Task[None], size: int, slots: asyncio.Semaphore) -> None:
        self._running.pop(task, None)
        slots.release()
        for _ in range(size):
            self._queue.task_done()

    async def _settle(self, batch: list[Queued[T, R]]) -> None:
        uncertain: CommitUnknown | None = None
        outcomes: Sequence[R | BaseException | None]
        try:
            outcomes = await self._batch(batch)
        except Exception as exc:  # noqa: BLE001 - the batch failed as a whole: settle each on its own
            _log.warning("group_commit_retried_one_by_one", size=len(batch), error_type=type(exc).__name__)
            outcomes = [None] * len(batch)
            if isinstance(exc, CommitUnknown):
                # The batch's COMMIT answer was lost: each call finds out (its key, once the old
                # transaction is over) or is answered COMMIT_OUTCOME_UNKNOWN, never a failure.
                uncertain = exc if await exc.settle() else None
                if uncertain is None:
                    for queued in batch:
                        if not queued.future.done():
                            queued.future.set_exception(outcome_unknown(exc.dependency))
                    return
        for queued, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                await self._one(queued, uncertain=uncertain)
            elif queued.future.done():
                continue  # the caller went away (cancelled RPC); the write stands, a retry replays it
            elif isinstance(outcome, BaseException):
                queued.future.set_exception(outcome)
            else:
                queued.future.set_result(outcome)

    async def _one(self, queued: Queued[T, R], uncertain: CommitUnknown | None = None) -> None:
        try:
            result = await self._one_fn(queued.item)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who sees it as the RPC's error
            if uncertain is not None and (not isinstance(exc, DomainError) or exc.category is Category.UNAVAILABLE):
                exc = outcome_unknown(uncertain.dependency)  # the re-run could not find out either
            if not queued.future.done():
                queued.future.set_exception(exc)
            return
        if not queued.future.done():
            queued.future.set_result(result)
