"""Over gRPC: a visit of a service type the insured place's policy leaves out is refused with
SERVICE_NOT_COVERED (FAILED_PRECONDITION, policy version and service type in ErrorInfo) and
nothing is stored; the trace of a settlement carries its band detail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
import yaml

from libs.platform.errors import error_details
from libs.platform.host import Host
from libs.policy import PolicyBook, ServiceType, default_books, parse_policy
from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL
from tests.integration.settlement.helpers import RESIDENT_CARD, date, lines, md, rpc_error, setup_world

pytestmark = pytest.mark.db

POLICIES = Path(__file__).resolve().parents[3] / "libs" / "policy" / "data" / "policies"


def _without_general_outpatient() -> PolicyBook:
    """The shipped policies, with every Chengdu resident policy made inpatient-and-more only."""
    policies, _ = default_books()
    out = []
    for p in policies.policies:
        if p.insured_region == "510100" and p.insurance_type == "resident":
            data = yaml.safe_load((POLICIES / f"{p.label.rsplit('.', 1)[0]}.yaml").read_text())
            del data["services"]["general_outpatient"]
            p = parse_policy(data, "no-outpatient.yaml")
            assert ServiceType.GENERAL_OUTPATIENT not in p.benefits
        out.append(p)
    return PolicyBook(out)


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


async def test_a_service_the_policy_leaves_out_is_refused_and_nothing_is_stored(suite: Host) -> None:
    service = next(m for m in suite.modules if m.name == "settlement").service  # type: ignore[attr-defined]
    shipped = service.policies
    w = await setup_world(f"127.0.0.1:{suite.port}")
    fees = lines(4, 9, w.day)
    service.policies = _without_general_outpatient()
    try:
        err = await rpc_error(w.c.settlement.SettleOutpatient(_request(w.day, "nc-1", fees), metadata=md()))
    finally:
        service.policies = shipped
    d = error_details(err)
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert d.reason == "REASON_SERVICE_NOT_COVERED"
    assert d.metadata["service_type"] == "general_outpatient"
    assert d.metadata["policy_version"].startswith("510100-resident-")
    assert d.metadata["policy_version"] != shipped.find("510100", "resident", w.day).version

    # nothing was stored under the request: the same request settles under the shipped policy
    resp = await w.c.settlement.SettleOutpatient(_request(w.day, "nc-1", fees), metadata=md())
    b = resp.settlement.breakdown
    assert b.policy_version == shipped.find("510100", "resident", w.day).version
    pooled = next(t for t in b.trace if t.step == "pooled_fund")
    assert pooled.bands, "the pooled fund step lists its bands"
    assert sum(band.paid_fen for band in pooled.bands) == pooled.amount_fen
    assert sum(band.base_fen for band in pooled.bands) == next(f for f in b.funds if f.fund == "pooled").base_fen
    assert all(not t.bands for t in b.trace if t.step in ("line_split", "deductible", "personal_part", "cash"))
