"""Server reflection that serves the contracts WITH their comments.

grpcio-reflection answers from a descriptor pool, and a pool's ``CopyToProto`` drops
``source_code_info``, so reflection clients (grpcurl describe, Postman, grpcui) would see no
comment at all. ``make protos`` writes the contracts' FileDescriptorSet with source info
(``medsettle/descriptor_set.binpb`` in the generated package, see scripts/gen_protos.py); this
servicer finds files and symbols as grpcio-reflection does, then answers each medsettle file with
its stored descriptor, comments included. Every other file (google.*, grpc.*) is answered as
before.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

DESCRIPTOR_SET = "descriptor_set.binpb"


@cache
def source_descriptors() -> dict[str, bytes]:
    """File name -> its serialized FileDescriptorProto with source info, for the medsettle files."""
    data = (resources.files("medsettle") / DESCRIPTOR_SET).read_bytes()
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {f.name: f.SerializeToString() for f in fds.file if f.name.startswith("medsettle/")}


def _with_source_info(response: reflection_pb2.ServerReflectionResponse) -> reflection_pb2.ServerReflectionResponse:
    if not response.HasField("file_descriptor_response"):
        return response
    stored = source_descriptors()
    files = response.file_descriptor_response.file_descriptor_proto
    for i, raw in enumerate(files):
        name = descriptor_pb2.FileDescriptorProto.FromString(raw).name
        if name in stored:
            files[i] = stored[name]
    return response


class ReflectionServicer(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    """grpcio-reflection's aio servicer, answering the medsettle files with their comments."""

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        return _with_source_info(super()._file_by_filename(request, filename))

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        return _with_source_info(super()._file_containing_symbol(request, fully_qualified_name))

    def _file_containing_extension(self, request: Any, containing_type: str, extension_number: int) -> Any:
        return _with_source_info(super()._file_containing_extension(request, containing_type, extension_number))
