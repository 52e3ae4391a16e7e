"""Every fen accounted for in clearing: the insured place owes the treatment place each fund and
the personal account, each on its own line; the treatment place owes the institution the same;
per province pair and month the statements equal what was settled, less cancellations, plus late
adjustments, less deductions, and the ledger sums to zero. Runs on SQLite or PostgreSQL (--db)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator

import grpc
import pytest

from libs.platform.db import Database
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


def row(
    sid: str,
    ip: str,
    day: dt.date,
    *,
    pooled: int = 0,
    large: int = 0,
    critical: int = 0,
    assistance: int = 0,
    other: int = 0,
    account: int = 0,
    cash: int = 0,
    tp: str = "31",
    inst: str = "H31A",
    cancels: str = "",
    cat: Category = Category.INPATIENT,
    sign: int = 1,
) -> FeedSettlement:
    funds = (pooled, large, critical, assistance, other)
    amounts = [sign * a for a in (*funds, sum(funds), account, cash)]
    return FeedSettlement(
        next(_pos),
        sid,
        "cancellation" if cancels else "settlement",
        cancels,
        inst,
        ip + "0100",
        tp + "0100",
        cat,
        day,
        sign * (sum(funds) + account + cash),
        *amounts,
    )


@pytest.fixture
async def clearing(settings: Settings) -> AsyncIterator[tuple[clearing_pb2_grpc.ClearingServiceStub, ClearingService]]:
    from services.suite import start

    host = await start(
        settings.model_copy(update={"clearing_follow_feed": False}), ["clearing"], port=0, run_migrations=False
    )
    db = Database(settings.database_url("clearing"))
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}", interceptors=acting_parties())
    try:
        yield clearing_pb2_grpc.ClearingServiceStub(ch), ClearingService(SqlClearingStore(db))
    finally:
        await ch.close()
        await db.dispose()
        await host.stop(drain=False)


async def balances(stub: clearing_pb2_grpc.ClearingServiceStub, prefix: str = "") -> dict[str, int]:
    resp = await stub.GetLedgerBalances(pb.GetLedgerBalancesRequest(prefix=prefix))
    if not prefix:
        assert resp.total_fen == 0 and sum(b.balance_fen for b in resp.balances) == 0
    return {b.account: b.balance_fen for b in resp.balances}


async def test_the_personal_account_is_owed_beside_every_fund(
    clearing: tuple[clearing_pb2_grpc.ClearingServiceStub, ClearingService],
) -> None:
    stub, svc = clearing
    day = dt.date(2026, 3, 9)
    await svc.ingest(
        [
            # an employee's stay: pooled fund, large-amount fund and 2,684.50 from the personal account
            row("A1", "11", day, pooled=3_100_000, large=120_000, account=268_450, cash=50_000),
            # a resident: critical illness, assistance, other fund, no account
            row("A2", "51", day, pooled=10_000, critical=2_000, assistance=300, other=45, cash=7_000, inst="H31B"),
        ]
    )
    run = await stub.RunMonthlyClearing(
        pb.RunMonthlyClearingRequest(request_id="m1", month=types_pb2.Month(year=2026, month=3))
    )
    by_id = {s.statement_id: s for s in run.statements}
    bj = by_id["ST-202603-11-31"]
    assert bj.amount_due_fen == 3_100_000 + 120_000 + 268_450
    sc = by_id["ST-202603-51-31"]
    assert sc.amount_due_fen == 10_000 + 2_000 + 300 + 45
    led = await balances(stub)
    # the treatment place owes each institution what it advanced: funds and account
    assert led["institution:H31A:receivable"] == -(3_100_000 + 120_000 + 268_450)
    assert led["institution:H31B:receivable"] == -(10_000 + 2_000 + 300 + 45)
    assert led["province:11:payable:31"] == -bj.amount_due_fen
    assert led["province:31:receivable:11"] == bj.amount_due_fen
    assert led["province:11:account_expense"] == 268_450


PAIRS = (("11", "31"), ("51", "31"), ("44", "31"), ("31", "11"))
PAYER_FIELDS = (
    "pooled_fund_fen",
    "large_amount_fen",
    "critical_illness_fen",
    "assistance_fen",
    "other_fund_fen",
    "personal_account_fen",
)


def owed_of(r: FeedSettlement) -> tuple[int, ...]:
    return tuple(getattr(r, f) for f in PAYER_FIELDS)


async def test_conservation_per_pair_and_month_with_cancellations_late_rows_and_deductions(
    clearing: tuple[clearing_pb2_grpc.ClearingServiceStub, ClearingService],
) -> None:
    import random

    stub, svc = clearing
    rnd = random.Random(20260301)
    expected: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * 6)

    def book(key: tuple[str, str, int], amounts: tuple[int, ...], sign: int = 1) -> None:
        acc = expected[key]
        for i, a in enumerate(amounts):
            acc[i] += sign * a

    def settle(sid: str, ip: str, tp: str, day: dt.date) -> FeedSettlement:
        employee = rnd.random() < 0.6
        return row(
            sid,
            ip,
            day,
            tp=tp,
            inst=f"H{tp}{rnd.choice('AB')}",
            pooled=rnd.randint(0, 900_000),
            large=rnd.randint(0, 90_000) if employee else 0,
            critical=0 if employee else rnd.randint(0, 50_000),
            assistance=rnd.choice((0, rnd.randint(1, 9_999))),
            other=rnd.choice((0, 0, rnd.randint(1, 999))),
            account=rnd.randint(0, 300_000) if employee else 0,
            cash=rnd.randint(0, 100_000),
            cat=rnd.choice(list(Category)),
        )

    def cancel(s: FeedSettlement, day: dt.date) -> FeedSettlement:
        return FeedSettlement(
            next(_pos),
            "C-" + s.settlement_id,
            "cancellation",
            s.settlement_id,
            s.institution_code,
            s.insured_region,
            s.treatment_region,
            s.category,
            day,
            *(-getattr(s, f) for f in FeedSettlement.__dataclass_fields__ if f.endswith("_fen")),
        )

    march = [settle(f"M{ip}{tp}-{i}", ip, tp, dt.date(2026, 3, 1 + i % 28)) for ip, tp in PAIRS for i in range(12)]
    in_time = [cancel(s, dt.date(2026, 3, 30)) for s in march[::5]]
    await svc.ingest(march)
    await svc.ingest(in_time)
    for s in march:
        book((s.insured_province, s.treatment_province, 3), owed_of(s))
    for c in in_time:
        book((c.insured_province, c.treatment_province, 3), owed_of(c))
    run = await stub.RunMonthlyClearing(
        pb.RunMonthlyClearingRequest(request_id="mar", month=types_pb2.Month(year=2026, month=3))
    )
    for st in run.statements:
        await stub.ConfirmStatement(
            pb.ConfirmStatementRequest(
                request_id=f"t-{st.statement_id}", statement_id=st.statement_id, side=pb.SIDE_TREATMENT
            )
        )
    # after March closed: late cancellations of March, April's own rows, a verification deduction
    late = [cancel(s, dt.date(2026, 4, 2)) for s in march[2::7] if s not in march[::5]]
    april = [settle(f"A{ip}{tp}-{i}", ip, tp, dt.date(2026, 4, 1 + i % 28)) for ip, tp in PAIRS for i in range(6)]
    april_cancelled = [cancel(s, dt.date(2026, 4, 29)) for s in april[::4]]
    await svc.ingest(late + april + april_cancelled)
    for c in late:  # a late row of March is an adjustment of April
        book((c.insured_province, c.treatment_province, 4), owed_of(c))
    for s in april + april_cancelled:
        book((s.insured_province, s.treatment_province, 4), owed_of(s))
    target = next(
        s
        for s in march
        if s not in march[::5]
        and s not in march[2::7]
        and 1_000 < s.fund_total_fen <= sum(expected[(s.insured_province, s.treatment_province, 4)])
    )
    vr = await stub.CreateVerificationRequest(
        pb.CreateVerificationRequestRequest(request_id="v1", settlement_id=target.settlement_id, reason="x")
    )
    rejected = target.fund_total_fen - 1
    await stub.AnswerVerificationRequest(
        pb.AnswerVerificationRequestRequest(
            request_id="v1a", verification_id=vr.verification.verification_id, answer="no", rejected_fen=rejected
        )
    )
    rest, split = rejected, []
    for f in PAYER_FIELDS[:5]:
        take = min(getattr(target, f), rest)
        split.append(take)
        rest -= take
    april_key = (target.insured_province, target.treatment_province, 4)
    book(april_key, (*split, 0), -1)
    await stub.RunMonthlyClearing(
        pb.RunMonthlyClearingRequest(request_id="apr", month=types_pb2.Month(year=2026, month=4))
    )
    v = await svc.funds.verification(vr.verification.verification_id)
    assert v.deducted_in_statement_id == "ST-202604-{}-{}".format(*april_key[:2])

    got: dict[tuple[str, str, int], list[int]] = {}
    for m in (3, 4):
        for st in (
            await stub.ListStatements(pb.ListStatementsRequest(month=types_pb2.Month(year=2026, month=m)))
        ).statements:
            key = (st.insured_province_code, st.treatment_province_code, m)
            got[key] = [o.due_fen for o in sorted(st.owed, key=lambda o: o.payer)]
            assert st.amount_due_fen == sum(got[key]) == sum(ln.amount_due_fen for ln in st.lines)
            for i, o in enumerate(sorted(st.owed, key=lambda o: o.payer)):
                assert o.due_fen == o.settled_fen + o.adjustment_fen - o.deducted_fen
                assert o.settled_fen == sum(getattr(ln, PAYER_FIELDS[i]) for ln in st.lines)
    assert got == {k: v for k, v in expected.items()}
    # the ledger: sums to zero; each pair's payable is the sum of its statements; the treatment
    # place owes its institutions all of it
    led = await balances(stub)
    for ip, tp in PAIRS:
        due = sum(sum(v) for (i, t, _), v in expected.items() if (i, t) == (ip, tp))
        assert led[f"province:{ip}:payable:{tp}"] == -due
        assert led[f"province:{tp}:receivable:{ip}"] == due
    inst = sum(v for a, v in led.items() if a.startswith("institution:"))
    assert inst == -sum(sum(v) for v in expected.values())
    account = sum(v for a, v in led.items() if a.endswith(":account_expense"))
    assert account == sum(v[5] for v in expected.values()) > 0


async def expect(call: object, code: grpc.StatusCode, reason: str) -> dict[str, str]:
    from libs.platform.errors import error_details

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    d = error_details(e.value)
    assert (d.code, d.reason) == (code, reason), d
    return dict(d.metadata)


async def test_verification_within_bounds(
    clearing: tuple[clearing_pb2_grpc.ClearingServiceStub, ClearingService], settings: Settings
) -> None:
    stub, svc = clearing
    day = dt.date(2026, 6, 10)
    rows = [row(f"V{i}", "11", day, pooled=10_000, account=2_000, cash=1_000) for i in range(1, 7)]
    await svc.ingest([*rows, row("C-V3", "11", day, pooled=10_000, account=2_000, cash=1_000, cancels="V3", sign=-1)])
    n = itertools.count()

    async def create(sid: str, amount: int = 0) -> pb.VerificationRequest:
        req = pb.CreateVerificationRequestRequest(
            request_id=f"c{next(n)}", settlement_id=sid, reason="why", amount_fen=amount
        )
        return (await stub.CreateVerificationRequest(req)).verification

    def answer(vid: str, rejected: int) -> object:
        return stub.AnswerVerificationRequest(
            pb.AnswerVerificationRequestRequest(
                request_id=f"a{next(n)}", verification_id=vid, answer="ok", rejected_fen=rejected
            )
        )

    # 100.00 of fund can be deducted once, not twice
    v1 = await create("V1")
    assert v1.questioned_fen == 10_000
    await answer(v1.verification_id, 10_000)
    md = await expect(create("V1"), grpc.StatusCode.INVALID_ARGUMENT, "REASON_AMOUNT_OUT_OF_RANGE")
    assert md["remaining_fen"] == "0"
    # one open at a time; together never more than the fund part
    v2 = await create("V2")
    md = await expect(create("V2"), grpc.StatusCode.FAILED_PRECONDITION, "REASON_VERIFICATION_ALREADY_OPEN")
    assert md["verification_id"] == v2.verification_id
    await answer(v2.verification_id, 4_000)
    await expect(create("V2", 6_001), grpc.StatusCode.INVALID_ARGUMENT, "REASON_AMOUNT_OUT_OF_RANGE")
    v2b = await create("V2")
    assert v2b.questioned_fen == 6_000
    md = await expect(
        answer(v2b.verification_id, 6_001), grpc.StatusCode.INVALID_ARGUMENT, "REASON_AMOUNT_OUT_OF_RANGE"
    )
    assert md["remaining_fen"] == "6000"
    await answer(v2b.verification_id, 6_000)
    # none of a cancelled settlement
    md = await expect(create("V3"), grpc.StatusCode.FAILED_PRECONDITION, "REASON_SETTLEMENT_ALREADY_REVERSED")
    assert md["cancellation_id"] == "C-V3"
    # cancelled while open: the verification closes with nothing to deduct
    v4 = await create("V4")
    await svc.ingest([row("C-V4", "11", day, pooled=10_000, account=2_000, cash=1_000, cancels="V4", sign=-1)])
    await expect(
        answer(v4.verification_id, 1), grpc.StatusCode.FAILED_PRECONDITION, "REASON_VERIFICATION_ALREADY_ANSWERED"
    )
    # V5: unanswered past its deadline: the next clearing run deducts what was in question
    v5 = await create("V5", 2_500)
    late_db = Database(settings.database_url("clearing"))
    late = ClearingService(
        SqlClearingStore(late_db),
        clock=lambda: dt.datetime.combine(v5_deadline + dt.timedelta(days=1), dt.time(9), dt.UTC),
    )
    v5_deadline = dt.date(v5.answer_deadline.year, v5.answer_deadline.month, v5.answer_deadline.day)
    try:
        sts = await late.run_monthly("june", "fp", 2026, 6, None)
        vr5 = await late.funds.verification(v5.verification_id)
    finally:
        await late_db.dispose()
    assert vr5.answered and vr5.deducted_without_answer and vr5.rejected_fen == 2_500
    (june,) = sts
    # 6 settlements, one cancelled (V3), one cancelled while open (V4): 4 x 120.00;
    # deducted: V1 100.00, V2 40.00 + 60.00, V5 25.00
    assert june.amount_due_fen == 4 * 12_000 - 10_000 - 4_000 - 6_000 - 2_500
    owed = {o.payer: o for o in june.owed}
    assert owed["pooled_fund"].deducted_fen == 22_500 and owed["personal_account"].deducted_fen == 0
    led = await balances(stub)
    assert led["province:11:payable:31"] == -june.amount_due_fen
    assert led["institution:H31A:receivable"] == -june.amount_due_fen


async def test_a_deduction_never_turns_an_amount_due_negative_and_is_given_back_after_a_cancellation(
    clearing: tuple[clearing_pb2_grpc.ClearingServiceStub, ClearingService],
) -> None:
    stub, svc = clearing
    await svc.ingest([row("D1", "44", dt.date(2026, 5, 3), pooled=50_000, account=1_000)])
    run = lambda m, rid: stub.RunMonthlyClearing(  # noqa: E731
        pb.RunMonthlyClearingRequest(request_id=rid, month=types_pb2.Month(year=2026, month=m))
    )
    await run(5, "may")
    await stub.ConfirmStatement(
        pb.ConfirmStatementRequest(request_id="t5", statement_id="ST-202605-44-31", side=pb.SIDE_TREATMENT)
    )
    vr = (
        await stub.CreateVerificationRequest(
            pb.CreateVerificationRequestRequest(request_id="c", settlement_id="D1", reason="x")
        )
    ).verification
    await stub.AnswerVerificationRequest(
        pb.AnswerVerificationRequestRequest(
            request_id="a", verification_id=vr.verification_id, answer="no", rejected_fen=30_000
        )
    )
    # June has only 200.00 for 44->31: the 300.00 deduction waits rather than make it negative
    await svc.ingest([row("D2", "44", dt.date(2026, 6, 3), pooled=20_000)])
    june = {s.statement_id: s for s in (await run(6, "jun")).statements}["ST-202606-44-31"]
    assert june.amount_due_fen == 20_000
    await stub.ConfirmStatement(
        pb.ConfirmStatementRequest(request_id="t6", statement_id=june.statement_id, side=pb.SIDE_TREATMENT)
    )
    await svc.ingest([row("D3", "44", dt.date(2026, 7, 3), pooled=40_000)])
    july = {s.statement_id: s for s in (await run(7, "jul")).statements}["ST-202607-44-31"]
    assert july.amount_due_fen == 40_000 - 30_000
    await stub.ConfirmStatement(
        pb.ConfirmStatementRequest(request_id="t7", statement_id=july.statement_id, side=pb.SIDE_TREATMENT)
    )
    # D1 cancelled after its deduction was taken: the cancellation returns all of D1, so the
    # deduction is given back and nothing of D1 remains owed either way
    await svc.ingest([row("C-D1", "44", dt.date(2026, 8, 1), pooled=50_000, account=1_000, cancels="D1", sign=-1)])
    await svc.ingest([row("D4", "44", dt.date(2026, 8, 3), pooled=90_000)])
    aug = {s.statement_id: s for s in (await run(8, "aug")).statements}["ST-202608-44-31"]
    assert aug.amount_due_fen == 90_000 - 51_000 + 30_000
    total = 0
    for m in (5, 6, 7, 8):
        for s in (
            await stub.ListStatements(pb.ListStatementsRequest(month=types_pb2.Month(year=2026, month=m)))
        ).statements:
            assert s.amount_due_fen >= 0
            total += s.amount_due_fen
    assert total == 20_000 + 40_000 + 90_000  # D1 and its deduction have both left
    led = await balances(stub)
    assert led["province:44:payable:31"] == -total and led["institution:H31A:receivable"] == -total


async def test_the_signing_calendar_sets_the_deadlines_and_overdue_payments_are_reported(
    clearing: tuple[clearing_pb2_grpc.ClearingServiceStub, ClearingService],
) -> None:
    stub, svc = clearing

    def d(m: int, day: int) -> types_pb2.Date:
        return types_pb2.Date(year=2026, month=m, day=day)

    await expect(
        stub.SetSigningCalendar(
            pb.SetSigningCalendarRequest(request_id="cal0", year=2026, signing_dates=[d(5, 12), d(5, 20)])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REASON_VALIDATION_FAILED",
    )
    cal = await stub.SetSigningCalendar(
        pb.SetSigningCalendarRequest(request_id="cal1", year=2026, signing_dates=[d(m, 10 + m) for m in range(1, 13)])
    )
    assert len(cal.signing_dates) == 12
    await svc.ingest([row("K1", "11", dt.date(2026, 5, 6), pooled=100_000, account=5_000, inst="H31K")])
    await stub.RunMonthlyClearing(
        pb.RunMonthlyClearingRequest(request_id="k5", month=types_pb2.Month(year=2026, month=5), signing_date=d(6, 16))
    )
    sid = "ST-202605-11-31"
    for side in (pb.SIDE_TREATMENT, pb.SIDE_INSURED):
        st_ = (
            await stub.ConfirmStatement(pb.ConfirmStatementRequest(request_id=f"k-{side}", statement_id=sid, side=side))
        ).statement
    # signed on 16 June: everything is due by the next signing date, 17 July
    assert st_.institution_payment_deadline == d(7, 17) == st_.disbursement_deadline

    async def overdue(day: types_pb2.Date) -> set[tuple[int, str, str, int]]:
        resp = await stub.ListOverduePayments(pb.ListOverduePaymentsRequest(as_of=day))
        return {(o.kind, o.subject, o.province_code, o.amount_fen) for o in resp.overdue}

    assert await overdue(d(7, 17)) == set()
    assert await overdue(d(7, 18)) == {
        (pb.OVERDUE_KIND_DISBURSEMENT, sid, "11", 105_000),
        (pb.OVERDUE_KIND_INSTITUTION_PAYMENT, "H31K", "31", 105_000),
    }
    pay = await stub.RecordInstitutionPayment(
        pb.RecordInstitutionPaymentRequest(
            request_id="kp", institution_code="H31K", amount_fen=100_000, payment_date=d(7, 20)
        )
    )
    assert pay.late and pay.payment_deadline == d(7, 17)
    await stub.RecordDisbursement(
        pb.RecordDisbursementRequest(request_id="kd", statement_id=sid, disbursement_date=d(7, 20))
    )
    assert await overdue(d(7, 21)) == {(pb.OVERDUE_KIND_INSTITUTION_PAYMENT, "H31K", "31", 5_000)}


async def test_reconciliation_carries_each_fund_and_the_account(
    clearing: tuple[clearing_pb2_grpc.ClearingServiceStub, ClearingService],
) -> None:
    stub, svc = clearing
    day = dt.date(2026, 4, 8)
    await svc.ingest(
        [
            row("RF1", "11", day, pooled=7_000, large=500, account=1_200, cash=300),
            row("RF2", "51", day, pooled=2_000, critical=400, assistance=60, other=5, cash=100),
        ]
    )
    date_ = types_pb2.Date(year=2026, month=4, day=8)
    ours = (
        await stub.ReconcileDaily(
            pb.ReconcileDailyRequest(request_id="rf0", treatment_province_code="31", date=date_, totals=[pb.Totals()])
        )
    ).our_totals
    overall_ = next(t for t in ours if not t.category)
    assert (overall_.pooled_fund_fen, overall_.large_amount_fen, overall_.critical_illness_fen) == (9_000, 500, 400)
    assert (overall_.assistance_fen, overall_.other_fund_fen, overall_.personal_account_fen) == (60, 5, 1_200)
    assert overall_.fund_total_fen == 9_000 + 500 + 400 + 60 + 5
    theirs = pb.Totals()
    theirs.CopyFrom(overall_)
    theirs.large_amount_fen = 499  # the submitter books one fen of large-amount fund as pooled
    theirs.pooled_fund_fen = 9_001
    resp = await stub.ReconcileDaily(
        pb.ReconcileDailyRequest(request_id="rf1", treatment_province_code="31", date=date_, totals=[theirs])
    )
    assert not resp.matched
    assert {(d.field, d.expected_fen, d.actual_fen) for d in resp.differences} == {
        ("pooled_fund_fen", 9_001, 9_000),
        ("large_amount_fen", 499, 500),
    }
    # a submitter that gives only the fund total is compared on what it gives
    plain = pb.Totals(
        count=2,
        medical_total_fen=overall_.medical_total_fen,
        fund_total_fen=overall_.fund_total_fen,
        personal_account_fen=1_200,
    )
    ok = await stub.ReconcileDaily(
        pb.ReconcileDailyRequest(request_id="rf2", treatment_province_code="31", date=date_, totals=[plain])
    )
    assert ok.matched, ok.differences
