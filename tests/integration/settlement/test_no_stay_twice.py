"""No stay is paid twice: direct settlement and manual reimbursement exclude each other for the
same stay (person, institution, overlapping dates, hospital visit number); whichever comes second
is refused naming the first. A filing made after a self-paid discharge sends the stay to manual
reimbursement under the insured place's rules, end to end."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.filing.v1 import filing_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import (
    RESIDENT,
    RESIDENT_CARD,
    RETIREE_CARD,
    World,
    date,
    lines,
    md,
    open_visit,
    rpc_error,
    settle,
    setup_world,
    upload,
    wait_filed,
)

pytestmark = pytest.mark.db


def claim_request(
    w: World, rid: str, cred: types_pb2.Credential, admitted: dt.date, discharged: dt.date
) -> st.SubmitManualClaimRequest:
    return st.SubmitManualClaimRequest(
        request_id=rid,
        institution_code=HOSPITAL,
        hospital_visit_no=rid,
        credential=cred,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(admitted),
        discharge_date=date(discharged),
        diagnosis_codes=["K35.800"],
        lines=lines(24, 5, discharged),
        failure_reason="self-paid",
    )


async def test_a_claim_after_a_direct_settlement_of_the_same_stay_is_refused_naming_it(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    visit = await open_visit(w, "ns-open")
    await upload(w, "ns-up", visit.visit_id, lines(12, 1, w.day))
    s = await settle(w, "ns-settle", visit.visit_id)
    # another hospital visit number, overlapping dates: the same stay
    err = await rpc_error(
        w.c.settlement.SubmitManualClaim(claim_request(w, "ns-claim", RETIREE_CARD, w.day, w.day), metadata=md())
    )
    d = error_details(err)
    assert d.reason == "REASON_STAY_ALREADY_PAID", d
    assert d.metadata["settlement_id"] == s.settlement_id and d.metadata["visit_id"] == visit.visit_id
    # once the settlement is cancelled the stay is no longer paid: a claim may follow
    await w.c.settlement.CancelSettlement(
        st.CancelSettlementRequest(request_id="ns-cancel", settlement_id=s.settlement_id), metadata=md()
    )
    await w.c.settlement.CancelVisit(st.CancelVisitRequest(request_id="ns-cv", visit_id=visit.visit_id), metadata=md())
    claim = (
        await w.c.settlement.SubmitManualClaim(
            claim_request(w, "ns-claim-2", RETIREE_CARD, w.day - dt.timedelta(days=3), w.day - dt.timedelta(days=1)),
            metadata=md(),
        )
    ).claim
    # and then the direct settlement of the same stay comes second: refused naming the claim
    req = st.OpenVisitRequest(
        request_id="ns-open-2",
        institution_code=HOSPITAL,
        hospital_visit_no="ns-2",
        credential=RETIREE_CARD,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(w.day - dt.timedelta(days=2)),
        diagnosis_codes=["I63.900"],
    )
    d = error_details(await rpc_error(w.c.settlement.OpenVisit(req, metadata=md())))
    assert d.reason == "REASON_STAY_ALREADY_PAID" and d.metadata["claim_id"] == claim.claim_id, d
    # a stay that does not overlap is another stay
    req.request_id, req.hospital_visit_no = "ns-open-3", "ns-3"
    req.admission_date.CopyFrom(date(w.day))
    assert (await w.c.settlement.OpenVisit(req, metadata=md())).visit.visit_id


async def test_a_filing_after_a_self_paid_discharge_means_manual_reimbursement_not_direct(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    admitted, discharged = w.day - dt.timedelta(days=9), w.day - dt.timedelta(days=4)
    await w.c.filing.CreateFiling(
        filing_pb2.CreateFilingRequest(
            request_id="sp-filing",
            person_no=RESIDENT,
            insured_region_code="510100",
            treatment_region_code="310100",
            filing_type=types_pb2.FILING_TYPE_OTHER_TEMPORARY,
            insurance_type=types_pb2.INSURANCE_TYPE_RESIDENT,
            channel=filing_pb2.CHANNEL_APP,
            commitment_signed=True,
            start_date=date(w.day),
            end_date=date(w.day + dt.timedelta(days=200)),
            treatment_start_date=date(admitted),
            self_paid_discharged=True,
        )
    )
    await wait_filed(w.c, RESIDENT_CARD, w.day)
    dec = (
        await w.c.eligibility.CheckEligibility(
            el.CheckEligibilityRequest(
                credential=RESIDENT_CARD,
                institution_code=HOSPITAL,
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                service_date=date(admitted),
            )
        )
    ).decision
    assert dec.manual_reimbursement
    # the stay cannot be settled directly: it is reimbursed manually
    req = st.OpenVisitRequest(
        request_id="sp-open",
        institution_code=HOSPITAL,
        hospital_visit_no="sp-1",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(admitted),
        diagnosis_codes=["K35.800"],
    )
    d = error_details(await rpc_error(w.c.settlement.OpenVisit(req, metadata=md())))
    assert d.reason == "REASON_MANUAL_REIMBURSEMENT_REQUIRED", d
    assert d.metadata["filing_id"] == dec.filing_id
    claim = (
        await w.c.settlement.SubmitManualClaim(
            claim_request(w, "sp-claim", RESIDENT_CARD, admitted, discharged), metadata=md()
        )
    ).claim
    processed = (
        await w.c.claims.ProcessManualClaim(st.ProcessManualClaimRequest(request_id="sp-p", claim_id=claim.claim_id))
    ).claim
    # under the insured place's rules: Chengdu's resident policy, as filed (no temporary reduction
    # beyond the filing's own type)
    assert processed.reimbursement.policy_version.startswith("510100-resident")
    assert processed.reimbursed_fen == processed.reimbursement.fund_total_fen > 0
    # the same stay cannot come back for direct settlement after the claim either
    req.request_id = "sp-open-2"
    d = error_details(await rpc_error(w.c.settlement.OpenVisit(req, metadata=md())))
    assert d.reason in {"REASON_MANUAL_REIMBURSEMENT_REQUIRED", "REASON_STAY_ALREADY_PAID"}


async def test_open_visit_and_a_manual_claim_of_one_stay_racing_never_both_succeed(suite: Host) -> None:
    """OpenVisit and SubmitManualClaim of the same stay sent at the same moment: exactly one wins,
    the other is refused naming it (on PostgreSQL both checks ran concurrently before the stay
    lock, and both could pass)."""
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    rounds = 12
    for k in range(rounds):
        day = w.day - dt.timedelta(days=2 * k)
        open_req = st.OpenVisitRequest(
            request_id=f"race-open-{k}",
            institution_code=HOSPITAL,
            hospital_visit_no=f"race-{k}",
            credential=RETIREE_CARD,
            service_type=types_pb2.SERVICE_TYPE_INPATIENT,
            admission_date=date(day),
            diagnosis_codes=["I63.900"],
        )
        claim = claim_request(w, f"race-claim-{k}", RETIREE_CARD, day, day)
        claim.hospital_visit_no = f"race-{k}"
        answers = await asyncio.gather(
            w.c.settlement.OpenVisit(open_req, metadata=md()),
            w.c.settlement.SubmitManualClaim(claim, metadata=md()),
            return_exceptions=True,
        )
        won = [a for a in answers if not isinstance(a, BaseException)]
        lost = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
        assert len(won) == 1 and len(lost) == 1, answers
        reason = error_details(lost[0]).reason
        assert reason in ("REASON_STAY_ALREADY_PAID", "REASON_VISIT_STATE_INVALID"), reason
        if isinstance(won[0], st.OpenVisitResponse):  # the visit is cancelled so the next round is a new stay
            await w.c.settlement.CancelVisit(
                st.CancelVisitRequest(request_id=f"race-cv-{k}", visit_id=won[0].visit.visit_id), metadata=md()
            )


async def test_a_discharge_date_after_today_is_refused_at_settle_and_in_a_claim(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    visit = await open_visit(w, "fd-open")
    await upload(w, "fd-up", visit.visit_id, lines(6, 3, w.day))
    tomorrow = w.day + dt.timedelta(days=1)
    req = st.SettleRequest(request_id="fd-settle", institution_code=HOSPITAL, visit_id=visit.visit_id)
    req.discharge_date.CopyFrom(date(tomorrow))
    err = await rpc_error(w.c.settlement.Settle(req, metadata=md()))
    d = error_details(err)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and d.reason == "REASON_VALIDATION_FAILED", d
    assert [f.field for f in d.violations] == ["discharge_date"]
    # the refused call wrote nothing: the same request id settles once the date is true
    req.discharge_date.CopyFrom(date(w.day))
    assert (await w.c.settlement.Settle(req, metadata=md())).settlement.settlement_id
    err = await rpc_error(
        w.c.settlement.SubmitManualClaim(claim_request(w, "fd-claim", RESIDENT_CARD, w.day, tomorrow), metadata=md())
    )
    d = error_details(err)
    assert d.reason == "REASON_VALIDATION_FAILED" and [f.field for f in d.violations] == ["discharge_date"], d
