"""Nothing written on failure in clearing: the two cases of the failure-semantics issue
(interest of 2^63-1 fen, a signing date of 9999-12-31) and the other fund writes at their
bounds are INVALID_ARGUMENT, and every table is as it was. Runs on SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from libs.platform.settings import Settings
from medsettle.clearing.v1 import clearing_pb2 as pb
from medsettle.common.v1 import types_pb2
from services.clearing.adapters.db import metadata
from tests.integration import test_clearing_lifecycle as lifecycle
from tests.integration.test_clearing_lifecycle import Env, expect_error, fs

pytestmark = pytest.mark.db
INT64_MAX = 2**63 - 1
env = lifecycle.env  # clearing alone on a loopback port, the feed injected


async def _row_counts(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        counts = {
            t.name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
            for t in metadata.sorted_tables
        }
    await engine.dispose()
    return counts


async def test_huge_interest_and_a_far_signing_date_are_refused_and_write_nothing(env: Env, settings: Settings) -> None:
    url = settings.database_url("clearing")
    stub = env.stub
    await env.svc.ingest([fs("S1", "11", 50_000, dt.date(2026, 5, 10))])
    await stub.ComputeAnnualPrepayment(
        pb.ComputeAnnualPrepaymentRequest(
            request_id="pre", insured_province_code="11", treatment_province_code="31", year=2026
        )
    )
    ok = await stub.RecordPrepaymentInterest(
        pb.RecordPrepaymentInterestRequest(
            request_id="int-ok", insured_province_code="11", treatment_province_code="31", year=2026, amount_fen=123
        )
    )
    assert ok.interest_income_fen == -123  # income is a credit
    before = await _row_counts(url)

    refused = [
        stub.RecordPrepaymentInterest(
            pb.RecordPrepaymentInterestRequest(
                request_id="int-huge",
                insured_province_code="11",
                treatment_province_code="31",
                year=2026,
                amount_fen=INT64_MAX,
            )
        ),
        stub.RunMonthlyClearing(
            pb.RunMonthlyClearingRequest(
                request_id="run-far",
                month=types_pb2.Month(year=2026, month=5),
                signing_date=types_pb2.Date(year=9999, month=12, day=31),
            )
        ),
        stub.RunMonthlyClearing(
            pb.RunMonthlyClearingRequest(
                request_id="run-early",
                month=types_pb2.Month(year=2026, month=5),
                signing_date=types_pb2.Date(year=2026, month=4, day=30),
            )
        ),
        stub.RequestEmergencyTopUp(
            pb.RequestEmergencyTopUpRequest(
                request_id="top-huge",
                insured_province_code="11",
                treatment_province_code="31",
                month=types_pb2.Month(year=2026, month=5),
                amount_fen=INT64_MAX,
            )
        ),
        stub.RecordInstitutionPayment(
            pb.RecordInstitutionPaymentRequest(
                request_id="pay-huge",
                institution_code="H31A",
                amount_fen=INT64_MAX,
                payment_date=types_pb2.Date(year=2026, month=6, day=1),
            )
        ),
        stub.RecordInstitutionPayment(
            pb.RecordInstitutionPaymentRequest(
                request_id="pay-far",
                institution_code="H31A",
                amount_fen=1,
                payment_date=types_pb2.Date(year=9999, month=12, day=31),
            )
        ),
    ]
    for call in refused:
        d = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "REASON_VALIDATION_FAILED")
        assert d.violations, d
    assert await _row_counts(url) == before

    # the province's interest and balances still answer, and the ledger still sums to zero
    again = await stub.RecordPrepaymentInterest(
        pb.RecordPrepaymentInterestRequest(
            request_id="int-ok-2", insured_province_code="11", treatment_province_code="31", year=2026, amount_fen=7
        )
    )
    assert again.interest_income_fen == -130
    await env.balanced()
    # a sane signing date runs, and its statements answer with their payment deadline
    run = await stub.RunMonthlyClearing(
        pb.RunMonthlyClearingRequest(
            request_id="run-ok",
            month=types_pb2.Month(year=2026, month=5),
            signing_date=types_pb2.Date(year=2026, month=6, day=20),
        )
    )
    assert [s.institution_payment_deadline.month for s in run.statements] == [7]
