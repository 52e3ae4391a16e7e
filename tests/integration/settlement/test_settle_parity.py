"""The Settle write exists as the one-at-a-time path (SQLAlchemy) and the group-commit batch
(SQLAlchemy on SQLite, plain SQL on asyncpg on PostgreSQL, adapters/hot.py). The same calls
settled both ways must write the same rows, in every table of the service, as the policy
engine's fast path is compared with its reference. Only what must differ is left out: generated
ids (replaced by what names them: a visit by its hospital number, a settlement by its request
id), timestamps, and the outbox's serial id and position."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import DateTime, delete, select

from libs.core.errors import Reason
from libs.platform.clock import ShiftedClock
from libs.platform.db import Database
from libs.platform.settings import Settings
from libs.policy import ServiceType
from libs.policy.loader import PolicyStore, parse_dirs
from services.settlement.adapters.db import metadata
from services.settlement.adapters.store import SqlStore
from services.settlement.application.commands import (
    Committed,
    OpenVisitCommand,
    Request,
    SettleCall,
    SettleCommand,
    UploadFeesCommand,
)
from services.settlement.application.service import SettlementService
from services.settlement.domain.model import CredentialRef
from services.settlement.server import build_service
from tests.dates import TEST_DAY
from tests.unit.settlement.fakes import FakeEligibility, fee
from tests.unit.settlement.test_use_cases import BED, CT, GLUCOSE, HOSPITAL, SELF_PAY, _decision

pytestmark = pytest.mark.db

_POLICIES = PolicyStore(parse_dirs("@samples"))
CARDS = {"A": "110100C0001", "B": "510100C0002", "C": "440100C0003"}
# The columns that must differ between two runs of the same calls (besides DateTime columns).
_GENERATED = {("settlement_events", "id"), ("settlement_events", "position")}


def _eligibility() -> FakeEligibility:
    e = FakeEligibility()
    e.decisions[CARDS["A"]] = _decision()
    e.decisions[CARDS["B"]] = _decision(
        person_no="P510100000002", insured_region="510100", has_personal_account=False, account_balance_fen=0
    )
    e.decisions[CARDS["C"]] = _decision(person_no="P440100000003", insured_region="440100", account_balance_fen=500)
    return e


# (hospital visit no, person, service type, admitted days before TEST_DAY, lines)
_VISITS = [
    ("IP-A1", "A", ServiceType.INPATIENT, 12, [(BED, 9000, 12_000), (CT, 1000, 80_000), (SELF_PAY, 2000, 2_000)]),
    ("IP-A2", "A", ServiceType.INPATIENT, 4, [(BED, 3000, 12_000), (CT, 1000, 95_000)]),  # overlaps A1
    ("OP-A3", "A", ServiceType.GENERAL_OUTPATIENT, 0, [(GLUCOSE, 2000, 3_900)]),
    ("IP-B1", "B", ServiceType.INPATIENT, 20, [(BED, 15000, 12_000), (CT, 2000, 80_000)]),
    ("OP-B2", "B", ServiceType.GENERAL_OUTPATIENT, 0, [(GLUCOSE, 1000, 3_000), (SELF_PAY, 1000, 2_000)]),
    ("OP-C1", "C", ServiceType.GENERAL_OUTPATIENT, 0, []),  # no fees: refused, writes nothing
    ("IP-C2", "C", ServiceType.INPATIENT, 3, [(BED, 2000, 12_000)]),
]
# (request id, hospital visit no, interim, use account, discharge days before TEST_DAY or None)
_CALLS = [
    ("s-a1-interim", "IP-A1", True, True, None),
    ("s-a2", "IP-A2", False, True, 0),
    ("s-a3", "OP-A3", False, True, 0),
    ("s-b1", "IP-B1", False, False, 1),
    ("s-b2", "OP-B2", False, True, 0),
    ("s-c1", "OP-C1", False, True, 0),
    ("s-c2", "IP-C2", False, True, 0),
    ("s-c2-early", "IP-C2", False, True, 9),  # a second call for C2: after the batch, refused (settled)
    ("s-a1-final", "IP-A1", False, True, 0),  # a second call for A1: after the batch, no lines left
    ("s-b2", "OP-B2", False, True, 0),  # a duplicate: replays
]


async def _open(app: SettlementService) -> dict[str, str]:
    ids = {}
    for no, who, service, days, lines in _VISITS:
        admitted = TEST_DAY - dt.timedelta(days=days)
        v = await app.visits.open_visit(
            Request(f"open-{no}", "fp", HOSPITAL),
            OpenVisitCommand(
                institution_code=HOSPITAL,
                hospital_visit_no=no,
                credential=CredentialRef(card_number=CARDS[who]),
                service_type=service,
                admission_date=admitted,
                diagnosis_codes=("I10",),
                emergency=who == "C",
            ),
        )
        ids[no] = v.visit_id
        if lines:
            uploaded = tuple(fee(i + 1, code, q, p, admitted) for i, (code, q, p) in enumerate(lines))
            await app.visits.upload_fees(Request(f"fees-{no}", "fp", HOSPITAL), UploadFeesCommand(v.visit_id, uploaded))
    return ids


def _calls(ids: dict[str, str]) -> list[SettleCall]:
    out = []
    for rid, no, interim, account, days in _CALLS:
        discharge = None if days is None else TEST_DAY - dt.timedelta(days=days)
        out.append(
            SettleCall(
                Request(rid, f"fp-{rid}", HOSPITAL),
                SettleCommand(ids[no], use_account=account, interim=interim, discharge_date=discharge),
            )
        )
    return out


def _named(v: Any, names: dict[str, str]) -> Any:
    """``v`` with every generated id in it replaced by its name."""
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        for generated, label in names.items():
            v = v.replace(generated, label)
    return v


def _answer(a: Committed | BaseException, names: dict[str, str]) -> object:
    if isinstance(a, BaseException):
        return type(a).__name__, getattr(a, "reason", None)
    flags = tuple((f.code, _named(f.detail, names), f.line_no) for f in a.record.flags)
    return a.record.request_id, a.result, flags, a.visit.status


async def _snapshot(db: Database, names: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, generated ids replaced by their names, timestamps left out."""

    out: dict[str, list[tuple[Any, ...]]] = {}
    async with db.read() as s:
        for table in metadata.sorted_tables:
            keep = [
                c for c in table.columns if not isinstance(c.type, DateTime) and (table.name, c.name) not in _GENERATED
            ]
            rows = (await s.execute(select(*keep))).all()
            out[table.name] = sorted((tuple(_named(v, names) for v in r) for r in rows), key=repr)
    return out


async def _run(settings: Settings, batched: bool) -> tuple[list[object], dict[str, list[tuple[Any, ...]]]]:
    db = Database.from_settings(settings, "settlement")
    try:
        async with db.transaction() as s:  # start from empty tables
            for table in reversed(metadata.sorted_tables):
                await s.execute(delete(table))
        app = build_service(
            SqlStore(db), _eligibility(), _POLICIES, clock=ShiftedClock.at_cst(TEST_DAY), max_batch=64, writers=1
        )
        ids = await _open(app)
        calls = _calls(ids)
        answers: list[Committed | BaseException]
        if batched:
            # the calls as one batch, exactly as the group-commit queue hands them over
            queue = app.settle_queue
            queue.start()
            try:
                answers = list(
                    await asyncio.gather(*(app.settle(c.request, c.command) for c in calls), return_exceptions=True)
                )
            finally:
                await queue.stop()
        else:
            answers = []
            for c in calls:
                try:
                    answers.append(await app.settling.settle_one(c))
                except Exception as exc:  # noqa: BLE001 - compared with the batch's answer
                    answers.append(exc)
        names = {vid: f"<visit {no}>" for no, vid in ids.items()}
        for a in answers:
            if isinstance(a, Committed):
                names[a.record.settlement_id] = f"<settlement {a.record.request_id}>"
        return [_answer(a, names) for a in answers], await _snapshot(db, names)
    finally:
        await db.dispose()


async def test_the_batch_writes_exactly_what_one_at_a_time_writes(settings: Settings) -> None:
    one_answers, one_rows = await _run(settings, batched=False)
    batch_answers, batch_rows = await _run(settings, batched=True)
    assert batch_answers == one_answers
    for table in one_rows:
        assert batch_rows[table] == one_rows[table], table
    # the scenario does what it says: settlements of three persons, a refusal, a replay
    assert len(one_rows["settlements"]) == 6 and len(one_rows["settlement_events"]) == 6
    assert one_answers[5] == ("DomainError", Reason.VISIT_HAS_NO_FEES)
    assert one_answers[7] == ("DomainError", Reason.VISIT_STATE_INVALID)  # C2 was settled by then
    assert one_answers[8] == ("DomainError", Reason.VISIT_HAS_NO_FEES)  # the interim one settled every line
    assert one_answers[4] == one_answers[9]  # the duplicate answered with the stored settlement
    visits = {r[2]: r for r in one_rows["visits"]}  # by hospital visit no
    assert visits["OP-C1"][4] == "open" and visits["IP-A2"][4] == "settled"
    assert visits["IP-A1"][4] == "open" and visits["IP-A1"][15] == 1  # status, settled_stays: interim
    assert visits["IP-C2"][11:13] == (True, False)  # emergency, trauma_declared: written as opened
