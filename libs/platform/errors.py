"""The one place that turns a DomainError into a google.rpc.Status (and back, for clients)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from libs.core.errors import CODE_NAME_OF, Category, DomainError, FieldViolation, Reason

DOMAIN = "medsettle"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# From libs.core.errors.CODE_NAME_OF, so the codes are named in one place.
CODE_OF: dict[Category, grpc.StatusCode] = {c: grpc.StatusCode[name] for c, name in CODE_NAME_OF.items()}

INTERNAL_MESSAGE = "internal error; quote the trace id to support"
# What an error may quote of anything: a client refuses trailers of more than a few KB, and an
# error must never become a way to echo input back.
MAX_MESSAGE_CHARS = 512
MAX_METADATA_CHARS = 128
MAX_VIOLATION_CHARS = 256


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_for(error: DomainError) -> tuple[grpc.StatusCode, status_pb2.Status]:
    code = CODE_OF[error.category]
    message = INTERNAL_MESSAGE if error.category is Category.INTERNAL else _clip(error.message, MAX_MESSAGE_CHARS)
    metadata = {_clip(k, MAX_METADATA_CHARS): _clip(v, MAX_METADATA_CHARS) for k, v in error.metadata.items()}
    info = error_details_pb2.ErrorInfo(reason=error.reason.value, domain=DOMAIN, metadata=metadata)
    details = [info]
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(v.field, MAX_VIOLATION_CHARS), description=_clip(v.description, MAX_VIOLATION_CHARS)
                    )
                    for v in error.violations[:50]
                ]
            )
        )
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    return code, status_pb2.Status(code=code.value[0], message=message, details=packed)


def status_for_internal(trace_id: str) -> tuple[grpc.StatusCode, status_pb2.Status]:
    info = error_details_pb2.ErrorInfo(
        reason=Reason.INTERNAL_ERROR.value, domain=DOMAIN, metadata={"trace_id": trace_id} if trace_id else {}
    )
    a = any_pb2.Any()
    a.Pack(info)
    return grpc.StatusCode.INTERNAL, status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE, details=[a])


@dataclass(frozen=True)
class ErrorDetails:
    """What a client learns from a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    violations: tuple[FieldViolation, ...]


def details_from_metadata(code: grpc.StatusCode, message: str, trailing: object) -> ErrorDetails:
    raw: bytes | None = None
    for key, value in trailing or ():  # type: ignore[attr-defined]
        if key == STATUS_DETAILS_KEY:
            raw = value if isinstance(value, bytes) else bytes(value)
    reason, meta, violations = "", {}, []
    if raw:
        st = status_pb2.Status.FromString(raw)
        for any_ in st.details:
            if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_.Unpack(info)
                reason, meta = info.reason, dict(info.metadata)
            elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                any_.Unpack(br)
                violations = [FieldViolation(v.field, v.description) for v in br.field_violations]
    return ErrorDetails(code, message, reason, meta, tuple(violations))


def error_details(exc: grpc.aio.AioRpcError | grpc.RpcError) -> ErrorDetails:
    """Decodes the google.rpc.Status of a failed call (aio or sync)."""
    trailing = exc.trailing_metadata()  # type: ignore[union-attr]
    return details_from_metadata(exc.code(), exc.details() or "", trailing)  # type: ignore[union-attr]


def domain_error_from_rpc(exc: grpc.aio.AioRpcError) -> DomainError:
    """Re-raises a peer's classified error as our own DomainError (same reason)."""
    d = error_details(exc)
    try:
        reason = Reason(d.reason)
    except ValueError:
        reason = (
            Reason.DEPENDENCY_UNAVAILABLE
            if d.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            else Reason.INTERNAL_ERROR
        )
    return DomainError(reason, d.message, violations=d.violations, metadata=d.metadata)


def peer_error(exc: grpc.aio.AioRpcError, dependency: str, unavailable: str) -> DomainError:
    """A failed call to a peer service as our own error: the peer not answering in time
    (UNAVAILABLE, DEADLINE_EXCEEDED) is DEPENDENCY_UNAVAILABLE naming ``dependency``, with
    ``unavailable`` as its message; anything else keeps the peer's reason."""
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return DomainError(Reason.DEPENDENCY_UNAVAILABLE, unavailable, metadata={"dependency": dependency})
    return domain_error_from_rpc(exc)
