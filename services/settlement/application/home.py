"""Use cases of the insured place's own spending (HomeMovementService): report home movements,
read a person's year totals. Rules in ``domain/home.py``; storage through the ports below, which
``adapters/home_store.py`` implements on the database and tests fake in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Protocol

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.platform import idempotency
from libs.platform.logs import get_logger
from libs.policy import Accumulators
from services.settlement.domain.home import HomeMovement, apply_movement

_log = get_logger("medsettle.settlement.home")
OPERATION = "report_home_movements"


@dataclass(frozen=True, slots=True)
class ReportHomeMovements:
    request_id: str  # scoped to the caller
    fingerprint: str
    region: str  # the reporting bureau's (the caller's) region
    movements: tuple[HomeMovement, ...]


@dataclass(frozen=True, slots=True)
class PersonYear:
    person_no: str
    totals: Accumulators  # account_balance_fen = the balance held (0 when none)
    account_known: bool


@dataclass(frozen=True, slots=True)
class Reported:
    applied: int
    skipped: int
    totals: tuple[PersonYear, ...]


class HomeUnit(Protocol):
    """One unit of work's view of storage (a transaction, or a read)."""

    async def check_key(self, request_id: str, fingerprint: str) -> str | None: ...
    async def record_key(self, request_id: str, fingerprint: str, ref: str) -> None: ...
    async def movements(self, region: str, ids: list[str]) -> dict[str, str]: ...
    async def other_regions(self, region: str, persons: list[str]) -> dict[str, str]: ...
    async def lock_person_years(
        self, keys: list[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], Accumulators], dict[str, int]]: ...
    async def read_person_year(self, person_no: str, year: int) -> tuple[Accumulators, int | None]: ...
    async def save(
        self,
        region: str,
        request_id: str,
        applied: list[HomeMovement],
        totals: dict[tuple[str, int], Accumulators],
        balances: dict[str, int],
        created_accounts: set[str],
        now: dt.datetime,
    ) -> None: ...


class HomeStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[HomeUnit]: ...
    def read(self) -> AbstractAsyncContextManager[HomeUnit]: ...


def _region_refused(_person_no: str, _other: str) -> DomainError:
    """Says no more than that: which region the person is insured in is not the caller's to learn."""
    return DomainError(Reason.NOT_AUTHORISED_FOR_REGION, "the person is settled here as insured in another region")


class HomeMovements:
    def __init__(self, store: HomeStore, clock: Callable[[], dt.datetime]) -> None:
        self._store = store
        self._clock = clock

    async def report(self, cmd: ReportHomeMovements) -> Reported:
        keys = sorted({(m.person_no, m.year) for m in cmd.movements})

        async def attempt() -> Reported:
            async with self._store.transaction() as unit:
                if await unit.check_key(cmd.request_id, cmd.fingerprint) is not None:
                    raise idempotency.Replay("")
                seen = await unit.movements(cmd.region, [m.movement_id for m in cmd.movements])
                others = await unit.other_regions(cmd.region, [p for p, _ in keys])
                if others:
                    raise _region_refused(*min(others.items()))
                totals, balances = await unit.lock_person_years(keys)
                held = set(balances)
                applied: list[HomeMovement] = []
                skipped = 0
                in_report: dict[str, str] = {}
                for i, m in enumerate(cmd.movements):
                    fp = m.fingerprint()
                    earlier = seen.get(m.movement_id) or in_report.get(m.movement_id)
                    if earlier is not None:
                        if earlier != fp:
                            raise DomainError(
                                Reason.MOVEMENT_ID_REUSED,
                                f"movement {m.movement_id[:64]} was reported with other content",
                                metadata={"movement_id": m.movement_id[:64]},
                                violations=[FieldViolation(f"movements[{i}].movement_id", "already used")],
                            )
                        skipped += 1
                        continue
                    key = (m.person_no, m.year)
                    totals[key], balance = apply_movement(totals[key], balances.get(m.person_no), m)
                    if balance is not None:
                        balances[m.person_no] = balance
                    in_report[m.movement_id] = fp
                    applied.append(m)
                now = self._clock()
                await unit.save(
                    cmd.region,
                    cmd.request_id,
                    applied,
                    {k: totals[k] for k in {(m.person_no, m.year) for m in applied}},
                    {p: b for p, b in balances.items() if p in {m.person_no for m in applied if m.account_delta_fen}},
                    set(balances) - held,
                    now,
                )
                await unit.record_key(cmd.request_id, cmd.fingerprint, f"{len(applied)}:{skipped}")
            _log.info("home_movements_applied", region=cmd.region, applied=len(applied), skipped=skipped)
            return Reported(len(applied), skipped, tuple(_person_year(k, totals[k], balances) for k in keys))

        async def replay(_: str) -> Reported:
            async with self._store.read() as unit:
                ref = await unit.check_key(cmd.request_id, cmd.fingerprint) or "0:0"
                applied, skipped = (int(x) for x in ref.split(":"))
                return Reported(applied, skipped, tuple([await self._read(unit, p, y) for p, y in keys]))

        return await idempotency.run_once(attempt, replay)

    async def person_year(self, region: str, person_no: str, year: int) -> PersonYear:
        async with self._store.read() as unit:
            others = await unit.other_regions(region, [person_no])
            if person_no in others:
                raise _region_refused(person_no, others[person_no])
            return await self._read(unit, person_no, year)

    @staticmethod
    async def _read(unit: HomeUnit, person_no: str, year: int) -> PersonYear:
        totals, balance = await unit.read_person_year(person_no, year)
        return _person_year((person_no, year), totals, {} if balance is None else {person_no: balance})


def _person_year(key: tuple[str, int], totals: Accumulators, balances: dict[str, int]) -> PersonYear:
    person, _ = key
    return PersonYear(person, replace(totals, account_balance_fen=balances.get(person, 0)), person in balances)
