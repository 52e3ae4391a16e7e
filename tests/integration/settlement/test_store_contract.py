"""The in-memory fake store (tests/unit/settlement/fakes.py) and the real one (adapters/store.py)
under the same checks: what one refuses the other refuses, and a unit of work that fails leaves
nothing behind in either. So the unit tests on the fake say something about the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from sqlalchemy.exc import IntegrityError

from libs.core.errors import DomainError, Reason
from libs.platform.db import Database
from libs.platform.settings import Settings
from libs.policy import SettlementResult
from libs.policy.loader import PolicyStore, parse_dirs
from services.settlement.adapters.store import SqlStore
from services.settlement.application.ports import Store
from services.settlement.domain import results
from services.settlement.domain.model import ClearingCategory, SettlementKind, SettlementRecord, VisitStatus
from tests.unit.settlement.fakes import FakeStore, fee
from tests.unit.settlement.test_schema import _visit

pytestmark = pytest.mark.db


@pytest.fixture(params=["fake", "database"])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Store]:
    if request.param == "fake":
        yield FakeStore()
        return
    db = Database.from_settings(settings, "settlement")
    try:
        yield SqlStore(db)
    finally:
        await db.dispose()


def _settlement(request_id: str, settlement_id: str, cancels: str = "") -> SettlementRecord:
    return SettlementRecord(
        settlement_id=settlement_id,
        request_id=request_id,
        visit_id="V1",
        kind=SettlementKind.CANCELLATION if cancels else SettlementKind.SETTLEMENT,
        cancels_settlement_id=cancels,
        institution_code="H1",
        person_no="P1",
        insured_region="110100",
        treatment_region="310100",
        service_type=_visit().service_type,
        category=ClearingCategory.INPATIENT,
        settle_date=dt.date(2026, 6, 2),
        settled_at=dt.datetime(2026, 6, 2, 1, tzinfo=dt.UTC),
        interim=False,
        result_json="{}",
    )


def _result() -> SettlementResult:
    """A real result to store: the policy engine's, on the sample policies."""
    from libs.policy import Accumulators, settle
    from services.settlement.domain.visits import policy_visit

    books = PolicyStore(parse_dirs("@samples")).current
    visit = _visit()
    lines = (fee(1, "001061526412244", 1000, 12_000).line,)
    policy = books.policies.find("110100", visit.decision.insurance_type or "employee", dt.date(2026, 6, 2))
    catalogue = books.catalogues.find("310100", visit.admission_date)
    pv = policy_visit(visit, lines, use_account=False, settle_date=dt.date(2026, 6, 2))
    return settle(policy, catalogue, pv, Accumulators(year=2026))


async def test_a_request_id_is_recorded_once_and_a_failed_unit_keeps_nothing(store: Store) -> None:
    async with store.transaction() as repo:
        await repo.record_key("r1", "open_visit", "fp", "V1")
    with pytest.raises(IntegrityError):
        async with store.transaction() as repo:
            await repo.add_visit(_visit())
            await repo.record_key("r1", "open_visit", "fp", "V2")
    async with store.read() as repo:
        assert await repo.visit("V1") is None  # the failed unit's visit was rolled back
        assert await repo.check_key("r1", "open_visit", "fp") == "V1"
        assert await repo.lookup_key("r1") == ("open_visit", "V1")
        with pytest.raises(DomainError) as err:
            await repo.check_key("r1", "open_visit", "other")
        assert err.value.reason is Reason.REQUEST_ID_REUSED


async def test_a_hospital_visit_number_once_and_the_visit_reads_back_whole(store: Store) -> None:
    async with store.transaction() as repo:
        await repo.add_visit(replace(_visit(), fee_line_count=0, fee_total_fen=0, settled_stays=0))
        await repo.replace_lines("V1", [fee(1, "A1", 1500, 1000), fee(2, "A2", 1000, 333)])
    with pytest.raises(IntegrityError):
        async with store.transaction() as repo:
            await repo.add_visit(replace(_visit(), visit_id="V2"))
    async with store.read() as repo:
        v = await repo.visit("V1")
        assert v is not None and v.emergency and v.trauma_declared
        assert (v.fee_line_count, v.fee_total_fen) == (2, 1500 + 333)
        assert await repo.visit("V2") is None
        assert [s.ref_id for s in await repo.stays_of("P110100000001", "H1", "inpatient")] == ["V1"]


async def test_a_settlement_once_per_request_and_a_cancellation_once_per_settlement(store: Store) -> None:
    result = _result()
    assert results.load(results.dump(result)) == result
    async with store.transaction() as repo:
        await repo.add_visit(replace(_visit(), fee_line_count=0, fee_total_fen=0, settled_stays=0))
        await repo.add_settlement(_settlement("r1", "S1"), result)
        await repo.set_visit_status(
            "V1", VisitStatus.SETTLED, discharge_date=dt.date(2026, 6, 2), settled_stays_delta=1
        )
    for duplicate in (_settlement("r1", "S2"), _settlement("r3", "C2", cancels="S1")):
        if duplicate.cancels_settlement_id:
            async with store.transaction() as repo:
                await repo.add_settlement(_settlement("r2", "C1", cancels="S1"), result)
        with pytest.raises(IntegrityError):
            async with store.transaction() as repo:
                await repo.add_settlement(duplicate, result)
    async with store.read() as repo:
        s1 = await repo.settlement("S1")
        assert s1 is not None and s1.cancelled_by == "C1"
        assert await repo.settlement("S2") is None and await repo.settlement("C2") is None
        assert await repo.deductible_borne_in_stay("V1") == 2 * result.deductible_fen
        v = await repo.visit("V1")
        assert v is not None and v.status is VisitStatus.SETTLED and v.settled_stays == 1
