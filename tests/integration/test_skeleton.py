"""The walking skeleton: filing -> eligibility -> settlement -> clearing, over real gRPC on real
sockets, every write in the owning service's own database. Runs on SQLite or PostgreSQL (--db)."""

from __future__ import annotations

import asyncio

import pytest

from libs.platform.host import Host
from medsettle.clearing.v1 import clearing_pb2
from services.demo import drive
from tests.conftest import ServiceProcesses
from tests.dates import TEST_DAY

pytestmark = pytest.mark.db


def _check(seen: dict) -> None:  # type: ignore[type-arg]
    settlement = seen["settlement"]
    b = settlement.breakdown
    assert b.total_fen > 0 and b.fund_total_fen > 0
    assert b.total_fen == b.fund_total_fen + b.personal_part_fen + b.hospital_borne_fen
    assert b.personal_part_fen == b.personal_account_fen + b.cash_fen
    assert seen["ingested"] == 2
    beijing_shanghai, sichuan_shanghai = seen["statements"]
    # the statement contains the settled visit, to the fen
    assert beijing_shanghai.settlement_count == 1
    # Beijing owes Shanghai the funds AND the personal account: the hospital took no cash for it
    assert b.personal_account_fen > 0
    assert beijing_shanghai.amount_due_fen == b.fund_total_fen + b.personal_account_fen
    owed = {o.payer: o.due_fen for o in beijing_shanghai.owed}
    assert owed[clearing_pb2.PAYER_PERSONAL_ACCOUNT] == b.personal_account_fen
    assert owed[clearing_pb2.PAYER_POOLED_FUND] == b.pooled_fund_fen
    assert sum(ln.medical_total_fen for ln in beijing_shanghai.lines) == b.total_fen
    o = seen["outpatient"].breakdown
    assert sichuan_shanghai.amount_due_fen == o.fund_total_fen + o.personal_account_fen


async def test_skeleton_flow_all_in_one(suite: Host) -> None:
    seen = await drive(f"127.0.0.1:{suite.port}", out=lambda *_: None, today=TEST_DAY)
    _check(seen)


@pytest.mark.slow
async def test_skeleton_flow_as_separate_processes(processes: ServiceProcesses) -> None:
    await asyncio.to_thread(processes.start_all)
    seen = await drive(processes.targets, out=lambda *_: None, today=TEST_DAY)
    _check(seen)
