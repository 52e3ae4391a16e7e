"""Exactly once: idempotent retries, refused key reuse, concurrent duplicates, reversal by request id,
and concurrent settlements of one person that never spend a cap, a deductible or a balance twice."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.platform.settings import SERVICES, Settings
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from services.settlement.adapters.db import accounts, accumulators, settlement_events, settlements
from services.suite import start
from tests.integration.settlement.helpers import (
    OTHER_HOSPITAL,
    RETIREE,
    World,
    lines,
    md,
    open_visit,
    rpc_error,
    settle,
    setup_world,
    upload,
)

pytestmark = pytest.mark.db


async def _count(url: str, table) -> int:  # type: ignore[no-untyped-def]
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
    await engine.dispose()
    return int(n)


async def _visit_with_fees(w: World, tag: str, n: int = 8, institution: str = HOSPITAL) -> str:
    visit = await open_visit(w, f"open-{tag}", institution=institution)
    await upload(w, f"up-{tag}", visit.visit_id, lines(n, hash(tag) % 97, w.day), institution=institution)
    return visit.visit_id


async def test_retry_returns_the_stored_answer_and_reuse_with_another_payload_is_refused(
    suite: Host, db_urls: dict[str, str]
) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit_id = await _visit_with_fees(w, "a")
    first = await settle(w, "same-key", visit_id)
    again = await settle(w, "same-key", visit_id)
    assert again.settlement_id == first.settlement_id and again.breakdown == first.breakdown
    err = await rpc_error(settle(w, "same-key", visit_id, account=False))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(err).reason == "REASON_REQUEST_ID_REUSED"
    assert await _count(db_urls["settlement"], settlements) == 1


async def test_concurrent_duplicates_run_once(suite: Host, db_urls: dict[str, str]) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit_id = await _visit_with_fees(w, "b")
    results = await asyncio.gather(*(settle(w, "dup-key", visit_id) for _ in range(12)), return_exceptions=True)
    ids = {r.settlement_id for r in results if isinstance(r, st.Settlement)}
    errors = [r for r in results if not isinstance(r, st.Settlement)]
    assert len(ids) == 1, (ids, errors)
    # a duplicate may lose the race and be told to retry, never settle twice
    assert all(error_details(e).reason == "REASON_CONCURRENT_UPDATE" for e in errors)
    assert await _count(db_urls["settlement"], settlements) == 1
    assert await _count(db_urls["settlement"], settlement_events) == 1


async def test_reverse_transaction_undoes_a_settlement_whose_answer_was_lost(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit_id = await _visit_with_fees(w, "c")
    lost = await settle(w, "lost-answer", visit_id)
    resp = await w.c.settlement.ReverseTransaction(
        st.ReverseTransactionRequest(request_id="rev-1", original_request_id="lost-answer"), metadata=md()
    )
    assert resp.reversed and resp.cancellation.cancels_settlement_id == lost.settlement_id
    # retried reversal: same answer
    again = await w.c.settlement.ReverseTransaction(
        st.ReverseTransactionRequest(request_id="rev-1", original_request_id="lost-answer"), metadata=md()
    )
    assert again.cancellation.settlement_id == resp.cancellation.settlement_id


async def test_reversing_a_call_that_never_arrived_makes_it_refused_later(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit_id = await _visit_with_fees(w, "d")
    resp = await w.c.settlement.ReverseTransaction(
        st.ReverseTransactionRequest(request_id="rev-2", original_request_id="never-arrived"), metadata=md()
    )
    assert not resp.reversed
    err = await rpc_error(settle(w, "never-arrived", visit_id))
    assert error_details(err).reason == "REASON_REQUEST_ID_REUSED"


async def _settle_one_person_at_once(w: World, tag: str, n: int, url: str) -> list[st.Settlement]:
    """Settles n visits of the retiree, at two hospitals, all at once; checks that the balance is
    spent exactly once and that the stored accumulators are the exact sum of what the
    settlements say they added."""
    visits = [
        await _visit_with_fees(w, f"{tag}{i}", n=10, institution=HOSPITAL if i % 2 else OTHER_HOSPITAL)
        for i in range(n)
    ]
    done = await asyncio.gather(
        *(settle(w, f"{tag}s{i}", v, institution=HOSPITAL if i % 2 else OTHER_HOSPITAL) for i, v in enumerate(visits))
    )
    assert sum(s.breakdown.personal_account_fen for s in done) == 268_450  # the balance, once, never below 0
    assert sorted(s.breakdown.account_balance_after_fen for s in done)[0] == 0
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        acc = (await conn.execute(select(accumulators).where(accumulators.c.person_no == RETIREE))).one()
        balance = (await conn.execute(select(accounts.c.balance_fen))).scalar_one()
    await engine.dispose()
    assert acc.pooled_paid_fen == sum(s.breakdown.pooled_fund_fen for s in done)
    assert acc.inpatient_deductible_borne_fen == sum(s.breakdown.deductible_fen for s in done)
    assert acc.admissions == n and balance == 0
    return list(done)


async def test_concurrent_settlements_of_one_person_never_spend_a_cap_or_balance_twice(
    suite: Host, db_urls: dict[str, str], db_kind: str
) -> None:
    """Many visits of the same person at two hospitals, settled at once."""
    w = await setup_world(f"127.0.0.1:{suite.port}")
    done = await _settle_one_person_at_once(w, "p", 16 if db_kind == "postgres" else 8, db_urls["settlement"])
    # each admission bore its own deductible once: deductibles of later admissions never exceed the first
    assert all(s.breakdown.deductible_fen >= 0 for s in done)


async def test_a_mixed_burst_gets_the_same_answers_as_one_call_at_a_time(suite: Host, db_urls: dict[str, str]) -> None:
    """Settle calls that arrive together are settled in one group commit; each still gets its own
    answer: good calls settle, a call for another hospital's visit is refused, a second call for
    a settled visit is refused, a duplicate replays, a reused key is refused."""
    w = await setup_world(f"127.0.0.1:{suite.port}")
    good = [await _visit_with_fees(w, f"m{i}", n=5) for i in range(6)]
    theirs = await _visit_with_fees(w, "m-other", n=5, institution=OTHER_HOSPITAL)
    calls = [settle(w, f"mx-{i}", v) for i, v in enumerate(good)]
    calls += [
        settle(w, "mx-0", good[0]),  # duplicate of the first: replays it
        settle(w, "mx-second", good[1]),  # another key for a visit settled in the same burst
        settle(w, "mx-steal", theirs),  # not this hospital's visit
        settle(w, "mx-2", good[3]),  # a key of this burst reused for another visit
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    settled = [r for r in results[:6] if isinstance(r, st.Settlement)]
    assert len(settled) == 6
    assert isinstance(results[6], st.Settlement) and results[6].settlement_id == results[0].settlement_id
    assert error_details(results[7]).reason == "REASON_VISIT_STATE_INVALID"
    assert error_details(results[8]).reason == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    assert error_details(results[9]).reason == "REASON_REQUEST_ID_REUSED"
    assert await _count(db_urls["settlement"], settlements) == 6
    # the person's accumulators are the sum of the six settlements, as one at a time would leave them
    engine = create_async_engine(db_urls["settlement"])
    async with engine.connect() as conn:
        acc = (await conn.execute(select(accumulators).where(accumulators.c.person_no == RETIREE))).one()
    await engine.dispose()
    assert acc.pooled_paid_fen == sum(s.breakdown.pooled_fund_fen for s in settled)
    assert acc.admissions == 6


async def test_overlapping_batches_of_one_person_serialise_on_the_person(
    settings: Settings, db_urls: dict[str, str], db_kind: str
) -> None:
    """Small batches, two writers at once (as on PostgreSQL under load): every batch after the
    first waits for the one holding the person's row and starts from what it left, so the
    accumulators and the balance are exactly what the settlements say, spent once."""
    small = settings.model_copy(update={"settle_max_batch": 3, "settle_writers": 2})
    suite = await start(small, SERVICES, port=0, run_migrations=False)
    try:
        w = await setup_world(f"127.0.0.1:{suite.port}")
        n = 12 if db_kind == "postgres" else 6
        await _settle_one_person_at_once(w, "ob", n, db_urls["settlement"])
        assert await _count(db_urls["settlement"], settlement_events) >= n
    finally:
        await suite.stop(drain=False)
