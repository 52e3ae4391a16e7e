"""What the eligibility use cases need from storage, as interfaces (``typing.Protocol``).

``adapters/db.py`` implements them with SQLAlchemy; the unit tests implement them in memory
(``tests/unit/eligibility/fakes.py``); ``services/eligibility/server.py`` passes the
implementation in. The hot path (CheckEligibility) reads none of this: it answers from the
in-memory registry the use cases load and refresh through these ports."""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from services.eligibility.domain.model import Institution, InsuredPerson, Region


@dataclass(frozen=True, slots=True)
class RegistryRows:
    regions: list[Region]
    institutions: list[Institution]
    persons: list[InsuredPerson]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An e-certificate as stored: its claims' times, never the token itself."""

    token_id: str
    person_no: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    revoked: bool = False


class EligibilityReader(Protocol):
    async def registry(self) -> RegistryRows:
        """Every region, institution and insured person."""
        ...

    async def registry_changed_since(self, since: dt.datetime) -> RegistryRows:
        """The rows written at or after ``since`` (by any replica)."""
        ...

    async def revoked_tokens(self, expiring_after: dt.datetime) -> set[str]:
        """Revoked tokens that expire after ``expiring_after`` (older ones fail verification anyway)."""
        ...

    async def identity_clash(self, person: InsuredPerson) -> str:
        """The field (``id_number``, ``card_number``) another person already holds, or ""."""
        ...

    async def token(self, token_id: str) -> IssuedToken | None: ...

    async def token_holder(self, token_id: str) -> str | None:
        """The person_no an e-certificate was issued to."""
        ...


class EligibilityUnitOfWork(EligibilityReader, Protocol):
    """One transaction. Unique rules as the database has them: one row per region code,
    institution code and person number (a put replaces it), an ID number and a card number
    belong to one person, a request id and a token id are recorded once."""

    async def put_region(self, region: Region, now: dt.datetime) -> None: ...

    async def put_institution(self, institution: Institution, now: dt.datetime) -> None: ...

    async def put_person(self, person: InsuredPerson, now: dt.datetime) -> None: ...

    async def add_token(self, token: IssuedToken) -> None: ...

    async def revoke_token(self, token_id: str) -> bool:
        """Marks it revoked; False when there is no such token."""
        ...

    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        """The result of an earlier request with this id; REQUEST_ID_REUSED for another payload."""
        ...

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None: ...


class EligibilityStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[EligibilityUnitOfWork]: ...

    def read(self) -> AbstractAsyncContextManager[EligibilityReader]: ...
