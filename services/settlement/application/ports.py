"""What the use cases need from the world, as interfaces (``typing.Protocol``).

The adapters implement them (``adapters/store.py`` over SQLAlchemy and asyncpg,
``adapters/peers.py`` over gRPC); the composition root (``server.py``) passes them in; the unit
tests pass in-memory fakes (``tests/unit/settlement/fakes.py``). Nothing here knows SQL.

A repository is valid inside one unit of work (``Store.read()`` or ``Store.transaction()``);
it never commits. Its writes must keep the database's guarantees: a request id is recorded once
(a second record of the same id fails the unit of work, as the primary key does), a settlement's
request id and the settlement a cancellation cancels are unique.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from libs.policy import Accumulators, Catalogue, FeeLine, FilingType, Policy, ServiceType, SettlementResult
from libs.policy.loader import PolicySet
from services.settlement.domain.model import (
    CredentialRef,
    Decision,
    ManualClaim,
    SettlementRecord,
    StayRef,
    UploadedLine,
    VisitRecord,
    VisitStatus,
)
from services.settlement.domain.monitoring import Stay


class EligibilityPort(Protocol):
    async def check(
        self,
        cred: CredentialRef,
        institution_code: str,
        service: ServiceType,
        day: dt.date,
        *,
        special_disease_code: str,
        emergency: bool,
        trauma: bool,
    ) -> Decision: ...

    async def filing_type_on(self, person_no: str, treatment_region: str, day: dt.date) -> FilingType | None:
        """The type of the person's filing (retro-filings included) covering the region and day."""
        ...


class PolicySource(Protocol):
    """Where the policies and catalogues come from (a watched ``PolicyStore`` in production)."""

    @property
    def current(self) -> PolicySet: ...

    def policy_version(self, version: str) -> Policy: ...

    def catalogue_version(self, version: str) -> Catalogue: ...

    def remember(self, kind: str, text: str, origin: str) -> Policy | Catalogue: ...


class KeyStore(Protocol):
    """The idempotency keys of this service (``request_id`` is the primary key)."""

    async def check_key(self, request_id: str, operation: str, fp: str) -> str | None:
        """The stored result reference of an earlier same request, None if new;
        REQUEST_ID_REUSED when the id was used for another operation or payload."""
        ...

    async def lookup_key(self, request_id: str) -> tuple[str, str] | None:
        """(operation, result_ref) of an earlier request, whatever its payload."""
        ...

    async def record_key(self, request_id: str, operation: str, fp: str, ref: str) -> None: ...


class SettlementRepo(KeyStore, Protocol):
    # visits
    async def add_visit(self, v: VisitRecord) -> None: ...

    async def visit(self, visit_id: str, *, for_update: bool = False) -> VisitRecord | None: ...

    async def visit_by_hospital_no(self, institution: str, visit_no: str) -> VisitRecord | None: ...

    async def update_visit(self, visit_id: str, **values: object) -> None: ...

    async def set_visit_status(
        self, visit_id: str, status: VisitStatus, *, discharge_date: dt.date | None = None, settled_stays_delta: int = 0
    ) -> None: ...

    async def latest_visit_of(self, person_no: str, institution: str | None) -> VisitRecord | None: ...

    async def lock_stays_of(self, person_no: str, institution: str, service_type: str) -> None:
        """Serialises the same-stay check of OpenVisit and SubmitManualClaim for one person at one
        institution of one service type until the unit of work ends."""
        ...

    async def stays_of(self, person_no: str, institution: str, service_type: str) -> list[StayRef]:
        """The person's visits at the institution of one service type that are not cancelled,
        each with its live (not cancelled) settlement id or ""."""
        ...

    async def inpatient_stays_of(self, persons: list[str]) -> dict[str, list[Stay]]: ...

    # fee lines
    async def lines(self, visit_id: str, *, unsettled_only: bool = False) -> list[UploadedLine]: ...

    async def replace_lines(self, visit_id: str, lines: list[UploadedLine]) -> None: ...

    async def mark_lines_settled(self, visit_id: str, line_nos: list[int], settlement_id: str) -> None: ...

    async def unmark_lines(self, visit_id: str, settlement_id: str) -> None: ...

    async def deductible_borne_in_stay(self, visit_id: str) -> int: ...

    # settlements (each with its outbox event)
    async def add_settlement(self, rec: SettlementRecord, result: SettlementResult) -> None: ...

    async def settlement(self, settlement_id: str) -> SettlementRecord | None:
        """With ``cancelled_by`` filled."""
        ...

    async def settlements_by_ids(self, ids: list[str]) -> dict[str, SettlementRecord]: ...

    async def settlement_by_request(self, request_id: str) -> SettlementRecord | None: ...

    async def list_settlements(
        self,
        *,
        institution: str | None,
        person_no: str | None,
        insured_region: str | None,
        date_from: dt.date,
        date_to: dt.date,
        kind: str | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
    ) -> list[SettlementRecord]: ...

    # accumulators and the personal account
    async def lock_accumulators(self, person_no: str, year: int, seed_balance_fen: int) -> Accumulators: ...

    async def read_accumulators(self, person_no: str, year: int, seed_balance_fen: int) -> Accumulators: ...

    async def save_accumulators(self, person_no: str, acc: Accumulators) -> None: ...

    # manual claims
    async def add_claim(self, c: ManualClaim) -> None: ...

    async def claim(self, claim_id: str, *, for_update: bool = False) -> ManualClaim | None: ...

    async def claims_of(self, person_no: str, institution: str, service_type: str) -> list[StayRef]: ...

    async def claim_by_visit_no(self, institution: str, visit_no: str) -> ManualClaim | None: ...

    async def mark_claim_processed(
        self, claim_id: str, result_json: str, reimbursed_fen: int, now: dt.datetime
    ) -> None: ...

    async def claims(self, insured_region: str, status: str, after_id: str, limit: int) -> list[ManualClaim]: ...

    # the archive of policy and catalogue versions in force
    async def record_policy_versions(self, sources: dict[str, tuple[str, str]], now: dt.datetime) -> int: ...

    async def archived_policy_version(self, version: str) -> tuple[str, str] | None: ...


# -- the group-commit batch ------------------------------------------------------------------

# (visit_id, new status, discharge date to set or None)
StatusChange = tuple[str, str, dt.date | None]
# (request_id, operation, fingerprint, result_ref)
KeyRow = tuple[str, str, str, str]


@dataclass(slots=True)
class BatchReads:
    keys: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # request_id -> (op, fp, ref)
    lines: dict[str, list[FeeLine]] = field(default_factory=dict)  # visit_id -> unsettled lines
    prior: dict[str, int] = field(default_factory=dict)  # visit_id -> deductible borne in the stay
    stays: dict[str, list[Stay]] = field(default_factory=dict)  # person_no -> inpatient stays
    accs: dict[tuple[str, int], Accumulators] = field(default_factory=dict)  # locked, those that exist


class BatchUnit(Protocol):
    """One transaction for a batch of settlements (``Store.batch()``)."""

    async def lock_visits(self, visit_ids: list[str]) -> dict[str, VisitRecord]:
        """Row-locks the visits in id order (a fixed order: concurrent batches cannot deadlock)."""
        ...

    async def read(
        self,
        request_ids: list[str],
        visit_ids: list[str],
        stay_visit_ids: list[str],
        stay_persons: list[str],
        wanted: list[tuple[str, int]],
    ) -> BatchReads:
        """``wanted``: the (person, year) accumulator rows to lock; those that exist come back."""
        ...

    async def create_accumulators(self, seeds: dict[tuple[str, int], int]) -> dict[tuple[str, int], Accumulators]:
        """Creates the missing (person, year) rows (and accounts, seeded with the given balance)
        and returns them locked. Called only for calls that will settle, so a refused call
        leaves nothing behind."""
        ...

    async def write(
        self,
        records: list[tuple[SettlementRecord, SettlementResult]],
        accs: dict[tuple[str, int], Accumulators],
        balances: dict[str, int],
        statuses: list[StatusChange],
        keys: list[KeyRow],
    ) -> None:
        """The settlements and their outbox events, their visits' lines marked, the accumulators
        and balances, the visits' status (settled_stays + 1) and the keys."""
        ...


class FeedRow(Protocol):
    @property
    def position(self) -> int: ...

    @property
    def entity_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PreSettleReads:
    visit: VisitRecord
    lines: tuple[FeeLine, ...]  # unsettled
    accumulators: Accumulators  # the balance seeded from the decision when no account exists yet
    prior_deductible_fen: int  # borne in the stay so far


class Store(Protocol):
    """The service's storage: units of work, the hot path's batch and reads, the feed."""

    def read(self) -> AbstractAsyncContextManager[SettlementRepo]: ...

    def transaction(self) -> AbstractAsyncContextManager[SettlementRepo]:
        """Commits when the block ends normally, else rolls back."""
        ...

    def batch(self) -> AbstractAsyncContextManager[BatchUnit]: ...

    async def presettle_reads(self, visit_id: str, year: int) -> PreSettleReads | None:
        """No locks, no writes; None when there is no such visit."""
        ...

    def follow(self, after: int, stopping: asyncio.Event | None) -> AsyncGenerator[Sequence[FeedRow], None]:
        """The outbox after ``after`` in position order; an empty batch: caught up (then waits)."""
        ...

    def notify(self) -> None:
        """A settlement committed in this process: wake the feed's reader."""
        ...
