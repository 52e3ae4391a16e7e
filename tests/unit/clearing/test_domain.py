"""Pure clearing rules: ledger postings balance, prepayment and top-up edges, reconciliation,
statement states and late rows."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.core.errors import DomainError, Reason
from services.clearing.domain import ledger, rules
from services.clearing.domain.model import (
    NO_AMOUNTS,
    PAYERS,
    Category,
    FeedSettlement,
    Payer,
    Side,
    Statement,
    StatementLine,
    StatementStatus,
    assemble,
    clearing_month,
    is_late,
    payment_deadline,
    with_claims,
)
from services.clearing.domain.reconcile import (
    DifferenceKind,
    Item,
    Totals,
    compare_items,
    compare_totals,
    overall,
)

PROVINCES = ["11", "31", "44", "51"]
fen = st.integers(min_value=-(10**9), max_value=10**9)


def feed(
    sid: str = "S1",
    *,
    fund: int = 100,
    ip: str = "11",
    tp: str = "31",
    inst: str = "H1",
    kind: str = "settlement",
    cancels: str = "",
    day: dt.date = dt.date(2026, 3, 5),
    account: int = 0,
    large: int = 0,
) -> FeedSettlement:
    return FeedSettlement(
        1,
        sid,
        kind,
        cancels,
        inst,
        ip + "0100",
        tp + "0100",
        Category.INPATIENT,
        day,
        fund * 2 + large + account,
        fund,
        large,
        0,
        0,
        0,
        fund + large,
        account,
        fund,
    )


settlements = st.builds(
    lambda sid, f, a, la, ip, tp, inst: feed(str(sid), fund=f, account=a, large=la, ip=ip, tp=tp, inst=inst),
    st.integers(0, 10**6),
    fen,
    fen,
    fen,
    st.sampled_from(PROVINCES),
    st.sampled_from(PROVINCES),
    st.sampled_from(["H1", "H2"]),
)


@given(st.lists(settlements, max_size=40))
def test_batch_posting_balances_and_equals_the_sum_of_single_postings(batch: list[FeedSettlement]) -> None:
    summary = ledger.batch_posting(batch)
    assert sum(e.amount_fen for e in summary) == 0
    per_account: dict[str, int] = {}
    for s in batch:
        for e in ledger.postings_for(s):
            per_account[e.account] = per_account.get(e.account, 0) + e.amount_fen
    assert {e.account: e.amount_fen for e in summary} == {a: v for a, v in per_account.items() if v}


@given(settlements)
def test_a_cancellation_negates_its_settlement_in_the_ledger(s: FeedSettlement) -> None:
    mirror = feed(
        "C" + s.settlement_id,
        fund=-s.pooled_fund_fen,
        large=-s.large_amount_fen,
        account=-s.personal_account_fen,
        ip=s.insured_province,
        tp=s.treatment_province,
        inst=s.institution_code,
        kind="cancellation",
        cancels=s.settlement_id,
    )
    assert ledger.batch_posting([s, mirror]) == []


@given(st.sampled_from(PROVINCES), st.sampled_from(PROVINCES), fen, st.integers(0, 10**6))
def test_every_fund_operation_posting_balances(ip: str, tp: str, amount: int, charge: int) -> None:
    for entries in (
        ledger.prepayment_transfer(ip, tp, amount),
        ledger.clearing_drawn(ip, tp, amount),
        ledger.disbursement(ip, tp, amount, charge),
        ledger.rejection(ip, tp, "H1", (amount, 3, 0, 0, 0, 0)),
        ledger.institution_payment(tp, "H1", amount),
        ledger.prepayment_interest(tp, amount),
    ):
        assert sum(e.amount_fen for e in entries) == 0


def test_bank_charges_never_touch_the_fund_and_interest_goes_to_the_treatment_place() -> None:
    entries = {e.account: e.amount_fen for e in ledger.disbursement("11", "31", 1_000, 7)}
    assert entries["province:11:bank_charges"] == 7
    assert not any("fund" in a for a in entries)
    interest = {e.account: e.amount_fen for e in ledger.prepayment_interest("31", 50)}
    assert interest == {"province:31:cash": 50, "province:31:interest_income": -50}


def test_an_unbalanced_posting_is_an_invariant_violation() -> None:
    with pytest.raises(DomainError) as e:
        ledger.check_balanced([ledger.Entry("a", 1)])
    assert e.value.reason is Reason.INVARIANT_VIOLATED


@given(st.integers(0, 10**12))
def test_annual_prepayment_is_twice_the_q4_monthly_average_to_the_fen(q4: int) -> None:
    p = rules.annual_prepayment(q4)
    assert abs(3 * p - 2 * q4) <= 1  # 2 x q4/3, rounded half up
    assert rules.annual_prepayment(300) == 200 and rules.annual_prepayment(1) == 1 and rules.annual_prepayment(0) == 0


def test_top_up_needs_more_than_90_percent_exactly_90_is_refused() -> None:
    annual = 1_000_000
    with pytest.raises(DomainError) as e:
        rules.check_top_up(1, 900_000, annual, 0)  # exactly 90%
    assert e.value.reason is Reason.TOP_UP_NOT_ALLOWED
    assert rules.check_top_up(1, 900_001, annual, 0) == 2 * 900_001 - annual


def test_top_up_cap_is_twice_the_month_minus_the_annual_prepayment_edges() -> None:
    annual, month = 1_000_000, 950_000
    cap = 2 * month - annual  # 900_000
    assert rules.check_top_up(cap, month, annual, 0) == cap
    with pytest.raises(DomainError) as e:
        rules.check_top_up(cap + 1, month, annual, 0)
    assert e.value.reason is Reason.TOP_UP_ABOVE_CAP
    with pytest.raises(DomainError):
        rules.check_top_up(2, month, annual, cap - 1)  # earlier top-ups of the month count
    assert rules.check_top_up(1, month, annual, cap - 1) == cap


@given(st.integers(0, 10**10), st.integers(0, 10**10))
def test_top_up_cap_never_negative_and_threshold_matches_the_rule(month: int, annual: int) -> None:
    assert rules.top_up_cap(month, annual) >= 0
    assert rules.top_up_threshold_met(month, annual) == (month / 1 > 0.9 * annual if annual else month > 0)


def test_verification_answer_rules() -> None:
    today = dt.date(2026, 3, 10)
    deadline = rules.answer_deadline(dt.date(2026, 3, 1))
    assert deadline == dt.date(2026, 3, 16)
    rules.check_answer(deadline, deadline, False, 100, 100)  # on the deadline day is in time
    for args, reason in (
        ((deadline + dt.timedelta(days=1), deadline, False, 0, 100), Reason.VERIFICATION_DEADLINE_PASSED),
        ((today, deadline, True, 0, 100), Reason.VERIFICATION_ALREADY_ANSWERED),
        ((today, deadline, False, 101, 100), Reason.AMOUNT_OUT_OF_RANGE),
    ):
        with pytest.raises(DomainError) as e:
            rules.check_answer(*args)
        assert e.value.reason is reason


def test_reconciliation_finds_each_kind_of_difference() -> None:
    ours = [Item("A", 10, 5, 1), Item("B", 20, 10, 0), Item("C", 30, 15, 0)]
    theirs = [Item("A", 10, 5, 1), Item("B", 20, 11, 0), Item("D", 40, 20, 0)]
    diffs = compare_items(theirs, ours)
    got = {(d.kind, d.settlement_id, d.field, d.expected_fen, d.actual_fen) for d in diffs}
    assert got == {
        (DifferenceKind.AMOUNT_DIFFERS, "B", "fund_total_fen", 11, 10),
        (DifferenceKind.MISSING_THERE, "C", "fund_total_fen", 0, 15),
        (DifferenceKind.MISSING_HERE, "D", "fund_total_fen", 20, 0),
    }
    assert compare_items(ours, ours) == []


def test_totals_compare_field_by_field_and_overall() -> None:
    mine = [Totals(Category.INPATIENT, 2, 100, 60, 5), Totals(Category.OUTPATIENT, 1, 10, 4, 0)]
    ours = {t.category: t for t in mine} | {None: overall(mine)}
    assert compare_totals([Totals(None, 3, 110, 64, 5)], ours) == []
    diffs = compare_totals([Totals(Category.INPATIENT, 3, 100, 61, 5), Totals(Category.PHARMACY, 0)], ours)
    assert {(d.field, d.expected_fen, d.actual_fen) for d in diffs} == {("count", 3, 2), ("fund_total_fen", 61, 60)}


@given(
    st.lists(st.tuples(st.text("ABC", min_size=1, max_size=3), fen), max_size=20, unique_by=lambda t: t[0]),
    st.lists(st.tuples(st.text("ABC", min_size=1, max_size=3), fen), max_size=20, unique_by=lambda t: t[0]),
)
def test_detail_reconciliation_matches_iff_lists_are_equal(a: list[tuple[str, int]], b: list[tuple[str, int]]) -> None:
    xs = [Item(i, f, f, 0) for i, f in a]
    ys = [Item(i, f, f, 0) for i, f in b]
    assert (compare_items(xs, ys) == []) == (
        sorted(xs, key=lambda i: i.settlement_id) == sorted(ys, key=lambda i: i.settlement_id)
    )


def _statement(status: StatementStatus = StatementStatus.DRAFT) -> Statement:
    line = StatementLine(Category.INPATIENT, 1, 100, 60, 0, 0, 0, 0, 60, 0, adjustment_fen=-10, rejected_fen=5)
    return Statement("ST-202603-11-31", "11", "31", 2026, 3, status, (line,), None, 1)


def test_statement_states_go_in_order_and_the_insured_signing_sets_the_date() -> None:
    now, today = dt.datetime(2026, 4, 5, tzinfo=dt.UTC), dt.date(2026, 4, 5)
    s = _statement()
    assert s.amount_due_fen == 45
    with pytest.raises(DomainError) as e:
        s.confirm(Side.INSURED, now, today)
    assert e.value.reason is Reason.STATEMENT_STATE_INVALID
    with pytest.raises(DomainError):
        s.disburse(today, 0)
    s = s.confirm(Side.TREATMENT, now, today)
    with pytest.raises(DomainError):
        s.confirm(Side.TREATMENT, now, today)
    s = s.confirm(Side.INSURED, now, today)
    assert s.signing_date == today and payment_deadline(today) == dt.date(2026, 5, 5)
    s = s.disburse(today, 3)
    assert s.status is StatementStatus.DISBURSED and s.bank_charge_fen == 3


def test_cancellations_clear_in_the_cancelled_settlements_month_late_rows_are_detected() -> None:
    c = feed("C1", fund=-5, kind="cancellation", cancels="S1", day=dt.date(2026, 4, 2))
    assert clearing_month(c, dt.date(2026, 3, 31)) == 202603
    assert clearing_month(c, None) == 202604
    assert is_late(11, 10) and not is_late(10, 10) and not is_late(99, None)


def test_assemble_keeps_pairs_with_only_adjustments_or_rejections() -> None:
    key = ("11", "31", Category.INPATIENT)
    base = {key: StatementLine(Category.INPATIENT, 2, 100, 60, 0, 0, 0, 0, 60, 0)}
    adjustments = {("51", "31", Category.OUTPATIENT): (-5, 0, 0, 0, 0, -2)}
    out = assemble(2026, 4, base, adjustments, {key: (4, 0, 0, 0, 0, 0)}, None, 99)
    by_id = {s.statement_id: s for s in out}
    assert by_id["ST-202604-11-31"].amount_due_fen == 56
    assert by_id["ST-202604-51-31"].amount_due_fen == -7 and by_id["ST-202604-51-31"].settlement_count == 0
    assert all(s.through_position == 99 for s in out)


def test_the_personal_account_is_owed_beside_each_fund_on_its_own_line() -> None:
    line = StatementLine(Category.INPATIENT, 2, 900, 300, 50, 0, 7, 3, 360, 268)
    line = with_claims(line, (-10, 0, 0, 0, 0, -2), (4, 1, 0, 0, 0, 0))
    st_ = Statement("ST-202603-11-31", "11", "31", 2026, 3, StatementStatus.DRAFT, (line,), None, 2)
    owed = {o.payer: o for o in st_.owed}
    assert [o.payer for o in st_.owed] == list(PAYERS)
    assert owed[Payer.PERSONAL_ACCOUNT].due_fen == 268 - 2
    assert owed[Payer.POOLED_FUND].due_fen == 300 - 10 - 4
    assert owed[Payer.LARGE_AMOUNT].due_fen == 50 - 1
    assert st_.amount_due_fen == sum(o.due_fen for o in st_.owed) == 360 + 268 - 12 - 5


def test_the_ledger_books_each_fund_and_the_account_and_the_institution_is_owed_both() -> None:
    s = feed("S1", fund=1_000, large=200, account=268_450)
    entries = {e.account: e.amount_fen for e in ledger.postings_for(s)}
    assert entries == {
        "province:11:fund_expense:pooled_fund": 1_000,
        "province:11:fund_expense:large_amount": 200,
        "province:11:account_expense": 268_450,
        "province:11:payable:31": -269_650,
        "province:31:receivable:11": 269_650,
        "institution:H1:receivable": -269_650,
    }


def test_a_deduction_takes_the_funds_in_order_never_the_account_never_beyond_what_is_left() -> None:
    paid = (100, 50, 0, 20, 5, 1_000)
    assert rules.split_deduction(0, paid, NO_AMOUNTS) == NO_AMOUNTS
    assert rules.split_deduction(120, paid, NO_AMOUNTS) == (100, 20, 0, 0, 0, 0)
    assert rules.split_deduction(175, paid, NO_AMOUNTS) == (100, 50, 0, 20, 5, 0)
    assert rules.split_deduction(40, paid, (100, 20, 0, 0, 0, 0)) == (0, 30, 0, 10, 0, 0)
    for amount, already in ((176, NO_AMOUNTS), (56, (100, 20, 0, 0, 0, 0)), (-1, NO_AMOUNTS)):
        with pytest.raises(DomainError) as e:
            rules.split_deduction(amount, paid, already)
        assert e.value.reason is Reason.AMOUNT_OUT_OF_RANGE


@given(st.lists(st.integers(0, 10**6), min_size=6, max_size=6), st.integers(0, 10**7))
def test_a_deduction_split_sums_to_the_amount_and_stays_within_each_payer(paid: list[int], amount: int) -> None:
    funds = sum(paid[:5])
    if amount > funds:
        with pytest.raises(DomainError):
            rules.split_deduction(amount, tuple(paid), NO_AMOUNTS)
        return
    split = rules.split_deduction(amount, tuple(paid), NO_AMOUNTS)
    assert sum(split) == amount and split[5] == 0
    assert all(0 <= x <= p for x, p in zip(split, paid, strict=True))


def test_the_top_up_cap_applies_the_90_percent_rule_itself() -> None:
    annual = 1_000_000
    assert rules.top_up_cap(900_000, annual) == 0  # exactly 90%: no top-up at all
    assert rules.top_up_cap(900_001, annual) == 800_002
    assert rules.top_up_cap(0, 0) == 0


@given(st.integers(0, 10**10), st.integers(0, 10**10))
def test_a_top_up_cap_above_zero_implies_the_threshold(month: int, annual: int) -> None:
    if rules.top_up_cap(month, annual) > 0:
        assert rules.top_up_threshold_met(month, annual)


def test_a_top_up_goes_requested_then_reviewed_then_disbursed() -> None:
    s = rules.TopUpStatus
    assert rules.next_top_up_status(s.REQUESTED, s.APPROVED) is s.APPROVED
    assert rules.next_top_up_status(s.REQUESTED, s.REFUSED) is s.REFUSED
    assert rules.next_top_up_status(s.APPROVED, s.DISBURSED) is s.DISBURSED
    for current, step in ((s.REQUESTED, s.DISBURSED), (s.REFUSED, s.DISBURSED), (s.APPROVED, s.REFUSED)):
        with pytest.raises(DomainError) as e:
            rules.next_top_up_status(current, step)
        assert e.value.reason is Reason.TOP_UP_STATE_INVALID and e.value.metadata["status"] == current.value
