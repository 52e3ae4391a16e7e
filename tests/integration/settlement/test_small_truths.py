"""Small truths: fee totals use the one rounding helper (refund lines included); SettleOutpatient
answers with the visit as stored; ReverseTransaction of a request that cannot be reversed says so."""

from __future__ import annotations

from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.policy.money import round_half_up
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import (
    RESIDENT_CARD,
    date,
    lines,
    md,
    open_visit,
    rpc_error,
    setup_world,
    upload,
)


async def test_fee_total_rounds_refund_lines_half_away_from_zero(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "ft-open")
    fees = lines(6, 3, w.day)
    refunds = []
    for i, ln in enumerate(fees[:3]):
        r = st.FeeLine()
        r.CopyFrom(ln)
        r.line_no, r.quantity_milli, r.refund_of_line_no = 100 + i, -333, ln.line_no
        refunds.append(r)
    await upload(w, "ft-up", visit.visit_id, [*fees, *refunds])
    got = (await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())).visit
    every = [*fees, *refunds]
    expected = sum(round_half_up(ln.quantity_milli * ln.unit_price_fen, 1000) for ln in every)
    floor_way = sum(
        (q * p + (500 if q * p >= 0 else -500)) // 1000
        for q, p in ((x.quantity_milli, x.unit_price_fen) for x in every)
    )
    assert expected != floor_way  # the data exercises the difference
    assert got.fee_line_count == len(every) and got.fee_total_fen == expected


async def test_settle_outpatient_answers_with_the_visit_as_stored(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    fees = lines(5, 2, w.day)
    resp = await w.c.settlement.SettleOutpatient(
        st.SettleOutpatientRequest(
            request_id="so-1",
            institution_code=HOSPITAL,
            hospital_visit_no="so-1",
            credential=RESIDENT_CARD,
            service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
            visit_date=date(w.day),
            diagnosis_codes=["J06.900"],
            lines=fees,
        ),
        metadata=md(),
    )
    stored = (await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=resp.visit.visit_id), metadata=md())).visit
    assert resp.visit.fee_line_count == len(fees) and resp.visit.status == st.VISIT_STATUS_SETTLED
    assert resp.visit == stored


async def test_reversing_an_upload_says_it_cannot_be_reversed(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "rv-open")
    await upload(w, "rv-up", visit.visit_id, lines(4, 1, w.day))
    err = await rpc_error(
        w.c.settlement.ReverseTransaction(
            st.ReverseTransactionRequest(request_id="rv-1", original_request_id="rv-up"), metadata=md()
        )
    )
    d = error_details(err)
    assert d.reason == "REASON_TRANSACTION_NOT_REVERSIBLE" and d.metadata["operation"] == "upload_fees", d
    got = (await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())).visit
    assert got.fee_line_count == 4  # the lines stay, as the answer says
    # a request that never arrived is still tombstoned, and an opened visit still cancelled
    never = await w.c.settlement.ReverseTransaction(
        st.ReverseTransactionRequest(request_id="rv-2", original_request_id="never-sent"), metadata=md()
    )
    assert not never.reversed
    opened = await w.c.settlement.ReverseTransaction(
        st.ReverseTransactionRequest(request_id="rv-3", original_request_id="rv-open"), metadata=md()
    )
    assert opened.reversed


async def test_admission_dates_after_today_and_fee_dates_outside_the_stay_are_refused(suite: Host) -> None:
    import datetime as dt

    w = await setup_world(f"127.0.0.1:{suite.port}")
    tomorrow = w.day + dt.timedelta(days=1)
    req = st.OpenVisitRequest(
        request_id="fd-open-1",
        institution_code=HOSPITAL,
        hospital_visit_no="fd-1",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(tomorrow),
        diagnosis_codes=["I63.900"],
    )
    d = error_details(await rpc_error(w.c.settlement.OpenVisit(req, metadata=md())))
    assert (d.reason, [v.field for v in d.violations]) == ("REASON_VALIDATION_FAILED", ["admission_date"])
    out = st.SettleOutpatientRequest(
        request_id="fd-so",
        institution_code=HOSPITAL,
        hospital_visit_no="fd-so",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
        visit_date=date(tomorrow),
        diagnosis_codes=["J06.900"],
        lines=lines(2, 1, w.day),
    )
    d = error_details(await rpc_error(w.c.settlement.SettleOutpatient(out, metadata=md())))
    assert [v.field for v in d.violations] == ["visit_date"]
    # admitted two days ago: fees before the admission or after today are outside the stay
    req.request_id = "fd-open-2"
    req.admission_date.CopyFrom(date(w.day - dt.timedelta(days=2)))
    visit = (await w.c.settlement.OpenVisit(req, metadata=md())).visit
    fees = lines(4, 2, w.day)
    fees[1].fee_date.CopyFrom(date(w.day - dt.timedelta(days=3)))
    fees[3].fee_date.CopyFrom(date(tomorrow))
    d = error_details(await rpc_error(upload(w, "fd-up", visit.visit_id, fees)))
    assert (d.reason, [v.field for v in d.violations]) == (
        "REASON_VALIDATION_FAILED",
        ["lines[1].fee_date", "lines[3].fee_date"],
    )
    got = (await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())).visit
    assert got.fee_line_count == 0  # nothing persisted for the rejected upload
    fees[1].fee_date.CopyFrom(date(w.day - dt.timedelta(days=2)))
    fees[3].fee_date.CopyFrom(date(w.day))
    await upload(w, "fd-up-2", visit.visit_id, fees)
