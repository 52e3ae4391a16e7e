"""The deployment in miniature, started once for the e2e tests: the four services as separate
OS processes (plaintext behind the gateway, as in the cluster), nginx in front terminating the
hospitals' mTLS on one listener and the bureaus' and operator's (their own CA) on another, an
OTLP trace receiver the services export to, and settlement's Prometheus port.

Package-scoped because starting it costs seconds; the tests only add data (own request ids).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.propagators.textmap import DefaultSetter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from libs.platform import migrate
from libs.platform.settings import SERVICES
from services.demo import HOSPITAL, Clients
from tests.conftest import ServiceProcesses, _truncate, free_port, wait_serving
from tests.e2e.flow import OTHER_HOSPITAL, Settled, TlsClients, eligible_token, seed, settle_inpatient
from tests.e2e.nginx import Nginx, find_nginx
from tests.e2e.otlp import OtlpReceiver
from tests.pki import Issued, Pki

TREATMENT_BUREAU = "urn:medsettle:bureau:treatment:310100"


@dataclass
class Stack:
    pki: Pki
    hospital: Issued  # CN = HOSPITAL
    other_hospital: Issued  # CN = OTHER_HOSPITAL
    partner_pki: Pki  # the partner CA: bureaus and the operator
    treatment_bureau: Issued  # partner CA, CN = urn:medsettle:bureau:treatment:310100
    otlp: OtlpReceiver
    processes: ServiceProcesses
    gateway: Nginx
    metrics_port: int
    tmp: Path

    def clients(self, client: Issued | None) -> TlsClients:
        return TlsClients(self.gateway.target, self.pki.ca_pem, client)

    def partner_clients(self, client: Issued | None) -> TlsClients:
        """Through the gateway's partner listener (the server certificate is the same)."""
        return TlsClients(self.gateway.partner_target, self.pki.ca_pem, client)


@pytest.fixture(scope="package")
def e2e_db_urls(
    db_kind: str, pg_databases: dict[str, str] | None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    if pg_databases is not None:
        asyncio.run(_truncate(pg_databases))
        return dict(pg_databases)
    base = tmp_path_factory.mktemp("e2e-db")
    urls = {s: f"sqlite+aiosqlite:///{base / f'{s}.db'}" for s in SERVICES}
    for s, url in urls.items():
        migrate.upgrade(s, url)
    return urls


@pytest.fixture(scope="package")
def stack(e2e_db_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    find_nginx()  # skip (locally) or fail (CI) before starting anything
    tmp = tmp_path_factory.mktemp("e2e")
    pki = Pki(tmp / "pki")
    partner_pki = Pki(tmp / "partner-pki", ca_name="partner-ca")
    otlp = OtlpReceiver().start()
    metrics_port = free_port()
    procs = ServiceProcesses(
        e2e_db_urls,
        tmp,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans reach the receiver quickly
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        },
    )
    gateway = Nginx(
        tmp / "gateway",
        upstreams=procs.targets,
        tls_cert=pki.server("gateway").cert_file,
        tls_key=pki.dir / "server-gateway.key",
        client_ca=pki.ca_file,
        port=free_port(),
        partner_client_ca=partner_pki.ca_file,
        partner_port=free_port(),
    )
    try:
        for s in SERVICES:
            if s == "settlement":
                procs.env["MEDSETTLE_METRICS_PORT"] = str(metrics_port)
                procs.start(s)
                del procs.env["MEDSETTLE_METRICS_PORT"]
            else:
                procs.start(s)
        for s in SERVICES:
            wait_serving(procs.targets[s])
        gateway.start()
        yield Stack(
            pki=pki,
            hospital=pki.client(HOSPITAL),
            other_hospital=pki.client(OTHER_HOSPITAL),
            partner_pki=partner_pki,
            treatment_bureau=partner_pki.client(TREATMENT_BUREAU, cn=TREATMENT_BUREAU),
            otlp=otlp,
            processes=procs,
            gateway=gateway,
            metrics_port=metrics_port,
            tmp=tmp,
        )
    finally:
        gateway.stop()
        procs.stop_all()
        otlp.stop()


@dataclass(frozen=True)
class TracedSettlement:
    settled: Settled
    trace_id: str  # the trace the hospital started, 32 hex digits
    client_span_id: str


@pytest.fixture(scope="package")
def traced_settlement(stack: Stack) -> TracedSettlement:
    """The hospital settles a visit through the gateway inside a span of its own, sending the
    W3C ``traceparent`` with every call."""
    tracer = TracerProvider().get_tracer("hospital-his")  # local provider: the test's own process
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span("hospital_desk_settlement") as span:
        TraceContextTextMapPropagator().inject(carrier, setter=DefaultSetter())
        ctx = span.get_span_context()

    async def run() -> Settled:
        # the registry, the filing and the e-certificate are the bureaus' and the app's calls,
        # straight to the services on loopback; the hospital's go through the gateway
        parties = Clients(stack.processes.targets)
        try:
            async with stack.clients(stack.hospital) as c:
                await seed(parties, "e2e")  # type: ignore[arg-type]  # duck-typed: same stub attributes
                token = await eligible_token(c, "e2e", app=parties)
                return await settle_inpatient(c, "e2e", token, metadata=tuple(carrier.items()))
        finally:
            await parties.close()

    settled = asyncio.run(run())
    return TracedSettlement(settled, format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
