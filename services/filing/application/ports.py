"""What the filing use cases need from storage, as interfaces (``typing.Protocol``).

``adapters/db.py`` implements them with SQLAlchemy; the unit tests implement them in memory
(``tests/unit/filing/fakes.py``). The composition root (``services/filing/server.py``) passes the
implementation in: the use cases never name a database."""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from libs.platform.outbox import FeedNotifier
from services.filing.domain.model import Filing


@dataclass(frozen=True, slots=True)
class FilingEvent:
    """One row of the filing feed: ``event_type`` is created, superseded or cancelled."""

    position: int
    event_type: str
    filing: Filing


class FilingReader(Protocol):
    async def get(self, filing_id: str, *, for_update: bool = False) -> Filing | None: ...

    async def active_for_person(self, person_no: str, *, for_update: bool = False) -> Filing | None:
        """The person's one active filing (at most one: the store refuses a second)."""
        ...

    async def history(self, filing_id: str) -> builtins.list[Filing]:
        """Every revision of the filing, oldest first."""
        ...

    async def list(
        self,
        *,
        person_no: str = "",
        treatment_region: str = "",
        status: str = "",
        after_id: str = "",
        limit: int = 100,
        insured_region: str = "",
    ) -> builtins.list[Filing]:
        """Filings matching every non-empty filter, in filing id order, after ``after_id``."""
        ...


class FilingUnitOfWork(FilingReader, Protocol):
    """One transaction: everything written commits together or not at all. A second active
    filing for a person, or a request id recorded twice, fails the commit (the loser retries,
    ``libs.platform.idempotency.run_once``)."""

    async def add(self, f: Filing, now: dt.datetime) -> None: ...

    async def save(self, f: Filing, now: dt.datetime) -> None: ...

    async def append_event(self, event_type: str, f: Filing) -> None:
        """The feed event, in the same transaction as the change it describes."""
        ...

    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        """The result of an earlier request with this id; REQUEST_ID_REUSED for another payload."""
        ...

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None: ...


class FilingStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[FilingUnitOfWork]: ...

    def read(self) -> AbstractAsyncContextManager[FilingReader]: ...

    def events(
        self, after: int, notifier: FeedNotifier, stopping: asyncio.Event | None = None
    ) -> AsyncGenerator[Sequence[FilingEvent], None]:
        """Committed events after position ``after`` in batches; an empty batch means caught up,
        then waits for the next commit (``notifier``) or ``stopping``."""
        ...
