"""A drain that answers: calls arriving while the server drains get UNAVAILABLE with
REASON_SERVER_DRAINING (never CANCELLED), calls in flight finish within the grace period, each
is logged; SIGTERM under load against a service process loses no acknowledged write."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog

from libs.platform import access
from libs.platform.errors import error_details
from libs.platform.host import Host, Runtime
from libs.platform.interceptors import ClientTraceInterceptor, client_interceptors
from libs.platform.logs import configure_logging
from libs.platform.settings import Settings
from libs.platform.tracing import configure_tracing
from medsettle.common.v1 import types_pb2
from medsettle.filing.v1 import filing_pb2, filing_pb2_grpc
from tests.conftest import ServiceProcesses, wait_serving
from tests.dates import TEST_DAY

SLOW = "/test.Slow/Wait"
QUICK = "/test.Slow/Ping"
NESTED = "/test.Slow/Nested"
CALLER = "urn:medsettle:service:settlement"  # a suite service (identity headers trusted from loopback)
BUREAU = (("x-medsettle-principal", "urn:medsettle:bureau:insured:110100"),)  # files Beijing's persons


@pytest.fixture(autouse=True)
def _slow_methods_have_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test module's methods are served only with a rule, like every method (deny by default)."""
    for method in (SLOW, QUICK, NESTED):
        monkeypatch.setitem(access.RULES, method, access.allow(access.SVC, note="test"))


class _SlowModule:
    """A module with one call that takes ``seconds`` and one that answers at once."""

    name = "slow"
    grpc_service_names = ("test.Slow",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.finished = 0
        self.target = ""

    def register(self, server: grpc.aio.Server) -> None:
        async def wait(request: bytes, context: object) -> bytes:
            await asyncio.sleep(self.seconds)
            self.finished += 1
            return b"done"

        async def ping(request: bytes, context: object) -> bytes:
            return b"pong"

        async def nested(request: bytes, context: object) -> bytes:
            # on behalf of this call, a call to the same server (as all-in-one peers do)
            await asyncio.sleep(self.seconds)
            assert self.target
            async with grpc.aio.insecure_channel(self.target, interceptors=[ClientTraceInterceptor(CALLER)]) as ch:
                return bytes(await ch.unary_unary(QUICK)(b"", timeout=5))

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "test.Slow",
                    {
                        "Wait": grpc.unary_unary_rpc_method_handler(wait),
                        "Ping": grpc.unary_unary_rpc_method_handler(ping),
                        "Nested": grpc.unary_unary_rpc_method_handler(nested),
                    },
                ),
            )
        )

    async def start(self, runtime: Runtime) -> None:
        self.target = runtime.self_target

    async def stop_tasks(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        logging.basicConfig(force=True, level=logging.WARNING)


async def test_calls_during_the_drain_are_unavailable_with_a_reason_and_in_flight_calls_finish(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    configure_tracing("medsettle-test")  # as every server does: calls carry their trace to peers
    module = _SlowModule(seconds=1.0)
    settings = Settings(data_dir=tmp_path, drain_seconds=0.3, grace_seconds=5.0)
    host = Host(settings, [module], port=0, bind_host="127.0.0.1")
    await host.start()
    try:
        await _drive(host, module)
    finally:
        await host.stop(drain=False)
    events = [json.loads(ln) for ln in log_lines.getvalue().splitlines() if ln.startswith("{")]
    ended = Counter((e["method"], e["code"]) for e in events if e["event"] == "rpc_ended_while_draining")
    assert ended == {(SLOW, "OK"): 3, (QUICK, "UNAVAILABLE"): 3, (QUICK, "OK"): 1, (NESTED, "OK"): 1}, ended
    drained = [e for e in events if e["event"] == "server_drained"]
    assert len(drained) == 1 and drained[0]["in_flight"] == 0


async def _drive(host: Host, module: _SlowModule) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}", interceptors=client_interceptors(CALLER)) as ch:
        slow, quick = ch.unary_unary(SLOW), ch.unary_unary(QUICK)
        in_flight = [asyncio.ensure_future(slow(b"", timeout=10)) for _ in range(3)]
        inner = asyncio.ensure_future(ch.unary_unary(NESTED)(b"", timeout=10))
        await asyncio.sleep(0.1)
        began = time.monotonic()
        stopping = asyncio.create_task(host.stop())
        await asyncio.sleep(0.1)
        assert await quick(b"", timeout=5) == b"pong"  # the drain's first part: still served
        await asyncio.sleep(0.4)  # now past drain_seconds: new calls are refused, with a reason
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await quick(b"", timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            d = error_details(refused.value)
            assert d.reason == "REASON_SERVER_DRAINING" and d.metadata == {"service": "test.Slow"}
        assert [await t for t in in_flight] == [b"done"] * 3  # the calls in flight finished
        assert await inner == b"pong"  # and so did the one whose own call came during the drain
        await stopping
        took = time.monotonic() - began
    assert module.finished == 3
    assert took < 0.3 + 1.0 + 1.5, took  # stopped as soon as they finished, well inside the grace


@pytest.mark.db
def test_sigterm_under_load_answers_every_call_and_loses_no_acknowledged_write(
    db_urls: dict[str, str], tmp_path: Path
) -> None:
    sp = ServiceProcesses(db_urls, tmp_path, {"MEDSETTLE_DRAIN_SECONDS": "0.5", "MEDSETTLE_GRACE_SECONDS": "5"})
    sp.start("filing")
    try:
        wait_serving(sp.targets["filing"])
        outcomes, acknowledged = asyncio.run(_load_then_sigterm(sp))
        code = sp.procs["filing"].wait(15)
    finally:
        if "filing" in sp.procs and sp.procs["filing"].poll() is None:
            sp.procs["filing"].kill()
    assert code == 0
    assert outcomes["OK"] > 20, outcomes
    # every answer is OK, refused with the drain's reason, or a connection the stopped server no
    # longer takes: never CANCELLED, INTERNAL or UNKNOWN
    assert set(outcomes) <= {"OK", "REASON_SERVER_DRAINING", "UNAVAILABLE:connect"}, outcomes
    # (searched in the raw text: gRPC's own stderr lines can land inside a buffered JSON line)
    text = sp.logs["filing"].read_text(errors="replace")
    assert '"event": "server_refusing_new_calls"' in text and '"event": "server_drained"' in text
    # every acknowledged filing is stored: restart and read each one
    sp.start("filing")
    try:
        wait_serving(sp.targets["filing"])
        with grpc.insecure_channel(sp.targets["filing"]) as ch:
            stub = filing_pb2_grpc.FilingServiceStub(ch)
            for filing_id in acknowledged:
                assert stub.GetFiling(
                    filing_pb2.GetFilingRequest(filing_id=filing_id), timeout=5, metadata=BUREAU
                ).filing.filing_id
    finally:
        sp.stop_all()


async def _load_then_sigterm(sp: ServiceProcesses) -> tuple[Counter[str], list[str]]:
    outcomes: Counter[str] = Counter()
    acknowledged: list[str] = []
    stop = asyncio.Event()
    start = TEST_DAY - dt.timedelta(days=10)

    async def worker(n: int) -> None:
        async with grpc.aio.insecure_channel(sp.targets["filing"]) as ch:
            stub = filing_pb2_grpc.FilingServiceStub(ch)
            i, again = 0, False
            while not stop.is_set():
                if not again:
                    i += 1
                again = False
                req = filing_pb2.CreateFilingRequest(
                    request_id=f"drain-{n}-{i}",
                    person_no=f"P11010{n:03d}{i:05d}",
                    insured_region_code="110100",
                    treatment_region_code="310100",
                    filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE,
                    insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
                    channel=filing_pb2.CHANNEL_APP,
                    commitment_signed=True,
                    start_date=types_pb2.Date(year=start.year, month=start.month, day=start.day),
                )
                try:
                    resp = await stub.CreateFiling(req, timeout=10, metadata=BUREAU)
                    outcomes["OK"] += 1
                    acknowledged.append(resp.filing.filing_id)
                except grpc.aio.AioRpcError as exc:
                    reason = error_details(exc).reason
                    if reason:
                        outcomes[reason] += 1
                        # as a client should: back off, then retry with the same request id
                        again = reason == "REASON_SERVER_DRAINING"
                        await asyncio.sleep(1.0)
                    elif exc.code() == grpc.StatusCode.UNAVAILABLE:
                        outcomes["UNAVAILABLE:connect"] += 1  # the server no longer listens
                        await asyncio.sleep(0.05)
                    else:
                        outcomes[exc.code().name] += 1

    tasks = [asyncio.create_task(worker(n)) for n in range(8)]
    await asyncio.sleep(1.5)
    sp.procs["filing"].send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(sp.procs["filing"].wait, 15)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    return outcomes, acknowledged
