"""A hospital's settlement over TLS: clients with a client certificate, and the calls of
services/demo.py (registry, filing, e-certificate, OpenVisit -> UploadFees -> Settle) with
whatever extra metadata the test wants to send (traceparent, a forged institution header)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from libs.platform.errors import error_details
from medsettle.clearing.v1 import clearing_pb2_grpc
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.eligibility.v1 import eligibility_pb2_grpc
from medsettle.filing.v1 import filing_pb2, filing_pb2_grpc
from medsettle.settlement.v1 import settlement_pb2 as st
from medsettle.settlement.v1 import settlement_pb2_grpc
from services.demo import HOSPITAL, acting_parties, fee_lines, seed_registry, wait_eligible
from tests.dates import TEST_DAY
from tests.pki import Issued

OTHER_HOSPITAL = "H31010400002"  # a second designated hospital in Shanghai
Metadata = Sequence[tuple[str, str]]


def credentials(ca_pem: bytes, client: Issued | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )


class TlsClients:
    """Stubs for the services, over TLS, all through one target (the gateway) or one per service."""

    def __init__(
        self, targets: str | dict[str, str], ca_pem: bytes, client: Issued | None, *, parties: bool = False
    ) -> None:
        """``parties``: name the acting party of each call in the identity header (believed only
        from a gateway certificate: ``client`` should be one)."""
        if isinstance(targets, str):
            targets = dict.fromkeys(("filing", "eligibility", "settlement", "clearing"), targets)
        creds = credentials(ca_pem, client)
        interceptors = acting_parties() if parties else None
        self._channels = {
            name: grpc.aio.secure_channel(t, creds, interceptors=interceptors) for name, t in targets.items()
        }
        self.filing = filing_pb2_grpc.FilingServiceStub(self._channels["filing"])
        self.eligibility = eligibility_pb2_grpc.EligibilityServiceStub(self._channels["eligibility"])
        self.settlement = settlement_pb2_grpc.SettlementServiceStub(self._channels["settlement"])
        self.clearing = clearing_pb2_grpc.ClearingServiceStub(self._channels["clearing"])

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()

    async def __aenter__(self) -> TlsClients:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


def _date(d: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=d.year, month=d.month, day=d.day)


@dataclass(frozen=True)
class Settled:
    visit_id: str
    settlement: st.Settlement
    ecert_token: str


async def seed(c: TlsClients, tag: str) -> None:
    """Registry (regions, two hospitals, two persons) and the Beijing retiree's filing for Shanghai,
    each made by its own party: ``c`` must present acting parties (``parties=True``)."""
    await seed_registry(c, tag)  # type: ignore[arg-type]  # duck-typed: same stub attributes
    await c.eligibility.UpsertInstitution(
        el.UpsertInstitutionRequest(
            request_id=f"{tag}-inst-2",
            institution=el.Institution(
                institution_code=OTHER_HOSPITAL,
                name="Shanghai Huashan Hospital (test)",
                region_code="310100",
                level=el.INSTITUTION_LEVEL_TIER_3,
                networked_services=[types_pb2.SERVICE_TYPE_INPATIENT, types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT],
            ),
        )
    )
    today = TEST_DAY
    await c.filing.CreateFiling(
        filing_pb2.CreateFilingRequest(
            request_id=f"{tag}-filing-1",
            person_no="P110100000001",
            insured_region_code="110100",
            treatment_region_code="310100",
            filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE,
            insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
            channel=filing_pb2.CHANNEL_APP,
            commitment_signed=True,
            start_date=_date(today),
        )
    )


async def eligible_token(c: TlsClients, tag: str, hospital: str = HOSPITAL, *, app: object = None) -> str:
    """The retiree's app (``app``, default ``c``) issues her e-certificate; the hospital (``c``)
    waits until eligibility has seen her filing."""
    today = TEST_DAY
    issuer: TlsClients = app or c  # type: ignore[assignment]
    cert = await issuer.eligibility.IssueECertificate(
        el.IssueECertificateRequest(
            request_id=f"{tag}-ecert", person_no="P110100000001", id_number="110105195403120027"
        )
    )
    decision = await wait_eligible(
        c,  # type: ignore[arg-type]
        el.CheckEligibilityRequest(
            credential=types_pb2.Credential(ecert_token=cert.token),
            institution_code=hospital,
            service_type=types_pb2.SERVICE_TYPE_INPATIENT,
            service_date=_date(today),
        ),
    )
    assert decision.eligible, list(decision.reasons)
    return str(cert.token)


async def settle_inpatient(
    c: TlsClients, tag: str, token: str, *, hospital: str = HOSPITAL, metadata: Metadata = ()
) -> Settled:
    """OpenVisit -> UploadFees -> Settle for ``hospital``, each call with ``metadata``."""
    today = TEST_DAY
    md = tuple(metadata)
    visit = (
        await c.settlement.OpenVisit(
            st.OpenVisitRequest(
                request_id=f"{tag}-open",
                institution_code=hospital,
                hospital_visit_no=f"{tag}-ZY0001",
                credential=types_pb2.Credential(ecert_token=token),
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=_date(today),
                diagnosis_codes=["I63.900"],
            ),
            metadata=md,
        )
    ).visit
    await c.settlement.UploadFees(
        st.UploadFeesRequest(
            request_id=f"{tag}-fees",
            institution_code=hospital,
            visit_id=visit.visit_id,
            lines=fee_lines(12, 3, "310100", today),
        ),
        metadata=md,
    )
    settled = (
        await c.settlement.Settle(
            st.SettleRequest(
                request_id=f"{tag}-settle",
                institution_code=hospital,
                visit_id=visit.visit_id,
                use_personal_account=True,
                discharge_date=_date(today),
            ),
            metadata=md,
        )
    ).settlement
    return Settled(visit.visit_id, settled, token)


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    """Awaits a call that must fail and returns its error."""
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError("the call succeeded")


def reason_of(err: grpc.aio.AioRpcError) -> str:
    return error_details(err).reason


async def wait_until(predicate, within_seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within_seconds
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
