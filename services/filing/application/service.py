"""Filing use cases. Each owns its transaction; the outbox event is written in the same one."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from libs.core.errors import DomainError, Reason
from libs.platform import idempotency, outbox
from libs.platform.db import Database
from libs.platform.logs import get_logger
from services.filing.adapters.db import (
    FilingRepository,
    filing_events,
    from_snapshot,
    idempotency_keys,
    snapshot_json,
)
from services.filing.domain.model import (
    Filing,
    FilingStatus,
    NewFiling,
    add_months,
    cancel,
    supersede,
    validate_new_filing,
)

_log = get_logger("medsettle.filing")

# The insured place's minimum period before a long-term filing may change (policy data, <= 6).
DEFAULT_MIN_MONTHS_BEFORE_CHANGE = 6


@dataclass(frozen=True, slots=True)
class FilingEvent:
    position: int
    event_type: str
    filing: Filing


class FilingService:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        today: Callable[[], dt.date] | None = None,
        min_months_before_change: Callable[[str], int] | None = None,
    ) -> None:
        self.db = db
        self.notifier = outbox.FeedNotifier()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._today = today or (lambda: dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date())
        self._min_months = min_months_before_change or (lambda _region: DEFAULT_MIN_MONTHS_BEFORE_CHANGE)

    # -- writes ---------------------------------------------------------------------------
    async def create(self, request_id: str, fp: str, new: NewFiling) -> Filing:
        validate_new_filing(new, today=self._today())

        async def attempt() -> Filing:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "create", fp):
                    raise idempotency.Replay(ref)
                repo = FilingRepository(s)
                now = self._clock()
                filing = self._new_filing(new, now)
                old = await repo.active_for_person(new.person_no, for_update=True)
                if old is not None:
                    # A new filing makes the old one expire automatically (history kept).
                    self._check_min_period(old, new.start_date)
                    ended = supersede(old, filing.filing_id, new.start_date, now)
                    await repo.save(ended, now)
                    await outbox.append(s, filing_events, "superseded", ended.filing_id, snapshot_json(ended).encode())
                await repo.add(filing, now)
                await outbox.append(s, filing_events, "created", filing.filing_id, snapshot_json(filing).encode())
                await idempotency.record(s, idempotency_keys, request_id, "create", fp, filing.filing_id)
            _log.info(
                "filing_created",
                filing_id=filing.filing_id,
                filing_type=filing.filing_type.value,
                treatment_region=filing.treatment_region,
                superseded=old.filing_id if old else "",
            )
            self.notifier.notify()
            return filing

        return await idempotency.run_once(attempt, self._get_or_fail)

    async def change(self, request_id: str, fp: str, filing_id: str, new: NewFiling) -> tuple[Filing, Filing]:
        validate_new_filing(new, today=self._today(), prefix="new_filing.")

        async def attempt() -> tuple[Filing, Filing]:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "change", fp):
                    raise idempotency.Replay(ref)
                repo = FilingRepository(s)
                old = await repo.get(filing_id, for_update=True)
                if old is None:
                    raise DomainError(Reason.FILING_NOT_FOUND, f"no filing {filing_id}")
                if old.person_no != new.person_no:
                    raise DomainError(
                        Reason.VALIDATION_FAILED, "new_filing.person_no must match the old filing", violations=[]
                    )
                self._check_min_period(old, new.start_date)
                now = self._clock()
                filing = self._new_filing(new, now)
                ended = supersede(old, filing.filing_id, new.start_date, now)
                await repo.save(ended, now)
                await outbox.append(s, filing_events, "superseded", ended.filing_id, snapshot_json(ended).encode())
                await repo.add(filing, now)
                await outbox.append(s, filing_events, "created", filing.filing_id, snapshot_json(filing).encode())
                await idempotency.record(s, idempotency_keys, request_id, "change", fp, filing.filing_id)
            self.notifier.notify()
            return ended, filing

        async def replay(ref: str) -> tuple[Filing, Filing]:
            new_f = await self._get_or_fail(ref)
            return await self._get_or_fail(filing_id), new_f

        return await idempotency.run_once(attempt, replay)

    async def cancel(self, request_id: str, fp: str, filing_id: str, effective: dt.date | None) -> Filing:
        async def attempt() -> Filing:
            async with self.db.transaction() as s:
                if ref := await idempotency.check(s, idempotency_keys, request_id, "cancel", fp):
                    raise idempotency.Replay(ref)
                repo = FilingRepository(s)
                old = await repo.get(filing_id, for_update=True)
                if old is None:
                    raise DomainError(Reason.FILING_NOT_FOUND, f"no filing {filing_id}")
                now = self._clock()
                ended = cancel(old, effective or self._today(), now, min_months=self._min_months(old.insured_region))
                await repo.save(ended, now)
                await outbox.append(s, filing_events, "cancelled", ended.filing_id, snapshot_json(ended).encode())
                await idempotency.record(s, idempotency_keys, request_id, "cancel", fp, ended.filing_id)
            self.notifier.notify()
            return ended

        return await idempotency.run_once(attempt, self._get_or_fail)

    def _check_min_period(self, old: Filing, new_start: dt.date) -> None:
        if old.filing_type.long_term:
            months = self._min_months(old.insured_region)
            if new_start < add_months(old.start_date, months):
                raise DomainError(
                    Reason.FILING_MIN_PERIOD_NOT_REACHED,
                    f"the long-term filing {old.filing_id} can change {months} months after its start",
                    metadata={"earliest": add_months(old.start_date, months).isoformat()},
                )

    def _new_filing(self, new: NewFiling, now: dt.datetime) -> Filing:
        return Filing(
            filing_id="F" + uuid.uuid4().hex[:20].upper(),
            person_no=new.person_no,
            insured_region=new.insured_region,
            treatment_region=new.treatment_region,
            filing_type=new.filing_type,
            insurance_type=new.insurance_type,
            channel=new.channel,
            commitment_signed=new.commitment_signed,
            status=FilingStatus.ACTIVE,
            start_date=new.start_date,
            end_date=new.end_date,
            retro=new.treatment_start_date is not None and new.treatment_start_date < new.start_date,
            special_diseases=new.special_diseases,
            trauma_declared=new.trauma_declared,
            employer_name=new.employer_name,
            revision=1,
            created_at=now,
            updated_at=now,
            treatment_start_date=new.treatment_start_date,
        )

    # -- reads ----------------------------------------------------------------------------
    async def _get_or_fail(self, filing_id: str) -> Filing:
        f = await self.get(filing_id)
        if f is None:
            raise DomainError(Reason.FILING_NOT_FOUND, f"no filing {filing_id}")
        return f

    async def get(self, filing_id: str) -> Filing | None:
        async with self.db.read() as s:
            return await FilingRepository(s).get(filing_id)

    async def get_required(self, filing_id: str) -> Filing:
        return await self._get_or_fail(filing_id)

    async def list(
        self, *, person_no: str, treatment_region: str, status: str, after_id: str, limit: int
    ) -> list[Filing]:
        async with self.db.read() as s:
            return await FilingRepository(s).list(
                person_no=person_no,
                treatment_region=treatment_region,
                status=status,
                after_id=after_id,
                limit=limit,
            )

    async def history(self, filing_id: str) -> list[Filing]:
        async with self.db.read() as s:
            revs = await FilingRepository(s).history(filing_id)
        if not revs:
            raise DomainError(Reason.FILING_NOT_FOUND, f"no filing {filing_id}")
        return revs

    async def watch(self, after: int, stopping: asyncio.Event | None = None) -> AsyncIterator[FilingEvent]:
        """The backlog after ``after``, then live events, until ``stopping`` is set."""
        stop = stopping
        position = after
        while stop is None or not stop.is_set():
            await outbox.assign_positions(self.db, filing_events)
            rows = await outbox.read_after(self.db, filing_events, position)
            for row in rows:
                position = row.position
                yield FilingEvent(row.position, row.event_type, from_snapshot(row.payload.decode()))
            if not rows:
                await self.notifier.wait(stop)
