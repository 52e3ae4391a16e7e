"""The group-commit batcher: batches at once up to its writers, each call answered once, and a
stop that answers every call (the running batches cancelled, the queued ones one at a time)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.settlement.application.batch import SettleBatcher, SettleCall


class _Service:
    """Stands in for SettlementService: a batch waits until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.one_at_a_time: list[str] = []
        self.release = asyncio.Event()

    async def settle_batch(self, calls: list[SettleCall]) -> list[Any]:
        self.batches.append([c.request_id for c in calls])
        await self.release.wait()
        return [f"batch:{c.request_id}" for c in calls]

    async def settle_one(self, request_id: str, *args: Any, **kwargs: Any) -> str:
        self.one_at_a_time.append(request_id)
        return f"one:{request_id}"


def _call(i: int) -> SettleCall:
    return SettleCall(f"r{i}", "fp", "H1", f"V{i}", False, False, None)


async def _settled(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_two_writers_run_two_batches_at_once_and_the_rest_waits() -> None:
    service = _Service()
    batcher = SettleBatcher(service, max_batch=2, writers=2)  # type: ignore[arg-type]
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
    batcher = SettleBatcher(service, max_batch=2, writers=2)  # type: ignore[arg-type]
    batcher.start()
    calls = [_call(i) for i in range(5)]
    pending = [asyncio.ensure_future(batcher.submit(c)) for c in calls]
    await _settled(20)
    await batcher.stop(drain_seconds=0.05)
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)  # none left hanging
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:4])  # their batch was cut off
    assert results[4] == "one:r4"  # it was still waiting for a writer: settled on its own
