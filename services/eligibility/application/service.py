"""Eligibility use cases. CheckEligibility is answered from memory: the registry is loaded at
start and refreshed, filings arrive from filing's WatchFilings stream."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from libs.core.errors import DomainError, FieldViolation, Reason
from libs.platform import idempotency
from libs.platform.clock import CST
from libs.platform.logs import get_logger
from services.eligibility.application.ports import (
    EligibilityReader,
    EligibilityStore,
    EligibilityUnitOfWork,
    IssuedToken,
    RegistryRows,
)
from services.eligibility.domain.credentials import TokenClaims, TokenSigner, id_hash
from services.eligibility.domain.model import (
    Decision,
    EligibilityRules,
    FilingView,
    Institution,
    InsuredPerson,
    Region,
    ServiceType,
    decide,
)

_log = get_logger("medsettle.eligibility")


@dataclass(frozen=True, slots=True)
class CredentialInput:
    ecert_token: str = ""
    card_number: str = ""
    card_serial: str = ""


@dataclass(frozen=True, slots=True)
class FilingChange:
    position: int
    filing: FilingView


@dataclass(frozen=True, slots=True)
class FeedCaughtUp:
    """The feed has sent everything up to ``position``."""

    position: int


# Refusals that may only mean "the filing has not reached the index yet".
_FILING_REASONS = frozenset(
    {
        Reason.FILING_REQUIRED,
        Reason.FILING_NOT_VALID_ON_DATE,
        Reason.FILING_REGION_MISMATCH,
        Reason.FILING_INSURED_RELATION_CHANGED,
        Reason.SPECIAL_DISEASE_NOT_FILED,
    }
)


class Registry:
    """The in-memory index the hot path reads."""

    def __init__(self) -> None:
        self.regions: dict[str, Region] = {}
        self.institutions: dict[str, Institution] = {}
        self.persons: dict[str, InsuredPerson] = {}
        self.by_card: dict[str, str] = {}
        self.filings: dict[str, dict[str, FilingView]] = {}  # person_no -> filing_id -> view
        self.filing_position = 0
        self.filings_applied = 0  # changes applied since start (== position when none was lost)
        self.filings_ready = asyncio.Event()  # set once the feed's backlog has been applied

    def put_person(self, p: InsuredPerson) -> None:
        old = self.persons.get(p.person_no)
        if old is not None and old.card_number:
            self.by_card.pop(old.card_number, None)
        self.persons[p.person_no] = p
        if p.card_number:
            self.by_card[p.card_number] = p.person_no

    def put_filing(self, change: FilingChange) -> None:
        if change.position <= self.filing_position:
            return  # already applied (a resumed stream never double-applies)
        f = change.filing
        self.filings.setdefault(f.person_no, {})[f.filing_id] = f
        self.filing_position = change.position
        self.filings_applied += 1


FilingFeed = Callable[[int], AsyncIterator[FilingChange | FeedCaughtUp]]
# (insured region, insurance type, treatment region, day) -> the full version of the insured
# place's policy in effect; raises NO_POLICY_IN_EFFECT / NO_CATALOGUE_IN_EFFECT when the insured
# place's policy or the treatment place's catalogue does not cover the day.
PolicyVersionOf = Callable[[str, str, str, dt.date], str]


class EligibilityService:
    def __init__(
        self,
        store: EligibilityStore,
        signer: TokenSigner,
        *,
        token_ttl_seconds: int = 300,
        clock: Callable[[], dt.datetime] | None = None,
        rules: EligibilityRules | None = None,
        policy_version: PolicyVersionOf | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.ttl = token_ttl_seconds
        self.registry = Registry()
        self.rules = rules or EligibilityRules()
        self._policy_version = policy_version or (lambda _region, _insurance, _treatment, _day: "")
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._revoked: set[str] = set()
        self._last_refresh = dt.datetime.min.replace(tzinfo=dt.UTC)

    # -- loading and freshness ------------------------------------------------------------
    async def _revoked_ids(self, repo: EligibilityReader) -> set[str]:
        """Revoked tokens that could still verify (expired ones are refused anyway)."""
        return await repo.revoked_tokens(self._clock() - dt.timedelta(minutes=5))

    def _apply(self, rows: RegistryRows) -> None:
        for r in rows.regions:
            self.registry.regions[r.region_code] = r
        for i in rows.institutions:
            self.registry.institutions[i.institution_code] = i
        for p in rows.persons:
            self.registry.put_person(p)

    async def load(self) -> None:
        async with self.store.read() as repo:
            rows = await repo.registry()
            revoked = await self._revoked_ids(repo)
        self._apply(rows)
        self._revoked = revoked
        self._last_refresh = self._clock()

    async def refresh(self) -> None:
        """Picks up registry rows changed by other replicas (overlapping window, idempotent)."""
        since = self._last_refresh - dt.timedelta(seconds=5)
        now = self._clock()
        async with self.store.read() as repo:
            rows = await repo.registry_changed_since(since)
            revoked = await self._revoked_ids(repo)
        self._apply(rows)
        self._revoked = revoked
        self._last_refresh = now

    async def follow_filings(self, feed: FilingFeed, stopping: asyncio.Event) -> None:
        """Keeps the filing index fresh; reconnects from the last applied position."""
        backoff = 0.05
        while not stopping.is_set():
            try:
                async for change in feed(self.registry.filing_position):
                    if isinstance(change, FeedCaughtUp):
                        if not self.registry.filings_ready.is_set():
                            _log.info(
                                "filing_index_ready",
                                position=self.registry.filing_position,
                                applied=self.registry.filings_applied,
                            )
                        _log.info(
                            "filing_feed_caught_up",
                            position=self.registry.filing_position,
                            applied=self.registry.filings_applied,
                        )
                        self.registry.filings_ready.set()
                        continue
                    self.registry.put_filing(change)
                    backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the peer went away: log and reconnect
                _log.warning(
                    "filing_watch_interrupted", error_type=type(exc).__name__, position=self.registry.filing_position
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, 2.0)

    # -- admin writes ---------------------------------------------------------------------
    async def upsert_region(self, request_id: str, fp: str, region: Region) -> Region:
        async def put(repo: EligibilityUnitOfWork) -> None:
            await repo.put_region(region, self._clock())

        await self._write(request_id, fp, "region", region.region_code, put)
        self.registry.regions[region.region_code] = region
        return region

    async def upsert_institution(self, request_id: str, fp: str, inst: Institution) -> Institution:
        async def put(repo: EligibilityUnitOfWork) -> None:
            await repo.put_institution(inst, self._clock())

        await self._write(request_id, fp, "institution", inst.institution_code, put)
        self.registry.institutions[inst.institution_code] = inst
        return inst

    async def upsert_person(self, request_id: str, fp: str, person: InsuredPerson) -> InsuredPerson:
        async with self.store.read() as reader:
            clash = await reader.identity_clash(person)
        if clash:
            raise DomainError(
                Reason.PERSON_IDENTITY_CONFLICT,
                f"the {clash} belongs to another insured person",
                violations=[FieldViolation(f"person.{clash}", "belongs to another insured person")],
            )

        async def put(repo: EligibilityUnitOfWork) -> None:
            await repo.put_person(person, self._clock())

        await self._write(request_id, fp, "person", person.person_no, put)
        self.registry.put_person(person)
        return person

    async def _write(
        self, request_id: str, fp: str, op: str, ref: str, put: Callable[[EligibilityUnitOfWork], Awaitable[None]]
    ) -> None:
        async def attempt() -> None:
            async with self.store.transaction() as repo:
                if await repo.request_ref(request_id, op, fp):
                    return
                await put(repo)
                await repo.record_request(request_id, op, fp, ref)

        async def replay(_: str) -> None:
            return None

        await idempotency.run_once(attempt, replay)

    # -- credentials ----------------------------------------------------------------------
    async def issue_ecert(self, request_id: str, person_no: str, id_number: str) -> tuple[str, TokenClaims]:
        """Same request_id + same person: the same token again (Ed25519 signatures are
        deterministic, so it is re-signed from the stored claims, never stored itself)."""
        person = self.registry.persons.get(person_no)
        if person is None:
            raise DomainError(Reason.PERSON_NOT_FOUND, "no insured person with that number")
        if person.id_number.upper() != id_number.upper():
            raise DomainError(Reason.CREDENTIAL_PERSON_MISMATCH, "the ID number does not belong to the person")
        fp = id_hash(f"{person_no}|{id_number}")

        async def attempt() -> tuple[str, TokenClaims]:
            now = self._clock()
            async with self.store.transaction() as repo:
                if ref := await repo.request_ref(request_id, "ecert", fp):
                    raise idempotency.Replay(ref)
                token, claims = self.signer.issue(person_no, id_number, int(now.timestamp()), self.ttl)
                await repo.add_token(
                    IssuedToken(
                        claims.token_id,
                        person_no,
                        dt.datetime.fromtimestamp(claims.issued_at, dt.UTC),
                        dt.datetime.fromtimestamp(claims.expires_at, dt.UTC),
                    )
                )
                await repo.record_request(request_id, "ecert", fp, claims.token_id)
            _log.info("ecert_issued", token_id=claims.token_id, expires_at=claims.expires_at)
            return token, claims

        async def replay(token_id: str) -> tuple[str, TokenClaims]:
            async with self.store.read() as reader:
                row = await reader.token(token_id)
            if row is None:  # recorded with its key in one transaction: cannot happen
                raise DomainError(Reason.CREDENTIAL_INVALID, "no such e-certificate")
            claims = TokenClaims(
                token_id,
                row.person_no,
                id_hash(id_number),
                int(row.issued_at.timestamp()),
                int(row.expires_at.timestamp()),
                self.signer.kid,
            )
            return self.signer.sign(claims), claims

        return await idempotency.run_once(attempt, replay)

    async def revoke_ecert(self, token_id: str, may_act_for: Callable[[str], None] = lambda _region: None) -> None:
        """Revokes an e-certificate; ``may_act_for`` refuses a caller who is not the bureau of the
        person's insured region (before anything is written)."""
        async with self.store.transaction() as repo:
            holder = await repo.token_holder(token_id)
            if holder is None:
                raise DomainError(Reason.CREDENTIAL_INVALID, "no such e-certificate")
            person = self.registry.persons.get(holder)
            may_act_for(person.insured_region if person is not None else "")
            if not await repo.revoke_token(token_id):
                raise DomainError(Reason.CREDENTIAL_INVALID, "no such e-certificate")
        self._revoked.add(token_id)

    async def _verified(self, cred: CredentialInput) -> TokenClaims | None:
        """An e-certificate's claims once its signature, expiry and revocation are checked.
        Revocation is read from the database on every check (one primary-key read), so a token
        revoked through any replica is refused by every replica as soon as the revoking call has
        returned; the in-memory set only answers the revocations already known without a read."""
        if not cred.ecert_token:
            return None
        claims = self.signer.verify(cred.ecert_token, int(self._clock().timestamp()))
        if claims.token_id not in self._revoked:
            async with self.store.read() as reader:
                token = await reader.token(claims.token_id)
            if token is not None and token.revoked:
                self._revoked.add(claims.token_id)
        if claims.token_id in self._revoked:
            raise DomainError(Reason.CREDENTIAL_REVOKED, "the e-certificate was revoked")
        return claims

    def identify(
        self, cred: CredentialInput, expected_person_no: str = "", claims: TokenClaims | None = None
    ) -> InsuredPerson:
        person = self._identify(cred, claims)
        if expected_person_no and person.person_no != expected_person_no:
            raise DomainError(
                Reason.CREDENTIAL_PERSON_MISMATCH, "the credential belongs to another person than the one registered"
            )
        return person

    def _identify(self, cred: CredentialInput, verified: TokenClaims | None = None) -> InsuredPerson:
        if cred.ecert_token:
            claims = verified or self.signer.verify(cred.ecert_token, int(self._clock().timestamp()))
            if claims.token_id in self._revoked:
                raise DomainError(Reason.CREDENTIAL_REVOKED, "the e-certificate was revoked")
            person = self.registry.persons.get(claims.person_no)
            if person is None:
                raise DomainError(Reason.PERSON_NOT_FOUND, "the e-certificate's person is not insured here")
            if id_hash(person.id_number) != claims.id_hash:
                raise DomainError(Reason.CREDENTIAL_PERSON_MISMATCH, "the e-certificate is bound to another person")
            return person
        if cred.card_number:
            person_no = self.registry.by_card.get(cred.card_number)
            if person_no is None:
                raise DomainError(Reason.PERSON_NOT_FOUND, "no insured person holds that card")
            person = self.registry.persons[person_no]
            if person.card_serial != cred.card_serial:
                raise DomainError(Reason.CARD_SERIAL_MISMATCH, "the card serial does not match the card")
            return person
        raise DomainError(Reason.CREDENTIAL_INVALID, "credential: an e-certificate token or a card is required")

    # -- the hot query --------------------------------------------------------------------
    async def check(
        self,
        cred: CredentialInput,
        institution_code: str,
        service: ServiceType,
        day: dt.date,
        *,
        special_disease_code: str = "",
        emergency: bool = False,
        trauma_declared: bool = False,
        expected_person_no: str = "",
    ) -> tuple[Decision, str]:
        """The decision and the insured place's policy version. Answered from memory, but for an
        e-certificate's revocation (read from the database, see :meth:`_verified`)."""
        person = self.identify(cred, expected_person_no, await self._verified(cred))
        institution = self.registry.institutions.get(institution_code)
        d = decide(
            person,
            institution,
            self.filings_of(person.person_no),
            service,
            day,
            special_disease_code=special_disease_code,
            emergency=emergency,
            emergency_counts_as_filed=self.rules.emergency_counts_as_filed(person.insured_region),
            trauma_declared=trauma_declared,
        )
        if not self.registry.filings_ready.is_set() and _FILING_REASONS.intersection(d.reasons):
            # A refusal from a half-built index would send a filed person away: retry instead.
            raise DomainError(Reason.FILING_INDEX_NOT_READY, "the filing index is still loading; retry shortly")
        if not d.eligible:
            # The decision's own reasons tell the hospital what to do; no policy is named.
            return d, ""
        return d, self._policy_version(person.insured_region, person.insurance_type, d.treatment_region, day)

    def now(self) -> dt.datetime:
        return self._clock()

    def today(self) -> dt.date:
        return self._clock().astimezone(CST).date()

    def filings_of(self, person_no: str) -> list[FilingView]:
        return list(self.registry.filings.get(person_no, {}).values())

    def person(self, person_no: str) -> InsuredPerson:
        p = self.registry.persons.get(person_no)
        if p is None:
            raise DomainError(Reason.PERSON_NOT_FOUND, "no insured person with that number")
        return p

    def institution(self, code: str) -> Institution:
        i = self.registry.institutions.get(code)
        if i is None:
            raise DomainError(Reason.INSTITUTION_NOT_FOUND, f"no institution {code}")
        return i
