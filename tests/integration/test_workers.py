"""``medsettle serve settlement --workers N``: several processes on one port (SO_REUSEPORT) settle
concurrently and correctly — every call answered once, the same persons' accumulators shared
between workers without a lost update, the outbox numbered without a gap — and a worker killed
with SIGKILL is started again while the others keep serving. PostgreSQL only (SQLite is one
process's file)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from medsettle.common.v1 import types_pb2
from medsettle.settlement.v1 import settlement_pb2 as st
from medsettle.settlement.v1 import settlement_pb2_grpc
from services.demo import HOSPITAL
from tests.conftest import ROOT, ServiceProcesses, wait_serving
from tests.integration.settlement.helpers import (
    RESIDENT,
    RESIDENT_CARD,
    RETIREE,
    RETIREE_CARD,
    World,
    date,
    lines,
    md,
    open_visit,
    setup_world,
    upload,
)

pytestmark = pytest.mark.db


@pytest.fixture(autouse=True)
def _postgres_only(db_kind: str) -> None:
    if db_kind != "postgres":
        pytest.skip("several processes on one database: PostgreSQL")


def _log_lines(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _workers_of(log: Path) -> dict[int, int]:
    """pid -> worker index, from the workers' own log lines."""
    return {int(e["pid"]): int(e["worker"]) for e in _log_lines(log) if "worker" in e and "pid" in e}  # type: ignore[call-overload]


async def test_two_workers_share_the_port_and_settle_concurrently_without_a_lost_update(
    processes: ServiceProcesses, tmp_path: Path
) -> None:
    for s in ("filing", "eligibility"):
        processes.start(s)
    for s in ("filing", "eligibility"):
        wait_serving(processes.targets[s])
    log = tmp_path / "settlement-workers.log"
    supervisor = _start_workers(processes, log, 2)
    try:
        target = processes.targets["settlement"]
        wait_serving(target)
        workers = _wait_for_workers(log, lambda found: sorted(set(found.values())) == [0, 1])
        targets = {**processes.targets, "clearing": target}
        w = await setup_world(targets)  # type: ignore[arg-type]
        # visits of two persons, settled over many connections (each its own channel): the kernel
        # spreads the connections over both workers, whose batches lock the same persons' rows
        visits = []
        for i in range(24):
            card = RETIREE_CARD if i % 2 == 0 else RESIDENT_CARD
            v = await open_visit(
                w, f"wk-open-{i}", visit_no=f"wk-{i}", cred=card, service=types_pb2.SERVICE_TYPE_GENERAL_OUTPATIENT
            )
            await upload(w, f"wk-up-{i}", v.visit_id, lines(8, i + 1, w.day))
            visits.append(v.visit_id)
        channels = [
            grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(8)
        ]
        try:
            stubs = [settlement_pb2_grpc.SettlementServiceStub(ch) for ch in channels]

            async def settle(i: int) -> st.Settlement:
                req = st.SettleRequest(request_id=f"wk-s-{i}", institution_code=HOSPITAL, visit_id=visits[i])
                req.discharge_date.CopyFrom(date(w.day))
                return (await stubs[i % len(stubs)].Settle(req, metadata=md())).settlement

            answers = await asyncio.gather(*(settle(i) for i in range(len(visits))))
            # every retry of every call answers the same settlement, whichever worker takes it
            again = await asyncio.gather(*(settle(i) for i in range(len(visits))))
        finally:
            for ch in channels:
                await ch.close()
        assert [a.settlement_id for a in answers] == [a.settlement_id for a in again]
        assert len({a.settlement_id for a in answers}) == len(visits)
        assert len(_committed_by(log) & set(workers)) == 2, "both workers settled"
        # no lost update between the workers: each person's accumulators are the sum of its settlements
        for person in (RETIREE, RESIDENT):
            mine = [a.breakdown for a in answers if a.person_no == person]
            acc = await w.c.settlement.GetAccumulators(
                st.GetAccumulatorsRequest(institution_code=HOSPITAL, person_no=person, year=w.day.year), metadata=md()
            )
            a = acc.accumulators
            assert len(mine) == len(visits) // 2
            assert a.outpatient_deductible_borne_fen == sum(b.deductible_fen for b in mine)
            assert a.outpatient_pooled_paid_fen == sum(b.pooled_fund_fen for b in mine)
        # the feed: every settlement once, positions without a gap, numbered by either worker
        rows = await _feed(w, len(visits))
        assert [p for p, _ in rows] == list(range(1, len(visits) + 1))
        assert sorted(i for _, i in rows) == sorted(a.settlement_id for a in answers)

        # a worker killed outright is started again; the other one kept the port meanwhile
        victim = next(pid for pid, index in workers.items() if index == 0)
        os.kill(victim, signal.SIGKILL)
        _wait_for_workers(log, lambda found: any(i == 0 and p != victim for p, i in found.items()))
        wait_serving(target)
        await w.c.close()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(30)
    assert code == 0
    # the supervisor stopped every worker before it exited: none is left serving the port
    assert not [pid for pid in _workers_of(log) if _alive(pid)]


def _start_workers(processes: ServiceProcesses, log: Path, n: int) -> subprocess.Popen[bytes]:
    port = str(processes.ports["settlement"])
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "serve",
            "settlement",
            "--workers",
            str(n),
            "--port",
            port,
            "--no-migrate",
        ],
        cwd=ROOT,
        env={**processes.env, "MEDSETTLE_LOG_JSON": "true"},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _wait_for_workers(log: Path, done: Callable[[dict[int, int]], bool], timeout: float = 30) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while not done(found := _workers_of(log)):
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    return found


def _committed_by(log: Path) -> set[int]:
    return {int(e["pid"]) for e in _log_lines(log) if e.get("event") == "settlement_committed" and "pid" in e}  # type: ignore[call-overload]


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


async def _feed(w: World, want: int) -> list[tuple[int, str]]:
    """The feed from the start, once ``want`` rows are numbered (numbering follows the commits)."""
    rows: list[tuple[int, str]] = []
    for _ in range(100):
        feed = w.c.settlement.StreamSettlements(st.StreamSettlementsRequest(after_position=0, follow=False))
        rows = [(r.position, r.settlement.settlement_id) async for r in feed]
        if len(rows) >= want:
            return rows
        await asyncio.sleep(0.1)
    return rows
