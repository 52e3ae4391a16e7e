"""The group-commit queue (libs/platform/group_commit.py): batches at once up to its writers,
each call answered once, and a stop that answers every call (the running batches cancelled, the
queued ones one at a time)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from libs.platform.group_commit import GroupCommit, Queued


class _Service:
    """Stands in for a use case: a batch waits until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.one_at_a_time: list[str] = []
        self.release = asyncio.Event()

    async def settle_batch(self, calls: Sequence[Queued[str, str]]) -> list[Any]:
        self.batches.append([c.item for c in calls])
        await self.release.wait()
        return [f"batch:{c.item}" for c in calls]

    async def settle_one(self, request_id: str) -> str:
        self.one_at_a_time.append(request_id)
        return f"one:{request_id}"


def _call(i: int) -> str:
    return f"r{i}"


def _queue(service: _Service) -> GroupCommit[str, str]:
    return GroupCommit(service.settle_batch, service.settle_one, max_batch=2, writers=2)


async def _settled(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_two_writers_run_two_batches_at_once_and_the_rest_waits() -> None:
    service = _Service()
    batcher = _queue(service)
    batcher.start()
    calls = [_call(i) for i in range(5)]
    pending = [asyncio.ensure_future(batcher.submit(c)) for c in calls]
    await _settled(20)
    assert service.batches == [["r0", "r1"], ["r2", "r3"]]  # r4 waits for a writer
    service.release.set()
    assert await asyncio.gather(*pending) == [f"batch:r{i}" for i in range(5)]
    assert service.batches[2] == ["r4"] and service.one_at_a_time == []
    await batcher.stop()


async def test_stop_answers_every_call_even_when_batches_hang() -> None:
    service = _Service()  # never released: the batches outlive the drain time
    batcher = _queue(service)
    batcher.start()
    calls = [_call(i) for i in range(5)]
    pending = [asyncio.ensure_future(batcher.submit(c)) for c in calls]
    await _settled(20)
    await batcher.stop(drain_seconds=0.05)
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)  # none left hanging
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:4])  # their batch was cut off
    assert results[4] == "one:r4"  # it was still waiting for a writer: settled on its own


async def test_a_call_the_batch_leaves_open_is_settled_alone_and_its_own_error_stays_its_own() -> None:
    class _Mixed(_Service):
        async def settle_batch(self, calls: Sequence[Queued[str, str]]) -> list[Any]:
            self.batches.append([c.item for c in calls])
            return ["batch:r0", None, ValueError("r2 refused")]

    service = _Mixed()
    queue = GroupCommit(service.settle_batch, service.settle_one, max_batch=3, writers=1)
    queue.start()
    pending = [asyncio.ensure_future(queue.submit(_call(i))) for i in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
    assert service.batches == [["r0", "r1", "r2"]]
    assert results[0] == "batch:r0" and results[1] == "one:r1"  # left open: the one-at-a-time path
    assert isinstance(results[2], ValueError) and str(results[2]) == "r2 refused"
    assert service.one_at_a_time == ["r1"]
    await queue.stop()


async def test_a_failed_batch_is_settled_one_at_a_time_and_an_unstarted_queue_settles_alone() -> None:
    class _Failing(_Service):
        async def settle_batch(self, calls: Sequence[Queued[str, str]]) -> list[Any]:
            self.batches.append([c.item for c in calls])
            raise RuntimeError("the batch transaction failed")

    service = _Failing()
    queue = GroupCommit(service.settle_batch, service.settle_one, max_batch=4, writers=1)
    assert await queue.submit("alone") == "one:alone" and service.batches == []  # not started
    queue.start()
    pending = [asyncio.ensure_future(queue.submit(_call(i))) for i in range(3)]
    assert await asyncio.wait_for(asyncio.gather(*pending), 5) == ["one:r0", "one:r1", "one:r2"]
    assert service.batches == [["r0", "r1", "r2"]]
    await queue.stop()
