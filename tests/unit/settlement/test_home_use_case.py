"""The home-movement use cases against an in-memory store (no database, no gRPC): each movement
counts once, refused reports change nothing, the account never goes negative."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.core.errors import DomainError, Reason
from libs.policy import Accumulators
from services.settlement.application.home import OPERATION, HomeMovements, ReportHomeMovements
from services.settlement.domain.home import TOTAL_FIELDS, HomeMovement, MovementKind, movement_violations
from tests.unit.fakes import Keys

DAY = dt.date(2026, 7, 1)
NOW = dt.datetime(2026, 7, 1, 2, 0, tzinfo=dt.UTC)


class FakeHomeUnit:
    """The HomeUnit port over dicts; a transaction works on a copy that replaces the store's state
    only when the block ends without an error (as a database rolls back). Request ids are kept
    by the shared fake of the idempotency table (tests/unit/fakes.py)."""

    def __init__(self, state: dict[str, dict], keys: Keys) -> None:  # type: ignore[type-arg]
        self.state = state
        self.keys = keys

    async def check_key(self, request_id: str, fingerprint: str) -> str | None:
        return self.keys.check(request_id, OPERATION, fingerprint)

    async def record_key(self, request_id: str, fingerprint: str, ref: str) -> None:
        self.keys.record(request_id, OPERATION, fingerprint, ref)

    async def movements(self, region: str, ids: list[str]) -> dict[str, str]:
        return {i: self.state["movements"][(region, i)] for i in ids if (region, i) in self.state["movements"]}

    async def other_regions(self, region: str, persons: list[str]) -> dict[str, str]:
        return {p: r for p, r in self.state["regions"].items() if p in persons and r != region}

    async def lock_person_years(
        self, keys: list[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], Accumulators], dict[str, int]]:
        totals = {k: self.state["totals"].get(k, Accumulators(year=k[1])) for k in keys}
        return totals, {p: b for p, b in self.state["balances"].items() if p in {p for p, _ in keys}}

    async def read_person_year(self, person_no: str, year: int) -> tuple[Accumulators, int | None]:
        return self.state["totals"].get((person_no, year), Accumulators(year=year)), self.state["balances"].get(
            person_no
        )

    async def save(
        self,
        region: str,
        request_id: str,
        applied: list[HomeMovement],
        totals: dict[tuple[str, int], Accumulators],
        balances: dict[str, int],
        created_accounts: set[str],
        now: dt.datetime,
    ) -> None:
        for m in applied:
            assert (region, m.movement_id) not in self.state["movements"]
            self.state["movements"][(region, m.movement_id)] = m.fingerprint()
            self.state["regions"].setdefault(m.person_no, region)
        for p in created_accounts:
            assert p not in self.state["balances"]
        self.state["totals"].update(totals)
        self.state["balances"].update(balances)


class FakeHomeStore:
    def __init__(self) -> None:
        self.state: dict[str, dict] = {"movements": {}, "regions": {}, "totals": {}, "balances": {}}  # type: ignore[type-arg]
        self.keys = Keys()
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeHomeUnit]:
        async with self._lock:
            work, keys = {k: dict(v) for k, v in self.state.items()}, self.keys.copy()
            yield FakeHomeUnit(work, keys)
            keys.merge_into(self.keys)
            self.state = work

    @asynccontextmanager
    async def read(self) -> AsyncIterator[FakeHomeUnit]:
        yield FakeHomeUnit(self.state, self.keys)


def move(mid: str, **kw: object) -> HomeMovement:
    base: dict[str, object] = {
        "movement_id": mid,
        "person_no": "P1",
        "year": 2026,
        "kind": MovementKind.SETTLEMENT,
        "delta": Accumulators(year=2026, outpatient_deductible_borne_fen=100, outpatient_pooled_base_fen=900),
        "account_delta_fen": 0,
        "home_balance_after_fen": None,
        "occurred_on": DAY,
        "expected": None,
    }
    base.update(kw)
    return HomeMovement(**base)  # type: ignore[arg-type]


def cmd(rid: str, *movements: HomeMovement, region: str = "110100") -> ReportHomeMovements:
    return ReportHomeMovements(rid, f"fp-{rid}", region, movements)


def use_cases() -> tuple[HomeMovements, FakeHomeStore]:
    store = FakeHomeStore()
    return HomeMovements(store, lambda: NOW), store


async def test_a_movement_counts_once_across_reports_and_retries() -> None:
    uc, _ = use_cases()
    m = move("m1", account_delta_fen=-500, home_balance_after_fen=9_500)
    first = await uc.report(cmd("r1", m))
    assert (first.applied, first.skipped) == (1, 0)
    assert (await uc.report(cmd("r1", m))).applied == 1  # the same request: the stored answer
    again = await uc.report(cmd("r2", m))  # the same movement in another request: skipped
    assert (again.applied, again.skipped) == (0, 1)
    py = await uc.person_year("110100", "P1", 2026)
    assert py.totals.outpatient_deductible_borne_fen == 100 and py.account_known
    assert py.totals.account_balance_fen == 9_500  # started from the home balance after the debit


async def test_refused_reports_change_nothing() -> None:
    uc, store = use_cases()
    await uc.report(cmd("r1", move("m1", account_delta_fen=-500, home_balance_after_fen=1_000)))
    before = {k: dict(v) for k, v in store.state.items()}
    keys_before = dict(store.keys.rows)
    credit = move("m2", kind=MovementKind.ACCOUNT_CREDIT, delta=Accumulators(year=2026), account_delta_fen=10)
    debit = move("m3", kind=MovementKind.ACCOUNT_DEBIT, delta=Accumulators(year=2026), account_delta_fen=-1_011)
    with pytest.raises(DomainError) as e:
        await uc.report(cmd("r2", credit, debit))
    assert e.value.reason is Reason.ACCOUNT_INSUFFICIENT
    stale = move("m4", expected=Accumulators(year=2026))
    with pytest.raises(DomainError) as e:
        await uc.report(cmd("r3", stale))
    assert e.value.reason is Reason.ACCUMULATORS_CHANGED and e.value.metadata["outpatient_pooled_base_fen"] == "900"
    with pytest.raises(DomainError) as e:
        await uc.report(cmd("r4", move("m1", delta=Accumulators(year=2026, admissions=1))))
    assert e.value.reason is Reason.MOVEMENT_ID_REUSED
    with pytest.raises(DomainError) as e:
        await uc.report(cmd("r5", move("m9"), region="510100"))
    assert e.value.reason is Reason.NOT_AUTHORISED_FOR_REGION
    assert store.state == before and store.keys.rows == keys_before


def test_a_movement_must_match_its_kind() -> None:
    bad = move("m1", kind=MovementKind.CANCELLATION)  # positive deltas
    assert [v.field for v in movement_violations(bad, "m")] == ["m.kind"]
    no_balance = move("m2", account_delta_fen=-1)
    assert [v.field for v in movement_violations(no_balance, "m")] == ["m.home_balance_after_fen"]
    assert movement_violations(move("m3"), "m") == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["debit", "credit", "settle"]), st.integers(1, 5_000), st.booleans()),
        min_size=1,
        max_size=25,
    )
)
def test_whatever_is_reported_the_account_never_goes_negative_and_totals_are_the_sum(
    ops: list[tuple[str, int, bool]],
) -> None:
    async def run() -> None:
        uc, _ = use_cases()
        known: int | None = None  # the balance held, as the rules say it must be
        deductible = 0
        for i, (op, amount, twice) in enumerate(ops):
            if op == "credit":
                m = move(f"m{i}", kind=MovementKind.ACCOUNT_CREDIT, delta=Accumulators(year=2026))
                m = replace(m, account_delta_fen=amount, home_balance_after_fen=3_000 + amount)
            elif op == "debit":
                m = move(f"m{i}", kind=MovementKind.ACCOUNT_DEBIT, delta=Accumulators(year=2026))
                m = replace(m, account_delta_fen=-amount, home_balance_after_fen=max(0, 3_000 - amount))
            else:
                m = move(f"m{i}", delta=Accumulators(year=2026, outpatient_deductible_borne_fen=amount))
            try:
                await uc.report(cmd(f"r{i}", m))
            except DomainError as exc:
                assert exc.reason is Reason.ACCOUNT_INSUFFICIENT and op == "debit"
                assert known is not None and known < amount
                continue
            if twice:
                assert (await uc.report(cmd(f"r{i}-again", m))).skipped == 1
            if op == "settle":
                deductible += amount
            else:
                assert m.home_balance_after_fen is not None
                known = m.home_balance_after_fen if known is None else known + m.account_delta_fen
        py = await uc.person_year("110100", "P1", 2026)
        assert py.totals.outpatient_deductible_borne_fen == deductible
        assert py.account_known == (known is not None)
        assert py.totals.account_balance_fen == (known or 0) >= 0
        assert all(getattr(py.totals, n) >= 0 for n in TOTAL_FIELDS)

    asyncio.run(run())
