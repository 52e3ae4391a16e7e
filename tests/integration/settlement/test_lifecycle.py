"""Visit lifecycles through the hospital-facing API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import (
    OTHER_HOSPITAL,
    RESIDENT_CARD,
    date,
    lines,
    md,
    open_visit,
    rpc_error,
    settle,
    setup_world,
    upload,
)

pytestmark = pytest.mark.db


def identities(b: st.Breakdown) -> None:
    assert b.total_fen == b.full_self_pay_fen + b.over_limit_fen + b.pre_self_pay_fen + b.in_scope_fen
    assert b.total_fen == b.fund_total_fen + b.personal_part_fen + b.hospital_borne_fen
    assert b.personal_part_fen == b.personal_account_fen + b.cash_fen
    assert b.fund_total_fen == b.pooled_fund_fen + b.large_amount_fen + b.critical_illness_fen + b.assistance_fen + (
        b.other_fund_fen
    )


async def test_inpatient_presettle_settle_cancel_and_resettle(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "open-1")
    assert visit.status == st.VISIT_STATUS_OPEN and visit.filing_type == types_pb2.FILING_TYPE_RELOCATED_RETIREE
    await upload(w, "up-1", visit.visit_id, lines(12, 1, w.day))
    # a re-upload of line 3 replaces it
    replacement = lines(12, 2, w.day)[2]
    replacement.line_no = 3
    await upload(w, "up-2", visit.visit_id, [replacement])
    got = await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())
    assert len(got.lines) == 12 and got.lines[2].item_code == replacement.item_code

    pre = (
        await w.c.settlement.PreSettle(
            st.PreSettleRequest(visit_id=visit.visit_id, use_personal_account=True), metadata=md()
        )
    ).breakdown
    s1 = await settle(w, "settle-1", visit.visit_id, include_lines=True)
    identities(s1.breakdown)
    assert s1.breakdown.total_fen == pre.total_fen and s1.breakdown.fund_total_fen == pre.fund_total_fen
    assert s1.breakdown.personal_account_fen == 268_450  # the whole balance: the personal part is larger
    assert s1.breakdown.account_balance_after_fen == 0
    assert len(s1.breakdown.lines) == 12 and s1.breakdown.policy_version.startswith("110100-employee")
    # the desk's answers carry no lines unless asked (UploadFees answered each line's split); the
    # same request id without include_lines is the same settlement, not a reused id
    assert not pre.lines and pre.funds
    lean = await settle(w, "settle-1", visit.visit_id)
    assert lean.settlement_id == s1.settlement_id and not lean.breakdown.lines
    assert lean.breakdown.funds == s1.breakdown.funds and lean.breakdown.cash_fen == s1.breakdown.cash_fen
    stored = await w.c.settlement.GetSettlement(st.GetSettlementRequest(settlement_id=s1.settlement_id), metadata=md())
    assert stored.settlement.breakdown.lines == s1.breakdown.lines

    # settling again is refused: the visit is settled
    err = await rpc_error(settle(w, "settle-again", visit.visit_id))
    assert error_details(err).reason == "REASON_VISIT_STATE_INVALID"

    cancel = (
        await w.c.settlement.CancelSettlement(
            st.CancelSettlementRequest(request_id="cancel-1", settlement_id=s1.settlement_id), metadata=md()
        )
    ).cancellation
    assert cancel.kind == st.SETTLEMENT_KIND_CANCELLATION and cancel.cancels_settlement_id == s1.settlement_id
    for name in (
        "total_fen",
        "fund_total_fen",
        "pooled_fund_fen",
        "deductible_fen",
        "personal_account_fen",
        "cash_fen",
    ):
        assert getattr(cancel.breakdown, name) == -getattr(s1.breakdown, name)
    assert cancel.breakdown.account_balance_after_fen == 268_450  # balance restored

    err = await rpc_error(
        w.c.settlement.CancelSettlement(
            st.CancelSettlementRequest(request_id="cancel-2", settlement_id=s1.settlement_id), metadata=md()
        )
    )
    assert error_details(err).reason == "REASON_SETTLEMENT_ALREADY_REVERSED"

    # the visit is open again and settles to exactly the same amounts (accumulators restored)
    s2 = await settle(w, "settle-2", visit.visit_id)
    assert s2.breakdown.fund_total_fen == s1.breakdown.fund_total_fen
    assert s2.breakdown.deductible_fen == s1.breakdown.deductible_fen
    fetched = (
        await w.c.settlement.GetSettlement(st.GetSettlementRequest(settlement_id=s1.settlement_id), metadata=md())
    ).settlement
    assert fetched.cancelled_by_settlement_id == cancel.settlement_id


async def test_interim_settlements_settle_each_line_once_and_deductible_once(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "open-i")
    first = lines(6, 3, w.day)
    await upload(w, "up-i1", visit.visit_id, first)
    s1 = await settle(w, "settle-i1", visit.visit_id, interim=True, account=False, include_lines=True)
    assert s1.interim and len(s1.breakdown.lines) == 6
    # a settled line cannot be replaced
    err = await rpc_error(upload(w, "up-i-bad", visit.visit_id, [first[0]]))
    assert error_details(err).reason == "REASON_VISIT_STATE_INVALID"
    second = lines(4, 4, w.day)
    for i, ln in enumerate(second):
        ln.line_no = 100 + i
    await upload(w, "up-i2", visit.visit_id, second)
    s2 = await settle(w, "settle-i2", visit.visit_id, account=False, include_lines=True)
    assert sorted(ln.line_no for ln in s2.breakdown.lines) == [100, 101, 102, 103]
    # one admission: the deductible is borne once across the stay
    assert s1.breakdown.deductible_fen > 0 and s2.breakdown.deductible_fen == 0


async def test_settle_outpatient_in_one_round_trip_and_refund_lines(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    fees = lines(4, 5, w.day)
    refund = st.FeeLine(
        line_no=5,
        item_code=fees[0].item_code,
        quantity_milli=-1000,
        unit_price_fen=fees[0].unit_price_fen,
        refund_of_line_no=1,
        fee_date=date(w.day),
    )
    resp = await w.c.settlement.SettleOutpatient(
        st.SettleOutpatientRequest(
            request_id="op-1",
            institution_code=HOSPITAL,
            hospital_visit_no="MZ-1",
            credential=RESIDENT_CARD,
            service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
            visit_date=date(w.day),
            lines=[*fees, refund],
            include_lines=True,
        ),
        metadata=md(),
    )
    b = resp.settlement.breakdown
    identities(b)
    assert resp.visit.status == st.VISIT_STATUS_SETTLED
    refund_split = next(ln for ln in b.lines if ln.line_no == 5)
    assert refund_split.amount_fen < 0
    assert b.total_fen == sum(ln.amount_fen for ln in b.lines)


async def test_update_and_cancel_a_visit(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "open-u")
    updated = (
        await w.c.settlement.UpdateVisit(
            st.UpdateVisitRequest(request_id="upd-1", visit_id=visit.visit_id, diagnosis_codes=["C34.900"]),
            metadata=md(),
        )
    ).visit
    assert list(updated.diagnosis_codes) == ["C34.900"]
    cancelled = (
        await w.c.settlement.CancelVisit(
            st.CancelVisitRequest(request_id="cv-1", visit_id=visit.visit_id), metadata=md()
        )
    ).visit
    assert cancelled.status == st.VISIT_STATUS_CANCELLED
    err = await rpc_error(upload(w, "up-after-cancel", visit.visit_id, lines(2, 1, w.day)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_duplicate_lines_and_huge_quantities_are_flagged_not_blocked(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "open-f")
    fees = lines(3, 6, w.day)
    dup = st.FeeLine()
    dup.CopyFrom(fees[0])
    dup.line_no = 4
    big = st.FeeLine()
    big.CopyFrom(fees[1])
    big.line_no, big.quantity_milli = 5, 500_000
    await upload(w, "up-f", visit.visit_id, [*fees, dup, big])
    s = await settle(w, "settle-f", visit.visit_id)
    codes = {(f.code, f.line_no) for f in s.flags}
    assert ("MON_DUPLICATE_LINE", 4) in codes and ("MON_QUANTITY_BEYOND_LIMIT", 5) in codes


async def test_concurrent_presettles_each_get_their_own_visits_answer(suite: Host) -> None:
    """Many PreSettles at once, of different visits and people: each call gets the answer of its
    own visit, as when it is alone, or its own error."""
    w = await setup_world(f"127.0.0.1:{suite.port}")
    retiree = await open_visit(w, "cp-open-1")
    resident = await open_visit(w, "cp-open-2", cred=RESIDENT_CARD, service=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT)
    elsewhere = await open_visit(
        w, "cp-open-3", institution=OTHER_HOSPITAL, service=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT
    )
    await upload(w, "cp-up-1", retiree.visit_id, lines(30, 11, w.day))
    await upload(w, "cp-up-2", resident.visit_id, lines(7, 12, w.day))
    await upload(w, "cp-up-3", elsewhere.visit_id, lines(3, 13, w.day), institution=OTHER_HOSPITAL)

    async def pre(visit_id: str, account: bool) -> st.Breakdown:
        req = st.PreSettleRequest(visit_id=visit_id, use_personal_account=account)
        return (await w.c.settlement.PreSettle(req, metadata=md())).breakdown

    calls = [(v, a) for v in (retiree.visit_id, resident.visit_id) for a in (True, False)]
    alone = {call: await pre(*call) for call in calls}
    assert len({b.total_fen for b in alone.values()}) == 2 and alone[calls[0]] != alone[calls[1]]

    together = [calls[i % len(calls)] for i in range(40)]
    answers = await asyncio.gather(
        *(pre(*call) for call in together),
        rpc_error(pre("V-no-such-visit", True)),
        rpc_error(pre(elsewhere.visit_id, True)),
        *(pre(*call) for call in together),
    )
    assert list(answers[:40]) + list(answers[42:]) == [alone[call] for call in together * 2]
    missing, foreign = answers[40], answers[41]
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(missing).reason == "REASON_VISIT_NOT_FOUND"
    assert foreign.code() == grpc.StatusCode.PERMISSION_DENIED
