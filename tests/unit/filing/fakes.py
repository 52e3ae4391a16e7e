"""An in-memory FilingStore (services.filing.application.ports) for the use-case tests."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

from libs.platform.outbox import FeedNotifier
from services.filing.application.ports import FilingEvent
from services.filing.domain.model import Filing, FilingStatus
from tests.unit.fakes import Keys, unique_violation


@dataclass
class _State:
    filings: dict[str, Filing] = field(default_factory=dict)
    revisions: dict[str, list[Filing]] = field(default_factory=dict)
    keys: Keys = field(default_factory=Keys)


class _Reader:
    def __init__(self, state: _State) -> None:
        self.state = state

    async def get(self, filing_id: str, *, for_update: bool = False) -> Filing | None:
        return self.state.filings.get(filing_id)

    async def active_for_person(self, person_no: str, *, for_update: bool = False) -> Filing | None:
        found = [f for f in self.state.filings.values() if f.person_no == person_no and f.status is FilingStatus.ACTIVE]
        return found[0] if found else None

    async def history(self, filing_id: str) -> builtins.list[Filing]:
        return sorted(self.state.revisions.get(filing_id, []), key=lambda f: f.revision)

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
        out = [
            f
            for f in self.state.filings.values()
            if (not person_no or f.person_no == person_no)
            and (not treatment_region or f.treatment_region == treatment_region)
            and (not insured_region or f.insured_region == insured_region)
            and (not status or f.status.value == status)
            and f.filing_id > after_id
        ]
        return sorted(out, key=lambda f: f.filing_id)[:limit]


class _UnitOfWork(_Reader):
    def __init__(self, state: _State) -> None:
        super().__init__(state)
        self.events: list[tuple[str, Filing]] = []
        self.written: set[str] = set()

    async def add(self, f: Filing, now: dt.datetime) -> None:
        if f.filing_id in self.state.filings:
            raise unique_violation(f"filings.filing_id {f.filing_id}")
        self.state.filings[f.filing_id] = f
        self.written.add(f.filing_id)
        self._revision(f)

    async def save(self, f: Filing, now: dt.datetime) -> None:
        self.state.filings[f.filing_id] = f
        self.written.add(f.filing_id)
        self._revision(f)

    def _revision(self, f: Filing) -> None:
        revs = self.state.revisions.setdefault(f.filing_id, [])
        if any(r.revision == f.revision for r in revs):
            raise unique_violation(f"filing_revisions {f.filing_id}/{f.revision}")
        revs.append(f)

    async def append_event(self, event_type: str, f: Filing) -> None:
        self.events.append((event_type, f))

    async def request_ref(self, request_id: str, operation: str, fingerprint: str) -> str | None:
        return self.state.keys.check(request_id, operation, fingerprint)

    async def record_request(self, request_id: str, operation: str, fingerprint: str, ref: str) -> None:
        self.state.keys.record(request_id, operation, fingerprint, ref)


class InMemoryFilingStore:
    def __init__(self) -> None:
        self._state = _State()
        self.feed: list[FilingEvent] = []  # the committed feed, positions from 1
        self.commits = 0
        self._committed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_UnitOfWork]:
        base = self._state
        work = _State(dict(base.filings), {k: list(v) for k, v in base.revisions.items()}, base.keys.copy())
        uow = _UnitOfWork(work)
        yield uow
        await asyncio.sleep(0)  # a commit is a suspension point, as a database round trip is
        self._commit(base, work, uow)

    def _commit(self, base: _State, work: _State, uow: _UnitOfWork) -> None:
        committed = self._state
        for fid in uow.written:
            # written by another transaction since this one read it: the database's row lock
            # would have made this one wait and read again; here it fails and run_once retries
            if committed.filings.get(fid) is not base.filings.get(fid):
                raise unique_violation(f"filings.filing_id {fid} (concurrent update)")
        filings = {**committed.filings, **{fid: work.filings[fid] for fid in uow.written}}
        active: dict[str, str] = {}
        for fid, f in filings.items():  # the partial unique index: one active filing per person
            if f.status is FilingStatus.ACTIVE:
                if f.person_no in active:
                    raise unique_violation(f"ux_filings_one_active_per_person {f.person_no}")
                active[f.person_no] = fid
        work.keys.merge_into(committed.keys)
        revisions = {**committed.revisions, **{fid: list(work.revisions[fid]) for fid in uow.written}}
        self._state = _State(filings, revisions, committed.keys)
        for event_type, f in uow.events:
            self.feed.append(FilingEvent(len(self.feed) + 1, event_type, copy.copy(f)))
        self.commits += 1
        self._committed.set()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Reader]:
        yield _Reader(self._state)

    async def events_after(self, after: int) -> list[FilingEvent]:
        return [e for e in self.feed if e.position > after]

    async def events(
        self, after: int, notifier: FeedNotifier, stopping: asyncio.Event | None = None
    ) -> AsyncGenerator[Sequence[FilingEvent], None]:
        position = after
        while stopping is None or not stopping.is_set():
            batch = await self.events_after(position)
            yield batch
            if batch:
                position = batch[-1].position
                continue
            self._committed.clear()
            waiters = [asyncio.ensure_future(self._committed.wait())]
            if stopping is not None:
                waiters.append(asyncio.ensure_future(stopping.wait()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
