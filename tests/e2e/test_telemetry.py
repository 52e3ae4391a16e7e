"""Telemetry of the deployed suite, observed from outside the processes: OTLP traces received
over a socket, Prometheus metrics scraped over HTTP, JSON log lines read from the processes'
output."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.e2e.conftest import Stack, TracedSettlement
from tests.e2e.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, ReceivedSpan

pytestmark = [pytest.mark.db, pytest.mark.slow]

OPEN_VISIT = "medsettle.settlement.v1.SettlementService/OpenVisit"
CHECK_ELIGIBILITY = "medsettle.eligibility.v1.EligibilityService/CheckEligibility"
SETTLE = "medsettle.settlement.v1.SettlementService/Settle"
ID_NUMBERS = ("110105195403120027", "510104198811230016")


def _one(spans: list[ReceivedSpan], **match: object) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_one_trace_follows_the_hospital_call_through_gateway_settlement_and_eligibility(
    traced_settlement: TracedSettlement, stack: Stack
) -> None:
    trace_id = traced_settlement.trace_id

    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        return {(s.service, s.name, s.kind) for s in mine} >= {
            ("medsettle-settlement", OPEN_VISIT, SPAN_KIND_SERVER),
            ("medsettle-settlement", CHECK_ELIGIBILITY, SPAN_KIND_CLIENT),
            ("medsettle-eligibility", CHECK_ELIGIBILITY, SPAN_KIND_SERVER),
            ("medsettle-settlement", SETTLE, SPAN_KIND_SERVER),
        }

    spans = [s for s in stack.otlp.wait_for(complete) if s.trace_id == trace_id]
    assert complete(spans), sorted({(s.service, s.name, s.kind) for s in spans})
    open_visit = _one(spans, service="medsettle-settlement", name=OPEN_VISIT, kind=SPAN_KIND_SERVER)
    client = _one(spans, service="medsettle-settlement", name=CHECK_ELIGIBILITY, kind=SPAN_KIND_CLIENT)
    server = _one(spans, service="medsettle-eligibility", name=CHECK_ELIGIBILITY, kind=SPAN_KIND_SERVER)
    # parent links: hospital span -> settlement server span -> its client span -> eligibility
    assert open_visit.parent_span_id == traced_settlement.client_span_id
    assert client.parent_span_id == open_visit.span_id
    assert server.parent_span_id == client.span_id
    # the eligibility checks the test itself made (no traceparent) are other traces
    others = [s for s in stack.otlp.spans() if s.name == CHECK_ELIGIBILITY and s.trace_id != trace_id]
    assert others


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample ``name{labels...}`` (labels matched as a subset)."""
    values = []
    for line in text.splitlines():
        m = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            values.append(float(m.group(3)))
    assert len(values) == 1, (name, labels, values)
    return values[0]


def test_settlement_metrics_are_scrapeable_by_prometheus(traced_settlement: TracedSettlement, stack: Stack) -> None:
    text = _scrape(stack.metrics_port)
    b = traced_settlement.settled.settlement.breakdown
    settle = {"service": "medsettle.settlement.v1.SettlementService", "method": "Settle", "code": "OK"}
    # a latency histogram per RPC: the Settle call is in the +Inf bucket and in the count
    assert _sample(text, "medsettle_rpc_duration_seconds_bucket", le="+Inf", **settle) >= 1
    assert _sample(text, "medsettle_rpc_duration_seconds_count", **settle) >= 1
    # settlements and fund payments by province pair (Beijing insured, treated in Shanghai)
    pair = {"insured_province": "11", "treatment_province": "31"}
    assert _sample(text, "medsettle_settlements_total", kind="settlement", **pair) >= 1
    assert _sample(text, "medsettle_fund_paid_fen_total", fund="pooled", **pair) >= b.pooled_fund_fen > 0


def test_log_lines_of_a_settled_visit_carry_the_trace_id_and_no_id_number(
    traced_settlement: TracedSettlement, stack: Stack
) -> None:
    visit_id = traced_settlement.settled.visit_id
    lines = stack.processes.logs["settlement"].read_text(errors="replace").splitlines()
    events = [json.loads(line) for line in lines if visit_id in line]
    names = {e["event"] for e in events}
    assert {"visit_opened", "settlement_committed"} <= names, names
    for e in events:
        if e["event"] in ("visit_opened", "settlement_committed"):
            assert e["trace_id"] == traced_settlement.trace_id, e
    # the retiree's ID number went through eligibility (e-certificate) and settlement (visit):
    # it never appears in full in any process's output
    for service, path in stack.processes.logs.items():
        text = path.read_text(errors="replace")
        for id_number in ID_NUMBERS:
            assert id_number not in text, (service, id_number)
