"""Stores a policy SettlementResult as JSON and rebuilds it exactly (for cancellation and replay)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields
from typing import Any

from libs.policy import (
    Accumulators,
    FundDetail,
    ItemClass,
    LineSplit,
    ServiceType,
    SettlementResult,
    TraceBand,
    TraceStep,
)

_ACC = tuple(f.name for f in fields(Accumulators))
_PLAIN = tuple(
    f.name
    for f in fields(SettlementResult)
    if f.name
    not in (
        "lines",
        "funds",
        "trace",
        "accumulators_before",
        "accumulators_after",
        "accumulator_delta",
        "service_type",
        "settle_date",
    )
)


def _acc(a: Accumulators) -> list[int]:
    return [getattr(a, n) for n in _ACC]


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the engine was given beyond the lines, the accumulators and the versions: with these
    a stored settlement can be computed again exactly (``SettlementService.recompute``)."""

    new_admission: bool
    prior_stay_deductible_fen: int
    use_personal_account: bool


def inputs_of(raw: str) -> Inputs | None:
    """The stored inputs of a result (None for results stored before they were recorded)."""
    found = json.loads(raw).get("inputs")
    return None if found is None else Inputs(bool(found[0]), int(found[1]), bool(found[2]))


def dump(r: SettlementResult, inputs: Inputs | None = None) -> str:
    doc: dict[str, Any] = {n: getattr(r, n) for n in _PLAIN}
    doc["lines"] = [[*ln[:2], ln.item_class.value if ln.item_class else None, *ln[3:]] for ln in r.lines]
    doc["funds"] = [list(f) for f in r.funds]
    doc["trace"] = [list(t) for t in r.trace]
    doc["acc"] = [_acc(r.accumulators_before), _acc(r.accumulators_after), _acc(r.accumulator_delta)]
    doc["service_type"] = r.service_type.value
    doc["settle_date"] = r.settle_date.isoformat()
    if inputs is not None:
        doc["inputs"] = [inputs.new_admission, inputs.prior_stay_deductible_fen, inputs.use_personal_account]
    return json.dumps(doc, separators=(",", ":"))


def load(raw: str) -> SettlementResult:
    d = json.loads(raw)
    d.pop("inputs", None)
    before, after, delta = (Accumulators(*a) for a in d.pop("acc"))
    lines = tuple(LineSplit(ln[0], ln[1], ItemClass(ln[2]) if ln[2] else None, *ln[3:]) for ln in d.pop("lines"))
    funds = tuple(FundDetail(*f) for f in d.pop("funds"))
    # A step stored before the trace had bands has five entries (bands () and start 0 by default).
    trace = tuple(
        TraceStep._make([*t[:5], tuple(TraceBand(*b) for b in t[5]), *t[6:]]) if len(t) > 5 else TraceStep(*t)
        for t in d.pop("trace")
    )
    service = ServiceType(d.pop("service_type"))
    day = dt.date.fromisoformat(d.pop("settle_date"))
    return SettlementResult(
        lines=lines,
        funds=funds,
        trace=trace,
        accumulators_before=before,
        accumulators_after=after,
        accumulator_delta=delta,
        service_type=service,
        settle_date=day,
        **d,
    )
