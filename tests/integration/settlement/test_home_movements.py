"""Accumulators across home and away (issue #14 item 4, docs/design/accumulators.md): the insured
bureau reports its own spending (HomeMovementService) so that no deductible, cap or account
balance is spent twice between home and away, and the personal account never goes negative —
also when home reports race settlements away, many at once (on PostgreSQL with --db=postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import grpc
import pytest

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import home_pb2 as hm
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import RETIREE, RETIREE_CARD, World, date, lines, md, rpc_error, setup_world

pytestmark = pytest.mark.db

BEIJING = "110100"
T = TypeVar("T")
RETIREE_BALANCE = 268_450  # the registry's balance of the retiree's personal account


def movement(
    mid: str,
    w: World,
    *,
    kind: int = hm.HOME_MOVEMENT_KIND_SETTLEMENT,
    deductible: int = 0,
    base: int = 0,
    account: int = 0,
    home_after: int | None = None,
    expected: st.Accumulators | None = None,
) -> hm.HomeMovement:
    m = hm.HomeMovement(
        movement_id=mid,
        person_no=RETIREE,
        year=w.day.year,
        kind=kind,
        delta=st.Accumulators(outpatient_deductible_borne_fen=deductible, outpatient_pooled_base_fen=base),
        account_delta_fen=account,
        occurred_on=date(w.day),
    )
    if home_after is not None:
        m.home_balance_after_fen = home_after
    if expected is not None:
        m.expected.CopyFrom(expected)
    return m


async def report(w: World, rid: str, *movements: hm.HomeMovement) -> hm.ReportHomeMovementsResponse:
    return await w.c.home.ReportHomeMovements(
        hm.ReportHomeMovementsRequest(request_id=rid, insured_region_code=BEIJING, movements=movements)
    )


async def person_year(w: World, region: str = BEIJING) -> hm.PersonYearTotals:
    resp = await w.c.home.GetPersonYear(
        hm.GetPersonYearRequest(insured_region_code=region, person_no=RETIREE, year=w.day.year)
    )
    return resp.person_year


RETRIES = 20


async def retried(calls: Iterator[Awaitable[T]]) -> T:
    """A client that follows the contract: UNAVAILABLE (a lock wait over the lock timeout on a
    loaded machine, say) is retried with the same request id and payload."""
    for call in calls:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("still UNAVAILABLE after every retry")


def outpatient(w: World, rid: str, n: int, seed: int) -> st.SettleOutpatientRequest:
    return st.SettleOutpatientRequest(
        request_id=rid,
        institution_code=HOSPITAL,
        hospital_visit_no=rid,
        credential=RETIREE_CARD,
        service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
        visit_date=date(w.day),
        diagnosis_codes=["J06.900"],
        lines=lines(n, seed, w.day),
        use_personal_account=True,
    )


async def deductible_limit(w: World) -> int:
    """The general-outpatient deductible of the retiree's policy (a hospital's 5206 view)."""
    acc = await w.c.settlement.GetAccumulators(
        st.GetAccumulatorsRequest(institution_code=HOSPITAL, person_no=RETIREE, year=w.day.year), metadata=md()
    )
    (cap,) = [c for c in acc.caps if c.cap == "deductible:general_outpatient"]
    return cap.limit_fen


async def test_home_movements_count_once_and_away_settlements_start_from_them(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    before = await person_year(w)
    assert not before.account_known and before.totals.outpatient_deductible_borne_fen == 0
    # a home settlement: 300.00 of deductible borne, 500.00 of base, 1,000.00 from the account
    first = movement("h-1", w, deductible=30_000, base=50_000, account=-100_000, home_after=RETIREE_BALANCE - 100_000)
    done = await report(w, "r-1", first)
    assert (done.applied, done.skipped) == (1, 0)
    (t,) = done.totals
    assert t.account_known and t.totals.account_balance_fen == RETIREE_BALANCE - 100_000
    assert t.totals.outpatient_deductible_borne_fen == 30_000 and t.totals.outpatient_pooled_base_fen == 50_000
    # the same request again answers without applying twice; the movement in another report is skipped
    again = await report(w, "r-1", first)
    assert (again.applied, again.skipped) == (1, 0) and again.totals == done.totals
    other = await report(w, "r-2", first)
    assert (other.applied, other.skipped) == (0, 1) and other.totals == done.totals
    # the same movement id with other content is refused, and nothing changes
    changed = movement("h-1", w, deductible=1, base=1)
    d = error_details(await rpc_error(report(w, "r-3", changed)))
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT and d.reason == "REASON_MOVEMENT_ID_REUSED", d
    # computed from totals that are no longer the totals: ABORTED, with the current ones
    stale = movement("h-2", w, deductible=10_000, base=10_000, expected=before.totals)
    err = await rpc_error(report(w, "r-4", stale))
    d = error_details(err)
    assert err.code() == grpc.StatusCode.ABORTED and d.reason == "REASON_ACCUMULATORS_CHANGED", d
    assert d.metadata["outpatient_deductible_borne_fen"] == "30000" and d.metadata["movement_id"] == "h-2"
    # a debit the account does not cover is refused whole (the credit before it is not applied either)
    credit = movement("h-3", w, kind=hm.HOME_MOVEMENT_KIND_ACCOUNT_CREDIT, account=5_000, home_after=1)
    over = movement(
        "h-4", w, kind=hm.HOME_MOVEMENT_KIND_ACCOUNT_DEBIT, account=-(RETIREE_BALANCE - 100_000 + 5_001), home_after=0
    )
    d = error_details(await rpc_error(report(w, "r-5", credit, over)))
    assert d.reason == "REASON_ACCOUNT_INSUFFICIENT" and d.metadata["movement_id"] == "h-4", d
    # a cancellation cannot take more than the totals hold
    cancel = movement("h-5", w, kind=hm.HOME_MOVEMENT_KIND_CANCELLATION, deductible=-30_001)
    d = error_details(await rpc_error(report(w, "r-6", cancel)))
    assert d.reason == "REASON_MOVEMENT_EXCEEDS_TOTALS" and d.metadata["field"] == "outpatient_deductible_borne_fen"
    assert (await person_year(w)) == t  # none of the refused reports changed anything
    # a movement that contradicts its kind is INVALID_ARGUMENT with the field
    wrong = movement("h-6", w, kind=hm.HOME_MOVEMENT_KIND_SETTLEMENT, deductible=-1)
    d = error_details(await rpc_error(report(w, "r-7", wrong)))
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT and [v.field for v in d.violations] == ["movements[0].kind"]

    # away: the settlement starts from the home totals and the home-reduced balance
    limit = await deductible_limit_after_visit(w)
    s = (await w.c.settlement.SettleOutpatient(outpatient(w, "away-1", 6, 4), metadata=md())).settlement
    b = s.breakdown
    assert b.deductible_fen == min(limit - 30_000, b.in_scope_fen), (b.deductible_fen, limit)
    assert b.account_balance_after_fen == RETIREE_BALANCE - 100_000 - b.personal_account_fen
    after = await person_year(w)
    assert after.totals.outpatient_deductible_borne_fen == 30_000 + b.deductible_fen
    assert after.totals.account_balance_fen == b.account_balance_after_fen
    # another bureau cannot read or report the retiree: the person is settled here as Beijing's
    other_region = await rpc_error(person_year(w, "510100"))
    assert other_region.code() == grpc.StatusCode.PERMISSION_DENIED
    # and a bureau cannot report for a region not its own (the access rule, before any handler)
    chengdu = (("x-medsettle-principal", "urn:medsettle:bureau:insured:510100"),)
    foreign = hm.ReportHomeMovementsRequest(
        request_id="r-foreign", insured_region_code=BEIJING, movements=[movement("h-9", w, deductible=1, base=1)]
    )
    d = error_details(await rpc_error(w.c.home.ReportHomeMovements(foreign, metadata=chengdu)))
    assert d.code == grpc.StatusCode.PERMISSION_DENIED and d.reason == "REASON_NOT_AUTHORISED_FOR_REGION", d


async def deductible_limit_after_visit(w: World) -> int:
    """The deductible limit as a hospital reads it (GetAccumulators needs a visit of the person
    at the caller): open an outpatient visit, read, cancel the visit."""
    v = (
        await w.c.settlement.OpenVisit(
            st.OpenVisitRequest(
                request_id="lim-open",
                institution_code=HOSPITAL,
                hospital_visit_no="lim-open",
                credential=RETIREE_CARD,
                service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
                admission_date=date(w.day),
                diagnosis_codes=["J06.900"],
            ),
            metadata=md(),
        )
    ).visit
    limit = await deductible_limit(w)
    await w.c.settlement.CancelVisit(st.CancelVisitRequest(request_id="lim-cv", visit_id=v.visit_id), metadata=md())
    return limit


async def test_home_reports_racing_away_settlements_spend_no_deductible_or_balance_twice(suite: Host) -> None:
    """Home reports computed from the totals they read (with `expected`) race away settlements of
    the same person; afterwards the deductible borne is each side's share counted once, within the
    policy's limit, and the account is the seed less every debit on both sides, never negative."""
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    limit = await deductible_limit_after_visit(w)
    # the account is known here from the first away settlement's decision
    first = (await w.c.settlement.SettleOutpatient(outpatient(w, "away-0", 4, 1), metadata=md())).settlement
    away = [first.breakdown]
    home_deductible: list[int] = []
    home_debits: list[int] = []
    bill, want_debit = 30_000, 20_000

    async def home(i: int) -> None:
        for attempt in range(200):
            py = await person_year(w)
            borne = py.totals.outpatient_deductible_borne_fen
            ded = max(0, min(limit - borne, bill))
            debit = min(py.totals.account_balance_fen, want_debit)
            m = movement(
                f"race-{i}-{attempt}",
                w,
                deductible=ded,
                base=bill - ded,
                account=-debit,
                home_after=py.totals.account_balance_fen - debit,
                expected=py.totals,
            )
            try:
                await retried(report(w, f"race-r-{i}-{attempt}", m) for _ in range(RETRIES))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.ABORTED, error_details(exc)
                await asyncio.sleep(0.001 * (i % 5))
                continue
            home_deductible.append(ded)
            home_debits.append(debit)
            return
        raise AssertionError("a home report never got through")

    async def away_settle(i: int) -> None:
        req = outpatient(w, f"away-{i + 1}", 3, i + 7)
        s = (await retried(w.c.settlement.SettleOutpatient(req, metadata=md()) for _ in range(RETRIES))).settlement
        away.append(s.breakdown)

    n = 12
    await asyncio.gather(*(home(i) for i in range(n)), *(away_settle(i) for i in range(n)))
    final = (await person_year(w)).totals
    assert len(home_deductible) == n and len(away) == n + 1
    assert final.outpatient_deductible_borne_fen == sum(home_deductible) + sum(b.deductible_fen for b in away)
    assert final.outpatient_deductible_borne_fen <= limit
    spent = sum(home_debits) + sum(b.personal_account_fen for b in away)
    assert final.account_balance_fen == RETIREE_BALANCE - spent >= 0


async def test_the_same_report_sent_many_times_at_once_is_applied_once(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}", file_resident=False)
    m = movement("dup-1", w, deductible=1_000, base=2_000, account=-3_000, home_after=RETIREE_BALANCE - 3_000)
    answers = await asyncio.gather(*(report(w, "dup-r", m) for _ in range(10)))
    assert {(a.applied, a.skipped) for a in answers} == {(1, 0)}
    # and the same movement under ten request ids at once: applied by one, skipped by the rest
    m2 = movement("dup-2", w, deductible=500, base=500)
    answers = await asyncio.gather(*(report(w, f"dup-r2-{i}", m2) for i in range(10)), return_exceptions=True)
    ok = [a for a in answers if isinstance(a, hm.ReportHomeMovementsResponse)]
    assert sum(a.applied for a in ok) == 1, answers
    final = (await person_year(w)).totals
    assert final.outpatient_deductible_borne_fen == 1_500 and final.outpatient_pooled_base_fen == 2_500
    assert final.account_balance_fen == RETIREE_BALANCE - 3_000
