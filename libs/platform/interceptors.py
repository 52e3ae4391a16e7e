"""One server interceptor for every service: identity, tracing, metrics, access logs and the
translation of errors into google.rpc.Status. Plus the client interceptor that carries the
trace context to peers.

Fused into one wrapper on purpose: each extra aio interceptor costs a coroutine hop per call on
the hot path.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from libs.core.errors import Category, DomainError, Reason
from libs.platform import bounds, identity, metrics
from libs.platform.access import OPEN_PREFIXES, authorise
from libs.platform.db import is_unreachable
from libs.platform.drain import Drain
from libs.platform.errors import CODE_OF, STATUS_DETAILS_KEY, status_for, status_for_internal
from libs.platform.identity import Principal, Role, reset_caller, set_caller
from libs.platform.logs import get_logger

_log = get_logger("medsettle.rpc")
_tracer = trace.get_tracer("medsettle.rpc")


def _trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """``tls_identity``: the server verified the client's certificate, whose URI SAN is the caller
    (a gateway's certificate vouches for the caller named in the identity headers). Otherwise
    the identity headers are trusted from loopback peers only (``trust_loopback_headers``)."""

    def __init__(
        self,
        *,
        tls_identity: bool = False,
        trust_loopback_headers: bool = True,
        trust_any_headers: bool = False,
        drain: Drain | None = None,
    ) -> None:
        self._drain = drain or Drain()
        self._tls_identity = tls_identity
        self._trust_headers = trust_loopback_headers
        self._trust_any = trust_any_headers

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        # The generated deserializer would answer bytes that do not parse (invalid UTF-8 in a
        # string included) UNKNOWN without ErrorInfo, before any interceptor code runs: take the
        # raw bytes instead and parse them inside the wrapper, where every error is translated.
        parse = handler.request_deserializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, details.method, parse),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, details.method, parse),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return handler  # client/bidi streaming: none in the v1 contracts

    def _principal(self, context: grpc.aio.ServicerContext[Any, Any], pairs: Any) -> Principal | None:
        if self._tls_identity:
            pem = context.auth_context().get("x509_pem_cert")
            if not pem:
                raise DomainError(Reason.INSTITUTION_IDENTITY_MISSING, "no verified client certificate")
            peer = identity.from_certificate(bytes(pem[0]))
            if peer.role is Role.GATEWAY:
                # the gateway verified the caller's certificate and names it in the headers
                return identity.from_headers(pairs)
            return peer  # the certificate is the caller; headers it sent are not consulted
        if self._trust_any or (self._trust_headers and identity.is_loopback_peer(context.peer() or "")):
            return identity.from_headers(pairs)
        if any(k in identity.IDENTITY_HEADERS for k, _ in pairs):
            raise DomainError(
                Reason.CALLER_IDENTITY_INVALID,
                "identity headers are trusted only from loopback peers when the server has no mTLS",
            )
        return None

    def _admit(self, context: grpc.aio.ServicerContext[Any, Any], method: str, raw: Any, parse: Any) -> Any:
        """The request parsed and within its bounds, from a caller the access table admits."""
        request = _parse(raw, parse)
        if isinstance(request, Message):  # (a method registered without a message type gets bytes)
            _bind_request_id(request)
            bounds.check(request)  # before access control, whose errors may name request fields
        set_caller(self._authorise(context, method, request))
        return request

    def _authorise(self, context: grpc.aio.ServicerContext[Any, Any], method: str, request: Any) -> Principal:
        pairs = tuple(context.invocation_metadata() or ())
        principal = self._principal(context, pairs)
        authorise(method, principal, request)
        assert principal is not None
        return principal

    def _wrap_unary(self, behaviour: Any, method: str, parse: Any) -> Any:
        async def wrapped(raw: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            md = dict(context.invocation_metadata() or ())
            token = set_caller(None)
            log_context = structlog.contextvars.bind_contextvars(rpc_method=method)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            with _tracer.start_as_current_span(
                method.lstrip("/"), context=propagate.extract(md), kind=SpanKind.SERVER
            ) as span:
                drain, trace_id = self._drain, span.get_span_context().trace_id
                drain.enter(trace_id)
                try:
                    if drain.refuses(trace_id):
                        raise _draining(method)
                    request = self._admit(context, method, raw, parse)
                    return await behaviour(request, context)
                except DomainError as err:
                    code = CODE_OF[err.category]  # set before the abort, which raises
                    await _abort_domain(context, span, method, err)
                except grpc.aio.AbortError:
                    code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[assignment]
                    raise
                except Exception as exc:  # noqa: BLE001 - every unknown error becomes INTERNAL
                    code = grpc.StatusCode.UNAVAILABLE if is_unreachable(exc) else grpc.StatusCode.INTERNAL
                    await _abort_internal(context, span, method, exc)
                finally:
                    drain.leave(trace_id)
                    _drained(drain, method, code, started)
                    metrics.observe_rpc(method, code.name, time.perf_counter() - started)
                    reset_caller(token)
                    structlog.contextvars.reset_contextvars(**log_context)
                    structlog.contextvars.unbind_contextvars("request_id")

        return wrapped

    def _wrap_stream(self, behaviour: Any, method: str, parse: Any) -> Any:
        async def wrapped(raw: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            md = dict(context.invocation_metadata() or ())
            token = set_caller(None)
            log_context = structlog.contextvars.bind_contextvars(rpc_method=method)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            with _tracer.start_as_current_span(
                method.lstrip("/"), context=propagate.extract(md), kind=SpanKind.SERVER
            ) as span:
                drain, trace_id = self._drain, span.get_span_context().trace_id
                drain.enter(trace_id)
                try:
                    if drain.refuses(trace_id):
                        raise _draining(method)
                    request = self._admit(context, method, raw, parse)
                    async for item in behaviour(request, context):
                        yield item
                except DomainError as err:
                    code = CODE_OF[err.category]  # set before the abort, which raises
                    await _abort_domain(context, span, method, err)
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every unknown error becomes INTERNAL
                    code = grpc.StatusCode.UNAVAILABLE if is_unreachable(exc) else grpc.StatusCode.INTERNAL
                    await _abort_internal(context, span, method, exc)
                finally:
                    drain.leave(trace_id)
                    _drained(drain, method, code, started)
                    metrics.observe_rpc(method, code.name, time.perf_counter() - started)
                    reset_caller(token)
                    structlog.contextvars.reset_contextvars(**log_context)
                    structlog.contextvars.unbind_contextvars("request_id")

        return wrapped


def _parse(raw: Any, parse: Any) -> Any:
    if parse is None or not isinstance(raw, bytes):
        return raw  # already a message (a handler without a deserializer)
    try:
        return parse(raw)
    except Exception as exc:
        raise DomainError(
            Reason.REQUEST_UNPARSEABLE, "the request does not parse as the method's request message"
        ) from exc


def _bind_request_id(request: Any) -> None:
    """Every log line of the call names its request id (the caller's own, at most its bound)."""
    request_id = getattr(request, "request_id", "")
    if isinstance(request_id, str) and request_id:
        structlog.contextvars.bind_contextvars(request_id=request_id[: bounds.BY_NAME["request_id"].chars])


def _draining(method: str) -> DomainError:
    return DomainError(
        Reason.SERVER_DRAINING,
        "the server is shutting down; retry with the same request_id",
        metadata={"service": method.lstrip("/").split("/", 1)[0]},
    )


def _drained(drain: Drain, method: str, code: grpc.StatusCode, started: float) -> None:
    """While draining, every call that ends is logged: those refused and those that finished."""
    if drain.draining:
        _log.info(
            "rpc_ended_while_draining",
            method=method,
            code=code.name,
            seconds=round(time.perf_counter() - started, 3),
            in_flight=drain.in_flight,
        )


async def _abort_domain(
    context: grpc.aio.ServicerContext[Any, Any], span: trace.Span, method: str, err: DomainError
) -> grpc.StatusCode:
    code, status = status_for(err)
    if err.category is Category.INTERNAL:
        _log.error("rpc_failed_internal", method=method, reason=err.reason.value, error=err.message)
        span.set_status(Status(StatusCode.ERROR, err.reason.value))
    else:
        _log.info("rpc_refused", method=method, code=code.name, reason=err.reason.value)
    span.set_attribute("medsettle.reason", err.reason.value)
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    await context.abort(code, status.message, trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),))
    return code  # pragma: no cover - abort raises


def _stack(exc: BaseException) -> str:
    """Where an error happened, for the log: its frames and types, never its text (a database
    error's text quotes SQL and its parameters)."""
    parts: list[str] = []
    e: BaseException | None = exc
    while e is not None and len(parts) < 5:
        parts.append("".join(traceback.format_tb(e.__traceback__)) + type(e).__qualname__)
        e = e.__cause__ or e.__context__
    return "\n-- caused by --\n".join(parts)


async def _abort_internal(
    context: grpc.aio.ServicerContext[Any, Any], span: trace.Span, method: str, exc: Exception
) -> grpc.StatusCode:
    if is_unreachable(exc):  # a dependency that is down is UNAVAILABLE, not a bug
        unavailable = DomainError(
            Reason.DEPENDENCY_UNAVAILABLE, "a dependency is unavailable; retry", metadata={"dependency": "database"}
        )
        return await _abort_domain(context, span, method, unavailable)
    trace_id = _trace_id()
    _log.error("rpc_failed_internal", method=method, error_type=type(exc).__name__, stack=_stack(exc))
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    code, status = status_for_internal(trace_id)
    await context.abort(code, status.message, trailing_metadata=((STATUS_DETAILS_KEY, status.SerializeToString()),))
    return code  # pragma: no cover


def _with_trace_metadata(
    details: grpc.aio.ClientCallDetails, principal: str | None = None
) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if principal is not None:
        carrier[identity.PRINCIPAL_HEADER] = principal
    if not carrier:
        return details
    metadata = grpc.aio.Metadata(*(tuple(details.metadata or ())))
    for k, v in carrier.items():
        metadata[k] = v
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class ClientTraceInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Starts a CLIENT span per outgoing call and propagates the context in metadata; names the
    calling service in ``x-medsettle-principal`` when ``principal`` is given. grpc.aio files an
    interceptor under its first matching kind only: streams need :class:`ClientStreamInterceptor`."""

    def __init__(self, principal: str | None = None) -> None:
        self._principal = principal

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        name = details.method.decode() if isinstance(details.method, bytes) else details.method
        with _tracer.start_as_current_span(name.lstrip("/"), kind=SpanKind.CLIENT):
            call = await continuation(_with_trace_metadata(details, self._principal), request)
            await call  # finish inside the span
            return call


class ClientStreamInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    """The same metadata on server-streaming calls (the feeds)."""

    def __init__(self, principal: str | None = None) -> None:
        self._principal = principal

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_trace_metadata(details, self._principal), request)


def client_interceptors(principal: str | None = None) -> list[grpc.aio.ClientInterceptor]:
    return [ClientTraceInterceptor(principal), ClientStreamInterceptor(principal)]
