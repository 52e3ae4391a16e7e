"""The gRPC host: one grpc.aio server carrying one or more service modules.

Start-up: every health name answers NOT_SERVING until the modules have started; then SERVING.
With ``MEDSETTLE_HEALTH_PORT`` a second, plaintext server on that port answers the same health
statuses and nothing else (probes that speak no TLS, while the main port requires mTLS).
Readiness: while a module's own database does not answer (checked every
``db_probe_seconds``), that module's health names and the server's ("") answer NOT_SERVING, and
SERVING again by themselves once it answers; the database logs one line per change.
Shutdown (SIGTERM/SIGINT or :meth:`Host.stop`): health flips to NOT_SERVING, the host waits
``drain_seconds`` so load balancers notice (calls are still served), then answers every new call
UNAVAILABLE with REASON_SERVER_DRAINING, lets the calls in flight finish (at most
``grace_seconds``; each call that ends meanwhile is logged), stops background tasks and the
server. Streams end themselves when ``runtime.stopping`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from libs.platform.drain import Drain
from libs.platform.interceptors import ServerInterceptor
from libs.platform.logs import get_logger
from libs.platform.reflection import ReflectionServicer
from libs.platform.settings import Settings

_log = get_logger("medsettle.host")

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
]


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """SERVER_OPTIONS plus the connection limits of the settings (MEDSETTLE_GRPC_*): keepalive
    pings, idle and age limits, and the handshake time, so that no dead, idle or half-opened
    connection is held for ever."""

    def ms(seconds: float) -> int:
        return int(seconds * 1000)

    s = settings
    return [
        *SERVER_OPTIONS,
        ("grpc.keepalive_time_ms", ms(s.grpc_keepalive_seconds)),
        ("grpc.keepalive_timeout_ms", ms(s.grpc_keepalive_timeout_seconds)),
        ("grpc.max_connection_idle_ms", ms(s.grpc_max_idle_seconds)),
        ("grpc.max_connection_age_ms", ms(s.grpc_max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", ms(s.grpc_max_connection_age_grace_seconds)),
        ("grpc.server_handshake_timeout_ms", ms(s.grpc_handshake_seconds)),
    ]


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """A module's background tasks stopped: each cancelled, then each waited for until it has
    ended; the list is emptied."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
    tasks.clear()


@dataclass
class Runtime:
    """What a module learns once the server is bound."""

    settings: Settings
    port: int
    hosted: frozenset[str]
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def self_target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def peer_target(self, service: str) -> str:
        """The configured target of a peer; a peer hosted here is reached on our own port."""
        return self.settings.target(service, self.self_target if service in self.hosted else None)


class ServiceModule(Protocol):
    name: str
    grpc_service_names: tuple[str, ...]

    def register(self, server: grpc.aio.Server) -> None: ...

    async def start(self, runtime: Runtime) -> None: ...

    async def stop_tasks(self) -> None: ...

    async def close(self) -> None: ...


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _enable_reflection(service_names: list[str], server: grpc.aio.Server) -> None:
    """Reflection under both names: grpc.reflection.v1 (grpcurl >= 1.9, grpc-go, Java, .NET) and
    v1alpha (older clients). grpcio-reflection ships only v1alpha; v1's messages are the same
    on the wire (same fields, same numbers), so one servicer answers both. It answers the
    medsettle files with their comments (libs/platform/reflection.py)."""
    servicer = ReflectionServicer(service_names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, handlers),))


class Host:
    def __init__(
        self,
        settings: Settings,
        modules: Sequence[ServiceModule],
        *,
        port: int,
        bind_host: str = "127.0.0.1",
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: bind with SO_REUSEPORT, for several worker processes on one port
        (``medsettle serve --workers``); otherwise a port in use is an error."""
        self.settings = settings
        self.reuse_port = reuse_port
        self.modules = list(modules)
        self.requested_port = port
        self.bind_host = bind_host
        self.port = 0
        self.runtime: Runtime | None = None
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self.health_port = 0
        self._health = health.aio.HealthServicer()
        self._stopped = asyncio.Event()
        self._stop_lock = asyncio.Lock()
        self._probe: asyncio.Task[None] | None = None
        self._drain = Drain()
        self._ready: dict[str, bool] = {}

    def _options(self, options: list[tuple[str, int]]) -> list[tuple[str, int]]:
        reuse = int(self.reuse_port)
        return [(k, reuse if k == "grpc.so_reuseport" else v) for k, v in options]

    @property
    def health_names(self) -> list[str]:
        return ["", *[n for m in self.modules for n in m.grpc_service_names]]

    def _credentials(self) -> grpc.ServerCredentials | None:
        s = self.settings
        if s.tls_cert_file is None or s.tls_key_file is None:
            return None
        return grpc.ssl_server_credentials(
            [(s.tls_key_file.read_bytes(), s.tls_cert_file.read_bytes())],
            root_certificates=s.tls_client_ca_file.read_bytes() if s.tls_client_ca_file else None,
            require_client_auth=s.tls_client_ca_file is not None,
        )

    async def start(self) -> None:
        creds = self._credentials()
        mtls = creds is not None and self.settings.tls_client_ca_file is not None
        headers = self.settings.identity_headers
        server = grpc.aio.server(
            interceptors=[
                ServerInterceptor(
                    tls_identity=mtls,
                    trust_loopback_headers=headers != "never",
                    trust_any_headers=headers == "any",
                    drain=self._drain,
                )
            ],
            options=self._options(server_options(self.settings)),
        )
        if mtls:
            _log.info("identity_from_client_certificates", detail="the caller is the certificate's urn:medsettle URI")
        elif headers == "never":
            _log.warning("identity_none", detail="no mTLS and identity headers are not trusted: every call is refused")
        elif headers == "any":
            _log.warning(
                "identity_from_headers_from_any_peer",
                detail="no mTLS: identity headers are trusted from every peer; only behind a mesh that authenticates",
            )
        else:
            _log.warning(
                "identity_from_headers_on_loopback_only",
                detail="no mTLS: identity headers are trusted only from loopback peers; other callers are refused",
            )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for module in self.modules:
            module.register(server)
        _enable_reflection(
            [
                *self.health_names[1:],
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                REFLECTION_V1,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        for name in self.health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{self.bind_host}:{self.requested_port}"
        self.port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        await server.start()
        self._server = server
        if self.settings.health_port is not None:
            await self._start_health_listener()
        self.runtime = Runtime(self.settings, self.port, frozenset(m.name for m in self.modules))
        try:
            for module in self.modules:
                await module.start(self.runtime)
        except BaseException:
            await self.stop(drain=False)
            raise
        for name in self.health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._ready = {m.name: True for m in self.modules}
        self._probe = asyncio.create_task(self._probe_databases(), name="db-probe")
        _log.info("server_started", port=self.port, services=[m.name for m in self.modules], tls=creds is not None)

    async def _start_health_listener(self) -> None:
        """Plaintext, health only: the same servicer as the main port, so both report alike."""
        health_server = grpc.aio.server(options=self._options(SERVER_OPTIONS))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, health_server)
        self.health_port = health_server.add_insecure_port(f"{self.bind_host}:{self.settings.health_port}")
        await health_server.start()
        self._health_server = health_server
        _log.info("health_listener_started", port=self.health_port, detail="plaintext, grpc.health.v1.Health only")

    async def stop(self, *, drain: bool = True) -> None:
        async with self._stop_lock:
            if self._stopped.is_set():
                return
            if self._probe is not None:
                self._probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._probe
                self._probe = None
            await self._health.enter_graceful_shutdown()
            _log.info("server_draining", port=self.port, drain_seconds=self.settings.drain_seconds)
            if drain and self.settings.drain_seconds:
                await asyncio.sleep(self.settings.drain_seconds)
            # From here on new calls are answered UNAVAILABLE (REASON_SERVER_DRAINING), not
            # cancelled; the calls in flight get the grace period to finish, and streams end.
            loop = asyncio.get_running_loop()
            began = loop.time()
            self._drain.draining = True
            _log.info("server_refusing_new_calls", port=self.port, in_flight=self._drain.in_flight)
            if self.runtime is not None:
                self.runtime.stopping.set()
            idle = await self._drain.wait_idle(self.settings.grace_seconds)
            # Keep answering stragglers with the reason for a moment even when idle: a call that
            # reaches the server only once it stops could be cancelled by gRPC without a reason.
            await asyncio.sleep(min(self.settings.drain_seconds, 1.0) if drain else 0.0)
            _log.info(
                "server_drained" if idle else "server_grace_ran_out",
                port=self.port,
                in_flight=self._drain.in_flight,
                seconds=round(loop.time() - began, 3),
            )
            for module in reversed(self.modules):
                await module.stop_tasks()
            if self._server is not None:
                await self._server.stop(max(0.0, self.settings.grace_seconds - (loop.time() - began)))
            if self._health_server is not None:
                await self._health_server.stop(0)
            for module in reversed(self.modules):
                await module.close()
            self._stopped.set()
            _log.info("server_stopped", port=self.port)

    async def _probe_databases(self) -> None:
        """Readiness follows each module's own database (see the module's docstring)."""
        s = self.settings
        while True:
            await asyncio.sleep(s.db_probe_seconds)
            for module in self.modules:
                db = getattr(module, "db", None)
                if db is None:
                    continue
                ok = await db.ping(within=s.db_connect_timeout_seconds)
                if ok != self._ready.get(module.name, True):
                    self._ready[module.name] = ok
                    await self._set_health(module.grpc_service_names, ok)
                    await self._set_health(("",), all(self._ready.values()))

    async def _set_health(self, names: Sequence[str], ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in names:
            await self._health.set(name, status)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        await self.start()
        # Everything loaded so far (modules, descriptors, policies, catalogues) lives as long as
        # the process: keep it out of the collector's full passes (measured: half the GC time
        # of a settlement benchmark).
        gc.freeze()
        await stop_requested.wait()
        _log.info("shutdown_requested")
        await self.stop()
