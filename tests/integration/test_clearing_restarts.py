"""Exactly once across restarts: visits are settled through the settlement service while
clearing and settlement are restarted mid-way (separate OS processes); the month's statements
then equal, to the fen, the sum of settlements minus cancellations as settlement reported them,
and the ledger sums to zero."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import grpc
import pytest

from libs.platform.identity import INSTITUTION_HEADER
from medsettle.clearing.v1 import clearing_pb2 as cpb
from medsettle.common.v1 import types_pb2
from medsettle.eligibility.v1 import eligibility_pb2 as el
from medsettle.filing.v1 import filing_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from services.demo import HOSPITAL, Clients, fee_lines, seed_registry, wait_eligible
from tests.conftest import ServiceProcesses
from tests.dates import TEST_DAY

pytestmark = [pytest.mark.db, pytest.mark.slow]
MD = ((INSTITUTION_HEADER, HOSPITAL),)
PEOPLE = {
    "11": ("P110100000001", "110100", "110100C0001", "S9A1B2C3", types_pb2.INSURANCE_TYPE_EMPLOYEE),
    "51": ("P510100000002", "510100", "510100C0002", "S7F6E5D4", types_pb2.INSURANCE_TYPE_RESIDENT),
}


async def retrying(make_call, *, seconds: float = 30.0):  # type: ignore[no-untyped-def]
    """The client side of exactly once: retry the SAME request (same request_id) until answered."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await make_call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED) or (
                asyncio.get_running_loop().time() > deadline
            ):
                raise
            await asyncio.sleep(0.1)


async def test_statement_totals_equal_settlements_minus_cancellations_across_restarts(
    processes: ServiceProcesses,
) -> None:
    await asyncio.to_thread(processes.start_all)
    c = Clients(processes.targets)
    today = TEST_DAY
    date = types_pb2.Date(year=today.year, month=today.month, day=today.day)
    try:
        await seed_registry(c, "rs")
        for ip, (person, region, *_rest, ins) in PEOPLE.items():
            await c.filing.CreateFiling(
                filing_pb2.CreateFilingRequest(
                    request_id=f"rs-filing-{ip}",
                    person_no=person,
                    insured_region_code=region,
                    treatment_region_code="310100",
                    filing_type=types_pb2.FILING_TYPE_LONG_TERM_RESIDENT,
                    insurance_type=ins,
                    channel=filing_pb2.CHANNEL_APP,
                    commitment_signed=True,
                    start_date=date,
                )
            )
        # the filings reach eligibility's in-memory index through WatchFilings: wait for both
        for _person, _region, card, serial, _ins in PEOPLE.values():
            decision = await wait_eligible(
                c,
                el.CheckEligibilityRequest(
                    credential=types_pb2.Credential(
                        card=types_pb2.SocialSecurityCard(card_number=card, card_serial=serial)
                    ),
                    institution_code=HOSPITAL,
                    service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
                    service_date=date,
                ),
                wait_seconds=20,
            )
            assert decision.eligible, list(decision.reasons)
        expected: dict[str, int] = defaultdict(int)
        settled: list[tuple[str, str]] = []

        async def settle(i: int) -> None:
            ip = "11" if i % 3 else "51"
            _, _, card, serial, _ = PEOPLE[ip]
            req = st.SettleOutpatientRequest(
                request_id=f"rs-op-{i}",
                institution_code=HOSPITAL,
                hospital_visit_no=f"rs-MZ{i:04d}",
                credential=types_pb2.Credential(
                    card=types_pb2.SocialSecurityCard(card_number=card, card_serial=serial)
                ),
                service_type=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT,
                visit_date=date,
                diagnosis_codes=["J06.900"],
                lines=fee_lines(2 + i % 4, i, "310100", today),
            )
            s = (await retrying(lambda: c.settlement.SettleOutpatient(req, metadata=MD))).settlement
            expected[ip] += s.breakdown.fund_total_fen
            settled.append((ip, s.settlement_id))

        async def cancel(k: int) -> None:
            ip, sid = settled[k]
            req = st.CancelSettlementRequest(request_id=f"rs-cancel-{k}", institution_code=HOSPITAL, settlement_id=sid)
            cancellation = (await retrying(lambda: c.settlement.CancelSettlement(req, metadata=MD))).cancellation
            expected[ip] += cancellation.breakdown.fund_total_fen  # negative mirror

        for i in range(8):  # sequential: the eligibility index may still be loading the filings
            await settle(i)
        batch = asyncio.gather(*(settle(i) for i in range(8, 24)))
        await asyncio.to_thread(processes.stop, "clearing")  # clearing down while settling goes on
        await batch
        processes.start("clearing")
        batch = asyncio.gather(*(settle(i) for i in range(24, 36)), cancel(1), cancel(5))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(processes.stop, "settlement")  # the feed's source goes away mid-ingest
        processes.start("settlement")
        await batch
        await cancel(30)
        await asyncio.to_thread(processes.stop, "clearing")
        processes.start("clearing")

        want = len(settled) + 3
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            status = await retrying(lambda: c.clearing.GetIngestStatus(cpb.GetIngestStatusRequest()))
            if status.settlements_ingested >= want or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert status.settlements_ingested == want

        month = types_pb2.Month(year=today.year, month=today.month)
        run = await c.clearing.RunMonthlyClearing(cpb.RunMonthlyClearingRequest(request_id="rs-run", month=month))
        got = {s.insured_province_code: s.amount_due_fen for s in run.statements if s.treatment_province_code == "31"}
        assert got == dict(expected)
        counts = {s.insured_province_code: s.settlement_count for s in run.statements}
        assert sum(counts.values()) == len(settled) - 3
        ledger = await c.clearing.GetLedgerBalances(cpb.GetLedgerBalancesRequest())
        assert ledger.total_fen == 0
        owed = {b.account: b.balance_fen for b in ledger.balances}
        assert owed[f"institution:{HOSPITAL}:receivable"] == -sum(expected.values())
    finally:
        await c.close()
