"""A hospital reads its own clearing results (national 3203) and the payments it has received
(3204) over gRPC: by insured province and category, fund by fund, beside its statement's state;
another hospital's are refused with a reason and the refusal writes nothing. Runs on SQLite or
PostgreSQL (--db)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import MetaData, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform.db import Database
from libs.platform.errors import error_details
from libs.platform.identity import PRINCIPAL_HEADER
from libs.platform.settings import Settings
from medsettle.clearing.v1 import clearing_pb2 as pb
from medsettle.clearing.v1 import clearing_pb2_grpc
from medsettle.common.v1 import types_pb2
from services.clearing.adapters.db import SqlClearingStore
from services.clearing.application.service import ClearingService
from services.clearing.domain.model import Category
from services.demo import acting_parties
from tests.integration.test_clearing_lifecycle import BOTH, Env, fs

pytestmark = pytest.mark.db

A, B = "H31A", "H31B"
MARCH = types_pb2.Month(year=2026, month=3)


def as_(urn: str) -> tuple[tuple[str, str], ...]:
    return ((PRINCIPAL_HEADER, urn),)


HOSPITAL_A = as_(f"urn:medsettle:hospital:{A}")
OPERATOR = as_("urn:medsettle:operator:national")
TREATMENT_31 = as_("urn:medsettle:bureau:treatment:31")


@pytest.fixture
async def env(settings: Settings) -> AsyncIterator[Env]:
    """Clearing alone (its feed injected, as in test_clearing_lifecycle); each call names its
    caller in its own metadata, else the demo's acting party."""
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


async def _row_counts(settings: Settings) -> dict[str, int]:
    engine = create_async_engine(settings.database_url("clearing"))
    try:
        async with engine.connect() as conn:
            meta = MetaData()
            await conn.run_sync(meta.reflect)
            return {
                name: int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
                for name, table in meta.tables.items()
            }
    finally:
        await engine.dispose()


async def _refused(call: object, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    d = error_details(e.value)
    assert (d.code, d.reason) == (grpc.StatusCode.PERMISSION_DENIED, reason), d


async def test_a_hospital_reads_its_own_clearing_results_and_payments_and_no_one_elses(
    env: Env, settings: Settings
) -> None:
    day = dt.date(2026, 3, 9)
    assert (
        await env.svc.ingest(
            [
                fs("A1", "11", 100_000, day, inst=A),
                fs("A2", "11", 40_000, day, inst=A),
                fs("A3", "11", 50_000, day, inst=A, cat=Category.OUTPATIENT),
                fs("A4", "51", 30_000, day, inst=A),
                fs("A2X", "11", -40_000, day, inst=A, cancels="A2"),  # A2 cancelled the same month
                fs("B1", "11", 70_000, day, inst=B),
                fs("A9", "11", 11_111, dt.date(2026, 4, 1), inst=A),  # April: not March's
            ]
        )
        == 7
    )
    stub = env.stub

    # before the month is cleared: the lines, no statement yet
    got = await stub.GetInstitutionClearing(
        pb.GetInstitutionClearingRequest(institution_code=A, month=MARCH), metadata=HOSPITAL_A
    )
    assert (got.institution_code, got.treatment_province_code) == (A, "31")
    lines = {(ln.insured_province_code, ln.category): ln for ln in got.lines}
    inpatient, outpatient = types_pb2.CLEARING_CATEGORY_INPATIENT, types_pb2.CLEARING_CATEGORY_OUTPATIENT
    assert set(lines) == {("11", inpatient), ("11", outpatient), ("51", inpatient)}
    bj = lines[("11", inpatient)]
    # A1 and A2 minus A2's cancellation: one settlement of 100_000 fen fund
    assert (bj.count, bj.fund_total_fen, bj.pooled_fund_fen, bj.medical_total_fen) == (1, 100_000, 100_000, 300_000)
    assert bj.personal_account_fen == 10_000
    assert all(ln.statement_id == "" and ln.statement_status == 0 for ln in got.lines)
    assert got.fund_total_fen == 100_000 + 50_000 + 30_000 and got.settlement_count == 3
    assert got.medical_total_fen == 3 * got.fund_total_fen

    # the month's clearing, Beijing's statement confirmed by the treatment side
    sts = await env.run(2026, 3)
    assert set(sts) == {"ST-202603-11-31", "ST-202603-51-31"}
    await env.confirm("ST-202603-11-31", BOTH[0])
    got = await stub.GetInstitutionClearing(
        pb.GetInstitutionClearingRequest(institution_code=A, month=MARCH), metadata=HOSPITAL_A
    )
    by_ip = {ln.insured_province_code: (ln.statement_id, ln.statement_status) for ln in got.lines}
    assert by_ip == {
        "11": ("ST-202603-11-31", pb.STATEMENT_STATUS_CONFIRMED_BY_TREATMENT_SIDE),
        "51": ("ST-202603-51-31", pb.STATEMENT_STATUS_DRAFT),
    }
    # the institution's lines are its share of the statement's
    statement_fund = {ln.category: ln.fund_total_fen for ln in sts["ST-202603-11-31"].lines}
    assert statement_fund[inpatient] == 100_000 + 70_000  # A's and B's

    # the treatment place pays A twice
    for rid, amount in (("pay-1", 60_000), ("pay-2", 25_000)):
        await stub.RecordInstitutionPayment(
            pb.RecordInstitutionPaymentRequest(
                request_id=rid,
                institution_code=A,
                amount_fen=amount,
                payment_date=types_pb2.Date(year=2026, month=4, day=9),
            ),
            metadata=TREATMENT_31,
        )
    paid = await stub.ListInstitutionPayments(
        pb.ListInstitutionPaymentsRequest(institution_code=A), metadata=HOSPITAL_A
    )
    assert [p.amount_fen for p in paid.payments] == [60_000, 25_000]
    assert all(p.payment_id and p.record_time.seconds > 0 for p in paid.payments)
    # owed: the funds and the personal account it advanced (A1, A3, A4 and April's A9, each + 10%)
    assert (paid.owed_fen, paid.paid_fen, paid.outstanding_fen) == (210_222, 85_000, 125_222)
    # the operator reads any institution's
    other = await stub.ListInstitutionPayments(pb.ListInstitutionPaymentsRequest(institution_code=B), metadata=OPERATOR)
    assert (other.owed_fen, other.paid_fen, list(other.payments)) == (77_000, 0, [])

    # hospital A asks for B's: refused with a reason, and nothing written
    before = await _row_counts(settings)
    await _refused(
        stub.GetInstitutionClearing(
            pb.GetInstitutionClearingRequest(institution_code=B, month=MARCH), metadata=HOSPITAL_A
        ),
        "REASON_NOT_AUTHORISED_FOR_INSTITUTION",
    )
    await _refused(
        stub.ListInstitutionPayments(pb.ListInstitutionPaymentsRequest(institution_code=B), metadata=HOSPITAL_A),
        "REASON_NOT_AUTHORISED_FOR_INSTITUTION",
    )
    # a bureau is not the institution: these are the institution's and the operator's calls
    await _refused(
        stub.ListInstitutionPayments(pb.ListInstitutionPaymentsRequest(institution_code=A), metadata=TREATMENT_31),
        "REASON_ROLE_NOT_ALLOWED",
    )
    # bad input: INVALID_ARGUMENT with the field named
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.GetInstitutionClearing(
            pb.GetInstitutionClearingRequest(institution_code=A, month=types_pb2.Month(year=2026, month=13)),
            metadata=HOSPITAL_A,
        )
    d = error_details(e.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT and [v.field for v in d.violations] == ["month.month"], d
    assert await _row_counts(settings) == before
