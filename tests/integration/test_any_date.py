"""Any date: the whole demo flow on a clock set to 2027-01-04 and to 2030-06-30, and a clear
FAILED_PRECONDITION (never a traceback, never "eligible" without a policy) for a date that no
policy or catalogue covers, at CheckEligibility, OpenVisit, UploadFees and every settle path."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from libs.platform.clock import ShiftedClock
from libs.platform.settings import SERVICES, Settings
from libs.policy.loader import DATA_DIR
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL, drive
from services.suite import start
from tests.integration.settlement.helpers import (
    RESIDENT_CARD,
    RETIREE_CARD,
    World,
    date,
    lines,
    md,
    open_visit,
    rpc_error,
    setup_world,
    upload,
)

pytestmark = pytest.mark.db


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(exc)
    assert status is not None, "no google.rpc.Status in the trailers"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the status")


def assert_refused(exc: grpc.aio.AioRpcError, reason: str, **metadata: str) -> None:
    assert exc.code() is grpc.StatusCode.FAILED_PRECONDITION, exc.details()
    info = error_info(exc)
    assert info.reason == reason
    assert info.domain == "medsettle"
    for key, value in metadata.items():
        assert info.metadata[key] == value, dict(info.metadata)


@pytest.mark.parametrize("day", [dt.date(2027, 1, 4), dt.date(2030, 6, 30)], ids=str)
async def test_the_whole_demo_flow_runs_on_a_later_date(settings: Settings, day: dt.date) -> None:
    host = await start(settings, SERVICES, port=0, run_migrations=False, clock=ShiftedClock.at_cst(day))
    try:
        seen = await drive(f"127.0.0.1:{host.port}", out=lambda *_: None, today=day)
    finally:
        await host.stop(drain=False)
    settled = seen["settlement"]
    assert settled.settle_date == date(day)
    assert settled.breakdown.policy_version.startswith("110100-employee-2027.1@")
    assert settled.breakdown.catalogue_version.startswith("310100-catalogue-2027.1@")
    assert settled.breakdown.fund_total_fen > 0
    statements = seen["statements"]
    assert statements and all(s.month.year == day.year and s.month.month == day.month for s in statements)
    assert seen["ingested"] == 2


# ------------------------------------------------------------------ dates nothing covers


def _policy_dir(root: Path, *, policy_years: tuple[int, ...], catalogue_years: tuple[int, ...]) -> Path:
    """A bureau's folder holding copies of the samples of the given years."""
    for kind, years in (("policies", policy_years), ("catalogues", catalogue_years)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for year in years:
            for f in (DATA_DIR / kind).glob(f"*-{year}.yaml"):
                shutil.copy(f, root / kind / f.name)
    return root


@pytest.fixture
async def only_2026(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[World, ShiftedClock, Path]]:
    """A suite whose policies end on 2026-12-31 (catalogues go on), on 2026-12-31."""
    folder = _policy_dir(tmp_path / "bureau", policy_years=(2026,), catalogue_years=(2026, 2027))
    clock = ShiftedClock.at_cst(dt.date(2026, 12, 31))
    ours = settings.model_copy(update={"policy_dirs": str(folder), "policy_poll_seconds": 0.05})
    host = await start(ours, SERVICES, port=0, run_migrations=False, clock=clock)
    w = await setup_world(f"127.0.0.1:{host.port}", day=dt.date(2026, 12, 31))
    try:
        yield w, clock, folder
    finally:
        await w.c.close()
        await host.stop(drain=False)


def _check(day: dt.date, cred: types_pb2.Credential = RETIREE_CARD) -> el.CheckEligibilityRequest:
    return el.CheckEligibilityRequest(
        credential=cred,
        institution_code=HOSPITAL,
        service_type=types_pb2.SERVICE_TYPE_INPATIENT,
        service_date=date(day),
    )


async def test_check_eligibility_refuses_a_date_no_policy_covers(only_2026: tuple[World, ShiftedClock, Path]) -> None:
    w, _, _ = only_2026
    ok = (await w.c.eligibility.CheckEligibility(_check(dt.date(2026, 12, 31)))).decision
    assert ok.eligible and ok.policy_version.startswith("110100-employee-2026.1@")
    exc = await rpc_error(w.c.eligibility.CheckEligibility(_check(dt.date(2027, 1, 4))))
    assert_refused(exc, "REASON_NO_POLICY_IN_EFFECT", region="110100", insurance_type="employee", date="2027-01-04")


async def test_open_visit_and_every_settle_path_refuse_an_uncovered_date(
    only_2026: tuple[World, ShiftedClock, Path],
) -> None:
    w, clock, _ = only_2026
    visit = await open_visit(w, "v-1", visit_no="NY-1")  # admitted on the suite's day, 2026-12-31
    await upload(w, "u-1", visit.visit_id, lines(6, 1, w.day))
    clock.advance(dt.timedelta(days=4))  # 2027-01-04: no policy of Beijing covers it
    meta = {"region": "110100", "insurance_type": "employee", "date": "2027-01-04"}

    exc = await rpc_error(
        w.c.settlement.PreSettle(st.PreSettleRequest(institution_code=HOSPITAL, visit_id=visit.visit_id), metadata=md())
    )
    assert_refused(exc, "REASON_NO_POLICY_IN_EFFECT", **meta)
    settle = st.SettleRequest(request_id="s-1", institution_code=HOSPITAL, visit_id=visit.visit_id)
    settle.discharge_date.CopyFrom(date(dt.date(2027, 1, 4)))
    exc = await rpc_error(w.c.settlement.Settle(settle, metadata=md()))
    assert_refused(exc, "REASON_NO_POLICY_IN_EFFECT", **meta)

    w.day = dt.date(2027, 1, 4)
    exc = await rpc_error(open_visit(w, "v-2", visit_no="NY-2"))
    assert_refused(exc, "REASON_NO_POLICY_IN_EFFECT", **meta)

    exc = await rpc_error(
        w.c.settlement.SettleOutpatient(
            st.SettleOutpatientRequest(
                request_id="o-1",
                institution_code=HOSPITAL,
                hospital_visit_no="NY-3",
                credential=RESIDENT_CARD,
                service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
                visit_date=date(dt.date(2027, 1, 4)),
                lines=lines(3, 2, dt.date(2027, 1, 4)),
            ),
            metadata=md(),
        )
    )
    assert_refused(exc, "REASON_NO_POLICY_IN_EFFECT", region="510100", insurance_type="resident", date="2027-01-04")

    # Nothing was written by the refused calls: the visit still has its lines, unsettled.
    got = (await w.c.settlement.GetVisit(st.GetVisitRequest(visit_id=visit.visit_id), metadata=md())).visit
    assert got.status == st.VISIT_STATUS_OPEN and got.fee_line_count == 6


async def test_upload_fees_refuses_when_the_catalogue_is_withdrawn(only_2026: tuple[World, ShiftedClock, Path]) -> None:
    w, _, folder = only_2026
    visit = await open_visit(w, "v-1", visit_no="NC-1")
    # The treatment place withdraws its catalogues; the running suite picks that up by itself.
    for f in (folder / "catalogues").glob("310100-*.yaml"):
        f.unlink()
    request = st.UploadFeesRequest(
        request_id="u-1", institution_code=HOSPITAL, visit_id=visit.visit_id, lines=lines(4, 1, dt.date(2026, 12, 31))
    )
    for _ in range(100):
        try:
            await w.c.settlement.UploadFees(request, metadata=md())
        except grpc.aio.AioRpcError as exc:
            assert_refused(exc, "REASON_NO_CATALOGUE_IN_EFFECT", region="310100", date="2026-12-31")
            break
        request.request_id += "x"  # the old set answered: try again, as new, once it is reloaded
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the withdrawn catalogue was never noticed")
