"""Every method of every service, called over gRPC as every role (and as nobody), against one
real all-in-one suite: a role the access table names is never refused by access control; every
other role gets PERMISSION_DENIED with REASON_ROLE_NOT_ALLOWED (method and role in ErrorInfo);
no identity is UNAUTHENTICATED. The refused calls write nothing.

The requests are empty (cheap): an allowed call may fail later (INVALID_ARGUMENT, NOT_FOUND ...);
what matters here is that access control let it through. Request fields a rule scopes to the
caller are filled with the caller's own values, so the role is what decides."""

from __future__ import annotations

import importlib
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform import access
from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.platform.identity import PRINCIPAL_HEADER, Principal, Role
from tests.unit.test_access import all_methods

pytestmark = pytest.mark.db

PRINCIPALS = {
    Role.INSTITUTION: Principal(Role.INSTITUTION, "H31010400001", "hospital"),
    Role.TREATMENT_BUREAU: Principal(Role.TREATMENT_BUREAU, "310100"),
    Role.INSURED_BUREAU: Principal(Role.INSURED_BUREAU, "110100"),
    Role.OPERATOR: Principal(Role.OPERATOR, "national"),
    Role.SERVICE: Principal(Role.SERVICE, "clearing"),
    Role.APP: Principal(Role.APP, "P110100000001"),
}
ACCESS_REASONS = {
    "REASON_INSTITUTION_IDENTITY_MISSING",
    "REASON_CALLER_IDENTITY_AMBIGUOUS",
    "REASON_CALLER_IDENTITY_INVALID",
    "REASON_ROLE_NOT_ALLOWED",
    "REASON_METHOD_NOT_OPEN",
}


def _request(method: str, principal: Principal | None) -> Any:
    service, name = method.strip("/").split("/")
    importlib.import_module(f"medsettle.{service.split('.')[1]}.v1.{service.split('.')[1]}_pb2")
    m = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    request = message_factory.GetMessageClass(m.input_type)()
    rule = access.rule_for(method)
    if principal is not None and rule is not None and (path := rule.scope_fields().get(principal.role)):
        target = request
        *parents, leaf = path.split(".")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, principal.id)
    if hasattr(request, "follow"):
        request.follow = False
    return request


async def _call(channel: grpc.aio.Channel, method: str, principal: Principal | None) -> grpc.aio.AioRpcError | None:
    """The call's error, or None if it was answered (or still streaming when we stopped)."""
    service, name = method.strip("/").split("/")
    m = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    request = _request(method, principal)
    md = ((PRINCIPAL_HEADER, principal.urn),) if principal else ()
    if m.server_streaming:
        call = channel.unary_stream(method, request_serializer=lambda x: x.SerializeToString())(
            request, metadata=md, timeout=1.0
        )
        try:
            async for _ in call:
                break
        except grpc.aio.AioRpcError as err:
            return None if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED else err
        finally:
            call.cancel()
        return None
    try:
        await channel.unary_unary(method, request_serializer=lambda x: x.SerializeToString())(
            request, metadata=md, timeout=10
        )
    except grpc.aio.AioRpcError as err:
        return err
    return None


async def _row_counts(urls: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for service, url in urls.items():
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            meta = MetaData()
            await conn.run_sync(meta.reflect)
            for table in meta.sorted_tables:
                counts[f"{service}.{table.name}"] = int(
                    (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                )
        await engine.dispose()
    return counts


async def test_every_method_as_every_role(suite: Host, db_urls: dict[str, str]) -> None:
    methods = all_methods()
    assert len(methods) >= 47
    before = await _row_counts(db_urls)
    refused_wrongly: list[str] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}") as ch:
        # first everything that must be refused: nobody, and every role the rule does not name
        for method in methods:
            rule = access.rule_for(method)
            assert rule is not None, method
            err = await _call(ch, method, None)
            assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED, (method, err)
            assert error_details(err).reason == "REASON_INSTITUTION_IDENTITY_MISSING", method
            for role, principal in PRINCIPALS.items():
                if role in rule.roles:
                    continue
                err = await _call(ch, method, principal)
                assert err is not None, f"{method} answered {role.value}"
                d = error_details(err)
                assert (err.code(), d.reason) == (grpc.StatusCode.PERMISSION_DENIED, "REASON_ROLE_NOT_ALLOWED"), (
                    method,
                    role.value,
                    err.code(),
                    d,
                )
                assert d.metadata == {"method": method, "role": role.value}
        assert await _row_counts(db_urls) == before, "a refused call wrote something"
        # then every role the rule names: never refused by access control
        for method in methods:
            rule = access.rule_for(method)
            assert rule is not None
            for role in sorted(rule.roles):
                err = await _call(ch, method, PRINCIPALS[role])
                if err is None:
                    continue
                d = error_details(err)
                if err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED) or (
                    d.reason in ACCESS_REASONS
                ):
                    refused_wrongly.append(f"{method} as {role.value}: {err.code().name} {d.reason}")
    assert not refused_wrongly, "\n".join(refused_wrongly)


async def test_identity_headers_are_trusted_from_loopback_only(suite: Host) -> None:
    """The suite binds 127.0.0.1 here, so every test call is from loopback; the interceptor's
    peer check is what keeps a remote caller from naming itself (unit-tested in
    tests/unit/test_access.py); two identity headers are refused whoever sends them."""
    method = "/medsettle.clearing.v1.ClearingService/GetIngestStatus"
    two = (
        (PRINCIPAL_HEADER, "urn:medsettle:operator:national"),
        ("x-medsettle-institution", "H31010400001"),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}") as ch:
        stub = ch.unary_unary(method, request_serializer=lambda x: x.SerializeToString())
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub(_request(method, None), metadata=two, timeout=5)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(exc.value).reason == "REASON_CALLER_IDENTITY_AMBIGUOUS"


def _non_loopback_address() -> str | None:
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing interface
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("mode", ["loopback", "any"])
async def test_without_tls_identity_headers_count_only_from_loopback(settings: Any, mode: str) -> None:
    from services.suite import start

    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    host = await start(
        settings.model_copy(update={"clearing_follow_feed": False, "identity_headers": mode}),
        ["clearing"],
        bind_host=address,
        run_migrations=False,
    )
    method = "/medsettle.clearing.v1.ClearingService/GetIngestStatus"
    operator = ((PRINCIPAL_HEADER, "urn:medsettle:operator:national"),)
    try:
        async with grpc.aio.insecure_channel(f"{address}:{host.port}") as ch:
            stub = ch.unary_unary(method, request_serializer=lambda x: x.SerializeToString())
            if mode == "loopback":
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await stub(_request(method, None), metadata=operator, timeout=5)
                assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert error_details(exc.value).reason == "REASON_CALLER_IDENTITY_INVALID"
            else:
                await stub(_request(method, None), metadata=operator, timeout=5)
    finally:
        await host.stop(drain=False)
