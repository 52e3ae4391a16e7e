"""Over gRPC: a visit of a service type the insured place's policy leaves out is refused with
SERVICE_NOT_COVERED (FAILED_PRECONDITION, policy version and service type in ErrorInfo) and
nothing is stored; the trace of a settlement carries its band detail."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path

import grpc
import pytest
import yaml

from libs.platform.errors import error_details
from libs.platform.settings import SERVICES, Settings
from libs.policy import ServiceType, default_books, parse_policy
from libs.policy.loader import DATA_DIR
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from services.suite import start
from tests.integration.settlement.helpers import RESIDENT_CARD, date, lines, md, rpc_error, setup_world

pytestmark = pytest.mark.db


def _without_general_outpatient(folder: Path) -> None:
    """A bureau's folder of the shipped files, with Chengdu's resident policies covering no general
    outpatient care."""
    shutil.copytree(DATA_DIR, folder)
    for path in (folder / "policies").glob("510100-resident-*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        del data["services"]["general_outpatient"]
        assert ServiceType.GENERAL_OUTPATIENT not in parse_policy(data, path.name).benefits
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _request(day: dt.date, rid: str, fees: list[st.FeeLine]) -> st.SettleOutpatientRequest:
    return st.SettleOutpatientRequest(
        request_id=rid,
        institution_code=HOSPITAL,
        hospital_visit_no="MZ-NC",
        credential=RESIDENT_CARD,
        service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
        visit_date=date(day),
        lines=fees,
    )


async def test_a_service_the_policy_leaves_out_is_refused_and_nothing_is_stored(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "bureau"
    _without_general_outpatient(folder)
    ours = settings.model_copy(update={"policy_dirs": str(folder), "policy_poll_seconds": 0.05})
    host = await start(ours, SERVICES, port=0, run_migrations=False)
    try:
        w = await setup_world(f"127.0.0.1:{host.port}")
        fees = lines(4, 9, w.day)
        shipped = default_books()[0].find("510100", "resident", w.day).version
        err = await rpc_error(w.c.settlement.SettleOutpatient(_request(w.day, "nc-1", fees), metadata=md()))
        d = error_details(err)
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert d.reason == "REASON_SERVICE_NOT_COVERED"
        assert d.metadata["service_type"] == "general_outpatient"
        assert d.metadata["policy_version"].startswith("510100-resident-")
        assert d.metadata["policy_version"] != shipped

        # The bureau publishes the shipped files again; nothing was stored under the request, so the
        # same request now settles under the shipped policy.
        for path in (DATA_DIR / "policies").glob("510100-resident-*.yaml"):
            shutil.copy(path, folder / "policies" / path.name)
        for _ in range(200):
            try:
                resp = await w.c.settlement.SettleOutpatient(_request(w.day, "nc-1", fees), metadata=md())
                break
            except grpc.aio.AioRpcError as exc:
                assert error_details(exc).reason == "REASON_SERVICE_NOT_COVERED"
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the republished policy never took effect")
        await w.c.close()
    finally:
        await host.stop(drain=False)
    b = resp.settlement.breakdown
    assert b.policy_version == shipped
    pooled = next(t for t in b.trace if t.step == "pooled_fund")
    assert pooled.bands, "the pooled fund step lists its bands"
    assert sum(band.paid_fen for band in pooled.bands) == pooled.amount_fen
    assert sum(band.base_fen for band in pooled.bands) == next(f for f in b.funds if f.fund == "pooled").base_fen
    # every fund detail names its fund twice: the string and the enum beside it
    assert b.funds and all(types_pb2.Fund.Name(f.fund_enum) == f"FUND_{f.fund.upper()}" for f in b.funds)
    assert all(not t.bands for t in b.trace if t.step in ("line_split", "deductible", "personal_part", "cash"))
