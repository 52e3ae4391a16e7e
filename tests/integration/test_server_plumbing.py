"""What generic tools see: health and reflection on every server, graceful shutdown, and errors
carrying google.rpc.Status with ErrorInfo and field violations."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.common.v1 import types_pb2
from medsettle.filing.v1 import filing_pb2, filing_pb2_grpc
from services.demo import acting_parties
from services.filing.adapters.db import filings, idempotency_keys
from tests.conftest import ROOT, ServiceProcesses, free_port, wait_serving

pytestmark = pytest.mark.db

SERVICE_NAMES = {
    "filing": "medsettle.filing.v1.FilingService",
    "eligibility": "medsettle.eligibility.v1.EligibilityService",
    "settlement": "medsettle.settlement.v1.SettlementService",
    "clearing": "medsettle.clearing.v1.ClearingService",
}


def reflective_call(target: str, service: str, method: str, body: dict, principal: str) -> dict:  # type: ignore[type-arg]
    """Like grpcurl: learn the schema from the server's reflection service, no generated stubs."""
    with grpc.insecure_channel(target) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        svc = pool.FindServiceByName(service)
        m = svc.FindMethodByName(method)
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        call = channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=lambda x: x.SerializeToString(),
            response_deserializer=resp_cls.FromString,
        )
        resp = call(json_format.ParseDict(body, req_cls()), timeout=5, metadata=(("x-medsettle-principal", principal),))
        return json_format.MessageToDict(resp)


def test_reflection_and_health_answer_on_every_separate_server(processes: ServiceProcesses) -> None:
    processes.start_all()
    for name, full in SERVICE_NAMES.items():
        target = processes.targets[name]
        with grpc.insecure_channel(target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for svc in ("", full):
                assert (
                    health.Check(health_pb2.HealthCheckRequest(service=svc)).status
                    == health_pb2.HealthCheckResponse.SERVING
                )
        with grpc.insecure_channel(target) as ch:
            db = ProtoReflectionDescriptorDatabase(ch)
            assert full in set(db.get_services())
    reply = reflective_call(
        processes.targets["filing"],
        SERVICE_NAMES["filing"],
        "ListFilings",
        {"pageSize": 5},
        "urn:medsettle:bureau:insured:11",
    )
    assert reply == {} or "filings" not in reply


async def test_reflection_lists_all_services_in_all_in_one_mode(suite: Host) -> None:
    def _list() -> set[str]:
        with grpc.insecure_channel(f"127.0.0.1:{suite.port}") as ch:
            return set(ProtoReflectionDescriptorDatabase(ch).get_services())

    services = await asyncio.to_thread(_list)
    assert set(SERVICE_NAMES.values()) | {"grpc.health.v1.Health"} <= services


async def _count_rows(url: str) -> tuple[int, int]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(filings))).scalar_one()
        k = (await conn.execute(select(func.count()).select_from(idempotency_keys))).scalar_one()
    await engine.dispose()
    return n, k


async def test_bad_input_is_invalid_argument_with_reason_and_violations_and_writes_nothing(
    suite: Host, db_urls: dict[str, str]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}", interceptors=acting_parties()) as ch:
        stub = filing_pb2_grpc.FilingServiceStub(ch)
        bad = filing_pb2.CreateFilingRequest(
            request_id="bad-1",
            person_no="P1",
            insured_region_code="11010",  # 5 digits
            treatment_region_code="110200",  # same province as the insured region would be
            filing_type=types_pb2.FILING_TYPE_REFERRAL,
            insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
            channel=filing_pb2.CHANNEL_APP,
            commitment_signed=True,
            start_date=types_pb2.Date(year=2026, month=2, day=30),  # no such day
        )
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.CreateFiling(bad, metadata=(("x-medsettle-principal", "urn:medsettle:bureau:insured:11"),))
    d = error_details(exc.value)
    assert d.code is grpc.StatusCode.INVALID_ARGUMENT
    assert d.reason == "REASON_VALIDATION_FAILED"
    fields = {v.field for v in d.violations}
    assert {"insured_region_code", "start_date"} <= fields
    assert await _count_rows(db_urls["filing"]) == (0, 0)


async def test_unknown_failure_is_internal_without_leaking_text(suite: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.filing.application.service import FilingService

    async def boom(self, filing_id):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret detail about 110105195403120027")

    monkeypatch.setattr(FilingService, "get_required", boom)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}", interceptors=acting_parties()) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await filing_pb2_grpc.FilingServiceStub(ch).GetFiling(filing_pb2.GetFilingRequest(filing_id="F1"))
    d = error_details(exc.value)
    assert d.code is grpc.StatusCode.INTERNAL and d.reason == "REASON_INTERNAL_ERROR"
    assert "secret" not in d.message and "trace_id" in d.metadata


@pytest.mark.slow
def test_sigterm_drains_not_serving_then_exits_cleanly(db_urls: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    sp = ServiceProcesses(db_urls, tmp_path, {"MEDSETTLE_DRAIN_SECONDS": "1.5"})
    sp.start("filing")
    target = sp.targets["filing"]
    wait_serving(target)
    proc = sp.procs["filing"]
    proc.send_signal(signal.SIGTERM)
    seen = []
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        with grpc.insecure_channel(target) as ch:
            try:
                seen.append(health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5).status)
            except grpc.RpcError:
                break
        time.sleep(0.1)
    assert health_pb2.HealthCheckResponse.NOT_SERVING in seen
    assert proc.wait(15) == 0
    sp.procs.clear()
    log = sp.logs["filing"].read_text()
    assert "server_draining" in log and "server_stopped" in log


def test_cli_refuses_bad_settings_with_exit_code_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "filing", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{ROOT}:{ROOT / 'libs' / 'contracts'}",
            "MEDSETTLE_FILING_DATABASE_URL": "mysql://x",
            "MEDSETTLE_DATA_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 2 and "MEDSETTLE_FILING_DATABASE_URL" in result.stderr


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_answers_v1_and_v1alpha_to_anyone(suite: Host, version: str) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}") as ch:
        call = ch.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = [s.name async for r in call for s in r.list_services_response.service]
    assert {"grpc.reflection.v1.ServerReflection", "medsettle.settlement.v1.SettlementService"} <= set(names)
