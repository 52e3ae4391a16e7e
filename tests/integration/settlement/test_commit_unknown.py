"""A COMMIT whose answer is lost is never answered as a failure (PostgreSQL, through a proxy).

Settlement's database is reached through ``tests/pgproxy.py``, which cuts one COMMIT: after
the server answered it (the commit is durable, the answer lost) or before forwarding it (the
transaction never commits). Every mutating settlement call must then answer what was stored,
exactly once, and a retry with the same request_id the same answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform.host import Host
from libs.platform.settings import Settings
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from services.settlement.adapters.db import fee_lines, idempotency_keys, manual_claims, settlements, visits
from tests.integration.settlement.helpers import (
    RESIDENT_CARD,
    World,
    date,
    lines,
    md,
    open_visit,
    settle,
    setup_world,
    upload,
)
from tests.pgproxy import PgProxy

pytestmark = pytest.mark.db


@dataclasses.dataclass
class Env:
    w: World
    proxy: PgProxy
    url: str  # settlement's database, directly


@pytest.fixture
async def env(settings: Settings, db_kind: str) -> AsyncIterator[Env]:
    if db_kind != "postgres":
        pytest.skip("the COMMIT is cut on the PostgreSQL wire protocol")
    from services.suite import start

    direct = settings.database_url("settlement")
    proxy = await PgProxy().start()
    via = direct.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    assert via != direct
    proxied = settings.model_copy(update={"settlement_database_url": via})
    host: Host = await start(proxied, ["filing", "eligibility", "settlement"], port=0, run_migrations=False)
    try:
        yield Env(await setup_world(f"127.0.0.1:{host.port}"), proxy, direct)
    finally:
        await host.stop(drain=False)
        await proxy.stop()


async def _count(url: str, table: Any, *where: Any) -> int:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
    await engine.dispose()
    return int(n)


async def _cut(env: Env, call: Callable[[], Awaitable[Any]], *, after_reply: bool = True) -> Any:
    """Runs ``call`` with its COMMIT cut; checks the cut happened and the call still succeeded."""
    cuts = env.proxy.cuts
    env.proxy.arm_commit_cut(after_reply=after_reply)
    answer = await call()
    assert env.proxy.cuts == cuts + 1, "the proxy never saw the call's COMMIT"
    return answer


@pytest.mark.parametrize("after_reply", [True, False], ids=["durable-answer-lost", "never-committed"])
async def test_every_mutating_call_answers_what_was_stored_when_its_commit_answer_is_lost(
    env: Env, after_reply: bool
) -> None:
    w, tag = env.w, "a" if after_reply else "b"
    key_count = await _count(env.url, idempotency_keys)

    visit = await _cut(env, lambda: open_visit(w, f"{tag}-open"), after_reply=after_reply)
    assert (await open_visit(w, f"{tag}-open")).visit_id == visit.visit_id
    assert await _count(env.url, visits, visits.c.hospital_visit_no == f"{tag}-open") == 1

    fees = lines(6, 3, w.day)
    await _cut(env, lambda: upload(w, f"{tag}-up", visit.visit_id, fees), after_reply=after_reply)
    await upload(w, f"{tag}-up", visit.visit_id, fees)
    assert await _count(env.url, fee_lines, fee_lines.c.visit_id == visit.visit_id) == 6

    # Settle goes through the group-commit batch (hot.py on PostgreSQL)
    done = await _cut(env, lambda: settle(w, f"{tag}-settle", visit.visit_id), after_reply=after_reply)
    assert (await settle(w, f"{tag}-settle", visit.visit_id)).settlement_id == done.settlement_id
    assert await _count(env.url, settlements, settlements.c.visit_id == visit.visit_id) == 1

    cancel = st.CancelSettlementRequest(
        request_id=f"{tag}-cancel", institution_code=HOSPITAL, settlement_id=done.settlement_id
    )
    cancelled = await _cut(env, lambda: w.c.settlement.CancelSettlement(cancel, metadata=md()), after_reply=after_reply)
    again = await w.c.settlement.CancelSettlement(cancel, metadata=md())
    assert again.cancellation.settlement_id == cancelled.cancellation.settlement_id
    assert cancelled.cancellation.cancels_settlement_id == done.settlement_id
    assert await _count(env.url, settlements, settlements.c.visit_id == visit.visit_id) == 2

    resettled = await settle(w, f"{tag}-settle-2", visit.visit_id)
    reverse = st.ReverseTransactionRequest(request_id=f"{tag}-rev", original_request_id=f"{tag}-settle-2")
    rev = await _cut(env, lambda: w.c.settlement.ReverseTransaction(reverse, metadata=md()), after_reply=after_reply)
    assert rev.reversed and rev.cancellation.cancels_settlement_id == resettled.settlement_id
    again_rev = await w.c.settlement.ReverseTransaction(reverse, metadata=md())
    assert again_rev.cancellation.settlement_id == rev.cancellation.settlement_id
    assert await _count(env.url, settlements, settlements.c.visit_id == visit.visit_id) == 4

    outpatient = st.SettleOutpatientRequest(
        request_id=f"{tag}-op",
        institution_code=HOSPITAL,
        hospital_visit_no=f"{tag}-MZ",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
        visit_date=date(w.day),
        lines=lines(4, 5, w.day),
    )
    op = await _cut(env, lambda: w.c.settlement.SettleOutpatient(outpatient, metadata=md()), after_reply=after_reply)
    op_again = await w.c.settlement.SettleOutpatient(outpatient, metadata=md())
    assert op_again.settlement.settlement_id == op.settlement.settlement_id
    assert await _count(env.url, visits, visits.c.hospital_visit_no == f"{tag}-MZ") == 1
    assert await _count(env.url, settlements, settlements.c.visit_id == op.visit.visit_id) == 1

    claim_req = st.SubmitManualClaimRequest(
        request_id=f"{tag}-mc",
        institution_code=HOSPITAL,
        hospital_visit_no=f"{tag}-mc",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        admission_date=date(w.day),
        discharge_date=date(w.day),
        diagnosis_codes=["K35.800"],
        lines=lines(5, 9, w.day),
        failure_reason="REASON_FILING_REQUIRED",
    )
    claim = await _cut(env, lambda: w.c.settlement.SubmitManualClaim(claim_req, metadata=md()), after_reply=after_reply)
    claim_again = await w.c.settlement.SubmitManualClaim(claim_req, metadata=md())
    assert claim_again.claim.claim_id == claim.claim.claim_id
    assert await _count(env.url, manual_claims, manual_claims.c.claim_id == claim.claim.claim_id) == 1

    process = st.ProcessManualClaimRequest(request_id=f"{tag}-mcp", claim_id=claim.claim.claim_id)
    processed = await _cut(env, lambda: w.c.claims.ProcessManualClaim(process), after_reply=after_reply)
    assert processed.claim.status == st.MANUAL_CLAIM_STATUS_PROCESSED
    assert (await w.c.claims.ProcessManualClaim(process)).claim.reimbursed_fen == processed.claim.reimbursed_fen

    # every request stored exactly one key: the nine above
    assert await _count(env.url, idempotency_keys) == key_count + 9
