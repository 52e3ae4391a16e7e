"""Streams and connections bounded: many feed streams held open cost the server one reader, not
one poll each, so another caller's calls stay fast; beyond the cap a stream is refused with a
reason; connections that never finish their handshake are closed."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.platform.settings import Settings
from medsettle.common.v1 import types_pb2
from medsettle.filing.v1 import filing_pb2, filing_pb2_grpc
from services.demo import acting_parties  # each call names the party that makes it
from tests.dates import TEST_DAY

pytestmark = pytest.mark.db


@pytest.fixture
async def host(settings: Settings) -> AsyncIterator[Host]:
    from services.suite import start

    tuned = settings.model_copy(update={"feed_max_followers": 400, "grpc_handshake_seconds": 1.0})
    h = await start(tuned, ["filing", "eligibility"], port=0, run_migrations=False)
    try:
        yield h
    finally:
        await h.stop(drain=False)


def _filing(n: int) -> filing_pb2.CreateFilingRequest:
    start = TEST_DAY - dt.timedelta(days=10)
    return filing_pb2.CreateFilingRequest(
        request_id=f"sb-{n}",
        person_no=f"P1101009{n:05d}",
        insured_region_code="110100",
        treatment_region_code="310100",
        filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE,
        insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
        channel=filing_pb2.CHANNEL_APP,
        commitment_signed=True,
        start_date=types_pb2.Date(year=start.year, month=start.month, day=start.day),
    )


async def _latencies(stub: filing_pb2_grpc.FilingServiceStub, filing_id: str, n: int = 40) -> float:
    took = []
    for _ in range(n):
        began = time.perf_counter()
        await stub.GetFiling(filing_pb2.GetFilingRequest(filing_id=filing_id), timeout=10)
        took.append(time.perf_counter() - began)
        await asyncio.sleep(0.01)
    return statistics.median(took)


async def _hold(stub: filing_pb2_grpc.FilingServiceStub, seen: list[int]) -> None:
    async for msg in stub.WatchFilings(filing_pb2.WatchFilingsRequest(after_position=0)):
        seen.append(msg.position)


async def test_many_streams_and_slow_connections_leave_other_calls_fast(host: Host) -> None:
    target = f"127.0.0.1:{host.port}"
    async with grpc.aio.insecure_channel(target, interceptors=acting_parties()) as ch:
        stub = filing_pb2_grpc.FilingServiceStub(ch)
        first = (await stub.CreateFiling(_filing(0))).filing
        await _latencies(stub, first.filing_id, 10)  # warm up
        baseline = await _latencies(stub, first.filing_id)

        channels = [grpc.aio.insecure_channel(target, interceptors=acting_parties()) for _ in range(10)]
        seen: list[list[int]] = [[] for _ in range(300)]
        streams = [
            asyncio.create_task(_hold(filing_pb2_grpc.FilingServiceStub(channels[i % 10]), seen[i])) for i in range(300)
        ]
        # connections that open TCP and never speak HTTP/2, or stop half way through the preface
        slow = [await asyncio.open_connection("127.0.0.1", host.port) for _ in range(30)]
        for i, (_, writer) in enumerate(slow):
            if i % 2:
                writer.write(b"PRI * HTTP/2.0\r\n")
        try:
            for _ in range(100):  # every stream has received the backlog
                if all(s == [1] for s in seen):
                    break
                await asyncio.sleep(0.05)
            assert all(s == [1] for s in seen), sum(1 for s in seen if s != [1])
            held = await _latencies(stub, first.filing_id)
            # a write reaches all 300 streams once each, from the one reader
            await stub.CreateFiling(_filing(1))
            for _ in range(200):
                if all(s == [1, 2] for s in seen):
                    break
                await asyncio.sleep(0.05)
            assert all(s == [1, 2] for s in seen), sum(1 for s in seen if s != [1, 2])
            # the half-opened connections are closed by the server's handshake limit
            closed = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in slow)), timeout=10)
            assert all(data == b"" or not data.startswith(b"PRI") for data in closed)
        finally:
            for t in streams:
                t.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            for _, w in slow:
                w.close()
            for c in channels:
                await c.close()
    # 300 idle streams poll nothing on their own: the other caller's calls stay as fast
    assert held < 3 * baseline + 0.002, (held, baseline)


async def test_a_stream_beyond_the_cap_is_refused_with_a_reason(settings: Settings) -> None:
    from services.suite import start

    # filing alone (its institution directory is never called here): no other follower
    alone = settings.model_copy(update={"feed_max_followers": 3, "eligibility_target": "127.0.0.1:9"})
    h = await start(alone, ["filing"], port=0, run_migrations=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{h.port}", interceptors=acting_parties()) as ch:
            stub = filing_pb2_grpc.FilingServiceStub(ch)
            calls = [stub.WatchFilings(filing_pb2.WatchFilingsRequest(mark_caught_up=True)) for _ in range(3)]
            for c in calls:  # each is served: caught up at position 0
                assert (await c.read()).caught_up
            extra = stub.WatchFilings(filing_pb2.WatchFilingsRequest(mark_caught_up=True))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await extra.read()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            d = error_details(refused.value)
            assert d.reason == "REASON_TOO_MANY_FOLLOWERS" and d.metadata == {"limit": "3"}
            calls[0].cancel()
            for _ in range(50):  # the freed place is taken by the next stream
                again = stub.WatchFilings(filing_pb2.WatchFilingsRequest(mark_caught_up=True))
                try:
                    assert (await again.read()).caught_up
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the stream's place was never freed")
            for c in calls[1:]:
                c.cancel()
            again.cancel()
    finally:
        await h.stop(drain=False)
