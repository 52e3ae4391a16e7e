"""Filing use cases. Each owns its transaction; the outbox event is written in the same one."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.platform import idempotency, outbox
from libs.platform.convert import today_cst
from libs.platform.logs import get_logger
from services.filing.application.ports import FilingEvent, FilingStore, FilingUnitOfWork
from services.filing.domain.model import (
    Filing,
    FilingStatus,
    InstitutionInfo,
    MinPeriodRules,
    NewFiling,
    as_registered,
    cancel,
    check_min_period,
    check_replaces,
    check_special_disease_institutions,
    supersede,
    validate_new_filing,
)

_log = get_logger("medsettle.filing")


class InstitutionDirectory(Protocol):
    """The designated-institution registry (owned by eligibility). Raises DEPENDENCY_UNAVAILABLE
    when it cannot answer; an unknown code maps to None."""

    async def lookup(self, codes: Iterable[str]) -> Mapping[str, InstitutionInfo | None]: ...


class NoInstitutionDirectory:
    """For a filing service wired without eligibility: special-disease filings cannot be checked."""

    async def lookup(self, codes: Iterable[str]) -> Mapping[str, InstitutionInfo | None]:
        raise DomainError(
            Reason.DEPENDENCY_UNAVAILABLE, "the institution registry is not reachable; special-disease filing is off"
        )


@dataclass(frozen=True, slots=True)
class CaughtUp:
    position: int


class FilingService:
    def __init__(
        self,
        store: FilingStore,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        today: Callable[[], dt.date] | None = None,
        min_period: MinPeriodRules | None = None,
        institutions: InstitutionDirectory | None = None,
    ) -> None:
        self.store = store
        self.notifier = outbox.FeedNotifier()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._today = today or today_cst
        self.min_period = min_period or MinPeriodRules()
        self.institutions: InstitutionDirectory = institutions or NoInstitutionDirectory()

    def today(self) -> dt.date:
        """The registration date (China Standard Time)."""
        return self._today()

    def _min_months(self, insured_region: str) -> int:
        return self.min_period.months_for(insured_region)

    async def _check_institutions(self, new: NewFiling, prefix: str = "") -> None:
        """Outside the transaction: an RPC never runs while rows are locked."""
        codes = {c for sd in new.special_diseases for c in sd.institution_codes}
        if codes:
            found = await self.institutions.lookup(sorted(codes))
            check_special_disease_institutions(new, found, prefix=prefix)

    # -- writes ---------------------------------------------------------------------------
    async def create(self, request_id: str, fp: str, new: NewFiling) -> Filing:
        new = as_registered(new, self._today())
        validate_new_filing(new, today=self._today())
        await self._check_institutions(new)

        async def attempt() -> Filing:
            async with self.store.transaction() as repo:
                if ref := await repo.request_ref(request_id, "create", fp):
                    raise idempotency.Replay(ref)
                now = self._clock()
                filing = self._new_filing(new, now)
                old = await repo.active_for_person(new.person_no, for_update=True)
                if old is not None:
                    # A new filing makes the old one expire automatically (history kept).
                    self._check_replaces(old, new)
                await self._add(repo, filing, old, now)
                await repo.record_request(request_id, "create", fp, filing.filing_id)
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
        if new.start_date < self._today():
            raise DomainError(
                Reason.VALIDATION_FAILED,
                "a change takes effect on its registration day or later",
                violations=[FieldViolation("new_filing.start_date", f"on or after {self._today().isoformat()}")],
            )
        validate_new_filing(new, today=self._today(), prefix="new_filing.")
        await self._check_institutions(new, "new_filing.")

        async def attempt() -> tuple[Filing, Filing]:
            async with self.store.transaction() as repo:
                if ref := await repo.request_ref(request_id, "change", fp):
                    raise idempotency.Replay(ref)
                old = await repo.get(filing_id, for_update=True)
                if old is None:
                    raise DomainError(Reason.FILING_NOT_FOUND, f"no filing {filing_id}")
                if old.person_no != new.person_no:
                    raise DomainError(
                        Reason.VALIDATION_FAILED,
                        "new_filing.person_no must match the old filing",
                        violations=[FieldViolation("new_filing.person_no", "must be the person of the old filing")],
                    )
                if old.status is not FilingStatus.ACTIVE:
                    raise DomainError(Reason.FILING_NOT_ACTIVE, f"filing {old.filing_id} is {old.status.value}")
                self._check_replaces(old, new, "new_filing.")
                now = self._clock()
                filing = self._new_filing(new, now)
                ended = await self._add(repo, filing, old, now)
                assert ended is not None
                await repo.record_request(request_id, "change", fp, filing.filing_id)
            self.notifier.notify()
            return ended, filing

        async def replay(ref: str) -> tuple[Filing, Filing]:
            new_f = await self._get_or_fail(ref)
            return await self._get_or_fail(filing_id), new_f

        return await idempotency.run_once(attempt, replay)

    async def cancel(self, request_id: str, fp: str, filing_id: str, effective: dt.date | None) -> Filing:
        if effective is not None and effective < self._today():
            raise DomainError(
                Reason.VALIDATION_FAILED,
                "cancel_date cannot be in the past (settled visits stay covered)",
                violations=[FieldViolation("cancel_date", f"on or after {self._today().isoformat()}")],
            )

        async def attempt() -> Filing:
            async with self.store.transaction() as repo:
                if ref := await repo.request_ref(request_id, "cancel", fp):
                    raise idempotency.Replay(ref)
                old = await repo.get(filing_id, for_update=True)
                if old is None:
                    raise DomainError(Reason.FILING_NOT_FOUND, f"no filing {filing_id}")
                now = self._clock()
                ended = cancel(old, effective or self._today(), now, min_months=self._min_months(old.insured_region))
                await repo.save(ended, now)
                await repo.append_event("cancelled", ended)
                await repo.record_request(request_id, "cancel", fp, ended.filing_id)
            self.notifier.notify()
            return ended

        return await idempotency.run_once(attempt, self._get_or_fail)

    @staticmethod
    async def _add(repo: FilingUnitOfWork, filing: Filing, old: Filing | None, now: dt.datetime) -> Filing | None:
        """Stores a new filing with its "created" event; ``old``, when given, is superseded the
        day the new one starts (saved with its "superseded" event first) and returned ended."""
        ended = None
        if old is not None:
            ended = supersede(old, filing.filing_id, filing.start_date, now)
            await repo.save(ended, now)
            await repo.append_event("superseded", ended)
        await repo.add(filing, now)
        await repo.append_event("created", filing)
        return ended

    def _check_replaces(self, old: Filing, new: NewFiling, prefix: str = "") -> None:
        check_replaces(old, new, prefix=prefix)
        check_min_period(old, new.start_date, self._min_months(old.insured_region))

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
            retro=new.retro,
            manual_reimbursement=new.retro and new.self_paid_discharged,
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
        async with self.store.read() as repo:
            return await repo.get(filing_id)

    async def get_required(self, filing_id: str) -> Filing:
        return await self._get_or_fail(filing_id)

    async def list(
        self,
        *,
        person_no: str,
        treatment_region: str,
        status: str,
        after_id: str,
        limit: int,
        insured_region: str = "",
    ) -> builtins.list[Filing]:
        async with self.store.read() as repo:
            return await repo.list(
                person_no=person_no,
                treatment_region=treatment_region,
                insured_region=insured_region,
                status=status,
                after_id=after_id,
                limit=limit,
            )

    async def history(self, filing_id: str) -> builtins.list[Filing]:
        async with self.store.read() as repo:
            revs = await repo.history(filing_id)
        if not revs:
            raise DomainError(Reason.FILING_NOT_FOUND, f"no filing {filing_id}")
        return revs

    async def watch(
        self, after: int, stopping: asyncio.Event | None = None, *, mark_caught_up: bool = False
    ) -> AsyncIterator[FilingEvent | CaughtUp]:
        """The backlog after ``after``, then live events, until ``stopping`` is set. With
        ``mark_caught_up``, one :class:`CaughtUp` follows the backlog (the reader is current)."""
        position = after
        marked = not mark_caught_up
        async with contextlib.aclosing(self.store.events(after, self.notifier, stopping)) as batches:
            async for events in batches:
                for event in events:
                    position = event.position
                    yield event
                if not events and not marked:
                    marked = True
                    yield CaughtUp(position)
