"""Clearing's fund operations and statement transitions (services.clearing.application) against
an in-memory store: the annual prepayment from the previous Q4, emergency top-ups (allowance,
review, disbursement), interest, the signing calendar, confirming and disbursing a statement,
each with its ledger postings and its idempotency. No server, no database."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from libs.core.errors import DomainError, Reason
from services.clearing.application.service import ClearingService
from services.clearing.domain.model import Category, Side, Statement, StatementLine, StatementStatus, statement_id
from services.clearing.domain.rules import TopUpStatus
from tests.unit.clearing.fakes import InMemoryClearingStore

NOW = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)
IP, TP = "11", "31"  # Beijing insured, Shanghai treats


def line(fund_fen: int, account_fen: int = 0) -> StatementLine:
    return StatementLine(Category.INPATIENT, 1, fund_fen + account_fen, fund_fen, 0, 0, 0, 0, fund_fen, account_fen)


def statement(year: int, month: int, fund_fen: int, status: StatementStatus = StatementStatus.DRAFT) -> Statement:
    return Statement(statement_id(IP, TP, year, month), IP, TP, year, month, status, (line(fund_fen),), None, 1)


@pytest.fixture
def store() -> InMemoryClearingStore:
    s = InMemoryClearingStore()
    # 2025 Q4: 300 000 fen a month, signed by both sides (drawn); a December draft does not count
    s.seed(
        statement(2025, 10, 300_000, StatementStatus.CONFIRMED_BY_INSURED_SIDE),
        statement(2025, 11, 300_000, StatementStatus.DISBURSED),
        statement(2025, 12, 300_000, StatementStatus.CONFIRMED_BY_INSURED_SIDE),
        statement(2025, 9, 999_999, StatementStatus.DISBURSED),  # not Q4
    )
    return s


@pytest.fixture
def svc(store: InMemoryClearingStore) -> ClearingService:
    return ClearingService(store, clock=lambda: NOW)


async def balances(svc: ClearingService) -> dict[str, int]:
    return dict(await svc.balances(""))


async def test_the_annual_prepayment_is_twice_the_q4_monthly_average_and_moves_cash(svc, store) -> None:
    view = await svc.funds.compute_annual_prepayment("p1", "fp", IP, TP, 2026)
    assert view.annual_prepayment_fen == 600_000 and view.previous_q4_clearing_fen == 900_000
    b = await balances(svc)
    assert b[f"province:{IP}:cash"] == -600_000 and b[f"province:{TP}:cash"] == 600_000
    assert b[f"province:{IP}:prepayment_paid:{TP}"] == 600_000
    assert b[f"province:{TP}:prepayment_received:{IP}"] == -600_000
    assert sum(b.values()) == 0
    assert await svc.funds.compute_annual_prepayment("p1", "fp", IP, TP, 2026) == view  # replay
    with pytest.raises(DomainError) as e:
        await svc.funds.compute_annual_prepayment("p2", "fp", IP, TP, 2026)
    assert e.value.reason is Reason.PREPAYMENT_ALREADY_SET
    assert (await balances(svc))[f"province:{IP}:cash"] == -600_000  # posted once
    assert store.commits == 1


async def test_concurrent_duplicates_set_one_prepayment(svc, store) -> None:
    a, b = await asyncio.gather(
        svc.funds.compute_annual_prepayment("p1", "fp", IP, TP, 2026),
        svc.funds.compute_annual_prepayment("p1", "fp", IP, TP, 2026),
    )
    assert a == b and store.commits == 1
    assert (await balances(svc))[f"province:{TP}:cash"] == 600_000


async def test_a_top_up_needs_the_month_signed_and_over_90_percent_of_the_prepayment(svc, store) -> None:
    await svc.funds.compute_annual_prepayment("p1", "fp", IP, TP, 2026)
    store.seed(statement(2026, 2, 540_000), statement(2026, 3, 900_000))
    with pytest.raises(DomainError) as e:
        await svc.funds.request_top_up("t1", "fp", IP, TP, 2026, 3, 100_000)
    assert e.value.reason is Reason.STATEMENT_STATE_INVALID  # a draft: confirm it first
    await svc.confirm("c1", "fp", statement_id(IP, TP, 2026, 2), Side.TREATMENT)
    with pytest.raises(DomainError) as e:  # 540 000 is exactly 90%: not more than 90%
        await svc.funds.request_top_up("t2", "fp", IP, TP, 2026, 2, 1)
    assert e.value.reason is Reason.TOP_UP_NOT_ALLOWED
    await svc.confirm("c2", "fp", statement_id(IP, TP, 2026, 3), Side.TREATMENT)
    allowance = await svc.funds.top_up_allowance(IP, TP, 2026, 3)
    assert allowance.cap_fen == 2 * 900_000 - 600_000 and allowance.taken_fen == 0
    with pytest.raises(DomainError) as e:
        await svc.funds.request_top_up("t3", "fp", IP, TP, 2026, 3, allowance.cap_fen + 1)
    assert e.value.reason is Reason.TOP_UP_ABOVE_CAP
    result = await svc.funds.request_top_up("t4", "fp", IP, TP, 2026, 3, 700_000)
    assert result.top_up.status is TopUpStatus.REQUESTED and result.month_top_ups_fen == 700_000
    with pytest.raises(DomainError) as e:  # what is requested already counts against the cap
        await svc.funds.request_top_up("t5", "fp", IP, TP, 2026, 3, 500_001)
    assert e.value.reason is Reason.TOP_UP_ABOVE_CAP
    assert (await balances(svc))[f"province:{TP}:cash"] == 600_000  # no money moved yet


async def test_a_top_up_moves_money_only_once_approved_and_disbursed(svc, store) -> None:
    await svc.funds.compute_annual_prepayment("p1", "fp", IP, TP, 2026)
    store.seed(statement(2026, 3, 900_000, StatementStatus.CONFIRMED_BY_TREATMENT_SIDE))
    tu = (await svc.funds.request_top_up("t1", "fp", IP, TP, 2026, 3, 700_000)).top_up
    with pytest.raises(DomainError) as e:
        await svc.funds.disburse_top_up("d0", "fp", tu.top_up_id, dt.date(2026, 3, 12))
    assert e.value.reason is Reason.TOP_UP_STATE_INVALID
    approved = await svc.funds.review_top_up("r1", "fp", tu.top_up_id, True, "ok")
    assert approved.status is TopUpStatus.APPROVED and approved.review_note == "ok"
    view, pre = await svc.funds.disburse_top_up("d1", "fp", tu.top_up_id, dt.date(2026, 3, 12))
    assert view.status is TopUpStatus.DISBURSED and pre.top_ups_fen == 700_000
    assert (await balances(svc))[f"province:{TP}:cash"] == 1_300_000
    assert await svc.funds.disburse_top_up("d1", "fp", tu.top_up_id, dt.date(2026, 3, 12)) == (view, pre)
    assert (await balances(svc))[f"province:{TP}:cash"] == 1_300_000  # the replay posted nothing
    with pytest.raises(DomainError) as e:
        await svc.funds.review_top_up("r2", "fp", tu.top_up_id, False, "too late")
    assert e.value.reason is Reason.TOP_UP_STATE_INVALID
    with pytest.raises(DomainError) as e:
        await svc.funds.top_up("TUNOPE")
    assert e.value.reason is Reason.TOP_UP_NOT_FOUND


async def test_interest_is_the_treatment_places_income(svc) -> None:
    with pytest.raises(DomainError) as e:
        await svc.funds.record_interest("i0", "fp", IP, TP, 2026, 1_000)
    assert e.value.reason is Reason.PREPAYMENT_NOT_FOUND
    await svc.funds.compute_annual_prepayment("p1", "fp", IP, TP, 2026)
    assert await svc.funds.record_interest("i1", "fp", IP, TP, 2026, 1_000) == -1_000
    assert await svc.funds.record_interest("i2", "fp", IP, TP, 2026, 500) == -1_500
    b = await balances(svc)
    assert b[f"province:{TP}:interest_income"] == -1_500 and not any(k.startswith(f"province:{IP}:int") for k in b)


async def test_the_signing_moves_the_months_clearing_out_of_the_prepayment_and_sets_the_due_date(svc, store) -> None:
    await svc.funds.set_calendar("cal", "fp", 2026, [dt.date(2026, 3, 10), dt.date(2026, 4, 14)])
    store.seed(statement(2026, 2, 250_000))
    sid = statement_id(IP, TP, 2026, 2)
    with pytest.raises(DomainError) as e:
        await svc.confirm("c0", "fp", sid, Side.INSURED)
    assert e.value.reason is Reason.STATEMENT_STATE_INVALID
    await svc.confirm("c1", "fp", sid, Side.TREATMENT)
    signed = await svc.confirm("c2", "fp", sid, Side.INSURED)
    assert signed.status is StatementStatus.CONFIRMED_BY_INSURED_SIDE
    assert signed.signing_date == dt.date(2026, 3, 10) and signed.due_date == dt.date(2026, 4, 14)
    b = await balances(svc)
    assert b[f"province:{IP}:payable:{TP}"] == 250_000 and b[f"province:{IP}:prepayment_paid:{TP}"] == -250_000
    paid = await svc.disburse("d1", "fp", sid, dt.date(2026, 4, 1), 300)
    assert paid.status is StatementStatus.DISBURSED and paid.bank_charge_fen == 300
    b = await balances(svc)
    assert b[f"province:{IP}:prepayment_paid:{TP}"] == 0 and b[f"province:{IP}:cash"] == -250_300
    assert b[f"province:{IP}:bank_charges"] == 300 and sum(b.values()) == 0
    assert await svc.disburse("d1", "fp", sid, dt.date(2026, 4, 1), 300) == paid
    with pytest.raises(DomainError) as e:
        await svc.disburse("d2", "fp", sid, dt.date(2026, 4, 1), 300)
    assert e.value.reason is Reason.STATEMENT_STATE_INVALID
    with pytest.raises(DomainError) as e:
        await svc.confirm("c3", "fp", "ST-NOPE", Side.TREATMENT)
    assert e.value.reason is Reason.STATEMENT_NOT_FOUND


async def test_a_reused_request_id_is_refused_and_writes_nothing(svc, store) -> None:
    await svc.funds.set_calendar("cal", "fp", 2026, [dt.date(2026, 3, 10)])
    with pytest.raises(DomainError) as e:
        await svc.funds.set_calendar("cal", "other", 2026, [dt.date(2026, 3, 11)])
    assert e.value.reason is Reason.REQUEST_ID_REUSED
    assert await svc.funds.set_calendar("cal2", "fp", 2027, []) == []
    assert [d for d in store.state.calendar] == [dt.date(2026, 3, 10)]
