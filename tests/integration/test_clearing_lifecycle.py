"""Clearing over gRPC (clearing alone on a loopback port, its feed injected through the same
ingest path the follower uses): statements through their states, prepayments and top-ups at
their edges, late cancellations, verification deductions, reconciliation, and a ledger that
sums to zero after every operation. Runs on SQLite or PostgreSQL (--db)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from libs.platform.db import Database
from libs.platform.errors import error_details
from libs.platform.settings import Settings
from medsettle.clearing.v1 import clearing_pb2 as pb
from medsettle.clearing.v1 import clearing_pb2_grpc
from medsettle.common.v1 import types_pb2
from services.clearing.adapters.db import SqlClearingStore
from services.clearing.application.service import ClearingService
from services.clearing.domain.model import Category, FeedSettlement
from services.demo import acting_parties

pytestmark = pytest.mark.db
_pos = itertools.count(1)


def fs(
    sid: str,
    ip: str,
    fund: int,
    day: dt.date,
    *,
    tp: str = "31",
    inst: str = "H31A",
    cancels: str = "",
    cat: Category = Category.INPATIENT,
) -> FeedSettlement:
    kind = "cancellation" if cancels else "settlement"
    return FeedSettlement(
        next(_pos),
        sid,
        kind,
        cancels,
        inst,
        ip + "0100",
        tp + "0100",
        cat,
        day,
        fund * 3,
        fund,
        0,
        0,
        0,
        0,
        fund,
        fund // 10,
        fund * 2 - fund // 10,
    )


class Env:
    def __init__(self, stub: clearing_pb2_grpc.ClearingServiceStub, svc: ClearingService) -> None:
        self.stub, self.svc, self.n = stub, svc, itertools.count()

    def rid(self) -> str:
        return f"r{next(self.n)}"

    async def balanced(self) -> None:
        resp = await self.stub.GetLedgerBalances(pb.GetLedgerBalancesRequest())
        assert resp.total_fen == 0 and sum(b.balance_fen for b in resp.balances) == 0

    async def run(self, y: int, m: int) -> dict[str, pb.Statement]:
        out = await self.stub.RunMonthlyClearing(
            pb.RunMonthlyClearingRequest(request_id=self.rid(), month=types_pb2.Month(year=y, month=m))
        )
        await self.balanced()
        return {s.statement_id: s for s in out.statements}

    async def confirm(self, sid: str, *sides: Any) -> pb.Statement:
        st = None
        for side in sides:
            st = (
                await self.stub.ConfirmStatement(
                    pb.ConfirmStatementRequest(request_id=self.rid(), statement_id=sid, side=side)
                )
            ).statement
            await self.balanced()
        assert st is not None
        return st


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    from services.suite import start

    host = await start(
        settings.model_copy(update={"clearing_follow_feed": False}), ["clearing"], port=0, run_migrations=False
    )
    db = Database(settings.database_url("clearing"))
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}", interceptors=acting_parties())
    try:
        yield Env(clearing_pb2_grpc.ClearingServiceStub(ch), ClearingService(SqlClearingStore(db)))
    finally:
        await ch.close()
        await db.dispose()
        await host.stop(drain=False)


async def expect_error(call: Any, code: grpc.StatusCode, reason: str) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    d = error_details(e.value)
    assert (d.code, d.reason) == (code, reason), d
    return d


BOTH = (pb.SIDE_TREATMENT, pb.SIDE_INSURED)


async def test_statements_prepayment_top_up_late_rows_and_verification(env: Env) -> None:
    stub = env.stub
    # the previous year's Q4: 11->31 and 51->31 each clear 100_000 fen of funds and 10_000 of
    # personal account a month (every row's account payment is a tenth of its funds)
    q4 = [fs(f"Q{ip}{m}", ip, 100_000, dt.date(2025, m, 10)) for ip in ("11", "51") for m in (10, 11, 12)]
    assert await env.svc.ingest(q4) == 6
    assert await env.svc.ingest(q4) == 0  # a re-delivered batch is ignored
    for m in (10, 11, 12):
        sts = await env.run(2025, m)
        assert {s.amount_due_fen for s in sts.values()} == {110_000}
        for sid in sts:
            await env.confirm(sid, *BOTH)
    await expect_error(
        stub.ConfirmStatement(
            pb.ConfirmStatementRequest(request_id=env.rid(), statement_id="ST-202510-11-31", side=pb.SIDE_INSURED)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REASON_STATEMENT_STATE_INVALID",
    )
    d = await stub.RecordDisbursement(
        pb.RecordDisbursementRequest(
            request_id=env.rid(),
            statement_id="ST-202510-11-31",
            disbursement_date=types_pb2.Date(year=2025, month=11, day=20),
            bank_charge_fen=35,
        )
    )
    assert d.statement.status == pb.STATEMENT_STATUS_DISBURSED and d.statement.bank_charge_fen == 35
    await env.balanced()
    bal = {
        b.account: b.balance_fen
        for b in (await stub.GetLedgerBalances(pb.GetLedgerBalancesRequest(prefix="province:11:"))).balances
    }
    assert bal["province:11:bank_charges"] == 35 and bal["province:11:fund_expense:pooled_fund"] == 300_000
    assert bal["province:11:account_expense"] == 30_000

    # annual prepayment = 2 x 330_000 / 3
    req = pb.ComputeAnnualPrepaymentRequest(
        request_id="pp-11", insured_province_code="11", treatment_province_code="31", year=2026
    )
    p = await stub.ComputeAnnualPrepayment(req)
    assert (p.previous_q4_clearing_fen, p.prepayment.annual_prepayment_fen) == (330_000, 220_000)
    assert (await stub.ComputeAnnualPrepayment(req)) == p  # replay
    await expect_error(
        stub.ComputeAnnualPrepayment(
            pb.ComputeAnnualPrepaymentRequest(
                request_id="pp-11b", insured_province_code="11", treatment_province_code="31", year=2026
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "REASON_PREPAYMENT_ALREADY_SET",
    )
    await stub.ComputeAnnualPrepayment(
        pb.ComputeAnnualPrepaymentRequest(
            request_id="pp-51", insured_province_code="51", treatment_province_code="31", year=2026
        )
    )
    await env.balanced()

    # March: 11->31 clears exactly 90% of its prepayment (198_000), 51->31 clears 275_000
    march = [
        fs("M11a", "11", 150_000, dt.date(2026, 3, 3)),
        fs("M11b", "11", 30_000, dt.date(2026, 3, 4), inst="H31B"),
        fs("M51", "51", 250_000, dt.date(2026, 3, 5)),
    ]
    await env.svc.ingest(march)
    sts = await env.run(2026, 3)
    assert sts["ST-202603-11-31"].amount_due_fen == 198_000
    march = await env.run(2026, 3)  # a draft is rebuilt to the same figures
    assert march["ST-202603-11-31"].amount_due_fen == 198_000
    month = types_pb2.Month(year=2026, month=3)
    await expect_error(
        stub.RequestEmergencyTopUp(
            pb.RequestEmergencyTopUpRequest(
                request_id=env.rid(),
                insured_province_code="51",
                treatment_province_code="31",
                month=month,
                amount_fen=1,
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REASON_STATEMENT_STATE_INVALID",
    )
    for sid in march:
        await env.confirm(sid, pb.SIDE_TREATMENT)
    await expect_error(
        stub.RequestEmergencyTopUp(
            pb.RequestEmergencyTopUpRequest(
                request_id=env.rid(),
                insured_province_code="11",
                treatment_province_code="31",
                month=month,
                amount_fen=1,
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REASON_TOP_UP_NOT_ALLOWED",
    )
    cap = 2 * 275_000 - 220_000
    d = await expect_error(
        stub.RequestEmergencyTopUp(
            pb.RequestEmergencyTopUpRequest(
                request_id=env.rid(),
                insured_province_code="51",
                treatment_province_code="31",
                month=month,
                amount_fen=cap + 1,
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REASON_TOP_UP_ABOVE_CAP",
    )
    assert d.metadata["cap_fen"] == str(cap)
    allowance = await stub.GetTopUpAllowance(
        pb.GetTopUpAllowanceRequest(insured_province_code="51", treatment_province_code="31", month=month)
    )
    assert (allowance.threshold_met, allowance.cap_fen, allowance.allowed_fen) == (True, cap, cap)
    none = await stub.GetTopUpAllowance(
        pb.GetTopUpAllowanceRequest(insured_province_code="11", treatment_province_code="31", month=month)
    )
    assert (none.threshold_met, none.cap_fen, none.allowed_fen) == (False, 0, 0)  # exactly 90%
    t = await stub.RequestEmergencyTopUp(
        pb.RequestEmergencyTopUpRequest(
            request_id="top-51", insured_province_code="51", treatment_province_code="31", month=month, amount_fen=cap
        )
    )
    # requested: it takes the cap, but no money moves before the national review and the payment
    assert (t.cap_fen, t.month_clearing_fen, t.month_top_ups_fen, t.prepayment.top_ups_fen) == (cap, 275_000, cap, 0)
    assert t.top_up.status == pb.TOP_UP_STATUS_REQUESTED and t.top_up.top_up_id.startswith("TU")
    top_id = t.top_up.top_up_id
    allowance = await stub.GetTopUpAllowance(
        pb.GetTopUpAllowanceRequest(insured_province_code="51", treatment_province_code="31", month=month)
    )
    assert (allowance.taken_fen, allowance.allowed_fen) == (cap, 0)
    before = await stub.GetLedgerBalances(pb.GetLedgerBalancesRequest(prefix="province:51:prepayment_paid"))
    d = await expect_error(
        stub.RecordTopUpDisbursement(
            pb.RecordTopUpDisbursementRequest(
                request_id=env.rid(), top_up_id=top_id, disbursement_date=types_pb2.Date(year=2026, month=4, day=2)
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REASON_TOP_UP_STATE_INVALID",
    )
    assert d.metadata["status"] == "requested"
    await expect_error(
        stub.ReviewEmergencyTopUp(pb.ReviewEmergencyTopUpRequest(request_id=env.rid(), top_up_id="nope", approve=True)),
        grpc.StatusCode.NOT_FOUND,
        "REASON_TOP_UP_NOT_FOUND",
    )
    r = await stub.ReviewEmergencyTopUp(
        pb.ReviewEmergencyTopUpRequest(request_id=env.rid(), top_up_id=top_id, approve=True, note="ok")
    )
    assert r.top_up.status == pb.TOP_UP_STATUS_APPROVED and r.top_up.review_note == "ok"
    assert await stub.GetLedgerBalances(pb.GetLedgerBalancesRequest(prefix="province:51:prepayment_paid")) == before
    paid = await stub.RecordTopUpDisbursement(
        pb.RecordTopUpDisbursementRequest(
            request_id=env.rid(), top_up_id=top_id, disbursement_date=types_pb2.Date(year=2026, month=4, day=2)
        )
    )
    assert paid.top_up.status == pb.TOP_UP_STATUS_DISBURSED and paid.prepayment.top_ups_fen == cap
    await env.balanced()
    for sid in march:
        await env.confirm(sid, pb.SIDE_INSURED)
    p = (
        await stub.GetPrepayment(
            pb.GetPrepaymentRequest(insured_province_code="51", treatment_province_code="31", year=2026)
        )
    ).prepayment
    assert (p.drawn_fen, p.available_fen) == (275_000, 220_000 + cap - 275_000)

    # after March closed: a late cancellation of a March settlement, a verification rejection
    await env.svc.ingest([fs("C-M11b", "11", -30_000, dt.date(2026, 4, 1), inst="H31B", cancels="M11b")])
    vr = (
        await stub.CreateVerificationRequest(
            pb.CreateVerificationRequestRequest(request_id=env.rid(), settlement_id="M51", reason="induced admission?")
        )
    ).verification
    assert not vr.answered and vr.answer_deadline.year > 0
    await expect_error(
        stub.AnswerVerificationRequest(
            pb.AnswerVerificationRequestRequest(
                request_id=env.rid(), verification_id=vr.verification_id, answer="x", rejected_fen=250_001
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_AMOUNT_OUT_OF_RANGE",
    )
    ans = await stub.AnswerVerificationRequest(
        pb.AnswerVerificationRequestRequest(
            request_id=env.rid(), verification_id=vr.verification_id, answer="partly", rejected_fen=12_345
        )
    )
    assert ans.verification.answered and ans.verification.rejected_fen == 12_345
    await env.balanced()
    await expect_error(
        stub.AnswerVerificationRequest(
            pb.AnswerVerificationRequestRequest(
                request_id=env.rid(), verification_id=vr.verification_id, answer="again", rejected_fen=0
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REASON_VERIFICATION_ALREADY_ANSWERED",
    )
    await expect_error(
        stub.CreateVerificationRequest(
            pb.CreateVerificationRequestRequest(request_id=env.rid(), settlement_id="nope", reason="x")
        ),
        grpc.StatusCode.NOT_FOUND,
        "REASON_SETTLEMENT_NOT_FOUND",
    )
    march_again = await env.run(2026, 3)
    assert march_again["ST-202603-11-31"].amount_due_fen == 198_000  # closed: frozen
    april = await env.run(2026, 4)
    a11 = april["ST-202604-11-31"]
    assert a11.amount_due_fen == -33_000 and sum(ln.adjustment_fen for ln in a11.lines) == -33_000
    # 51->31 has nothing else in April: the deduction would turn the amount due negative, so it waits
    assert "ST-202604-51-31" not in april
    april = await env.run(2026, 4)  # rebuilding the draft claims the same rows once
    assert april["ST-202604-11-31"].amount_due_fen == -33_000
    await env.confirm("ST-202604-11-31", pb.SIDE_TREATMENT)
    await env.svc.ingest([fs("Y51", "51", 100_000, dt.date(2026, 5, 6), inst="H31C")])
    may = await env.run(2026, 5)
    assert "ST-202605-11-31" not in may  # the late row was taken by April, not again by May
    m51 = may["ST-202605-51-31"]
    assert m51.amount_due_fen == 110_000 - 12_345 and sum(ln.rejected_fen for ln in m51.lines) == 12_345

    # the treatment place pays institutions what it advanced
    await expect_error(
        stub.RecordInstitutionPayment(
            pb.RecordInstitutionPaymentRequest(
                request_id=env.rid(),
                institution_code="H31B",
                amount_fen=1,
                payment_date=types_pb2.Date(year=2026, month=4, day=9),
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "REASON_INSTITUTION_PAYMENT_EXCEEDS_OUTSTANDING",
    )
    pay = await stub.RecordInstitutionPayment(
        pb.RecordInstitutionPaymentRequest(
            request_id=env.rid(),
            institution_code="H31A",
            amount_fen=1_000,
            payment_date=types_pb2.Date(year=2099, month=1, day=1),
        )
    )
    assert pay.treatment_province_code == "31" and pay.late and pay.payment_deadline.year > 0
    expected_owed = 6 * 110_000 + 165_000 + 275_000 - 12_345 - 1_000
    assert pay.outstanding_fen == expected_owed
    interest = await stub.RecordPrepaymentInterest(
        pb.RecordPrepaymentInterestRequest(
            request_id=env.rid(), insured_province_code="11", treatment_province_code="31", year=2026, amount_fen=77
        )
    )
    assert interest.interest_income_fen == -77
    await env.balanced()


async def test_reconciliation_matches_or_names_each_difference(env: Env) -> None:
    day = dt.date(2026, 3, 9)
    rows = [
        fs("R1", "11", 1_000, day),
        fs("R2", "11", 2_000, day, cat=Category.OUTPATIENT),
        fs("R3", "44", 500, day),
        fs("R9", "11", 9_999, day, inst="H31B"),
    ]
    await env.svc.ingest(rows)
    await env.svc.ingest([fs("R1-C", "11", -1_000, day, cancels="R1")])
    date = types_pb2.Date(year=2026, month=3, day=9)
    net = [r for r in rows if r.institution_code == "H31A"]  # R1 + its cancellation nets to zero
    total = pb.Totals(count=len(net) - 1, medical_total_fen=3 * 2_500, fund_total_fen=2_500, personal_account_fen=250)
    ok = await env.stub.ReconcileDaily(
        pb.ReconcileDailyRequest(request_id="d1", institution_code="H31A", date=date, totals=[total])
    )
    assert ok.matched and not ok.differences
    bad = pb.Totals(
        category=types_pb2.CLEARING_CATEGORY_INPATIENT,
        count=2,
        medical_total_fen=4_500,
        fund_total_fen=1_500,
        personal_account_fen=150,
    )
    resp = await env.stub.ReconcileDaily(
        pb.ReconcileDailyRequest(request_id="d2", institution_code="H31A", date=date, totals=[bad])
    )
    assert not resp.matched
    assert {(d.field, d.expected_fen, d.actual_fen) for d in resp.differences} == {
        ("count", 2, 1),
        ("medical_total_fen", 4_500, 1_500),
        ("fund_total_fen", 1_500, 500),
        ("personal_account_fen", 150, 50),
    }
    assert all(d.kind == pb.DIFFERENCE_KIND_TOTALS_DIFFER for d in resp.differences)
    # the same request id answers the same, even if more has been ingested meanwhile
    await env.svc.ingest([fs("R4", "11", 10, day)])
    assert (
        await env.stub.ReconcileDaily(
            pb.ReconcileDailyRequest(request_id="d2", institution_code="H31A", date=date, totals=[bad])
        )
        == resp
    )

    items = [
        pb.DetailItem(settlement_id="R1", medical_total_fen=3_000, fund_total_fen=1_000, personal_account_fen=100),
        pb.DetailItem(settlement_id="R1-C", medical_total_fen=-3_000, fund_total_fen=-1_000, personal_account_fen=-100),
        pb.DetailItem(settlement_id="R2", medical_total_fen=6_000, fund_total_fen=2_001, personal_account_fen=200),
        pb.DetailItem(settlement_id="X1", medical_total_fen=1, fund_total_fen=1, personal_account_fen=0),
    ]
    det = await env.stub.ReconcileDetail(
        pb.ReconcileDetailRequest(request_id="d3", institution_code="H31A", date=date, items=items)
    )
    got = {(d.kind, d.settlement_id, d.field) for d in det.differences}
    assert got == {
        (pb.DIFFERENCE_KIND_AMOUNT_DIFFERS, "R2", "fund_total_fen"),
        (pb.DIFFERENCE_KIND_MISSING_HERE, "X1", "fund_total_fen"),
        (pb.DIFFERENCE_KIND_MISSING_THERE, "R3", "fund_total_fen"),
        (pb.DIFFERENCE_KIND_MISSING_THERE, "R4", "fund_total_fen"),
    }
    everything = [*rows, fs("R1-C", "11", -1_000, day, cancels="R1"), fs("R4", "11", 10, day)]
    sums = pb.Totals(
        count=len(everything) - 2,  # a cancellation counts -1
        medical_total_fen=sum(r.total_fen for r in everything),
        fund_total_fen=sum(r.fund_total_fen for r in everything),
        personal_account_fen=sum(r.personal_account_fen for r in everything),
    )
    prov = await env.stub.ReconcileDaily(
        pb.ReconcileDailyRequest(request_id="d4", treatment_province_code="31", date=date, totals=[sums])
    )
    assert prov.matched, prov.differences
    d = await expect_error(
        env.stub.ReconcileDetail(
            pb.ReconcileDetailRequest(request_id="", institution_code="H31A", items=[items[0], items[0]])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_VALIDATION_FAILED",
    )
    assert {v.field for v in d.violations} == {"request_id", "date", "items[1].settlement_id"}
    await expect_error(
        env.stub.ReconcileDaily(
            pb.ReconcileDailyRequest(request_id="d1", institution_code="H31A", date=date, totals=[bad])
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "REASON_REQUEST_ID_REUSED",
    )


async def test_report_cli_prints_tables_and_writes_a_heat_map(
    env: Env, settings: Settings, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.clearing import report

    day = dt.date(2026, 5, 6)
    await env.svc.ingest([fs("P1", "11", 123_456, day), fs("P2", "44", 7_890, day, cat=Category.OUTPATIENT)])
    await env.run(2026, 5)
    url = settings.database_url("clearing")
    assert await report.main(["statements", "--month", "2026-05", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "1,234.56" in out and "78.90" in out and "2 statement(s)" in out
    assert await report.main(["fund-use", "--month", "2026-05", "--database-url", url]) == 0
    assert "inpatient" in capsys.readouterr().out
    assert await report.main(["ledger", "--database-url", url]) == 0
    assert capsys.readouterr().out.strip().endswith("sum 0.00")
    pytest.importorskip("matplotlib")
    png = tmp_path / "heat.png"
    assert await report.main(["statements", "--month", "2026-05", "--database-url", url, "--png", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


async def test_only_the_settlements_own_provinces_put_and_answer_a_verification(env: Env) -> None:
    """The insured province asks, the treatment province answers: a bureau of another province is
    refused with a reason, and nothing is written."""
    assert await env.svc.ingest([fs("V11", "11", 100_000, dt.date(2026, 3, 9))]) == 1  # Beijing -> Shanghai

    def as_(urn: str) -> tuple[tuple[str, str], ...]:
        return (("x-medsettle-principal", urn),)

    create = pb.CreateVerificationRequestRequest(request_id="vr-1", settlement_id="V11", reason="induced admission?")
    await expect_error(
        env.stub.CreateVerificationRequest(create, metadata=as_("urn:medsettle:bureau:insured:51")),
        grpc.StatusCode.PERMISSION_DENIED,
        "REASON_NOT_AUTHORISED_FOR_REGION",
    )
    vr = (
        await env.stub.CreateVerificationRequest(create, metadata=as_("urn:medsettle:bureau:insured:11"))
    ).verification
    answer = pb.AnswerVerificationRequestRequest(
        request_id="va-1", verification_id=vr.verification_id, answer="partly", rejected_fen=5_000
    )
    await expect_error(
        env.stub.AnswerVerificationRequest(answer, metadata=as_("urn:medsettle:bureau:treatment:44")),
        grpc.StatusCode.PERMISSION_DENIED,
        "REASON_NOT_AUTHORISED_FOR_REGION",
    )
    # the refused answer wrote nothing: the right bureau's answer is the first (not ALREADY_ANSWERED)
    done = await env.stub.AnswerVerificationRequest(answer, metadata=as_("urn:medsettle:bureau:treatment:31"))
    assert done.verification.answered and done.verification.rejected_fen == 5_000
