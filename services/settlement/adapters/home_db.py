"""Storage of home movements and the person-year rows they change (SQLAlchemy Core).

Locks follow the settle path's order so the two never wait on each other in a cycle: persons in
order, for each the year row before the account row (the settle path locks the join of both in
(person, year) order). Repositories never commit.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.platform import idempotency
from libs.platform.db import Store
from libs.policy import Accumulators
from services.settlement.adapters.db import (
    accounts,
    accumulators,
    home_movements,
    idempotency_keys,
    manual_claims,
    settlements,
)
from services.settlement.application.home import OPERATION
from services.settlement.domain.home import TOTAL_FIELDS, HomeMovement


class HomeRepository:
    def __init__(self, session: AsyncConnection) -> None:
        self.s = session

    async def movements(self, region: str, ids: list[str]) -> dict[str, str]:
        """movement_id -> fingerprint of the bureau's movements already applied."""
        if not ids:
            return {}
        t = home_movements.c
        q = select(t.movement_id, t.fingerprint).where(t.insured_region == region, t.movement_id.in_(sorted(set(ids))))
        return {r.movement_id: r.fingerprint for r in (await self.s.execute(q)).all()}

    async def other_regions(self, region: str, persons: list[str]) -> dict[str, str]:
        """person -> another insured region this system knows the person as insured in (from
        settlements, manual claims or another bureau's movements), for persons of ``persons``."""
        out: dict[str, str] = {}
        for table, col in (
            (settlements, settlements.c.insured_region),
            (manual_claims, manual_claims.c.insured_region),
            (home_movements, home_movements.c.insured_region),
        ):
            q = (
                select(table.c.person_no, col)
                .where(table.c.person_no.in_(sorted(set(persons))), col != region)
                .distinct()
            )
            for r in (await self.s.execute(q)).all():
                out.setdefault(r[0], r[1])
        return out

    async def lock_person_years(
        self, keys: list[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], Accumulators], dict[str, int]]:
        """Creates missing year rows (zero totals; the account is not created: its balance comes
        from the first decision or account movement), then locks the year rows and the existing
        accounts of these persons, in order. Returns the totals and the balances held."""
        keys = sorted(set(keys))
        dialect_insert = pg_insert if self.s.dialect.name == "postgresql" else sqlite_insert
        await self.s.execute(
            dialect_insert(accumulators).on_conflict_do_nothing(),
            [{"person_no": p, "year": y, **dict.fromkeys(TOTAL_FIELDS, 0)} for p, y in keys],
        )
        a = accumulators.c
        rows = (
            await self.s.execute(
                select(accumulators)
                .where(tuple_(a.person_no, a.year).in_(keys))
                .order_by(a.person_no, a.year)
                .with_for_update()
            )
        ).all()
        totals = {
            (r.person_no, r.year): Accumulators(year=r.year, **{n: getattr(r, n) for n in TOTAL_FIELDS}) for r in rows
        }
        persons = sorted({p for p, _ in keys})
        balances = {
            r.person_no: int(r.balance_fen)
            for r in (
                await self.s.execute(
                    select(accounts.c.person_no, accounts.c.balance_fen)
                    .where(accounts.c.person_no.in_(persons))
                    .order_by(accounts.c.person_no)
                    .with_for_update()
                )
            ).all()
        }
        return totals, balances

    async def read_person_year(self, person_no: str, year: int) -> tuple[Accumulators, int | None]:
        a = accumulators.c
        row = (await self.s.execute(select(accumulators).where(a.person_no == person_no, a.year == year))).first()
        totals = Accumulators(year=year, **({n: getattr(row, n) for n in TOTAL_FIELDS} if row else {}))
        balance = (
            await self.s.execute(select(accounts.c.balance_fen).where(accounts.c.person_no == person_no))
        ).scalar()
        return totals, None if balance is None else int(balance)

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
        """The applied movements, the totals and balances they left."""
        if applied:
            await self.s.execute(
                home_movements.insert(),
                [
                    {
                        "insured_region": region,
                        "movement_id": m.movement_id,
                        "person_no": m.person_no,
                        "year": m.year,
                        "kind": m.kind.value,
                        "fingerprint": m.fingerprint(),
                        "delta": m.delta_json(),
                        "account_delta_fen": m.account_delta_fen,
                        "occurred_on": m.occurred_on,
                        "request_id": request_id,
                        "recorded_at": now,
                    }
                    for m in applied
                ],
            )
        a = accumulators.c
        for (person, year), t in totals.items():
            await self.s.execute(
                update(accumulators)
                .where(a.person_no == person, a.year == year)
                .values({n: getattr(t, n) for n in TOTAL_FIELDS})
            )
        for person, balance in balances.items():
            if person in created_accounts:
                await self.s.execute(accounts.insert().values(person_no=person, balance_fen=balance))
            else:
                await self.s.execute(update(accounts).where(accounts.c.person_no == person).values(balance_fen=balance))


class DbHomeUnit(HomeRepository):
    """The HomeUnit port on one database connection (a transaction or a read)."""

    async def check_key(self, request_id: str, fingerprint: str) -> str | None:
        return await idempotency.check(self.s, idempotency_keys, request_id, OPERATION, fingerprint)

    async def record_key(self, request_id: str, fingerprint: str, ref: str) -> None:
        await idempotency.record(self.s, idempotency_keys, request_id, OPERATION, fingerprint, ref)


class DbHomeStore(Store[DbHomeUnit]):
    """The HomeStore port on the settlement database."""

    repository = DbHomeUnit
