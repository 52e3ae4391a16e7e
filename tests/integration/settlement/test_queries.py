"""Catalogue download, the line split UploadFees answers, and the queries hospitals ask for
(ListSettlements, ListVisitFees, GetAccumulators), over real gRPC on SQLite and PostgreSQL.

Every date is pinned (the service's today() is patched where a default date is exercised)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest

from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.policy import InsuranceType, default_books
from libs.policy.model import Pool
from medsettle.common.v1 import types_pb2
from medsettle.filing.v1 import filing_pb2
from medsettle.settlement.v1 import catalogue_pb2 as cat
from medsettle.settlement.v1 import catalogue_pb2_grpc
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL, Clients, seed_registry
from services.settlement.application import queries
from services.settlement.application.context import SettlementContext
from tests.integration.settlement.helpers import (
    OTHER_HOSPITAL,
    RESIDENT,
    RESIDENT_CARD,
    RETIREE,
    RETIREE_CARD,
    World,
    date,
    lines,
    md,
    open_visit,
    rpc_error,
    wait_filed,
)

pytestmark = pytest.mark.db

DAY = dt.date(2026, 7, 1)
REGION = "310100"
UNKNOWN_DRUG = "XZ99ZZZ999Z000000000001"  # well formed, in no catalogue


def settlement_service(host: Host) -> SettlementContext:
    """The settlement use cases' shared context: its ``today()`` is the date every use case reads."""
    module = next(m for m in host.modules if m.name == "settlement")
    ctx: SettlementContext = module.service.ctx  # type: ignore[attr-defined]
    return ctx


async def pinned_world(target: str) -> World:
    """The registry and two filings starting before DAY, so every visit can be on pinned dates."""
    c = Clients(target)
    await seed_registry(c, "q")
    await c.filing.CreateFiling(
        filing_pb2.CreateFilingRequest(
            request_id="q-filing-1",
            person_no=RETIREE,
            insured_region_code="110100",
            treatment_region_code=REGION,
            filing_type=types_pb2.FILING_TYPE_RELOCATED_RETIREE,
            insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
            channel=filing_pb2.CHANNEL_APP,
            commitment_signed=True,
            start_date=date(dt.date(2026, 6, 1)),
        )
    )
    await c.filing.CreateFiling(
        filing_pb2.CreateFilingRequest(
            request_id="q-filing-2",
            person_no=RESIDENT,
            insured_region_code="510100",
            treatment_region_code=REGION,
            filing_type=types_pb2.FILING_TYPE_REFERRAL,
            insurance_type=types_pb2.INSURANCE_TYPE_RESIDENT,
            channel=filing_pb2.CHANNEL_WINDOW,
            commitment_signed=True,
            start_date=date(dt.date(2026, 6, 1)),
            end_date=date(dt.date(2027, 5, 31)),
        )
    )
    await wait_filed(c, RETIREE_CARD, DAY)
    await wait_filed(c, RESIDENT_CARD, DAY)
    return World(c, DAY)


@pytest.fixture
async def catalogue_stub(suite: Host) -> AsyncIterator[catalogue_pb2_grpc.CatalogueServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{suite.port}") as channel:
        yield catalogue_pb2_grpc.CatalogueServiceStub(channel)


def fields_of(err: grpc.aio.AioRpcError) -> set[str]:
    return {v.field for v in error_details(err).violations}


async def upload(w: World, rid: str, visit_id: str, fee: list[st.FeeLine]) -> st.UploadFeesResponse:
    return await w.c.settlement.UploadFees(  # type: ignore[no-any-return]
        st.UploadFeesRequest(request_id=rid, institution_code=HOSPITAL, visit_id=visit_id, lines=fee), metadata=md()
    )


async def settle_on(w: World, rid: str, visit_id: str, day: dt.date, *, interim: bool = False) -> st.Settlement:
    req = st.SettleRequest(
        request_id=rid, institution_code=HOSPITAL, visit_id=visit_id, interim=interim, include_lines=True
    )
    req.discharge_date.CopyFrom(date(day))
    return (await w.c.settlement.Settle(req, metadata=md())).settlement


def common(s: st.LineSplit) -> tuple[object, ...]:
    """The fields a settlement's line split and the upload's answer both carry."""
    return (
        s.line_no,
        s.item_code,
        s.item_class,
        s.amount_fen,
        s.full_self_pay_fen,
        s.over_limit_fen,
        s.pre_self_pay_fen,
        s.in_scope_fen,
        s.catalogue_version,
        s.in_catalogue,
    )


def fee_with_unknown_and_refund() -> list[st.FeeLine]:
    fee = lines(10, 3, DAY)
    fee.append(st.FeeLine(line_no=11, item_code=UNKNOWN_DRUG, item_name="?", quantity_milli=2000, unit_price_fen=1234))
    # a refund of half of line 2 (telescoped against it)
    two = fee[1]
    fee.append(
        st.FeeLine(
            line_no=12,
            item_code=two.item_code,
            item_name=two.item_name,
            quantity_milli=-500,
            unit_price_fen=two.unit_price_fen,
            refund_of_line_no=2,
        )
    )
    return fee


# -- catalogue download ------------------------------------------------------------------------


async def test_catalogue_pages_filters_and_items(
    suite: Host, catalogue_stub: catalogue_pb2_grpc.CatalogueServiceStub
) -> None:
    expected = default_books()[1].find(REGION, DAY)
    got: list[cat.CatalogueItem] = []
    token = ""
    pages = 0
    while True:
        page = await catalogue_stub.ListCatalogueItems(
            cat.ListCatalogueItemsRequest(treatment_region_code=REGION, date=date(DAY), page_size=70, page_token=token),
            metadata=md(),
        )
        pages += 1
        assert page.catalogue.version == expected.version and page.catalogue.item_count == len(expected.items)
        assert page.catalogue.effective_from == date(expected.effective_from)
        got.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    assert pages == -(-len(expected.items) // 70)
    assert [i.code for i in got] == sorted(expected.items)
    for item in got:
        want = expected.items[item.code]
        assert item.item_class == want.item_class.value and item.self_pay_first_bps == want.self_pay_first_bps
        assert item.item_class_enum == types_pb2.ItemClass.Value(f"ITEM_CLASS_{want.item_class.value}")
        assert item.HasField("ceiling_fen") == (want.ceiling_fen is not None)
        if want.ceiling_fen is not None:
            assert item.ceiling_fen == want.ceiling_fen
        assert item.name == want.name and item.HasField("restriction") == (want.restriction is not None)
        if want.restriction is not None:
            r = item.restriction
            assert (r.sex or None, r.min_age if r.HasField("min_age") else None) == (
                want.restriction.sex,
                want.restriction.min_age,
            )
            assert (r.max_age if r.HasField("max_age") else None) == want.restriction.max_age
    assert any(i.HasField("restriction") for i in got)

    b_drugs = await catalogue_stub.ListCatalogueItems(
        cat.ListCatalogueItemsRequest(
            treatment_region_code=REGION, date=date(DAY), item_class="B", kind=cat.ITEM_KIND_DRUG, page_size=1000
        ),
        metadata=md(),
    )
    want_b = sorted(c for c, i in expected.items.items() if i.item_class.value == "B" and i.kind.value == "drug")
    assert [i.code for i in b_drugs.items] == want_b and want_b and not b_drugs.next_page_token
    by_enum = await catalogue_stub.ListCatalogueItems(
        cat.ListCatalogueItemsRequest(
            treatment_region_code=REGION,
            date=date(DAY),
            item_class_enum=types_pb2.ITEM_CLASS_B,
            kind=cat.ITEM_KIND_DRUG,
            page_size=1000,
        ),
        metadata=md(),
    )
    assert [i.code for i in by_enum.items] == want_b
    services = await catalogue_stub.ListCatalogueItems(
        cat.ListCatalogueItemsRequest(treatment_region_code=REGION, date=date(DAY), code_prefix="00", page_size=1000),
        metadata=md(),
    )
    assert [i.code for i in services.items] == sorted(c for c in expected.items if c.startswith("00"))
    assert all(i.kind == cat.ITEM_KIND_SERVICE for i in services.items)

    code = want_b[0]
    one = await catalogue_stub.GetCatalogueItem(
        cat.GetCatalogueItemRequest(treatment_region_code=REGION, item_code=code, date=date(DAY)), metadata=md()
    )
    assert one.item.code == code and one.item.item_class == "B" and one.catalogue.version == expected.version
    assert one.item.self_pay_first_bps == expected.items[code].self_pay_first_bps


async def test_catalogue_refusals(suite: Host, catalogue_stub: catalogue_pb2_grpc.CatalogueServiceStub) -> None:
    err = await rpc_error(
        catalogue_stub.GetCatalogueItem(
            cat.GetCatalogueItemRequest(treatment_region_code=REGION, item_code=UNKNOWN_DRUG, date=date(DAY)),
            metadata=md(),
        )
    )
    d = error_details(err)
    assert err.code() == grpc.StatusCode.NOT_FOUND and d.reason == "REASON_CATALOGUE_ITEM_NOT_FOUND"
    assert d.metadata["item_code"] == UNKNOWN_DRUG and d.metadata["region"] == REGION

    for call in (
        catalogue_stub.ListCatalogueItems(
            cat.ListCatalogueItemsRequest(treatment_region_code=REGION, date=date(dt.date(2025, 6, 1))), metadata=md()
        ),
        catalogue_stub.GetCatalogueItem(
            cat.GetCatalogueItemRequest(
                treatment_region_code="440100", item_code=UNKNOWN_DRUG, date=date(dt.date(2025, 6, 1))
            ),
            metadata=md(),
        ),
    ):
        err = await rpc_error(call)
        d = error_details(err)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and d.reason == "REASON_NO_CATALOGUE_IN_EFFECT"
        assert d.metadata["date"] == "2025-06-01"

    err = await rpc_error(
        catalogue_stub.ListCatalogueItems(
            cat.ListCatalogueItemsRequest(
                treatment_region_code="31010",
                code_prefix="X" * 51,
                item_class="D",
                kind=99,  # type: ignore[arg-type]
                page_size=1001,
                date=types_pb2.Date(year=2026, month=2, day=30),
            ),
            metadata=md(),
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(err) == {"treatment_region_code", "code_prefix", "item_class", "kind", "page_size", "date"}
    err = await rpc_error(
        catalogue_stub.ListCatalogueItems(
            cat.ListCatalogueItemsRequest(
                treatment_region_code=REGION, item_class="A", item_class_enum=types_pb2.ITEM_CLASS_C
            ),
            metadata=md(),
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(err) == {"item_class_enum"}
    err = await rpc_error(
        catalogue_stub.GetCatalogueItem(
            cat.GetCatalogueItemRequest(treatment_region_code=REGION, item_code="0" * 51), metadata=md()
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(err) == {"item_code"}

    for token in ("not-a-token", "eyJ4IjoxfQ"):  # garbage; valid base64 JSON without our fields
        err = await rpc_error(
            catalogue_stub.ListCatalogueItems(
                cat.ListCatalogueItemsRequest(treatment_region_code=REGION, date=date(DAY), page_token=token),
                metadata=md(),
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(err).reason == "REASON_PAGE_TOKEN_INVALID" and fields_of(err) == {"page_token"}
    first = await catalogue_stub.ListCatalogueItems(
        cat.ListCatalogueItemsRequest(treatment_region_code=REGION, date=date(DAY), page_size=10), metadata=md()
    )
    err = await rpc_error(  # the token of other filters
        catalogue_stub.ListCatalogueItems(
            cat.ListCatalogueItemsRequest(
                treatment_region_code=REGION, date=date(DAY), item_class="A", page_token=first.next_page_token
            ),
            metadata=md(),
        )
    )
    assert error_details(err).reason == "REASON_PAGE_TOKEN_INVALID"

    err = await rpc_error(  # no authenticated institution
        catalogue_stub.ListCatalogueItems(cat.ListCatalogueItemsRequest(treatment_region_code=REGION, date=date(DAY)))
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_catalogue_default_date_and_a_change_between_pages(
    suite: Host, catalogue_stub: catalogue_pb2_grpc.CatalogueServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = settlement_service(suite)
    books = default_books()[1]
    monkeypatch.setattr(service, "today", lambda: dt.date(2026, 12, 31))
    first = await catalogue_stub.ListCatalogueItems(
        cat.ListCatalogueItemsRequest(treatment_region_code=REGION, page_size=50), metadata=md()
    )
    assert first.catalogue.version == books.find(REGION, dt.date(2026, 12, 31)).version
    second = await catalogue_stub.ListCatalogueItems(
        cat.ListCatalogueItemsRequest(treatment_region_code=REGION, page_size=50, page_token=first.next_page_token),
        metadata=md(),
    )
    assert second.items[0].code > first.items[-1].code
    # midnight: the 2027 catalogue is in effect now; the 2026 token is refused, not mixed in
    monkeypatch.setattr(service, "today", lambda: dt.date(2027, 1, 1))
    err = await rpc_error(
        catalogue_stub.ListCatalogueItems(
            cat.ListCatalogueItemsRequest(
                treatment_region_code=REGION, page_size=50, page_token=second.next_page_token
            ),
            metadata=md(),
        )
    )
    d = error_details(err)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and d.reason == "REASON_CATALOGUE_CHANGED"
    assert d.metadata["token_catalogue_version"] == first.catalogue.version
    assert d.metadata["catalogue_version"] == books.find(REGION, dt.date(2027, 1, 1)).version


# -- the upload's split --------------------------------------------------------------------------


async def test_upload_answers_each_lines_split_as_settle_computes_it(
    suite: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settlement_service(suite), "today", lambda: dt.date(2026, 7, 3))  # the discharge day
    w = await pinned_world(f"127.0.0.1:{suite.port}")
    catalogue = default_books()[1].find(REGION, DAY)
    visit = await open_visit(w, "q-open-1")
    fee = fee_with_unknown_and_refund()
    up = await upload(w, "q-up-1", visit.visit_id, fee)
    assert up.lines_accepted == 12 and [s.line_no for s in up.lines] == list(range(1, 13))
    assert up.catalogue_version == catalogue.version
    by_no = {s.line_no: s for s in up.lines}
    unknown = by_no[11]
    assert not unknown.in_catalogue and unknown.item_class == "" and unknown.full_self_pay_fen == 2468
    assert unknown.item_class_enum == types_pb2.ITEM_CLASS_UNSPECIFIED
    assert not unknown.HasField("ceiling_fen")
    assert [(f.code, f.line_no) for f in up.flags] == [("MON_ITEM_NOT_IN_CATALOGUE", 11)]
    for s in up.lines:
        if s.line_no == 11:
            continue
        item = catalogue.items[s.item_code]
        assert s.in_catalogue and s.item_class == item.item_class.value and s.settlement_id == ""
        assert types_pb2.ItemClass.Name(s.item_class_enum) == f"ITEM_CLASS_{item.item_class.value}"
        assert s.self_pay_first_bps == item.self_pay_first_bps
        assert s.HasField("ceiling_fen") == (item.ceiling_fen is not None)
        assert s.amount_fen == s.full_self_pay_fen + s.over_limit_fen + s.pre_self_pay_fen + s.in_scope_fen
    assert by_no[12].amount_fen < 0 and by_no[12].item_code == by_no[2].item_code

    # a replay of the same upload answers the same split
    again = await upload(w, "q-up-1", visit.visit_id, fee)
    assert list(again.lines) == list(up.lines)

    # a malformed code is still refused, and nothing of the upload is kept
    bad = [st.FeeLine(line_no=13, item_code="NOT-A-CODE", item_name="x", quantity_milli=1000, unit_price_fen=10)]
    err = await rpc_error(upload(w, "q-up-bad", visit.visit_id, bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err).reason == "REASON_ITEM_CODE_INVALID" and fields_of(err) == {"lines[0].item_code"}
    got = await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())
    assert len(got.lines) == 12

    settled = await settle_on(w, "q-settle-1", visit.visit_id, dt.date(2026, 7, 3))
    assert [common(s) for s in settled.breakdown.lines] == [common(s) for s in up.lines]
    assert ("MON_ITEM_NOT_IN_CATALOGUE", 11) in [(f.code, f.line_no) for f in settled.flags]

    # after settling, the visit's fees answer the settled split with its settlement
    fees = await w.c.settlement.ListVisitFees(
        st.ListVisitFeesRequest(institution_code=HOSPITAL, visit_id=visit.visit_id), metadata=md()
    )
    assert [common(r.split) for r in fees.lines] == [common(s) for s in up.lines]
    assert {r.split.settlement_id for r in fees.lines} == {settled.settlement_id}


async def test_upload_after_an_interim_settlement_keeps_the_settled_split(
    suite: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settlement_service(suite), "today", lambda: dt.date(2026, 7, 20))  # the discharge day
    w = await pinned_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "q-open-i")
    first = lines(6, 5, DAY)
    await upload(w, "q-up-i1", visit.visit_id, first)
    interim = await settle_on(w, "q-settle-i", visit.visit_id, dt.date(2026, 7, 10), interim=True)
    more = lines(4, 6, DAY)
    for i, ln in enumerate(more):
        ln.line_no = 7 + i
    up = await upload(w, "q-up-i2", visit.visit_id, more)
    assert [s.line_no for s in up.lines] == list(range(1, 11))
    assert [common(s) for s in up.lines[:6]] == [common(s) for s in interim.breakdown.lines]
    assert {s.settlement_id for s in up.lines[:6]} == {interim.settlement_id}
    assert {s.settlement_id for s in up.lines[6:]} == {""}
    final = await settle_on(w, "q-settle-f", visit.visit_id, dt.date(2026, 7, 20))
    assert [common(s) for s in final.breakdown.lines] == [common(s) for s in up.lines[6:]]


# -- ListVisitFees ------------------------------------------------------------------------------


async def test_visit_fees_pages_and_refusals(suite: Host) -> None:
    w = await pinned_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "q-open-2")
    fee = fee_with_unknown_and_refund()
    up = await upload(w, "q-up-2", visit.visit_id, fee)
    seen: list[st.VisitFeeLine] = []
    flags: list[tuple[str, int]] = []
    token = ""
    pages = 0
    while True:
        page = await w.c.settlement.ListVisitFees(
            st.ListVisitFeesRequest(institution_code=HOSPITAL, visit_id=visit.visit_id, page_size=5, page_token=token),
            metadata=md(),
        )
        pages += 1
        assert page.visit.visit_id == visit.visit_id and page.catalogue_version == up.catalogue_version
        seen.extend(page.lines)
        flags.extend((f.code, f.line_no) for f in page.flags)
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert [r.line.line_no for r in seen] == list(range(1, 13))
    assert [r.split for r in seen] == list(up.lines)
    assert [(r.line.item_code, r.line.quantity_milli, r.line.unit_price_fen) for r in seen] == [
        (f.item_code, f.quantity_milli, f.unit_price_fen) for f in fee
    ]
    assert seen[11].line.refund_of_line_no == 2 and flags == [("MON_ITEM_NOT_IN_CATALOGUE", 11)]

    err = await rpc_error(
        w.c.settlement.ListVisitFees(
            st.ListVisitFeesRequest(institution_code=OTHER_HOSPITAL, visit_id=visit.visit_id),
            metadata=md(OTHER_HOSPITAL),
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(  # naming another institution than the caller's
        w.c.settlement.ListVisitFees(
            st.ListVisitFeesRequest(institution_code=OTHER_HOSPITAL, visit_id=visit.visit_id), metadata=md()
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(
        w.c.settlement.ListVisitFees(st.ListVisitFeesRequest(institution_code=HOSPITAL, visit_id="V404"), metadata=md())
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND and error_details(err).reason == "REASON_VISIT_NOT_FOUND"
    err = await rpc_error(
        w.c.settlement.ListVisitFees(
            st.ListVisitFeesRequest(institution_code=HOSPITAL, visit_id="", page_size=2001), metadata=md()
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(err) == {"visit_id", "page_size"}
    other = await open_visit(w, "q-open-3", cred=RESIDENT_CARD)
    first = await w.c.settlement.ListVisitFees(
        st.ListVisitFeesRequest(institution_code=HOSPITAL, visit_id=visit.visit_id, page_size=5), metadata=md()
    )
    for token in ("%%%", first.next_page_token):  # garbage; the token of another visit
        err = await rpc_error(
            w.c.settlement.ListVisitFees(
                st.ListVisitFeesRequest(institution_code=HOSPITAL, visit_id=other.visit_id, page_token=token),
                metadata=md(),
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(err).reason == "REASON_PAGE_TOKEN_INVALID"


# -- ListSettlements ------------------------------------------------------------------------------


async def test_list_settlements_newest_first_paged_and_filtered(suite: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement_service(suite), "today", lambda: dt.date(2026, 7, 7))  # the cancellation's date
    w = await pinned_world(f"127.0.0.1:{suite.port}")
    ids: list[str] = []
    for i, (cred, day) in enumerate(
        [
            (RETIREE_CARD, dt.date(2026, 7, 2)),
            (RESIDENT_CARD, dt.date(2026, 7, 3)),
            (RETIREE_CARD, dt.date(2026, 7, 4)),
            (RESIDENT_CARD, dt.date(2026, 7, 5)),
            (RETIREE_CARD, dt.date(2026, 7, 6)),
        ]
    ):
        v = await open_visit(w, f"q-ls-open-{i}", cred=cred)
        await upload(w, f"q-ls-up-{i}", v.visit_id, lines(4, 10 + i, DAY))
        ids.append((await settle_on(w, f"q-ls-settle-{i}", v.visit_id, day)).settlement_id)
    cancel = (
        await w.c.settlement.CancelSettlement(
            st.CancelSettlementRequest(request_id="q-ls-cancel", settlement_id=ids[0]), metadata=md()
        )
    ).cancellation

    def request(**kw: object) -> st.ListSettlementsRequest:
        req = st.ListSettlementsRequest(institution_code=HOSPITAL, **kw)  # type: ignore[arg-type]
        req.settle_date_from.CopyFrom(date(dt.date(2026, 7, 1)))
        req.settle_date_to.CopyFrom(date(dt.date(2026, 7, 31)))
        return req

    got: list[st.Settlement] = []
    token = ""
    while True:
        page = await w.c.settlement.ListSettlements(request(page_size=2, page_token=token), metadata=md())
        assert len(page.settlements) <= 2
        got.extend(page.settlements)
        token = page.next_page_token
        if not token:
            break
    # newest first by settle time: the cancellation, then the settlements in reverse order
    assert [s.settlement_id for s in got] == [cancel.settlement_id, *reversed(ids)]
    assert got[-1].cancelled_by_settlement_id == cancel.settlement_id
    assert all(not s.breakdown.lines for s in got) and all(s.breakdown.total_fen for s in got)

    with_lines = await w.c.settlement.ListSettlements(request(include_lines=True, page_size=1), metadata=md())
    assert len(with_lines.settlements[0].breakdown.lines) == 4

    retiree = await w.c.settlement.ListSettlements(request(person_no=RETIREE), metadata=md())
    assert [s.settlement_id for s in retiree.settlements] == [cancel.settlement_id, ids[4], ids[2], ids[0]]
    chengdu = await w.c.settlement.ListSettlements(request(insured_region_code="510100"), metadata=md())
    assert [s.settlement_id for s in chengdu.settlements] == [ids[3], ids[1]]
    cancellations = await w.c.settlement.ListSettlements(request(kind=st.SETTLEMENT_KIND_CANCELLATION), metadata=md())
    assert [s.settlement_id for s in cancellations.settlements] == [cancel.settlement_id]
    narrow = st.ListSettlementsRequest(
        institution_code=HOSPITAL,
        settle_date_from=date(dt.date(2026, 7, 3)),
        settle_date_to=date(dt.date(2026, 7, 4)),
    )
    assert [s.settlement_id for s in (await w.c.settlement.ListSettlements(narrow, metadata=md())).settlements] == [
        ids[2],
        ids[1],
    ]
    # the application query takes the scope as a parameter: a bureau's (persons insured in its
    # region, at any institution) is the same call, ready for when bureaus are authenticated
    chengdu_bureau, _ = await queries.list_settlements(
        settlement_service(suite),
        queries.Scope(insured_region="510100"),
        queries.SettlementFilter(None, None, dt.date(2026, 7, 1), dt.date(2026, 7, 31), None),
        page_size=10,
        page_token="",
    )
    assert [r.settlement_id for r in chengdu_bureau] == [ids[3], ids[1]]
    # the other hospital sees none of them
    theirs = st.ListSettlementsRequest(institution_code=OTHER_HOSPITAL, settle_date_from=date(dt.date(2026, 7, 1)))
    theirs.settle_date_to.CopyFrom(date(dt.date(2026, 7, 31)))
    assert not (await w.c.settlement.ListSettlements(theirs, metadata=md(OTHER_HOSPITAL))).settlements


async def test_list_settlements_refusals_and_default_range(suite: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    w = await pinned_world(f"127.0.0.1:{suite.port}")
    v = await open_visit(w, "q-lr-open")
    await upload(w, "q-lr-up", v.visit_id, lines(3, 1, DAY))
    service = settlement_service(suite)
    monkeypatch.setattr(service, "today", lambda: dt.date(2026, 7, 15))  # the discharge day
    s = await settle_on(w, "q-lr-settle", v.visit_id, dt.date(2026, 7, 15))
    monkeypatch.setattr(service, "today", lambda: dt.date(2026, 8, 10))  # default: the last 30 days
    recent = await w.c.settlement.ListSettlements(st.ListSettlementsRequest(institution_code=HOSPITAL), metadata=md())
    assert [x.settlement_id for x in recent.settlements] == [s.settlement_id]
    monkeypatch.setattr(service, "today", lambda: dt.date(2026, 8, 20))
    later = await w.c.settlement.ListSettlements(st.ListSettlementsRequest(institution_code=HOSPITAL), metadata=md())
    assert not later.settlements

    err = await rpc_error(
        w.c.settlement.ListSettlements(st.ListSettlementsRequest(institution_code=OTHER_HOSPITAL), metadata=md())
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    anonymous = Clients(f"127.0.0.1:{suite.port}", parties=False)
    try:
        err = await rpc_error(
            anonymous.settlement.ListSettlements(st.ListSettlementsRequest(institution_code=HOSPITAL))
        )
    finally:
        await anonymous.close()
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    too_long = st.ListSettlementsRequest(
        institution_code=HOSPITAL,
        settle_date_from=date(dt.date(2026, 1, 1)),
        settle_date_to=date(dt.date(2027, 1, 2)),
    )
    err = await rpc_error(w.c.settlement.ListSettlements(too_long, metadata=md()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(err) == {"settle_date_to"}
    backwards = st.ListSettlementsRequest(
        institution_code=HOSPITAL,
        settle_date_from=date(dt.date(2026, 7, 2)),
        settle_date_to=date(dt.date(2026, 7, 1)),
    )
    err = await rpc_error(w.c.settlement.ListSettlements(backwards, metadata=md()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(err) == {"settle_date_from"}
    bad = st.ListSettlementsRequest(
        institution_code=HOSPITAL,
        insured_region_code="11010",
        person_no="P" * 40,
        page_size=501,
        kind=7,  # type: ignore[arg-type]
    )
    err = await rpc_error(w.c.settlement.ListSettlements(bad, metadata=md()))
    assert fields_of(err) == {"insured_region_code", "page_size", "kind"}
    # beyond the contract's bound (docs/bounds.md) a field is refused before the service's checks
    bad.person_no = "P" * 41
    err = await rpc_error(w.c.settlement.ListSettlements(bad, metadata=md()))
    assert fields_of(err) == {"person_no"}
    err = await rpc_error(
        w.c.settlement.ListSettlements(
            st.ListSettlementsRequest(institution_code=HOSPITAL, page_token="eyJmIjoiMSJ9"), metadata=md()
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_details(err).reason == "REASON_PAGE_TOKEN_INVALID"


# -- GetAccumulators -------------------------------------------------------------------------------


async def test_accumulators_and_what_remains_of_every_cap(suite: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement_service(suite), "today", lambda: dt.date(2026, 8, 1))
    w = await pinned_world(f"127.0.0.1:{suite.port}")
    policy = default_books()[0].find("110100", InsuranceType.EMPLOYEE, DAY)
    v = await open_visit(w, "q-acc-open")
    await upload(w, "q-acc-up", v.visit_id, lines(12, 4, DAY))
    s = await settle_on(w, "q-acc-settle", v.visit_id, dt.date(2026, 7, 8))
    b = s.breakdown
    req = st.GetAccumulatorsRequest(institution_code=HOSPITAL, person_no=RETIREE, year=2026, as_of_date=date(DAY))
    got = await w.c.settlement.GetAccumulators(req, metadata=md())
    a = got.accumulators
    assert got.policy_version == policy.version and got.insured_region_code == "110100"
    assert got.insurance_type == types_pb2.INSURANCE_TYPE_EMPLOYEE and got.as_of_date == date(DAY)
    assert a.year == 2026 and a.admissions == 1
    assert a.pooled_paid_fen == b.pooled_fund_fen and a.inpatient_deductible_borne_fen == b.deductible_fen
    assert a.supplementary_paid_fen == b.large_amount_fen and a.account_balance_fen == b.account_balance_after_fen
    caps = {c.cap: c for c in got.caps}
    ip = caps["inpatient_pool"]
    assert ip.limit_fen == policy.pool_caps_fen[Pool.INPATIENT] and ip.used_fen == b.pooled_fund_fen
    assert ip.remaining_fen == policy.pool_caps_fen[Pool.INPATIENT] - b.pooled_fund_fen
    assert caps["outpatient_pool"].used_fen == 0
    assert policy.supplementary is not None
    supp = caps[policy.supplementary.fund.value]
    assert supp.used_fen == b.large_amount_fen
    assert supp.HasField("limit_fen") == (policy.supplementary.annual_cap_fen is not None)
    threshold = caps["supplementary_threshold"]
    assert threshold.limit_fen == policy.supplementary.threshold_fen
    assert threshold.remaining_fen == max(policy.supplementary.threshold_fen - a.supplementary_burden_fen, 0)

    # a person never seen at the calling hospital is not shown
    err = await rpc_error(
        w.c.settlement.GetAccumulators(
            st.GetAccumulatorsRequest(institution_code=OTHER_HOSPITAL, person_no=RETIREE, year=2026),
            metadata=md(OTHER_HOSPITAL),
        )
    )
    d = error_details(err)
    assert err.code() == grpc.StatusCode.NOT_FOUND and d.reason == "REASON_ACCUMULATORS_NOT_FOUND"
    assert d.metadata == {"year": "2026"}
    err = await rpc_error(
        w.c.settlement.GetAccumulators(
            st.GetAccumulatorsRequest(institution_code=OTHER_HOSPITAL, person_no=RETIREE, year=2026), metadata=md()
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(
        w.c.settlement.GetAccumulators(
            st.GetAccumulatorsRequest(
                institution_code=HOSPITAL, person_no="", year=1999, as_of_date=date(dt.date(2026, 1, 1))
            ),
            metadata=md(),
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields_of(err) == {"person_no", "year", "as_of_date"}
    err = await rpc_error(  # no policy of 2025 is loaded
        w.c.settlement.GetAccumulators(
            st.GetAccumulatorsRequest(institution_code=HOSPITAL, person_no=RETIREE, year=2025), metadata=md()
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(err).reason == "REASON_NO_POLICY_IN_EFFECT"
    # another year: nothing settled yet, every cap whole, the balance as it stands
    nxt = await w.c.settlement.GetAccumulators(
        st.GetAccumulatorsRequest(institution_code=HOSPITAL, person_no=RETIREE, year=2027), metadata=md()
    )
    assert nxt.as_of_date == date(dt.date(2027, 1, 1))  # a future year: its first day
    assert nxt.accumulators.pooled_paid_fen == 0 and all(c.used_fen == 0 for c in nxt.caps)
    assert nxt.accumulators.account_balance_fen == b.account_balance_after_fen
