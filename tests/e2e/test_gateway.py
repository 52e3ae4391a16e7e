"""The local gateway (nginx, k8s/local-gateway) in front of the services as separate processes:
hospitals authenticate with client certificates, the certificate's CN is the institution the
services see, and nothing the client writes in the header changes that."""

from __future__ import annotations

import grpc
import pytest

from medsettle.clearing.v1 import clearing_pb2
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.e2e.conftest import Stack, TracedSettlement
from tests.e2e.flow import OTHER_HOSPITAL, TlsClients, reason_of, rpc_error
from tests.pki import Pki

pytestmark = [pytest.mark.db, pytest.mark.slow]

INSTITUTION_HEADER = "x-medsettle-institution"


async def test_hospital_settles_through_the_gateway_with_its_client_certificate(
    traced_settlement: TracedSettlement, stack: Stack
) -> None:
    s = traced_settlement.settled.settlement
    assert s.settlement_id and s.breakdown.total_fen > 0 and s.breakdown.fund_total_fen > 0
    assert s.institution_code == HOSPITAL
    # the settlement is readable through the gateway by the hospital that owns it
    async with stack.clients(stack.hospital) as c:
        got = await c.settlement.GetSettlement(
            st.GetSettlementRequest(institution_code=HOSPITAL, settlement_id=s.settlement_id)
        )
    assert got.settlement.settlement_id == s.settlement_id
    assert got.settlement.breakdown.total_fen == s.breakdown.total_fen


@pytest.mark.parametrize("who", ["no certificate", "expired certificate", "certificate from another CA"])
async def test_gateway_refuses_a_hospital_without_a_valid_certificate(stack: Stack, who: str) -> None:
    if who == "no certificate":
        client = None
    elif who == "expired certificate":
        client = stack.pki.expired_client(HOSPITAL)
    else:
        client = Pki(stack.tmp / "rogue-ca", ca_name="rogue-ca").client(HOSPITAL)
    async with TlsClients(stack.gateway.target, stack.pki.ca_pem, client) as c:
        err = await rpc_error(
            c.settlement.GetSettlement(
                st.GetSettlementRequest(institution_code=HOSPITAL, settlement_id="S-none"),
                metadata=((INSTITUTION_HEADER, HOSPITAL),),
                timeout=5,
            )
        )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())


async def test_certificate_identity_wins_over_a_forged_institution_header(
    traced_settlement: TracedSettlement, stack: Stack
) -> None:
    settlement_id = traced_settlement.settled.settlement.settlement_id
    request = st.GetSettlementRequest(institution_code=HOSPITAL, settlement_id=settlement_id)
    # Another hospital, claiming in the header to be the owner: the gateway overwrites the header
    # with its certificate's CN and the service refuses.
    async with stack.clients(stack.other_hospital) as c:
        err = await rpc_error(c.settlement.GetSettlement(request, metadata=((INSTITUTION_HEADER, HOSPITAL),)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(err) == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    # The owner, forging the other hospital's code in the header: still itself, still allowed.
    async with stack.clients(stack.hospital) as c:
        ok = await c.settlement.GetSettlement(request, metadata=((INSTITUTION_HEADER, OTHER_HOSPITAL),))
    assert ok.settlement.settlement_id == settlement_id


async def test_hospital_cannot_act_for_another_institution(traced_settlement: TracedSettlement, stack: Stack) -> None:
    """CN=HOSPITAL opening a visit as OTHER_HOSPITAL (a real, networked hospital), header forged too."""
    async with stack.clients(stack.hospital) as c:
        err = await rpc_error(
            c.settlement.OpenVisit(
                st.OpenVisitRequest(
                    request_id="e2e-impersonate-open",
                    institution_code=OTHER_HOSPITAL,
                    hospital_visit_no="e2e-impersonate",
                    credential=types_pb2.Credential(ecert_token=traced_settlement.settled.ecert_token),
                    service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                    admission_date=traced_settlement.settled.settlement.settle_date,
                    diagnosis_codes=["I63.900"],
                ),
                metadata=((INSTITUTION_HEADER, OTHER_HOSPITAL),),
            )
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(err) == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"


async def test_clearing_is_not_reachable_through_the_gateway(stack: Stack) -> None:
    async with stack.clients(stack.hospital) as c:
        err = await rpc_error(c.clearing.GetIngestStatus(clearing_pb2.GetIngestStatusRequest(), timeout=5))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_hospital_reconciles_its_own_day_through_the_gateway_and_no_one_elses(
    traced_settlement: TracedSettlement, stack: Stack
) -> None:
    s = traced_settlement.settled.settlement
    totals = [
        clearing_pb2.Totals(
            count=1,
            medical_total_fen=s.breakdown.total_fen,
            fund_total_fen=s.breakdown.fund_total_fen,
            personal_account_fen=s.breakdown.personal_account_fen,
        )
    ]
    own = clearing_pb2.ReconcileDailyRequest(
        request_id="e2e-recon-own", institution_code=HOSPITAL, date=s.settle_date, totals=totals
    )
    other = clearing_pb2.ReconcileDailyRequest(
        request_id="e2e-recon-other", institution_code=OTHER_HOSPITAL, date=s.settle_date, totals=totals
    )
    async with stack.clients(stack.hospital) as c:
        answer = await c.clearing.ReconcileDaily(own, timeout=10)
        err = await rpc_error(c.clearing.ReconcileDaily(other, timeout=10))
        # and the rest of clearing stays shut at the edge
        shut = await rpc_error(
            c.clearing.RunMonthlyClearing(clearing_pb2.RunMonthlyClearingRequest(request_id="e2e-run"), timeout=5)
        )
    # answered (matched once clearing has ingested the day's settlement, else with differences)
    assert answer.matched or answer.differences
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(err) == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    assert shut.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_bureau_reaches_its_methods_on_the_partner_listener_only(
    traced_settlement: TracedSettlement, stack: Stack
) -> None:
    """The partner listener (its own port and client CA) names the bureau from its certificate;
    the hospital listener refuses the bureau's certificate, the partner listener the hospital's,
    each with a gRPC status."""
    from medsettle.eligibility.v1 import eligibility_pb2
    from medsettle.filing.v1 import filing_pb2

    get_institution = eligibility_pb2.GetInstitutionRequest(institution_code=HOSPITAL)
    list_filings = filing_pb2.ListFilingsRequest(treatment_region_code="310100", page_size=50)
    async with stack.partner_clients(stack.treatment_bureau) as c:
        got = await c.eligibility.GetInstitution(get_institution, timeout=10)
        filings = await c.filing.ListFilings(list_filings, timeout=10)
        # a hospital's desk method is not on the partner listener
        shut = await rpc_error(
            c.settlement.GetSettlement(
                st.GetSettlementRequest(
                    institution_code=HOSPITAL, settlement_id=traced_settlement.settled.settlement.settlement_id
                ),
                timeout=5,
            )
        )
    assert got.institution.institution_code == HOSPITAL
    assert filings.filings and all(f.treatment_region_code.startswith("31") for f in filings.filings)
    assert shut.code() == grpc.StatusCode.UNIMPLEMENTED and shut.details() == "method not routed to partners"
    # the bureau's certificate on the hospital listener, the hospital's on the partner listener
    async with stack.clients(stack.treatment_bureau) as c:
        err = await rpc_error(c.eligibility.GetInstitution(get_institution, timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
    async with stack.partner_clients(stack.hospital) as c:
        err = await rpc_error(c.eligibility.GetInstitution(get_institution, timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (err.code(), err.details())
    # and a bureau's filing method stays shut on the hospital listener
    async with stack.clients(stack.hospital) as c:
        err = await rpc_error(c.filing.ListFilings(list_filings, timeout=5))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_hospital_reads_its_own_clearing_results_and_payments_through_the_gateway(
    traced_settlement: TracedSettlement, stack: Stack
) -> None:
    """National 3203/3204 through the hospital listener: its own answered (once clearing has
    ingested the day's settlement, its fund part is in the month's lines), another's refused."""
    from tests.e2e.flow import wait_until

    s = traced_settlement.settled.settlement
    month = types_pb2.Month(year=s.settle_date.year, month=s.settle_date.month)
    own = clearing_pb2.GetInstitutionClearingRequest(institution_code=HOSPITAL, month=month)
    async with stack.clients(stack.hospital) as c:
        seen: list[clearing_pb2.GetInstitutionClearingResponse] = []

        async def cleared() -> bool:
            seen.append(await c.clearing.GetInstitutionClearing(own, timeout=10))
            return seen[-1].fund_total_fen >= s.breakdown.fund_total_fen

        assert await wait_until(cleared, within_seconds=20), seen[-1]
        got = seen[-1]
        paid = await c.clearing.ListInstitutionPayments(
            clearing_pb2.ListInstitutionPaymentsRequest(institution_code=HOSPITAL), timeout=10
        )
        errors = [
            await rpc_error(
                c.clearing.GetInstitutionClearing(
                    clearing_pb2.GetInstitutionClearingRequest(institution_code=OTHER_HOSPITAL, month=month), timeout=10
                )
            ),
            await rpc_error(
                c.clearing.ListInstitutionPayments(
                    clearing_pb2.ListInstitutionPaymentsRequest(institution_code=OTHER_HOSPITAL), timeout=10
                )
            ),
        ]
    assert got.institution_code == HOSPITAL and got.treatment_province_code == HOSPITAL[1:3]
    assert paid.institution_code == HOSPITAL and paid.owed_fen >= s.breakdown.fund_total_fen
    for err in errors:
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(err) == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
