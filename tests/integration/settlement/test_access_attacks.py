"""The attempts of issue #13, each made as hospital B (a real, designated hospital with a valid
identity): every one is refused with a reason and writes nothing."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform.errors import error_details
from libs.platform.host import Host
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.filing.v1 import filing_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from tests.integration.settlement.helpers import (
    OTHER_HOSPITAL,
    RETIREE,
    lines,
    md,
    open_visit,
    rpc_error,
    settle,
    setup_world,
    upload,
)

pytestmark = pytest.mark.db

B = md(OTHER_HOSPITAL)  # hospital B, as the gateway names it from B's certificate


async def _row_counts(urls: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for service, url in urls.items():
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            meta = MetaData()
            await conn.run_sync(meta.reflect)
            for table in meta.sorted_tables:
                counts[f"{service}.{table.name}"] = int(
                    (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                )
        await engine.dispose()
    return counts


def _refused(err: grpc.aio.AioRpcError, reason: str) -> None:
    assert err.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), err
    assert error_details(err).reason == reason, error_details(err)


async def test_hospital_b_cannot_write_the_registry_read_id_numbers_follow_the_feeds_or_issue_ecerts(
    suite: Host, db_urls: dict[str, str]
) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    before = await _row_counts(db_urls)
    rich = el.InsuredPerson(
        person_no="P310100999999",
        id_number="310104199001010011",
        name="Nobody",
        insured_region_code="310100",
        insurance_type=types_pb2.INSURANCE_TYPE_EMPLOYEE,
        person_type=types_pb2.PERSON_TYPE_RETIRED,
        status=el.PERSON_STATUS_ACTIVE,
        has_personal_account=True,
        account_balance_fen=99_999_900,
        card_number="310100C9999",
        card_serial="S0000000",
    )
    e = w.c.eligibility
    _refused(
        await rpc_error(
            e.UpsertInsuredPerson(el.UpsertInsuredPersonRequest(request_id="b-1", person=rich), metadata=B)
        ),
        "REASON_ROLE_NOT_ALLOWED",
    )
    _refused(
        await rpc_error(e.GetInsuredPerson(el.GetInsuredPersonRequest(person_no=RETIREE), metadata=B)),
        "REASON_ROLE_NOT_ALLOWED",
    )
    _refused(
        await rpc_error(
            e.IssueECertificate(
                el.IssueECertificateRequest(request_id="b-2", person_no=RETIREE, id_number="110105195403120027"),
                metadata=B,
            )
        ),
        "REASON_ROLE_NOT_ALLOWED",
    )
    for stream in (
        w.c.settlement.StreamSettlements(st.StreamSettlementsRequest(after_position=0), metadata=B),
        w.c.filing.WatchFilings(filing_pb2.WatchFilingsRequest(after_position=0), metadata=B),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            async for _ in stream:
                raise AssertionError("a hospital received a feed event")
        _refused(exc.value, "REASON_ROLE_NOT_ALLOWED")
    assert await _row_counts(db_urls) == before

    # the person's own app may issue her e-certificate, for herself only
    app = (("x-medsettle-principal", f"urn:medsettle:app:{RETIREE}"),)
    _refused(
        await rpc_error(
            e.IssueECertificate(
                el.IssueECertificateRequest(
                    request_id="b-3", person_no="P510100000002", id_number="510104198811230016"
                ),
                metadata=app,
            )
        ),
        "REASON_NOT_AUTHORISED_FOR_PERSON",
    )
    assert await _row_counts(db_urls) == before
    issued = await e.IssueECertificate(
        el.IssueECertificateRequest(request_id="b-4", person_no=RETIREE, id_number="110105195403120027"), metadata=app
    )
    assert issued.token


async def test_id_numbers_go_in_full_only_to_the_insured_place_bureau(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    e = w.c.eligibility
    request = el.GetInsuredPersonRequest(person_no=RETIREE)
    own = await e.GetInsuredPerson(request, metadata=(("x-medsettle-principal", "urn:medsettle:bureau:insured:11"),))
    assert own.person.id_number == "110105195403120027" and own.person.card_serial == "S9A1B2C3"
    treatment = await e.GetInsuredPerson(
        request, metadata=(("x-medsettle-principal", "urn:medsettle:bureau:treatment:310100"),)
    )
    assert treatment.person.id_number == "110105********0027" and treatment.person.card_serial == ""
    _refused(
        await rpc_error(
            e.GetInsuredPerson(request, metadata=(("x-medsettle-principal", "urn:medsettle:bureau:insured:510100"),))
        ),
        "REASON_NOT_AUTHORISED_FOR_REGION",
    )


async def test_replaying_hospital_as_settle_as_b_is_refused_and_never_answered(
    suite: Host, db_urls: dict[str, str]
) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "a-open")
    await upload(w, "a-fees", visit.visit_id, lines(4, 1, w.day))
    mine = await settle(w, "a-settle", visit.visit_id)
    before = await _row_counts(db_urls)
    # B sends A's Settle, byte for byte (same request_id, same body)
    replay = st.SettleRequest(
        request_id="a-settle",
        institution_code=mine.institution_code,
        visit_id=visit.visit_id,
        use_personal_account=True,
    )
    replay.discharge_date.CopyFrom(mine.settle_date)
    err = await rpc_error(w.c.settlement.Settle(replay, metadata=B))
    _refused(err, "REASON_NOT_AUTHORISED_FOR_INSTITUTION")
    assert mine.settlement_id not in (err.details() or "")
    # ... and A's other calls, replayed by B, are refused the same way
    err = await rpc_error(
        w.c.settlement.OpenVisit(
            st.OpenVisitRequest(
                request_id="a-open",
                institution_code=mine.institution_code,
                hospital_visit_no="a-open",
                credential=types_pb2.Credential(
                    card=types_pb2.SocialSecurityCard(card_number="110100C0001", card_serial="S9A1B2C3")
                ),
                service_type=types_pb2.SERVICE_TYPE_INPATIENT,
                admission_date=visit.admission_date,
                diagnosis_codes=["I63.900"],
            ),
            metadata=B,
        )
    )
    _refused(err, "REASON_NOT_AUTHORISED_FOR_INSTITUTION")
    assert await _row_counts(db_urls) == before
    # A's own retry still gets its stored answer
    assert (await settle(w, "a-settle", visit.visit_id)).settlement_id == mine.settlement_id


async def test_b_reversing_an_id_reaches_only_bs_own_ids(suite: Host) -> None:
    w = await setup_world(f"127.0.0.1:{suite.port}")
    visit = await open_visit(w, "a2-open")
    await upload(w, "a2-fees", visit.visit_id, lines(4, 2, w.day))
    # B tombstones a request id A has not used yet, and tries to reverse one A has used
    for original in ("a2-settle", "a2-open"):
        resp = await w.c.settlement.ReverseTransaction(
            st.ReverseTransactionRequest(request_id=f"b-rev-{original}", original_request_id=original), metadata=B
        )
        assert not resp.reversed and not resp.HasField("cancellation")
    # A's visit is still open and A's later Settle with that id goes through
    settled = await settle(w, "a2-settle", visit.visit_id)
    assert settled.settlement_id and settled.request_id == "a2-settle"
    got = await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())
    assert got.visit.status == st.VISIT_STATUS_SETTLED
