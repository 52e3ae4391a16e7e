"""A settlement's trace band detail survives storage (results.dump/load) and reaches the wire
(breakdown_to_proto), for settlements and their reversals; rows stored before the trace had
bands still load."""

from __future__ import annotations

import datetime
import json

from libs.policy import (
    Accumulators,
    InsuranceType,
    SettlementResult,
    TraceBand,
    default_books,
    generate_visit,
    reverse,
    settle,
)
from services.settlement.adapters.rpc import breakdown_to_proto
from services.settlement.domain import results

DAY = datetime.date(2026, 6, 1)


def _settled() -> tuple[SettlementResult, SettlementResult]:
    policies, catalogues = default_books()
    policy = policies.find("110100", InsuranceType.EMPLOYEE, DAY)
    cat = catalogues.find("110100", DAY)
    v = generate_visit(cat, seed=11, n_lines=30, settle_date=DAY, assistance_category="low_income")
    acc = Accumulators(2026, pooled_base_fen=2_800_000, ci_burden_fen=1_990_000, assistance_base_fen=5_000)
    r = settle(policy, cat, v, acc)
    return r, reverse(r)


def test_the_band_detail_round_trips_through_storage() -> None:
    for r in _settled():
        assert any(t.bands for t in r.trace)
        back = results.load(results.dump(r))
        assert back == r
        assert all(type(b) is TraceBand for t in back.trace for b in t.bands)


def test_a_result_stored_before_the_trace_had_bands_still_loads() -> None:
    r, _ = _settled()
    doc = json.loads(results.dump(r))
    doc["trace"] = [t[:5] for t in doc["trace"]]
    back = results.load(json.dumps(doc))
    assert [tuple(t[:5]) for t in back.trace] == [tuple(t[:5]) for t in r.trace]
    assert all(t.bands == () and t.base_start_fen == 0 for t in back.trace)


def test_the_band_detail_reaches_the_wire() -> None:
    for r in _settled():
        msg = breakdown_to_proto(r)
        assert len(msg.trace) == len(r.trace)
        for step, t in zip(msg.trace, r.trace, strict=True):
            assert step.base_start_fen == t.base_start_fen
            got = [
                (b.from_fen, b.to_fen if b.HasField("to_fen") else None, b.ratio_bps, b.base_fen, b.paid_fen)
                for b in step.bands
            ]
            assert got == [tuple(b) for b in t.bands]
        pooled = next(s for s in msg.trace if s.step == "pooled_fund")
        assert not pooled.bands[-1].HasField("to_fen")  # the open last segment
        assert pooled.bands[0].HasField("to_fen")
        assert sum(b.paid_fen for b in pooled.bands) == pooled.amount_fen
