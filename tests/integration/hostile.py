"""Helpers for the hostile-input tests: raw calls of any method, every table's content."""

from __future__ import annotations

import importlib
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from sqlalchemy import MetaData, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.platform import access
from libs.platform.identity import PRINCIPAL_HEADER, Principal

STREAM_TIMEOUT = 1.0


def method_descriptor(method: str) -> MethodDescriptor:
    service, name = method.strip("/").split("/")
    package = service.split(".")[1]
    module = "catalogue" if service.endswith("CatalogueService") else package
    importlib.import_module(f"medsettle.{package}.v1.{module}_pb2")
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]


def message_class(descriptor: Descriptor) -> Any:
    return message_factory.GetMessageClass(descriptor)


def metadata_for(principal: Principal | None) -> tuple[tuple[str, str], ...]:
    return ((PRINCIPAL_HEADER, principal.urn),) if principal else ()


def scope_field(method: str, principal: Principal) -> str | None:
    rule = access.rule_for(method)
    return rule.scope_fields().get(principal.role) if rule is not None else None


async def call_raw(
    channel: grpc.aio.Channel, method: str, payload: bytes, principal: Principal | None, deadline: float = 10
) -> grpc.aio.AioRpcError | None:
    """Sends ``payload`` as the request's bytes; the call's error, or None when it was answered
    (a stream: answered or still open when we stopped reading)."""
    md = metadata_for(principal)
    if method_descriptor(method).server_streaming:
        call = channel.unary_stream(method)(payload, metadata=md, timeout=STREAM_TIMEOUT)
        try:
            async for _ in call:
                break
        except grpc.aio.AioRpcError as err:
            return None if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED else err
        finally:
            call.cancel()
        return None
    try:
        await channel.unary_unary(method)(payload, metadata=md, timeout=deadline)
    except grpc.aio.AioRpcError as err:
        return err
    return None


class Tables:
    """Every row of every table of every service's database, to compare before and after."""

    def __init__(self, urls: dict[str, str]) -> None:
        self._urls = urls
        self._engines: dict[str, AsyncEngine] = {}
        self._tables: dict[str, list[Table]] = {}

    async def __aenter__(self) -> Tables:
        for service, url in self._urls.items():
            engine = create_async_engine(url)
            meta = MetaData()
            async with engine.connect() as conn:
                await conn.run_sync(meta.reflect)
            self._engines[service] = engine
            self._tables[service] = [t for t in meta.sorted_tables if not t.name.startswith("alembic")]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for engine in self._engines.values():
            await engine.dispose()

    async def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        out: dict[str, list[tuple[Any, ...]]] = {}
        for service, engine in self._engines.items():
            async with engine.connect() as conn:
                for table in self._tables[service]:
                    rows = (await conn.execute(select(table))).all()
                    out[f"{service}.{table.name}"] = sorted((tuple(r) for r in rows), key=repr)
        return out
