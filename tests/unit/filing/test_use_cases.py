"""Filing use cases (services.filing.application.service) against an in-memory store: what is
stored, what the feed carries, idempotency and the one-active-filing rule, refusals that write
nothing. No server, no database."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping

import pytest

from libs.core.errors import DomainError, Reason
from services.filing.application.service import CaughtUp, FilingService
from services.filing.domain.model import (
    Channel,
    FilingStatus,
    FilingType,
    InstitutionInfo,
    MinPeriodRules,
    NewFiling,
    SpecialDisease,
)
from tests.unit.filing.fakes import InMemoryFilingStore

TODAY = dt.date(2026, 3, 10)
NOW = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)


class Days:
    """A settable clock: the registration day moves when a test says so."""

    def __init__(self) -> None:
        self.today = TODAY

    def now(self) -> dt.datetime:
        return NOW + (self.today - TODAY)


class Directory:
    def __init__(self, known: Mapping[str, InstitutionInfo]) -> None:
        self.known = known
        self.asked: list[list[str]] = []

    async def lookup(self, codes: Iterable[str]) -> Mapping[str, InstitutionInfo | None]:
        codes = list(codes)
        self.asked.append(codes)
        return {c: self.known.get(c) for c in codes}


def new(**kw: object) -> NewFiling:
    values: dict[str, object] = dict(
        person_no="P1",
        insured_region="110100",
        treatment_region="310100",
        filing_type=FilingType.RELOCATED_RETIREE,
        insurance_type="employee",
        channel=Channel.APP,
        commitment_signed=True,
        start_date=TODAY,
        end_date=None,
    )
    values.update(kw)
    return NewFiling(**values)  # type: ignore[arg-type]


@pytest.fixture
def days() -> Days:
    return Days()


@pytest.fixture
def store() -> InMemoryFilingStore:
    return InMemoryFilingStore()


def service(store: InMemoryFilingStore, days: Days, **kw: object) -> FilingService:
    return FilingService(
        store,
        clock=days.now,
        today=lambda: days.today,
        min_period=MinPeriodRules(default_months=6),
        **kw,  # type: ignore[arg-type]
    )


async def test_create_stores_the_filing_its_first_revision_and_a_created_event(store, days) -> None:
    svc = service(store, days)
    f = await svc.create("r1", "fp1", new())
    assert f.status is FilingStatus.ACTIVE and f.revision == 1 and f.start_date == TODAY
    assert await svc.get(f.filing_id) == f
    assert [r.revision for r in await svc.history(f.filing_id)] == [1]
    assert [(e.position, e.event_type, e.filing.filing_id) for e in store.feed] == [(1, "created", f.filing_id)]


async def test_a_start_before_today_is_a_retro_filing_from_today(store, days) -> None:
    f = await service(store, days).create("r1", "fp", new(start_date=TODAY - dt.timedelta(days=20)))
    assert f.start_date == TODAY and f.retro and f.treatment_start_date == TODAY - dt.timedelta(days=20)


async def test_same_request_id_and_payload_answers_the_stored_filing_once(store, days) -> None:
    svc = service(store, days)
    first = await svc.create("r1", "fp1", new())
    again = await svc.create("r1", "fp1", new())
    assert again == first
    assert len(await svc.list(person_no="P1", treatment_region="", status="", after_id="", limit=10)) == 1
    assert len(store.feed) == 1


async def test_same_request_id_with_another_payload_is_refused_and_writes_nothing(store, days) -> None:
    svc = service(store, days)
    await svc.create("r1", "fp1", new())
    with pytest.raises(DomainError) as e:
        await svc.create("r1", "fp2", new(person_no="P2"))
    assert e.value.reason is Reason.REQUEST_ID_REUSED
    assert await svc.list(person_no="P2", treatment_region="", status="", after_id="", limit=10) == []
    assert store.commits == 1


async def test_concurrent_duplicates_store_one_filing(store, days) -> None:
    svc = service(store, days)
    a, b = await asyncio.gather(svc.create("r1", "fp1", new()), svc.create("r1", "fp1", new()))
    assert a == b
    assert store.commits == 1 and len(store.feed) == 1


async def test_a_new_filing_supersedes_the_active_one_once_the_minimum_period_is_over(store, days) -> None:
    svc = service(store, days)
    old = await svc.create("r1", "fp1", new())
    days.today = TODAY + dt.timedelta(days=200)  # past the 6 months of a long-term filing
    fresh = await svc.create("r2", "fp2", new(treatment_region="440300", start_date=days.today))
    ended = await svc.get_required(old.filing_id)
    assert ended.status is FilingStatus.SUPERSEDED and ended.superseded_by == fresh.filing_id
    assert ended.end_effective_date == days.today and ended.revision == 2
    assert [e.event_type for e in store.feed] == ["created", "superseded", "created"]
    assert [r.status for r in await svc.history(old.filing_id)] == [FilingStatus.ACTIVE, FilingStatus.SUPERSEDED]


async def test_a_long_term_filing_cannot_be_replaced_before_its_minimum_period(store, days) -> None:
    svc = service(store, days)
    old = await svc.create("r1", "fp1", new())
    days.today = TODAY + dt.timedelta(days=30)
    with pytest.raises(DomainError) as e:
        await svc.create("r2", "fp2", new(treatment_region="440300", start_date=days.today))
    assert e.value.reason is Reason.FILING_MIN_PERIOD_NOT_REACHED
    assert e.value.metadata["earliest"] == "2026-09-10"
    assert (await svc.get_required(old.filing_id)).status is FilingStatus.ACTIVE
    assert store.commits == 1


async def test_two_concurrent_first_filings_of_one_person_leave_one_active(store, days) -> None:
    """Both see no active filing; the unique rule lets one commit; the other runs again, now
    replaces the first, and is refused by the minimum period (a long-term filing)."""
    svc = service(store, days)
    results = await asyncio.gather(
        svc.create("r1", "fp1", new()), svc.create("r2", "fp2", new(treatment_region="440300")), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, DomainError)]
    assert len(errors) == 1 and errors[0].reason is Reason.FILING_MIN_PERIOD_NOT_REACHED
    active = await svc.list(person_no="P1", treatment_region="", status="active", after_id="", limit=10)
    assert len(active) == 1 and store.commits == 1


async def test_change_refuses_another_person_and_a_filing_not_active(store, days) -> None:
    svc = service(store, days)
    f = await svc.create("r1", "fp1", new(filing_type=FilingType.REFERRAL, end_date=TODAY + dt.timedelta(days=200)))
    with pytest.raises(DomainError) as e:
        await svc.change("c1", "fp", f.filing_id, new(person_no="P2", treatment_region="440300"))
    assert e.value.reason is Reason.VALIDATION_FAILED
    with pytest.raises(DomainError) as e:
        await svc.change("c2", "fp", "FNOPE", new(treatment_region="440300"))
    assert e.value.reason is Reason.FILING_NOT_FOUND
    old, fresh = await svc.change("c3", "fp", f.filing_id, new(treatment_region="440300"))
    assert old.status is FilingStatus.SUPERSEDED and fresh.treatment_region == "440300"
    with pytest.raises(DomainError) as e:
        await svc.change("c4", "fp", f.filing_id, new(treatment_region="320100"))
    assert e.value.reason is Reason.FILING_NOT_ACTIVE
    assert [ev.event_type for ev in store.feed] == ["created", "superseded", "created"]


async def test_change_replayed_answers_both_filings(store, days) -> None:
    svc = service(store, days)
    f = await svc.create("r1", "fp1", new(filing_type=FilingType.REFERRAL, end_date=TODAY + dt.timedelta(days=200)))
    first = await svc.change("c1", "fp", f.filing_id, new(treatment_region="440300"))
    assert await svc.change("c1", "fp", f.filing_id, new(treatment_region="440300")) == first
    assert store.commits == 2


async def test_a_change_cannot_take_effect_in_the_past(store, days) -> None:
    svc = service(store, days)
    f = await svc.create("r1", "fp1", new())
    with pytest.raises(DomainError) as e:
        await svc.change("c1", "fp", f.filing_id, new(start_date=TODAY - dt.timedelta(days=1)))
    assert e.value.reason is Reason.VALIDATION_FAILED
    assert e.value.violations[0].field == "new_filing.start_date"


async def test_cancel_ends_the_filing_and_feeds_a_cancelled_event(store, days) -> None:
    svc = service(store, days)
    f = await svc.create("r1", "fp1", new(filing_type=FilingType.REFERRAL, end_date=TODAY + dt.timedelta(days=200)))
    with pytest.raises(DomainError) as e:
        await svc.cancel("x0", "fp", f.filing_id, TODAY - dt.timedelta(days=1))
    assert e.value.reason is Reason.VALIDATION_FAILED
    ended = await svc.cancel("x1", "fp", f.filing_id, None)
    assert ended.status is FilingStatus.CANCELLED and ended.end_effective_date == TODAY
    assert store.feed[-1].event_type == "cancelled"
    with pytest.raises(DomainError) as e:
        await svc.cancel("x2", "fp", f.filing_id, None)
    assert e.value.reason is Reason.FILING_NOT_ACTIVE


async def test_special_disease_filings_are_checked_against_the_directory_before_any_write(store, days) -> None:
    sd = (SpecialDisease("M00300", ("H310100001",)),)
    with pytest.raises(DomainError) as e:
        await service(store, days).create("r1", "fp", new(special_diseases=sd))
    assert e.value.reason is Reason.DEPENDENCY_UNAVAILABLE  # no directory wired
    directory = Directory({"H310100001": InstitutionInfo("H310100001", "310100", True, frozenset({"M00300"}))})
    svc = service(store, days, institutions=directory)
    with pytest.raises(DomainError) as e:
        await svc.create("r2", "fp", new(special_diseases=(SpecialDisease("M00500", ("H310100001",)),)))
    assert e.value.reason is Reason.SPECIAL_DISEASE_NOT_OPENED
    assert store.commits == 0
    f = await svc.create("r3", "fp", new(special_diseases=sd))
    assert f.special_diseases == sd and directory.asked[-1] == ["H310100001"]


async def test_watch_sends_the_backlog_then_caught_up_then_live_events(store, days) -> None:
    svc = service(store, days)
    a = await svc.create("r1", "fp", new())
    b = await svc.create("r2", "fp", new(person_no="P2"))
    stopping = asyncio.Event()
    seen: list[object] = []
    caught_up = asyncio.Event()

    async def follow() -> None:
        async for item in svc.watch(0, stopping, mark_caught_up=True):
            seen.append(item)
            if isinstance(item, CaughtUp):
                caught_up.set()
            if len(seen) == 4:
                stopping.set()
                return

    task = asyncio.create_task(follow())
    await asyncio.wait_for(caught_up.wait(), 1)
    c = await svc.create("r3", "fp", new(person_no="P3"))
    await asyncio.wait_for(task, 1)
    assert [getattr(x, "filing", None) and x.filing.filing_id for x in seen[:2]] == [a.filing_id, b.filing_id]
    assert seen[2] == CaughtUp(2)
    assert seen[3].filing.filing_id == c.filing_id and seen[3].position == 3


async def test_watch_resumes_after_a_position(store, days) -> None:
    svc = service(store, days)
    await svc.create("r1", "fp", new())
    b = await svc.create("r2", "fp", new(person_no="P2"))
    stopping = asyncio.Event()
    async for item in svc.watch(1, stopping, mark_caught_up=True):
        assert item.filing.filing_id == b.filing_id
        break
