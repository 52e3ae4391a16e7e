"""Emergency rescue, retro-filing and the manual reimbursement fallback."""

from __future__ import annotations

import datetime as dt

import pytest

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.common.v1 import types_pb2
from medsettle.filing.v1 import filing_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import (
    RESIDENT,
    RESIDENT_CARD,
    date,
    lines,
    md,
    rpc_error,
    settle,
    setup_world,
    upload,
    wait_filed,
)

pytestmark = pytest.mark.db


async def test_unfiled_person_is_refused_with_guidance_and_no_visit(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    err = await rpc_error(
        w.c.settlement.OpenVisit(
            st.OpenVisitRequest(
                request_id="nf-1",
                institution_code=HOSPITAL,
                hospital_visit_no="nf-1",
                credential=RESIDENT_CARD,
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=date(w.day),
            ),
            metadata=md(),
        )
    )
    d = error_details(err)
    assert d.reason == "REASON_FILING_REQUIRED" and "file" in d.message


async def test_emergency_rescue_counts_as_filed_and_settles(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    visit = (
        await w.c.settlement.OpenVisit(
            st.OpenVisitRequest(
                request_id="em-1",
                institution_code=HOSPITAL,
                hospital_visit_no="em-1",
                credential=RESIDENT_CARD,
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=date(w.day),
                emergency=True,
            ),
            metadata=md(),
        )
    ).visit
    assert visit.filing_type == types_pb2.FILING_TYPE_EMERGENCY
    await upload(w, "em-up", visit.visit_id, lines(24, 7, w.day))
    s = await settle(w, "em-s", visit.visit_id)
    assert s.breakdown.fund_total_fen > 0


async def test_retro_filing_before_settlement_lets_the_visit_settle_directly(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    admitted = w.day - dt.timedelta(days=3)
    open_req = st.OpenVisitRequest(
        request_id="rf-open",
        institution_code=HOSPITAL,
        hospital_visit_no="rf-1",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(admitted),
    )
    err = await rpc_error(w.c.settlement.OpenVisit(open_req, metadata=md()))
    assert error_details(err).reason == "REASON_FILING_REQUIRED"
    await w.c.filing.CreateFiling(
        filing_pb2.CreateFilingRequest(
            request_id="rf-filing",
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
        )
    )
    await wait_filed(w.c, RESIDENT_CARD, admitted)
    open_req.request_id = "rf-open-2"
    visit = (await w.c.settlement.OpenVisit(open_req, metadata=md())).visit
    assert visit.filing_type == types_pb2.FILING_TYPE_OTHER_TEMPORARY
    await upload(w, "rf-up", visit.visit_id, lines(24, 8, w.day))
    assert (await settle(w, "rf-s", visit.visit_id)).breakdown.fund_total_fen > 0


async def test_manual_claim_when_direct_settlement_was_impossible(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    fees = lines(24, 9, w.day)
    claim = (
        await w.c.settlement.SubmitManualClaim(
            st.SubmitManualClaimRequest(
                request_id="mc-1",
                institution_code=HOSPITAL,
                hospital_visit_no="mc-1",
                credential=RESIDENT_CARD,
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=date(w.day),
                discharge_date=date(w.day),
                diagnosis_codes=["K35.800"],
                lines=fees,
                failure_reason="REASON_FILING_REQUIRED",
            ),
            metadata=md(),
        )
    ).claim
    assert claim.status == st.MANUAL_CLAIM_STATUS_SUBMITTED and claim.person_no == RESIDENT
    assert len(claim.lines) == 24 and list(claim.diagnosis_codes) == ["K35.800"]
    processed = (
        await w.c.claims.ProcessManualClaim(st.ProcessManualClaimRequest(request_id="mcp-1", claim_id=claim.claim_id))
    ).claim
    b = processed.reimbursement
    assert processed.status == st.MANUAL_CLAIM_STATUS_PROCESSED
    assert processed.reimbursed_fen == b.fund_total_fen > 0
    assert b.total_fen == b.fund_total_fen + b.personal_part_fen
    # processing twice is refused; the same request replays
    again = (
        await w.c.claims.ProcessManualClaim(st.ProcessManualClaimRequest(request_id="mcp-1", claim_id=claim.claim_id))
    ).claim
    assert again.reimbursed_fen == processed.reimbursed_fen
    err = await rpc_error(
        w.c.claims.ProcessManualClaim(st.ProcessManualClaimRequest(request_id="mcp-2", claim_id=claim.claim_id))
    )
    assert error_details(err).reason == "REASON_VISIT_STATE_INVALID"


async def test_trauma_needs_the_no_third_party_declaration(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    req = st.OpenVisitRequest(
        request_id="tr-1",
        institution_code=HOSPITAL,
        hospital_visit_no="tr-1",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(w.day),
        diagnosis_codes=["S72.001"],
    )
    err = await rpc_error(w.c.settlement.OpenVisit(req, metadata=md()))
    d = error_details(err)
    assert d.reason == "REASON_TRAUMA_DECLARATION_REQUIRED"
    assert [v.field for v in d.violations] == ["trauma_no_third_party_declared"]
    req.request_id, req.trauma_no_third_party_declared = "tr-2", True
    visit = (await w.c.settlement.OpenVisit(req, metadata=md())).visit
    assert visit.status == st.VISIT_STATUS_OPEN
