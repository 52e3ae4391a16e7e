"""Eligibility use cases (services.eligibility.application.service) against an in-memory store:
registry writes and their idempotency, identity conflicts, e-certificates issued, replayed and
revoked, loading and refreshing the in-memory registry, the filing index from the feed. No
server, no database."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.core.errors import DomainError, Reason
from services.eligibility.application.service import (
    CredentialInput,
    EligibilityService,
    FeedCaughtUp,
    FilingChange,
)
from services.eligibility.domain.credentials import TokenSigner
from services.eligibility.domain.model import (
    FilingView,
    Institution,
    InsuredPerson,
    PersonStatus,
    Region,
    ServiceType,
)
from tests.unit.eligibility.fakes import InMemoryEligibilityStore

NOW = dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 3, 10)
ID = "110105195403120027"
SIGNER = TokenSigner(Ed25519PrivateKey.generate())
PERSON = InsuredPerson(
    person_no="P1",
    id_number=ID,
    name="W",
    insured_region="110100",
    insurance_type="employee",
    person_type="retired",
    status=PersonStatus.ACTIVE,
    card_number="C1",
    card_serial="S1",
)
HOSPITAL = Institution("H1", "Hospital", "310100", 3, frozenset({ServiceType.INPATIENT}), frozenset())
FILING = FilingView(
    filing_id="F1",
    person_no="P1",
    treatment_region="310100",
    filing_type="relocated_retiree",
    active=True,
    start_date=dt.date(2026, 1, 1),
    end_date=None,
    covers_from=dt.date(2026, 1, 1),
    end_effective_date=None,
    insured_region="110100",
    insurance_type="employee",
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def store() -> InMemoryEligibilityStore:
    return InMemoryEligibilityStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service(store: InMemoryEligibilityStore, clock: Clock) -> EligibilityService:
    return EligibilityService(
        store, SIGNER, token_ttl_seconds=300, clock=clock, policy_version=lambda *_: "110100-employee-2026.1@abc"
    )


async def registered(store: InMemoryEligibilityStore, clock: Clock) -> EligibilityService:
    svc = service(store, clock)
    await svc.upsert_region("r1", "fp", Region("110100", "Beijing"))
    await svc.upsert_institution("r2", "fp", HOSPITAL)
    await svc.upsert_person("r3", "fp", PERSON)
    return svc


async def test_registry_writes_are_stored_and_answered_from_memory(store, clock) -> None:
    svc = await registered(store, clock)
    assert svc.person("P1") == PERSON and svc.institution("H1") == HOSPITAL
    rows = store.state
    assert set(rows.persons) == {"P1"} and set(rows.institutions) == {"H1"} and set(rows.regions) == {"110100"}
    assert store.commits == 3
    with pytest.raises(DomainError) as e:
        svc.institution("H9")
    assert e.value.reason is Reason.INSTITUTION_NOT_FOUND


async def test_a_replayed_write_writes_nothing_and_a_reused_id_is_refused(store, clock) -> None:
    svc = await registered(store, clock)
    await svc.upsert_person("r3", "fp", PERSON)
    assert store.commits == 4 and store.state.persons["P1"][0] == PERSON  # the replay committed no row
    with pytest.raises(DomainError) as e:
        await svc.upsert_person("r3", "other", PERSON)
    assert e.value.reason is Reason.REQUEST_ID_REUSED


async def test_an_id_number_or_card_of_another_person_is_refused_before_any_write(store, clock) -> None:
    svc = await registered(store, clock)
    for clash, other in (
        ("id_number", InsuredPerson(**{**_fields(PERSON), "person_no": "P2", "card_number": ""})),
        ("card_number", InsuredPerson(**{**_fields(PERSON), "person_no": "P2", "id_number": "110105195403120035"})),
    ):
        with pytest.raises(DomainError) as e:
            await svc.upsert_person(f"x-{clash}", "fp", other)
        assert e.value.reason is Reason.PERSON_IDENTITY_CONFLICT
        assert e.value.violations[0].field == f"person.{clash}"
    assert set(store.state.persons) == {"P1"}


async def test_concurrent_new_persons_with_one_id_number_store_one(store, clock) -> None:
    """Both pass the read-side check; the unique column lets one commit; the other is retried
    and then refused by the check."""
    svc = await registered(store, clock)
    a = InsuredPerson(**{**_fields(PERSON), "person_no": "P2", "id_number": "X1", "card_number": ""})
    b = InsuredPerson(**{**_fields(PERSON), "person_no": "P3", "id_number": "X1", "card_number": ""})
    results = await asyncio.gather(
        svc.upsert_person("a", "fp", a), svc.upsert_person("b", "fp", b), return_exceptions=True
    )
    stored = {p.person_no for p, _ in store.state.persons.values() if p.id_number == "X1"}
    assert len(stored) == 1
    assert sum(isinstance(r, BaseException) for r in results) == 1


async def test_an_ecert_identifies_its_person_and_a_replay_returns_the_same_token(store, clock) -> None:
    svc = await registered(store, clock)
    token, claims = await svc.issue_ecert("e1", "P1", ID)
    assert svc.identify(CredentialInput(ecert_token=token)) == PERSON
    again, same = await svc.issue_ecert("e1", "P1", ID)
    assert (again, same) == (token, claims)
    assert list(store.state.tokens) == [claims.token_id]
    with pytest.raises(DomainError) as e:
        await svc.issue_ecert("e2", "P1", "110105195403120035")
    assert e.value.reason is Reason.CREDENTIAL_PERSON_MISMATCH
    with pytest.raises(DomainError) as e:
        await svc.issue_ecert("e3", "P9", ID)
    assert e.value.reason is Reason.PERSON_NOT_FOUND
    clock.now = NOW + dt.timedelta(seconds=300)
    with pytest.raises(DomainError) as e:
        svc.identify(CredentialInput(ecert_token=token))
    assert e.value.reason is Reason.CREDENTIAL_EXPIRED


async def test_revocation_is_stored_checked_against_the_bureau_and_survives_a_restart(store, clock) -> None:
    svc = await registered(store, clock)
    token, claims = await svc.issue_ecert("e1", "P1", ID)

    def not_beijing(region: str) -> None:
        assert region == "110100"
        raise DomainError(Reason.NOT_AUTHORISED_FOR_REGION, "not this bureau")

    with pytest.raises(DomainError) as e:
        await svc.revoke_ecert(claims.token_id, not_beijing)
    assert e.value.reason is Reason.NOT_AUTHORISED_FOR_REGION
    assert not store.state.tokens[claims.token_id].revoked
    with pytest.raises(DomainError) as e:
        await svc.revoke_ecert("nope")
    assert e.value.reason is Reason.CREDENTIAL_INVALID
    await svc.revoke_ecert(claims.token_id)
    assert store.state.tokens[claims.token_id].revoked
    restarted = service(store, clock)
    await restarted.load()
    with pytest.raises(DomainError) as e:
        restarted.identify(CredentialInput(ecert_token=token))
    assert e.value.reason is Reason.CREDENTIAL_REVOKED


async def test_load_and_refresh_pick_up_what_another_replica_wrote(store, clock) -> None:
    other = await registered(store, clock)
    mine = service(store, clock)
    await mine.load()
    assert mine.person("P1") == PERSON
    clock.now = NOW + dt.timedelta(seconds=10)
    moved = InsuredPerson(**{**_fields(PERSON), "card_number": "C2"})
    await other.upsert_person("r4", "fp", moved)
    assert mine.identify(CredentialInput(card_number="C1", card_serial="S1")) == PERSON
    await mine.refresh()
    assert mine.person("P1") == moved
    with pytest.raises(DomainError) as e:
        mine.identify(CredentialInput(card_number="C1", card_serial="S1"))
    assert e.value.reason is Reason.PERSON_NOT_FOUND
    with pytest.raises(DomainError) as e:
        mine.identify(CredentialInput(card_number="C2", card_serial="S9"))
    assert e.value.reason is Reason.CARD_SERIAL_MISMATCH


async def test_a_refusal_that_may_mean_a_missing_filing_waits_for_the_index(store, clock) -> None:
    svc = await registered(store, clock)
    card = CredentialInput(card_number="C1", card_serial="S1")
    with pytest.raises(DomainError) as e:
        await svc.check(card, "H1", ServiceType.INPATIENT, DAY)
    assert e.value.reason is Reason.FILING_INDEX_NOT_READY
    svc.registry.filings_ready.set()
    refused, version = await svc.check(card, "H1", ServiceType.INPATIENT, DAY)
    assert not refused.eligible and Reason.FILING_REQUIRED in refused.reasons and version == ""
    svc.registry.put_filing(FilingChange(1, FILING))
    decision, version = await svc.check(card, "H1", ServiceType.INPATIENT, DAY)
    assert decision.eligible and decision.filing == FILING and version == "110100-employee-2026.1@abc"


async def test_the_filing_index_follows_the_feed_and_resumes_from_its_position(store, clock) -> None:
    svc = await registered(store, clock)
    stopping = asyncio.Event()
    asked: list[int] = []

    async def feed(after: int) -> AsyncIterator[FilingChange | FeedCaughtUp]:
        asked.append(after)
        if len(asked) == 1:
            yield FilingChange(1, FILING)
            yield FilingChange(1, FILING)  # a resumed stream may repeat: applied once
            raise ConnectionError("the peer went away")
        yield FilingChange(2, FilingView(**{**_fields(FILING), "filing_id": "F2", "person_no": "P2"}))
        yield FeedCaughtUp(2)
        stopping.set()

    await asyncio.wait_for(svc.follow_filings(feed, stopping), 5)
    assert asked == [0, 1]
    assert svc.registry.filings_ready.is_set() and svc.registry.filings_applied == 2
    assert [f.filing_id for f in svc.filings_of("P1")] == ["F1"]
    assert [f.filing_id for f in svc.filings_of("P2")] == ["F2"]


def _fields(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]
