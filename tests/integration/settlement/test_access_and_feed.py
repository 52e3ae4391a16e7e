"""A hospital sees only its own visits; rejections write nothing; the feed misses nothing."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform import outbox
from libs.platform.db import Database
from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL, Clients
from services.settlement.adapters.db import metadata, settlement_events
from tests.integration.settlement.helpers import (
    OTHER_HOSPITAL,
    RESIDENT_CARD,
    RETIREE_CARD,
    lines,
    md,
    open_visit,
    rpc_error,
    settle,
    setup_world,
    upload,
)

pytestmark = pytest.mark.db


async def _row_counts(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        counts = {
            t.name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
            for t in metadata.sorted_tables
        }
    await engine.dispose()
    return counts


async def test_a_hospital_cannot_see_or_touch_another_hospitals_visit(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "own-1")
    await upload(w, "own-up", visit.visit_id, lines(3, 1, w.day))
    other = md(OTHER_HOSPITAL)
    for call in (
        w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=other),
        w.c.settlement.PreSettle(st.PreSettleRequest(visit_id=visit.visit_id), metadata=other),
        w.c.settlement.Settle(st.SettleRequest(request_id="steal", visit_id=visit.visit_id), metadata=other),
    ):
        err = await rpc_error(call)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_details(err).reason == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    # acting for another institution than the authenticated one
    spoof = st.OpenVisitRequest(
        request_id="spoof",
        institution_code=HOSPITAL,
        hospital_visit_no="X",
        credential=RETIREE_CARD,
        service_type=1,
        admission_date=visit.admission_date,
    )
    err = await rpc_error(w.c.settlement.OpenVisit(spoof, metadata=other))
    assert error_details(err).reason == "REASON_NOT_AUTHORISED_FOR_INSTITUTION"
    # no identity at all
    anonymous = Clients(f"127.0.0.1:{suite.port}", parties=False)
    try:
        err = await rpc_error(anonymous.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id)))
    finally:
        await anonymous.close()
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(err).reason == "REASON_INSTITUTION_IDENTITY_MISSING"


async def test_every_rejection_leaves_the_database_unchanged(suite: Host, db_urls: dict[str, str]) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "rj-1")
    await upload(w, "rj-up", visit.visit_id, lines(3, 2, w.day))
    before = await _row_counts(db_urls["settlement"])
    bad_line = st.FeeLine(line_no=9, item_code="005212051654937", quantity_milli=0, unit_price_fen=-5)
    rejected = [
        upload(w, "rj-bad-line", visit.visit_id, [bad_line]),
        upload(w, "rj-unknown-visit", "V-NOPE", lines(1, 1, w.day)),
        settle(w, "rj-other", visit.visit_id, institution=OTHER_HOSPITAL),
        w.c.settlement.CancelSettlement(
            st.CancelSettlementRequest(request_id="rj-c", settlement_id="S-NOPE"), metadata=md()
        ),
        open_visit(w, "rj-dup-visit-no", visit_no="rj-1"),
    ]
    for call in rejected:
        await rpc_error(call)
    err = await rpc_error(upload(w, "rj-bad-line-2", visit.visit_id, [bad_line]))
    fields = {v.field for v in error_details(err).violations}
    assert (
        err.code() == grpc.StatusCode.INVALID_ARGUMENT
        and {"lines[0].quantity_milli", "lines[0].unit_price_fen"} <= fields
    )
    assert await _row_counts(db_urls["settlement"]) == before


async def test_the_feed_delivers_every_settlement_and_cancellation_once_in_order(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    made = []
    for i in range(5):
        visit = await open_visit(w, f"fd-{i}")
        await upload(w, f"fd-up-{i}", visit.visit_id, lines(4, i, w.day))
        made.append((await settle(w, f"fd-s-{i}", visit.visit_id)).settlement_id)
    cancel = await w.c.settlement.CancelSettlement(
        st.CancelSettlementRequest(request_id="fd-c", settlement_id=made[1]), metadata=md()
    )
    made.append(cancel.cancellation.settlement_id)
    seen = [ev async for ev in w.c.settlement.StreamSettlements(st.StreamSettlementsRequest(after_position=0))]
    assert [ev.settlement.settlement_id for ev in seen] == made
    assert [ev.position for ev in seen] == list(range(1, 7))
    resumed = [ev async for ev in w.c.settlement.StreamSettlements(st.StreamSettlementsRequest(after_position=4))]
    assert [ev.settlement.settlement_id for ev in resumed] == made[4:]


async def test_a_row_that_commits_late_is_never_skipped(db_urls: dict[str, str], db_kind: str) -> None:
    """Two writers: A inserts first (lower id) but commits after B. A reader that already moved
    past B's position must still receive A."""
    db = Database(db_urls["settlement"])
    try:
        if db.is_sqlite:
            pytest.skip("SQLite has one writer at a time: a late commit of a lower id cannot happen")
        engine = db.engine
        async with engine.connect() as a_conn:
            a_tx = await a_conn.begin()
            await a_conn.execute(insert(settlement_events).values(event_type="settlement", entity_id="A", payload=b"A"))
            async with engine.begin() as b_conn:  # B: inserted later, commits first
                await b_conn.execute(
                    insert(settlement_events).values(event_type="settlement", entity_id="B", payload=b"B")
                )
            assert await outbox.assign_positions(db, settlement_events) == 1
            first = await outbox.read_after(db, settlement_events, 0)
            assert [r.entity_id for r in first] == ["B"]
            cursor = first[-1].position
            await a_tx.commit()
        assert await outbox.assign_positions(db, settlement_events) == 1
        later = await outbox.read_after(db, settlement_events, cursor)
        assert [r.entity_id for r in later] == ["A"]
        async with engine.connect() as conn:
            ids = (await conn.execute(text("SELECT entity_id FROM settlement_events ORDER BY position"))).scalars()
            assert list(ids) == ["B", "A"]
    finally:
        await db.dispose()


async def test_concurrent_writers_feed_has_no_gaps_or_duplicates(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visits = []
    for i in range(10):
        v = await open_visit(w, f"cw-{i}", cred=RESIDENT_CARD if i % 2 else RETIREE_CARD)
        await upload(w, f"cw-up-{i}", v.visit_id, lines(3, i, w.day))
        visits.append(v.visit_id)
    reader_seen: list[str] = []

    async def reader() -> None:
        stream = w.c.settlement.StreamSettlements(st.StreamSettlementsRequest(after_position=0, follow=True))
        async for ev in stream:
            reader_seen.append(ev.settlement.settlement_id)
            if len(reader_seen) == len(visits):
                stream.cancel()
                return

    task = asyncio.create_task(reader())
    done = await asyncio.gather(*(settle(w, f"cw-s-{i}", v) for i, v in enumerate(visits)))
    await asyncio.wait_for(task, 20)
    assert sorted(reader_seen) == sorted(s.settlement_id for s in done)
    assert len(set(reader_seen)) == len(reader_seen)
