"""mTLS in the services themselves (a mesh without a sidecar): every service on its own port
with a server certificate and required client certificates, every peer call (eligibility ->
filing, settlement -> eligibility, clearing -> settlement) over mTLS with the MEDSETTLE_PEER_*
certificate, and the caller's institution taken from its certificate's CN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from libs.platform.host import Host
from libs.platform.settings import SERVICES, Settings
from medsettle.clearing.v1 import clearing_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from services.suite import build_host
from tests.conftest import free_port
from tests.e2e.flow import (
    OTHER_HOSPITAL,
    TlsClients,
    eligible_token,
    reason_of,
    rpc_error,
    seed,
    settle_inpatient,
    wait_until,
)
from tests.pki import Issued, Pki

pytestmark = pytest.mark.db

HEADER = "x-medsettle-institution"
GATEWAY = "urn:medsettle:gateway:edge"


@dataclass
class MtlsSuite:
    pki: Pki
    targets: dict[str, str]
    hosts: list[Host]
    tmp: Path

    def clients(self, client: Issued | None) -> TlsClients:
        return TlsClients(self.targets, self.pki.ca_pem, client)

    def parties(self) -> TlsClients:
        """The registry, the bureaus, the operator and the person's app, each named per call in
        the header under a gateway certificate (the one certificate trusted to name a caller)."""
        return TlsClients(self.targets, self.pki.ca_pem, self.pki.client(GATEWAY), parties=True)


@pytest.fixture
async def mtls(settings: Settings, tmp_path: Path) -> AsyncIterator[MtlsSuite]:
    pki = Pki(tmp_path / "pki")
    ports = {s: free_port() for s in SERVICES}
    targets = {s: f"127.0.0.1:{p}" for s, p in ports.items()}
    hosts: list[Host] = []
    try:
        for s in SERVICES:  # dependency order: filing, eligibility, settlement, clearing
            # server cert with the service's identity, also presented to peers
            identity = pki.server(f"svc-{s}", uri=f"urn:medsettle:service:{s}")
            service_settings = settings.model_copy(
                update={
                    "tls_cert_file": identity.cert_file,
                    "tls_key_file": identity.key_file,
                    "tls_client_ca_file": pki.ca_file,
                    "peer_ca_file": pki.ca_file,
                    "peer_cert_file": identity.cert_file,
                    "peer_key_file": identity.key_file,
                    **{f"{p}_target": t for p, t in targets.items() if p != "clearing"},
                }
            )
            host = build_host(service_settings, [s], port=ports[s], bind_host="127.0.0.1")
            await host.start()
            hosts.append(host)
        yield MtlsSuite(pki, targets, hosts, tmp_path)
    finally:
        for host in reversed(hosts):
            await host.stop(drain=False)


async def test_settlement_over_mtls_between_services(mtls: MtlsSuite) -> None:
    async with mtls.clients(mtls.pki.client(HOSPITAL)) as c, mtls.parties() as parties:
        await seed(parties, "mtls")
        # eligibility learns the filing through WatchFilings (eligibility -> filing over mTLS)
        token = await eligible_token(c, "mtls", app=parties)
        # OpenVisit calls CheckEligibility (settlement -> eligibility over mTLS)
        settled = await settle_inpatient(c, "mtls", token)
        assert settled.settlement.breakdown.fund_total_fen > 0

        # clearing follows StreamSettlements (clearing -> settlement over mTLS)
        async def ingested() -> bool:
            status = await parties.clearing.GetIngestStatus(clearing_pb2.GetIngestStatusRequest())
            return status.settlements_ingested >= 1

        assert await wait_until(ingested)


@pytest.mark.parametrize("who", ["no certificate", "expired certificate", "certificate from another CA", "plaintext"])
async def test_service_refuses_a_client_without_a_valid_certificate(mtls: MtlsSuite, who: str) -> None:
    request = st.GetSettlementRequest(institution_code=HOSPITAL, settlement_id="S-none")
    if who == "plaintext":
        async with grpc.aio.insecure_channel(mtls.targets["settlement"]) as ch:
            from medsettle.settlement.v1 import settlement_pb2_grpc

            err = await rpc_error(settlement_pb2_grpc.SettlementServiceStub(ch).GetSettlement(request, timeout=5))
    else:
        client = {
            "no certificate": None,
            "expired certificate": mtls.pki.expired_client(HOSPITAL),
            "certificate from another CA": Pki(mtls.tmp / "rogue", ca_name="rogue-ca").client(HOSPITAL),
        }[who]
        async with mtls.clients(client) as c:
            err = await rpc_error(c.settlement.GetSettlement(request, metadata=((HEADER, HOSPITAL),), timeout=5))
    # the TLS handshake fails: the call never reaches the service
    assert err.code() == grpc.StatusCode.UNAVAILABLE, (err.code(), err.details())
    assert reason_of(err) == ""


async def test_institution_comes_from_the_peer_certificate_and_a_forged_header_is_ignored(
    mtls: MtlsSuite,
) -> None:
    async with mtls.clients(mtls.pki.client(HOSPITAL)) as owner, mtls.parties() as parties:
        await seed(parties, "mtls-id")
        token = await eligible_token(owner, "mtls-id", app=parties)
        settled = await settle_inpatient(owner, "mtls-id", token, metadata=((HEADER, OTHER_HOSPITAL),))
        request = st.GetSettlementRequest(institution_code=HOSPITAL, settlement_id=settled.settlement.settlement_id)
        # the owner is itself whatever its header says
        got = await owner.settlement.GetSettlement(request, metadata=((HEADER, OTHER_HOSPITAL),))
        assert got.settlement.institution_code == HOSPITAL
    async with mtls.clients(mtls.pki.client(OTHER_HOSPITAL)) as other:
        err = await rpc_error(other.settlement.GetSettlement(request, metadata=((HEADER, HOSPITAL),)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(err) == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    # a service identity (urn:medsettle:service:clearing) is not an institution either
    svc = Issued(mtls.pki.dir / "server-svc-clearing.crt", mtls.pki.dir / "server-svc-clearing.key")
    async with mtls.clients(svc) as service:
        err = await rpc_error(service.settlement.GetSettlement(request, metadata=((HEADER, HOSPITAL),)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(err) == "REASON_ROLE_NOT_ALLOWED"
    # a certificate whose CN is an institution code but which carries no medsettle URI SAN is
    # nobody: the subject is never read
    async with mtls.clients(mtls.pki.client(HOSPITAL, uri=None)) as cn_only:
        err = await rpc_error(cn_only.settlement.GetSettlement(request))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err) == "REASON_CALLER_IDENTITY_INVALID"


async def test_a_trusted_proxy_names_the_institution_and_nobody_else_can(mtls: MtlsSuite) -> None:
    """Behind the gateway with service-side mTLS: the gateway's certificate is trusted to carry
    the hospital's identity in the header; any other certificate is the caller itself."""
    async with mtls.clients(mtls.pki.client(HOSPITAL)) as owner, mtls.parties() as parties:
        await seed(parties, "mtls-proxy")
        token = await eligible_token(owner, "mtls-proxy", app=parties)
        settled = await settle_inpatient(owner, "mtls-proxy", token)
    request = st.GetSettlementRequest(institution_code=HOSPITAL, settlement_id=settled.settlement.settlement_id)
    async with mtls.clients(mtls.pki.client(GATEWAY)) as gateway:
        got = await gateway.settlement.GetSettlement(request, metadata=((HEADER, HOSPITAL),))
        assert got.settlement.institution_code == HOSPITAL
        err = await rpc_error(gateway.settlement.GetSettlement(request, metadata=((HEADER, OTHER_HOSPITAL),)))
        assert reason_of(err) == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
        err = await rpc_error(gateway.settlement.GetSettlement(request))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        # the gateway passing on two identities is refused, not guessed at
        two = ((HEADER, HOSPITAL), ("x-medsettle-principal", "urn:medsettle:operator:national"))
        err = await rpc_error(gateway.settlement.GetSettlement(request, metadata=two))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason_of(err) == "REASON_CALLER_IDENTITY_AMBIGUOUS"
    async with mtls.clients(mtls.pki.client(OTHER_HOSPITAL)) as other:
        err = await rpc_error(other.settlement.GetSettlement(request, metadata=((HEADER, HOSPITAL),)))
    assert reason_of(err) == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
