"""An in-memory EligibilityStore (services.eligibility.application.ports) for the use-case tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from services.eligibility.application.ports import IssuedToken, RegistryRows
from services.eligibility.domain.model import Institution, InsuredPerson, Region
from tests.unit.fakes import Keys, unique_violation


@dataclass
class _State:
    regions: dict[str, tuple[Region, dt.datetime]] = field(default_factory=dict)
    institutions: dict[str, tuple[Institution, dt.datetime]] = field(default_factory=dict)
    persons: dict[str, tuple[InsuredPerson, dt.datetime]] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    keys: Keys = field(default_factory=Keys)

    def copy(self) -> _State:
        return _State(
            dict(self.regions), dict(self.institutions), dict(self.persons), dict(self.tokens), self.keys.copy()
        )


class _Reader:
    def __init__(self, state: _State) -> None:
        self.state = state

    async def registry(self) -> RegistryRows:
        return await self.registry_changed_since(dt.datetime.min.replace(tzinfo=dt.UTC))

    async def registry_changed_since(self, since: dt.datetime) -> RegistryRows:
        st = self.state
        return RegistryRows(
            [r for r, at in st.regions.values() if at >= since],
            [i for i, at in st.institutions.values() if at >= since],
            [p for p, at in st.persons.values() if at >= since],
        )

    async def revoked_tokens(self, expiring_after: dt.datetime) -> set[str]:
        return {t.token_id for t in self.state.tokens.values() if t.revoked and t.expires_at > expiring_after}

    async def identity_clash(self, person: InsuredPerson) -> str:
        others = [p for p, _ in self.state.persons.values() if p.person_no != person.person_no]
        if any(p.id_number == person.id_number for p in others):
            return "id_number"
        if person.card_number and any(p.card_number == person.card_number for p in others):
            return "card_number"
        return ""

    async def token(self, token_id: str) -> IssuedToken | None:
        return self.state.tokens.get(token_id)

    async def token_holder(self, token_id: str) -> str | None:
        t = self.state.tokens.get(token_id)
        return t.person_no if t else None


class _UnitOfWork(_Reader):
    async def put_region(self, region: Region, now: dt.datetime) -> None:
        self.state.regions[region.region_code] = (region, now)

    async def put_institution(self, institution: Institution, now: dt.datetime) -> None:
        self.state.institutions[institution.institution_code] = (institution, now)

    async def put_person(self, person: InsuredPerson, now: dt.datetime) -> None:
        if await self.identity_clash(person):  # the unique columns id_number and card_number
            raise unique_violation("insured_persons id_number/card_number")
        self.state.persons[person.person_no] = (person, now)

    async def add_token(self, token: IssuedToken) -> None:
        if token.token_id in self.state.tokens:
            raise unique_violation(f"issued_tokens.token_id {token.token_id}")
        self.state.tokens[token.token_id] = token

    async def revoke_token(self, token_id: str) -> bool:
        t = self.state.tokens.get(token_id)
        if t is None:
            return False
        self.state.tokens[token_id] = replace(t, revoked=True)
        return True

    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        return self.state.keys.check(request_id, operation, fingerprint)

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None:
        self.state.keys.record(request_id, operation, fingerprint, ref)


class InMemoryEligibilityStore:
    def __init__(self) -> None:
        self.state = _State()
        self.commits = 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_UnitOfWork]:
        base = self.state
        work = base.copy()
        yield _UnitOfWork(work)
        await asyncio.sleep(0)  # a commit is a suspension point, as a database round trip is
        committed = self.state
        persons = {**committed.persons, **_written(base.persons, work.persons)}
        seen: dict[tuple[str, str], str] = {}
        for p, _ in persons.values():  # the unique columns, against what committed meanwhile
            for column, value in (("id_number", p.id_number), ("card_number", p.card_number)):
                if value and seen.setdefault((column, value), p.person_no) != p.person_no:
                    raise unique_violation(f"insured_persons.{column}")
        tokens = _written(base.tokens, work.tokens)
        if set(tokens) & (set(committed.tokens) - set(base.tokens)):
            raise unique_violation("issued_tokens.token_id")
        work.keys.merge_into(committed.keys)
        self.state = _State(
            {**committed.regions, **_written(base.regions, work.regions)},
            {**committed.institutions, **_written(base.institutions, work.institutions)},
            persons,
            {**committed.tokens, **tokens},
            committed.keys,
        )
        self.commits += 1

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Reader]:
        yield _Reader(self.state)


def _written(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The entries a transaction wrote (every put makes a new value)."""
    return {k: v for k, v in after.items() if before.get(k) is not v}
