"""A database that cannot be reached: UNAVAILABLE with a reason naming it, readiness NOT_SERVING
while it lasts and SERVING again by itself, one log line per change and no SQL or traceback in
any line; every PostgreSQL connection carries statement, lock and idle-in-transaction limits."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from libs.platform.db import Database
from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.platform.logs import configure_logging
from libs.platform.settings import Settings
from medsettle.settlement.v1 import settlement_pb2 as st
from services.settlement.server import SERVICE_NAME as SETTLEMENT
from tests.integration.settlement.helpers import md, open_visit, setup_world
from tests.pgproxy import PgProxy

pytestmark = pytest.mark.db
FILING = "medsettle.filing.v1.FilingService"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        logging.basicConfig(force=True, level=logging.WARNING)


@pytest.fixture
async def proxied(settings: Settings, db_kind: str) -> AsyncIterator[tuple[Host, PgProxy]]:
    if db_kind != "postgres":
        pytest.skip("the database is cut with a TCP proxy in front of PostgreSQL")
    from services.suite import start

    proxy = await PgProxy().start()
    direct = settings.database_url("settlement")
    via = direct.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    tuned = settings.model_copy(
        update={"settlement_database_url": via, "db_probe_seconds": 0.2, "db_connect_timeout_seconds": 1.0}
    )
    host = await start(tuned, ["filing", "eligibility", "settlement"], port=0, run_migrations=False)
    try:
        yield host, proxy
    finally:
        await host.stop(drain=False)
        await proxy.stop()


async def _health(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(resp.status)


async def _wait_health(target: str, service: str, want: int, within: float = 10.0) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < within:
        if await _health(target, service) == want:
            return loop.time() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{service or 'server'} health never became {want}")


async def test_a_database_outage_is_unavailable_not_serving_and_recovers_by_itself(
    log_lines: io.StringIO, proxied: tuple[Host, PgProxy]
) -> None:
    host, proxy = proxied
    target = f"127.0.0.1:{host.port}"
    w = await setup_world(target)
    visit = await open_visit(w, "dd-open")
    assert await _health(target, SETTLEMENT) == health_pb2.HealthCheckResponse.SERVING

    await proxy.go_down()
    for _ in range(5):  # reads and writes alike, every call
        with pytest.raises(grpc.aio.AioRpcError) as read:
            await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())
        d = error_details(read.value)
        assert read.value.code() == grpc.StatusCode.UNAVAILABLE, read.value
        assert d.reason == "REASON_DEPENDENCY_UNAVAILABLE" and d.metadata["dependency"] == "settlement-database"
        with pytest.raises(grpc.aio.AioRpcError) as write:
            await open_visit(w, "dd-open-2")
        assert write.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_details(write.value).reason == "REASON_DEPENDENCY_UNAVAILABLE"
    await _wait_health(target, SETTLEMENT, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert await _health(target, "") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await _health(target, FILING) == health_pb2.HealthCheckResponse.SERVING  # its own database is up

    await proxy.come_up()
    await _wait_health(target, SETTLEMENT, health_pb2.HealthCheckResponse.SERVING)
    assert await _health(target, "") == health_pb2.HealthCheckResponse.SERVING
    again = await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())
    assert again.visit.visit_id == visit.visit_id
    assert (await open_visit(w, "dd-open-2")).visit_id  # the refused write was stored nowhere: it runs now

    lines = [json.loads(ln) for ln in log_lines.getvalue().splitlines() if ln.startswith("{")]
    text_all = log_lines.getvalue()
    changes = [ln["event"] for ln in lines if ln.get("dependency") == "settlement-database" and "method" not in ln]
    assert changes == ["dependency_unavailable", "dependency_available"], changes
    assert "Traceback" not in text_all
    for word in ("SELECT", "INSERT", "UPDATE ", "[parameters", "P1101"):
        assert word not in text_all, word


async def test_every_postgresql_connection_has_statement_lock_and_idle_limits(settings: Settings, db_kind: str) -> None:
    if db_kind != "postgres":
        pytest.skip("PostgreSQL session settings")
    tuned = settings.model_copy(
        update={"db_statement_timeout_ms": 1500, "db_lock_timeout_ms": 700, "db_idle_in_transaction_timeout_ms": 9000}
    )
    db = Database.from_settings(tuned, "settlement")
    try:
        async with db.read() as conn:
            got = [
                (await conn.execute(text(f"SHOW {name}"))).scalar_one()
                for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
            ]
        assert got == ["1500ms", "700ms", "9s"]
        # a statement beyond the limit is cancelled by the server: UNAVAILABLE, not INTERNAL
        from libs.core.errors import DomainError

        with pytest.raises(DomainError) as info:
            async with db.read() as conn:
                await conn.execute(text("SELECT pg_sleep(3)"))
        assert info.value.reason.value == "REASON_DEPENDENCY_UNAVAILABLE"
        assert info.value.metadata == {"dependency": "settlement-database"}
    finally:
        await db.dispose()


def test_the_defaults_are_sane() -> None:
    s = Settings()
    assert (s.db_statement_timeout_ms, s.db_lock_timeout_ms, s.db_idle_in_transaction_timeout_ms) == (
        5_000,
        2_000,
        10_000,
    )


async def test_a_peer_that_cannot_be_reached_is_unavailable_naming_it(settings: Settings) -> None:
    from services.demo import HOSPITAL
    from services.suite import start
    from tests.conftest import free_port
    from tests.integration.settlement.helpers import RETIREE_CARD, date, today

    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    alone = settings.model_copy(update={"eligibility_target": nowhere, "filing_target": nowhere})
    host = await start(alone, ["settlement"], port=0, run_migrations=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as ch:
            from medsettle.common.v1 import types_pb2
            from medsettle.settlement.v1 import settlement_pb2_grpc

            stub = settlement_pb2_grpc.SettlementServiceStub(ch)
            req = st.OpenVisitRequest(
                request_id="peer-down",
                institution_code=HOSPITAL,
                hospital_visit_no="peer-down",
                credential=RETIREE_CARD,
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=date(today()),
                diagnosis_codes=["I63.900"],
            )
            with pytest.raises(grpc.aio.AioRpcError) as down:
                await stub.OpenVisit(req, metadata=md(), timeout=20)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        d = error_details(down.value)
        assert d.reason == "REASON_DEPENDENCY_UNAVAILABLE" and d.metadata == {"dependency": "eligibility"}
    finally:
        await host.stop(drain=False)
